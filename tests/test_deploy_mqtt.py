"""MQTT events against a real Mosquitto broker that the test starts on a free loopback port.

A subscriber must receive the same per-face events as the JSON Lines output of the same run, while the
broker is stopped and started again mid-run. The subscriber keeps a persistent session (clean_session
off, QoS 1) and the broker persists it to disk, so what is published while the subscriber reconnects
is held for it. Skips with the reason when mosquitto or paho-mqtt is missing (.ci/run installs both).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fer_edge.runtime.serve.mqtt import OfflineQueue, parse_mqtt_url
from fer_edge.runtime.core.errors import FerEdgeError
from mqtt_broker import Subscriber, free_port, wait_for

ASSETS = Path(__file__).parent / "assets"
TFLITE = ASSETS / "tiny_fer.tflite"


def test_url_parsing_and_errors(monkeypatch):
    t = parse_mqtt_url("mqtt://bob:p%40ss@broker.local/fer/kitchen/")
    assert (t.host, t.port, t.topic, t.tls, t.username, t.password) == ("broker.local", 1883, "fer/kitchen", False,
                                                                        "bob", "p@ss")
    assert parse_mqtt_url("mqtts://h/t").port == 8883 and parse_mqtt_url("mqtt://h:1884/t", tls=True).tls
    monkeypatch.setenv("FER_EDGE_MQTT_PASSWORD", "from-env")
    assert parse_mqtt_url("mqtt://bob@h/t").password == "from-env"
    assert "***" in parse_mqtt_url("mqtt://bob:secret@h/t").redacted()
    for bad, words in [("http://h/t", "mqtt://"), ("mqtt://h", "no topic"), ("mqtt://h/a/+", "wildcard"),
                       ("mqtt://h:99999/t", "port")]:
        with pytest.raises(FerEdgeError, match=words):
            parse_mqtt_url(bad)


def test_offline_queue_drops_the_oldest_and_counts():
    q = OfflineQueue(3)
    for i in range(10):
        q.put(i)
    assert list(q.items) == [7, 8, 9] and q.dropped == 7


def test_unreachable_broker_fills_the_queue_and_reports_drops(tmp_path):
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (pip install 'fer-edge[mqtt]')")
    from fer_edge.runtime.serve.mqtt import MqttOptions, MqttSink
    from fer_edge.runtime.core.results import FaceResult, FrameResult

    port = free_port()  # nothing listens there
    sink = MqttSink(MqttOptions(url=f"mqtt://127.0.0.1:{port}/fer/t", queue=5, summary_every=0, flush_timeout=0.5))
    face = FaceResult((1, 2, 3, 4), "happy", {"happy": 0.9, "sad": 0.1}, 1)
    for i in range(12):
        sink.write(None, FrameResult(i, i / 25, [face]))
    stats = sink.stats()
    sink.finish(True)
    assert stats["sent"] == 0 and stats["queued"] == 5 and stats["dropped"] == 7
    assert sink.summary()["mqtt"]["dropped"] == 8  # the final summary pushed one more out


def _lines(path: Path) -> int:
    try:
        return path.read_text().count("\n")
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_events_match_json_lines_across_a_broker_restart(tmp_path, samples_dir, broker):
    port, topic = broker.port, "fer/test"
    broker.start()
    sub = None
    proc = None
    try:
        sub = Subscriber(port, f"{topic}/#", client_id="fer-edge-test-sub")
        assert sub.subscribed.wait(10)
        jsonl = tmp_path / "out.jsonl"
        cmd = [sys.executable, "-m", "fer_edge.runtime.cli", "--source", str(samples_dir / "fer_test.mp4"),
               "--model", str(TFLITE), "--threads", "1", "--json", str(jsonl), "--quiet",
               "--mqtt", f"mqtt://127.0.0.1:{port}/{topic}", "--mqtt-summary-every", "0.5",
               "--mqtt-flush-timeout", "30", "--mqtt-client-id", "fer-edge-test-pub"]
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: len(sub.of("face")) >= 10 or proc.poll() is not None, 60, "the first events")
        down_at = _lines(jsonl)
        broker.stop()  # mid-run: the run goes on, events wait in the offline queue
        wait_for(lambda: _lines(jsonl) >= down_at + 20 or proc.poll() is not None, 60, "frames while the broker is down")
        down_frames = _lines(jsonl) - down_at
        broker.start()
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        frames = [json.loads(line) for line in jsonl.read_text().splitlines()]
        expected = {(f["frame"], face["track"]): face for f in frames for face in f["faces"]}
        wait_for(lambda: {(e["frame"], e["track"]) for e in sub.of("face")} >= set(expected), 30, "every event")
        events = sub.of("face")
        keys = ("box", "label", "probs", "track", "sure")
        got = {(e["frame"], e["track"]): {k: e[k] for k in keys} for e in events}
        assert got == expected  # the same events as the JSON Lines, none missing, none extra
        final = [s for s in sub.of("summary") if s["final"]]
        link = final[-1]["mqtt"] if final else {}
        report = (f"MQTT: {len(frames)} frames, {len(expected)} face events in the JSON Lines; broker down for "
                  f"{down_frames} frames (from frame {down_at}); subscriber received {len(events)} face messages "
                  f"({len(got)} distinct, {len(events) - len(got)} QoS 1 duplicates); publisher log: "
                  f"{[line for line in err.splitlines() if 'mqtt:' in line]}")
        print(report)
        (tmp_path / "mqtt-report.txt").write_text(report + "\n")
        assert down_frames >= 1, "the run ended before the broker went down: no restart was tested"
        assert "mqtt: connected to" in err and "again" in err and "lost" in err
        # the publisher's last word, after its exit flush: nothing dropped or left, one reconnection
        last = [line for line in err.splitlines() if "mqtt: sent" in line][-1]
        assert "dropped 0 (queue full)" in last and "undelivered at exit 0" in last and "reconnects 1" in last, last
        # the final summary is a snapshot taken when the video ended, which can be before the broker came back
        assert link.get("dropped") == 0 and link.get("reconnects") == (1 if link.get("connected") else 0), link
    finally:
        if proc and proc.poll() is None:
            proc.kill()
        if sub:
            sub.close()
