"""MQTT events against a real Mosquitto broker that the test starts on a free loopback port.

A subscriber must receive the same per-face events as the JSON Lines output of the same run, while the
broker is stopped and started again mid-run. The subscriber keeps a persistent session (clean_session
off, QoS 1) and the broker persists it to disk, so what is published while the subscriber reconnects
is held for it. Skips with the reason when mosquitto or paho-mqtt is missing (.ci/run installs both).
"""
from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fer_edge.runtime.serve.mqtt import OfflineQueue, parse_mqtt_url
from fer_edge.runtime.core.errors import FerEdgeError

ASSETS = Path(__file__).parent / "assets"
TFLITE = ASSETS / "tiny_fer.tflite"
MOSQUITTO = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).is_file()), None)


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

    port = _free_port()  # nothing listens there
    sink = MqttSink(MqttOptions(url=f"mqtt://127.0.0.1:{port}/fer/t", queue=5, summary_every=0, flush_timeout=0.5))
    face = FaceResult((1, 2, 3, 4), "happy", {"happy": 0.9, "sad": 0.1}, 1)
    for i in range(12):
        sink.write(None, FrameResult(i, i / 25, [face]))
    stats = sink.stats()
    sink.close()
    assert stats["sent"] == 0 and stats["queued"] == 5 and stats["dropped"] == 7
    assert sink.summary()["mqtt"]["dropped"] == 8  # the final summary pushed one more out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """mosquitto on 127.0.0.1:port with persistence in a temporary folder (sessions survive a restart)."""

    def __init__(self, folder: Path, port: int):
        self.port, self.conf, self.proc = port, folder / "mosquitto.conf", None
        (folder / "db").mkdir(exist_ok=True)
        self.conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {folder / 'db'}/\nuser {getpass.getuser()}\n"
                             f"log_dest file {folder / 'mosquitto.log'}\n")

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                assert self.proc.poll() is None, f"mosquitto exited with {self.proc.returncode}"
                time.sleep(0.05)
        raise AssertionError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto writes its persistence file and exits
            self.proc.wait(10)


class Subscriber:
    """Collects messages under topic/#; a persistent session so nothing is lost while it reconnects."""

    def __init__(self, port: int, topic: str):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        c = self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fer-edge-test-sub",
                                      clean_session=False)
        c.reconnect_delay_set(0.2, 1)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(f"{topic}/#", qos=1)
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.on_message = self._on_message
        c.connect("127.0.0.1", port)
        c.loop_start()

    def _on_message(self, _c, _u, msg):
        with self.lock:
            self.messages.append((msg.topic, json.loads(msg.payload)))

    def of(self, kind: str) -> list[dict]:
        with self.lock:
            return [m for t, m in self.messages if t.endswith("/" + kind)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _lines(path: Path) -> int:
    try:
        return path.read_text().count("\n")
    except FileNotFoundError:
        return 0


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow
def test_events_match_json_lines_across_a_broker_restart(tmp_path, samples_dir):
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (pip install 'fer-edge[mqtt]')")
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (Debian: apt install mosquitto; .ci/run installs it)")
    port, topic = _free_port(), "fer/test"
    broker = Broker(tmp_path, port)
    broker.start()
    sub = None
    proc = None
    try:
        sub = Subscriber(port, topic)
        assert sub.subscribed.wait(10)
        jsonl = tmp_path / "out.jsonl"
        cmd = [sys.executable, "-m", "fer_edge.runtime.cli", "--source", str(samples_dir / "fer_test.mp4"),
               "--model", str(TFLITE), "--threads", "1", "--json", str(jsonl), "--quiet",
               "--mqtt", f"mqtt://127.0.0.1:{port}/{topic}", "--mqtt-summary-every", "0.5",
               "--mqtt-flush-timeout", "30", "--mqtt-client-id", "fer-edge-test-pub"]
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        _wait(lambda: len(sub.of("face")) >= 10 or proc.poll() is not None, 60, "the first events")
        down_at = _lines(jsonl)
        broker.stop()  # mid-run: the run goes on, events wait in the offline queue
        _wait(lambda: _lines(jsonl) >= down_at + 20 or proc.poll() is not None, 60, "frames while the broker is down")
        down_frames = _lines(jsonl) - down_at
        broker.start()
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        frames = [json.loads(line) for line in jsonl.read_text().splitlines()]
        expected = {(f["frame"], face["track"]): face for f in frames for face in f["faces"]}
        _wait(lambda: {(e["frame"], e["track"]) for e in sub.of("face")} >= set(expected), 30, "every event")
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
        broker.stop()
