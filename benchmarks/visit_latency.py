"""How soon a visit's `end` reaches a real Mosquitto after the track is dropped (issue 38 asks within 1 s).

    python benchmarks/visit_latency.py --data ../shared/data --loops 5

A video where the sample's face stays 30 frames, leaves for 30 (the room shows where it was), comes back for 30,
then shows for one frame alone (no visit), played --loops times by `fer-edge --mqtt ... --visits`; a subscriber
on T/visit stamps each message on arrival. The latency of an `end` is its arrival time minus its `ts`, the
wall-clock time at which the frame where the track was dropped reached the MQTT sink (the same machine's
clock). Writes benchmarks/visit_latency.json and .md.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2

HERE = Path(__file__).resolve().parent


def leave_and_return_video(path: Path, sample: Path) -> None:
    """The sample's face for 30 frames, 30 frames without it, the face again for 30, then one frame of it alone.
    Without it: the frame with the face's columns painted over by the room beside them (the person left)."""
    cap = cv2.VideoCapture(str(sample))
    faces = [cap.read()[1] for _ in range(61)]
    cap.release()
    empty = faces[0].copy()
    empty[:, 250:420] = faces[0][:, 0:170]
    frames = faces[:30] + [empty] * 30 + faces[30:60] + [empty] * 30 + [faces[60]] + [empty] * 30
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, faces[0].shape[1::-1])
    for f in frames:
        writer.write(f)
    writer.release()


def _broker(folder: Path) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("mosquitto did not start")


def measure(data: Path, loops: int) -> dict:
    import paho.mqtt.client as mqtt

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        video = folder / "leave_and_return.avi"
        leave_and_return_video(video, data / "samples" / "fer_test.mp4")
        broker, port = _broker(folder)
        got, ready = [], threading.Event()
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        sub.on_connect = lambda c, *_: c.subscribe("bench/visit", qos=1)
        sub.on_subscribe = lambda *_: ready.set()
        sub.on_message = lambda _c, _u, m: got.append((time.time(), json.loads(m.payload)))
        sub.connect("127.0.0.1", port)
        sub.loop_start()
        try:
            ready.wait(10)
            cmd = [sys.executable, "-m", "fer_edge.runtime.cli", "--source", str(video), "--loop", str(loops),
                   "--threads", "1", "--quiet", "--window", "off", "--visits", str(folder / "visits.jsonl"),
                   "--mqtt", f"mqtt://127.0.0.1:{port}/bench"]
            subprocess.run(cmd, check=True, capture_output=True, timeout=600)
            time.sleep(1.0)
            written = [json.loads(line) for line in (folder / "visits.jsonl").read_text().splitlines()]
        finally:
            sub.disconnect()
            sub.loop_stop()
            broker.terminate()
            broker.wait(10)
    ends = [(t - m["ts"]) * 1000 for t, m in got if m["event"] == "end"]
    return {"loops": loops, "visits_written": sum(e["event"] == "end" for e in written), "ends_received": len(ends),
            "latency_ms": {"median": round(statistics.median(ends), 1), "max": round(max(ends), 1),
                           "min": round(min(ends), 1)} if ends else None,
            "machine": {"arch": platform.machine(), "python": platform.python_version()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path, help="the data folder (samples/fer_test.mp4)")
    p.add_argument("--loops", type=int, default=5, help="plays of the leave-and-return video (2 visits each)")
    a = p.parse_args(argv)
    doc = measure(a.data, a.loops)
    doc["command"] = f"python benchmarks/visit_latency.py --data ../shared/data --loops {a.loops}"
    (HERE / "visit_latency.json").write_text(json.dumps(doc, indent=1) + "\n")
    lat = doc["latency_ms"]
    (HERE / "visit_latency.md").write_text(
        f"# Visit end to a real Mosquitto\n\n`{doc['command']}`\n\n{doc['visits_written']} visits written to "
        f"--visits, {doc['ends_received']} `end` messages received on T/visit; from the frame where the track was "
        f"dropped reaching the MQTT sink to the subscriber: median {lat['median']} ms, max {lat['max']} ms "
        f"(min {lat['min']} ms; `ts` is stamped to the millisecond, so each figure is +-1 ms; "
        f"{doc['machine']['arch']}, 2 shared cores).\n")
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
