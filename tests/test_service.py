"""Running for months (issue 29): Home Assistant discovery against a real Mosquitto, the systemd watchdog against a
socket the test opens, --json rotation, the hardened unit, and the start-up errors (one line, exit 2)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mqtt_broker import Subscriber, free_port, wait_for

ASSETS = Path(__file__).parent / "assets"
TFLITE = ASSETS / "tiny_fer.tflite"
UNIT = Path(__file__).resolve().parents[1] / "deploy" / "systemd" / "fer-edge.service"
CLI = [sys.executable, "-m", "fer_edge.runtime.cli"]


def _run_ha(samples_dir, port: int, extra=()) -> subprocess.Popen:
    cmd = CLI + ["--source", str(samples_dir / "fer_test.mp4"), "--loop", "1000", "--model", str(TFLITE),
                 "--threads", "1", "--quiet", "--mqtt", f"mqtt://127.0.0.1:{port}/fer/ha", "--mqtt-summary-every",
                 "0.3", "--ha-discovery", "--device-name", "Hall camera", *extra]
    return subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)


ENTITIES = {"binary_sensor": {"face_in_view": "fer/ha/ha/occupancy"}, "event": {"visit": "fer/ha/ha/visit"}}


def _check_config(topic: str, doc: dict, labels: set) -> None:
    _, component, node, object_id, last = topic.split("/")
    assert node == "Hall_camera" and last == "config", topic
    assert doc["unique_id"] == f"Hall_camera_{object_id}" and isinstance(doc["name"], str)
    if component == "sensor":
        assert doc["state_topic"] == "fer/ha/ha/state" and doc["value_template"].startswith("{{ value_json.")
        assert object_id in {"faces", "emotion", "fps", "unsure"} | {f"share_{k}" for k in labels}
    else:
        assert doc["state_topic"] == ENTITIES[component][object_id], topic
        assert doc.get("device_class") == "occupancy" or doc["event_types"] == ["start", "end"], doc
    dev = doc["device"]
    assert dev["identifiers"] == ["Hall_camera"] and dev["name"] == "Hall camera"
    assert all(isinstance(dev[k], str) and dev[k] for k in ("model", "sw_version", "manufacturer"))
    (avail,) = doc["availability"]
    assert avail["topic"] == "fer/ha/status" and {avail["payload_available"], avail["payload_not_available"]} == {
        "online", "offline"}


def _availability(status: dict | None) -> str | None:
    """What Home Assistant's availability value_template makes of T/status."""
    return None if status is None else ("online" if status["online"] else "offline")


@pytest.mark.slow
def test_ha_discovery_state_and_availability_on_mosquitto(tmp_path, samples_dir, broker):
    port = broker.port
    broker.start()
    watch, proc = None, None
    try:
        watch = Subscriber(port, "homeassistant/#", "fer/ha/#")  # first: the visit's start is not retained
        wait_for(lambda: watch.client.is_connected(), 10, "the watcher's connection")
        proc = _run_ha(samples_dir, port)
        wait_for(lambda: watch.get("fer/ha/ha/state") is not None or proc.poll() is not None, 60, "a state message")
        configs = watch.matching("homeassistant/")
        state = watch.get("fer/ha/ha/state")
        labels = set(state["share"])
        assert len(configs) == 4 + len(labels) + 2 == 13, sorted(configs)
        for topic, doc in configs.items():
            _check_config(topic, doc, labels)
        assert isinstance(state["faces"], int) and isinstance(state["emotion"], str) and isinstance(state["unsure"], int)
        # the occupancy sensor turns on with the face, and the visit's start reaches the event entity
        wait_for(lambda: watch.last().get("fer/ha/ha/occupancy") == b"ON", 60, "occupancy ON")
        wait_for(lambda: watch.get("fer/ha/ha/visit") is not None, 60, "a visit event")
        visit = watch.get("fer/ha/ha/visit")
        assert visit["event_type"] in configs["homeassistant/event/Hall_camera/visit/config"]["event_types"], visit
        assert visit["event_type"] == "start" and visit["track"] >= 1 and len(visit["box"]) == 4, visit
        assert isinstance(state["fps"], float) and all(isinstance(v, float) for v in state["share"].values())
        assert state["emotion"] in labels | {"none"}
        assert _availability(watch.get("fer/ha/status")) == "online"
        proc.kill()  # SIGKILL: no goodbye; the broker publishes the last will as the socket closes
        proc.wait()
        wait_for(lambda: _availability(watch.get("fer/ha/status")) == "offline", 60, "the last will")
        watch.close()
        again = Subscriber(port, "homeassistant/#")  # a new subscriber (Home Assistant restarting) gets the configs
        wait_for(lambda: len(again.matching("homeassistant/")) == 13, 10, "the retained configs")
        again.close()
        watch = Subscriber(port, "fer/ha/#")
        proc = _run_ha(samples_dir, port)
        wait_for(lambda: _availability(watch.get("fer/ha/status")) == "online", 60, "online again")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        wait_for(lambda: _availability(watch.get("fer/ha/status")) == "offline", 10, "offline after SIGTERM")
    finally:
        if proc and proc.poll() is None:
            proc.kill()
        if watch:
            watch.close()
        broker.stop()


