"""In view from tracks, not frames (issue 44): runtime/faces/occupancy.py's rule, the MQTT queue that per-face
messages cannot evict, and Home Assistant's occupancy through a real Mosquitto (ON once and OFF once on a video
with one face on every frame; a broker restarted without persistence gets it back on reconnect)."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fer_edge.runtime.core.errors import FerEdgeError
from fer_edge.runtime.core.results import FaceResult, FrameResult
from fer_edge.runtime.faces.occupancy import Occupancy
from fer_edge.runtime.serve.mqtt import OfflineQueue
from mqtt_broker import Broker, Subscriber, wait_for


def _face(track: int, sure: bool = True) -> FaceResult:
    return FaceResult((10, 10, 50, 50), "happy", {"happy": 0.8, "sad": 0.2}, track, sure=sure)


def _run(script: list[list[FaceResult]], hold: float, fps: float = 10.0) -> list[tuple[int, bool]]:
    """(frame, new state) of every change over a script of frames."""
    occ, out = Occupancy(hold), []
    for i, faces in enumerate(script):
        changed = occ.update(FrameResult(i, i / fps, faces))
        if changed is not None:
            out.append((i, changed))
    return out


def test_in_view_follows_tracks_with_a_sure_frame_and_holds():
    flicker = [[_face(1, sure=i % 3 != 0)] for i in range(1, 40)]  # one face, unsure on every third frame
    assert _run(flicker, hold=1.0) == [(0, True)]  # on once; unsure frames of a sure track change nothing
    assert _run([[_face(1, sure=False)]] * 20, hold=1.0) == []  # a track the model was never sure of is no one
    # lost for 0.5 s, found again as a new track: still in view; gone for longer than the hold: off, once
    script = [[_face(1)]] * 10 + [[]] * 5 + [[_face(2)]] * 10 + [[]] * 30
    assert _run(script, hold=1.0) == [(0, True), (34, False)]
    assert _run(script, hold=0.0) == [(0, True), (10, False), (15, True), (25, False)]
    occ = Occupancy(1.0)
    for i, faces in enumerate(script):
        occ.update(FrameResult(i, i / 10, faces))
    assert occ.figures() == {"periods": 1, "seconds": 2.4}  # from its first sure frame to its last
    with pytest.raises(FerEdgeError, match="--in-view-hold"):
        Occupancy(-1)


def test_face_messages_cannot_evict_state_or_visits():
    q = OfflineQueue(3)
    q.put(("t/ha/occupancy", "ON", True, 1), urgent=True)
    q.put(("t/visit", "{start}", False, 1), urgent=True)
    for i in range(10):
        q.put(("t/face", str(i), False, 1))
    q.put(("t/ha/occupancy", "OFF", True, 1), urgent=True)  # replaces the ON still waiting: the newest state only
    with q.cond:
        sent = [q.pop()[0] for _ in range(len(q))]
    assert [(t, p) for t, p, _, _ in sent] == [("t/visit", "{start}"), ("t/ha/occupancy", "OFF"),
                                               ("t/face", "7"), ("t/face", "8"), ("t/face", "9")]
    assert q.dropped == 7


def _occupancy(watch: Subscriber, topic: str) -> list[str]:
    with watch.lock:
        return [p.decode() for t, p in watch.messages if t == topic]


def _fer_edge(samples_dir, port: int, *extra: str) -> subprocess.Popen:
    """fer-edge (by default with its default model, whose sure flag flickers on this video), publishing to Home
    Assistant on fer/occ."""
    video = samples_dir / "fer_test.mp4"
    cmd = [sys.executable, "-m", "fer_edge.runtime.cli", "--source", str(video), "--threads", "1", "--quiet",
           "--mqtt", f"mqtt://127.0.0.1:{port}/fer/occ", "--ha-discovery", "--device-name", "occ", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_one_face_on_every_frame_is_on_once_and_off_once(samples_dir, broker):
    broker.start()
    watch = proc = None
    try:
        watch = Subscriber(broker.port, "fer/occ/#")
        assert watch.subscribed.wait(10)
        proc = _fer_edge(samples_dir, broker.port, "--loop", "3", "--json", "-")  # 15 s of video, the face on every frame
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        unsure = out.count('"sure":false')
        assert unsure > 10, "the model was sure of every frame: the test shows nothing"
        wait_for(lambda: len(_occupancy(watch, "fer/occ/ha/occupancy")) >= 3, 10,
                 f"the last occupancy (seen: {_occupancy(watch, 'fer/occ/ha/occupancy')})")
        # the state said on connect (no one yet), then ON once and OFF once (when the run ended)
        assert _occupancy(watch, "fer/occ/ha/occupancy") == ["OFF", "ON", "OFF"], (unsure, err)
    finally:
        if proc and proc.poll() is None:
            proc.kill()
        if watch:
            watch.close()


@pytest.mark.slow
def test_a_broker_restarted_without_persistence_gets_the_occupancy_back(tmp_path, samples_dir, broker):
    folder = tmp_path / "forgetful"
    folder.mkdir()
    forgetful = Broker(folder, broker.port, persistence=False)
    forgetful.start()
    watch = proc = None
    try:
        watch = Subscriber(broker.port, "fer/occ/#")
        assert watch.subscribed.wait(10)
        # the tiny model is sure of every face: the occupancy goes ON once and has no change to publish after
        tiny = Path(__file__).parent / "assets" / "tiny_fer.tflite"
        proc = _fer_edge(samples_dir, broker.port, "--loop", "1000", "--model", str(tiny))
        wait_for(lambda: "ON" in _occupancy(watch, "fer/occ/ha/occupancy") or proc.poll() is not None, 60, "ON")
        forgetful.stop()
        forgetful.start()  # it remembers nothing: no retained status, no occupancy
        with watch.lock:
            watch.messages.clear()
            watch.times.clear()

        def back(topic: str, payload: bytes):
            with watch.lock:
                return next((at for (t, p), at in zip(watch.messages, watch.times) if t == topic and p == payload),
                            None)

        wait_for(lambda: back("fer/occ/status", b'{"device": "%s", "online": true}' % _host()) is not None, 60,
                 "fer-edge online again")
        wait_for(lambda: back("fer/occ/ha/occupancy", b"ON") is not None, 10, "the occupancy again")
        gap = back("fer/occ/ha/occupancy", b"ON") - back("fer/occ/status", b'{"device": "%s", "online": true}' % _host())
        print(f"occupancy back {gap * 1000:.0f} ms after fer-edge's online status")
        assert gap < 1.0
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    finally:
        if proc and proc.poll() is None:
            proc.kill()
        if watch:
            watch.close()
        forgetful.stop()


def _host() -> bytes:
    import socket

    return socket.gethostname().encode()