def test_broker_that_refuses_the_client_id_is_one_line(tmp_path, samples_dir, broker):
    port = broker.port
    broker.conf.write_text(broker.conf.read_text() + "clientid_prefixes allowed-\n")
    broker.start()
    try:
        r = subprocess.run(CLI + ["--source", str(samples_dir / "fer_test.mp4"), "--model", str(TFLITE),
                                  "--mqtt", f"mqtt://127.0.0.1:{port}/fer/x", "--mqtt-client-id", "kitchen"],
                           capture_output=True, text=True, timeout=60)
    finally:
        broker.stop()
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("FerEdgeError: --mqtt") and "refused" in lines[0], r.stderr
    assert "'kitchen'" in lines[0]


@pytest.mark.parametrize("args, expected", [
    (["--mqtt", "mqtt://127.0.0.1:{port}/fer/x"], "cannot reach the broker"),
    (["--mqtt", "mqtt://127.0.0.1:{port}/fer/x", "--ha-discovery", "home/#"], "--ha-discovery: expected"),
    (["--mqtt", "mqtt://127.0.0.1:{port}/fer/x", "--ha-discovery", "a/+/b"], "--ha-discovery: expected"),
    (["--ha-discovery"], "give --mqtt"),
    (["--json", "{tmp}/e.jsonl", "--json-max-mb", "0"], "--json-max-mb must be above 0"),
    (["--json", "-", "--json-max-mb", "1"], "cannot rotate standard output"),
    (["--json", "/dev/null", "--json-max-mb", "1"], "a device or pipe"),
    (["--json", "{tmp}/e.jsonl", "--json-keep", "0"], "--json-keep must be 1 or more"),
])
def test_bad_service_input_is_one_line_and_exit_2(tmp_path, samples_dir, args, expected):
    if "--mqtt" in args:
        pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed")
    port = free_port()  # nothing listens there
    args = [x.format(port=port, tmp=tmp_path) for x in args]
    r = subprocess.run(CLI + ["--source", str(samples_dir / "fer_test.mp4"), "--model", str(TFLITE), *args],
                       capture_output=True, text=True, timeout=60)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and expected in lines[0], r.stderr
    assert not list(tmp_path.iterdir())  # nothing written


# -- --json rotation ----------------------------------------------------------------------------

def _read_jsonl(path: Path) -> list[dict]:
    text = path.read_text()
    assert text == "" or text.endswith("\n"), f"{path.name} ends inside a line"
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.slow
def test_json_rotation_keeps_complete_files_and_loses_no_line(tmp_path, samples_dir):
    out = tmp_path / "events.jsonl"
    frames = 115 * 6
    r = subprocess.run(CLI + ["--source", str(samples_dir / "fer_test.mp4"), "--loop", "6", "--model", str(TFLITE),
                              "--threads", "1", "--quiet", "--json", str(out), "--json-max-mb", "0.01",
                              "--json-keep", "3", "--detect-every", "5"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["events.jsonl", "events.jsonl.1", "events.jsonl.2", "events.jsonl.3"], names
    chunks = [_read_jsonl(tmp_path / n) for n in ("events.jsonl.3", "events.jsonl.2", "events.jsonl.1", "events.jsonl")]
    for chunk, name in zip(chunks[:3], ("3", "2", "1")):
        size = (tmp_path / f"events.jsonl.{name}").stat().st_size
        assert 10485 <= size < 10485 + 4096, (name, size)  # rotated at the first line past 0.01 MB
    seen = [doc["frame"] for chunk in chunks for doc in chunk]
    # the kept files are the newest frames, in order, each exactly once, ending with the last frame
    assert seen == list(range(seen[0], frames)), (seen[:3], seen[-3:])


def test_rotation_with_keep_one_replaces_the_older_file(tmp_path):
    from fer_edge.runtime.core.results import FaceResult, FrameResult
    from fer_edge.runtime.media.sinks import JsonLinesSink

    out = tmp_path / "e.jsonl"
    sink = JsonLinesSink(out, max_bytes=200, keep=1)
    face = FaceResult((1, 2, 3, 4), "happy", {"happy": 0.9, "sad": 0.1}, 1)
    for i in range(20):
        sink.write(None, FrameResult(i, i / 25, [face]))
    sink.finish(True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.jsonl", "e.jsonl.1"]
    frames = [d["frame"] for n in ("e.jsonl.1", "e.jsonl") for d in _read_jsonl(tmp_path / n)]
    assert frames == list(range(frames[0], 20)) and sink.rotations >= 5


# -- systemd watchdog ---------------------------------------------------------------------------

class NotifySocket:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET; records (time, message)."""

    def __init__(self, folder: Path):
        self.path = str(folder / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.got: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self._stop.is_set():
            try:
                self.got.append((time.monotonic(), self.sock.recv(4096).decode()))
            except socket.timeout:
                continue

    def messages(self) -> list[str]:
        return [m.split("\n")[0] for _, m in self.got]

    def close(self):
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


class StallingCamera:
    """A capture that gives frames until `stall` is set, then blocks in read() like a wedged driver."""

    def __init__(self, stall: threading.Event, release: threading.Event):
        self.stall, self.release_ev = stall, release

    def isOpened(self):
        return True

    def read(self):
        if self.stall.is_set():
            self.release_ev.wait(30)
            return False, None
        time.sleep(0.02)
        return True, np.full((120, 160, 3), 128, np.uint8)

    def release(self):
        pass


def test_watchdog_pings_while_frames_flow_and_not_while_stalled(tmp_path):
    from fer_edge.runtime.recognize.pipeline import Pipeline
    from fer_edge.runtime.media.sources import LiveSource
    from fer_edge.runtime.serve.watchdog import Notifier, WatchdogSink

    sock = NotifySocket(tmp_path)
    stall, release, stop = threading.Event(), threading.Event(), threading.Event()
    notifier = Notifier({"NOTIFY_SOCKET": sock.path, "WATCHDOG_USEC": "400000"})  # ping every 0.1 s at most
    assert notifier.every_s == pytest.approx(0.1)
    notifier.ready()
    source = LiveSource(lambda: StallingCamera(stall, release), "fake camera", stall_timeout=60)
    marks = {}

    def script():
        time.sleep(1.5)
        marks["stall"] = time.monotonic()
        stall.set()
        time.sleep(2.0)
        marks["stop"] = time.monotonic()
        stop.set()
        release.set()

    threading.Thread(target=script, daemon=True).start()
    with Pipeline(model=str(TFLITE), detector="yunet", threads=1) as pipe:
        pipe.run(source, [WatchdogSink(notifier)], stop)
    time.sleep(0.3)
    sock.close()
    msgs = sock.messages()
    assert msgs[0] == "READY=1" and msgs[-1] == "STOPPING=1", msgs
    pings = [t for t, m in sock.got if m == "WATCHDOG=1"]
    flowing = [t for t in pings if t < marks["stall"]]
    stalled = [t for t in pings if marks["stall"] + 0.2 < t < marks["stop"]]
    assert len(flowing) >= 5, len(flowing)  # ~1.5 s of frames, one ping per 0.1 s at most
    assert stalled == [], "WATCHDOG=1 sent while no frame was processed"


def test_cli_says_ready_watchdog_and_stopping(tmp_path, samples_dir):
    sock = NotifySocket(tmp_path)
    env = {"NOTIFY_SOCKET": sock.path, "WATCHDOG_USEC": "200000"}
    try:
        r = subprocess.run(CLI + ["--source", str(samples_dir / "fer_test.mp4"), "--model", str(TFLITE), "--quiet",
                                  "--threads", "1"], capture_output=True, text=True, timeout=120,
                           env={**os.environ, **env})
        time.sleep(0.3)
    finally:
        sock.close()
    assert r.returncode == 0, r.stderr
    msgs = sock.messages()
    assert msgs[0] == "READY=1" and msgs[-1] == "STOPPING=1" and "WATCHDOG=1" in msgs, msgs


def test_notifier_outside_systemd_does_nothing_and_abstract_sockets_are_addressed():
    from fer_edge.runtime.serve.watchdog import Notifier

    n = Notifier({})
    assert not n.active and not n.ready() and not n.ping() and n.sent == []
    assert Notifier({"NOTIFY_SOCKET": "@sd/notify"}).address == "\0sd/notify"
    assert Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "8000000", "WATCHDOG_PID": "1"}).watchdog_s is None


# -- the unit -------------------------------------------------------------------------------------

def test_unit_is_notify_with_watchdog_and_exposure_at_most_1_5():
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=30", "NotifyAccess=main", "UMask=0077", "DeviceAllow=char-video4linux rw",
                 "SupplementaryGroups=video"):
        assert f"\n{line}\n" in text, line
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed")
    r = subprocess.run([exe, "security", "--offline=true", str(UNIT)], capture_output=True, text=True)
    if "--offline" in r.stderr and "unrecognized" in r.stderr:
        pytest.skip(f"this systemd-analyze has no --offline: {r.stderr.strip()}")
    score = float(r.stdout.rsplit("Overall exposure level for fer-edge.service:", 1)[1].split()[0])
    assert score <= 1.5, r.stdout[-2000:]


@pytest.mark.parametrize("line, expected", [('ha_discovery = true', "homeassistant"), ('ha_discovery = "ha"', "ha"),
                                            ('ha_discovery = false', None)])
def test_ha_discovery_is_a_config_key(tmp_path, line, expected):
    from fer_edge.runtime.cli import run_parser
    from fer_edge.runtime.config import with_config

    conf = tmp_path / "c.toml"
    conf.write_text(f'camera = 0\n{line}\njson_max_mb = 50\njson_keep = 2\ndevice_name = "Hall"\n')
    p = run_parser()
    a = p.parse_args(with_config(p, ["--config", str(conf)]))
    assert a.ha_discovery == expected and a.json_max_mb == 50.0 and a.json_keep == 2 and a.device_name == "Hall"
