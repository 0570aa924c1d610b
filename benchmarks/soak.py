"""Soak: fer-edge on a flapping real RTSP camera and a restarting real Mosquitto, for an hour (or a few minutes in CI).

    python benchmarks/soak.py --minutes 60 --out out/soak --report benchmarks/soak.md
    python benchmarks/soak.py --minutes 3 --rtsp-every 40 --broker-every 70 --out .ci-out/soak --strict \
        -- --ha-discovery --json-max-mb 0.1 --json-keep 1000                                       # CI

Parts (all on free loopback ports, all real):
  - GStreamer's RTSP server (benchmarks/rtsp_loop_server.py, run by the system python3 with python3-gi and
    gir1.2-gst-rtsp-server-1.0) serving the sample video cut to 320 x 180 JPEG frames at --fps, in a loop;
    stopped (SIGTERM) every --rtsp-every seconds and started again after --down seconds;
  - Mosquitto with persistence, restarted the same way every --broker-every seconds;
  - a QoS 1 subscriber (paho, persistent session) counting every message on the run's topics;
  - `fer-edge --source rtsp://... --mqtt ... --json ... --summary ... --threads 1` from this checkout.
Every 10 s the fer-edge process's RSS, open fds and threads are read from /proc. At the end fer-edge gets
SIGTERM, the subscriber drains, and the report gives min/max/slope of each, reconnects against restarts,
face events published (faces in the JSON Lines) against received, and frame numbers seen twice.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = "samples/fer_test.mp4"
TOPIC = "fer/soak"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


def cut_frames(video: Path, folder: Path, every: int = 2, width: int = 320) -> int:
    """The sample video as small JPEG frames f00000.jpg... (every `every`-th frame), what the RTSP server loops."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    cap, i, n = cv2.VideoCapture(str(video)), 0, 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        if i % every == 0:
            h = int(round(image.shape[0] * width / image.shape[1] / 8)) * 8  # RTP/JPEG sizes are multiples of 8
            cv2.imwrite(str(folder / f"f{n:05d}.jpg"), cv2.resize(image, (width, h)), [cv2.IMWRITE_JPEG_QUALITY, 80])
            n += 1
        i += 1
    cap.release()
    if not n:
        raise SystemExit(f"soak: no frames read from {video}")
    return n


class Server:
    """A child process that can be stopped and started again (the RTSP server, the broker)."""

    def __init__(self, name: str, argv: list[str], port: int, log: Path):
        self.name, self.argv, self.port, self.log = name, argv, port, log
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def start(self) -> None:
        with open(self.log, "a") as err:
            self.proc = subprocess.Popen(self.argv, stdout=err, stderr=err, stdin=subprocess.DEVNULL)
        if not wait_port(self.port):
            raise SystemExit(f"soak: {self.name} did not listen on port {self.port} (see {self.log})")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, down_s: float) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()
        self.restarts += 1


def mosquitto_server(out: Path) -> Server:
    port = free_port()
    data = out / "mosquitto"
    data.mkdir(parents=True, exist_ok=True)
    conf = out / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    f"persistence_location {data}/\nautosave_interval 5\nmax_queued_messages 100000\n"
                    + ("user root\n" if os.geteuid() == 0 else ""))
    binary = "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else "mosquitto"
    return Server("mosquitto", [binary, "-c", str(conf)], port, out / "mosquitto.log")


class Subscriber:
    """QoS 1, persistent session: messages queued by the broker while this client is away still arrive."""

    def __init__(self, port: int):
        import paho.mqtt.client as mqtt

        self.faces: collections.Counter = collections.Counter()  # (frame, track) -> times received
        self.topics: collections.Counter = collections.Counter()
        self.last = time.monotonic()
        self.lock = threading.Lock()
        self.client = c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fer-edge-soak-sub",
                                      clean_session=False)
        c.on_connect = lambda cl, *_: cl.subscribe(f"{TOPIC}/#", qos=1)
        c.on_message = self._on_message
        c.reconnect_delay_set(0.5, 2.0)
        c.connect_async("127.0.0.1", port, keepalive=10)
        c.loop_start()

    def _on_message(self, _client, _userdata, msg) -> None:
        with self.lock:
            self.last = time.monotonic()
            self.topics[msg.topic.rsplit("/", 1)[1]] += 1
            if msg.topic.endswith("/face"):
                doc = json.loads(msg.payload)
                self.faces[(doc["frame"], doc["track"])] += 1

    def drain(self, quiet_s: float = 5.0, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end and time.monotonic() - self.last < quiet_s:
            time.sleep(0.5)
        self.client.disconnect()
        self.client.loop_stop()


def sample(pid: int) -> dict | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    ticks = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13]  # utime, stime
    return {"cpu_s": round(sum(map(int, ticks)) / os.sysconf("SC_CLK_TCK"), 2),"rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 2), "threads": int(fields["Threads"]),
            "fds": fds}


def slope_per_hour(ts: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over ts (seconds), per hour."""
    n = len(ts)
    if n < 2:
        return 0.0
    mt, my = sum(ts) / n, sum(ys) / n
    var = sum((t - mt) ** 2 for t in ts)
    return 0.0 if var == 0 else sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / var * 3600


def fer_edge_argv(a, rtsp_url: str, broker_port: int) -> list[str]:
    exe = Path(sys.executable).with_name("fer-edge")
    argv = [str(exe), "--source", rtsp_url, "--mqtt", f"mqtt://127.0.0.1:{broker_port}/{TOPIC}",
            "--mqtt-client-id", "fer-edge-soak", "--json", str(a.out / "events.jsonl"),
            "--summary", str(a.out / "summary.json"), "--force", "--threads", "1", "--window", "off",
            "--stall-timeout", str(a.stall_timeout), "--mqtt-flush-timeout", "30", "--mqtt-queue", "100000"]
    return argv + a.extra


def soak(a) -> dict:
    a.out.mkdir(parents=True, exist_ok=True)
    n = cut_frames(Path(os.environ.get("FER_EDGE_DATA", ROOT.parent / "shared" / "data")) / SAMPLE, a.out / "frames")
    rtsp_port = free_port()
    rtsp = Server("rtsp", ["/usr/bin/python3", str(ROOT / "benchmarks" / "rtsp_loop_server.py"),
                           str(a.out / "frames"), str(rtsp_port), str(a.fps)], rtsp_port, a.out / "rtsp.log")
    broker = mosquitto_server(a.out)
    rtsp.start()
    broker.start()
    sub = Subscriber(broker.port)
    err = open(a.out / "fer-edge.log", "w")
    proc = subprocess.Popen(fer_edge_argv(a, f"rtsp://127.0.0.1:{rtsp_port}/cam", broker.port),
                            stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL, cwd=ROOT)
    print(f"soak: fer-edge pid {proc.pid}, rtsp :{rtsp_port} ({n} frames looped), mosquitto :{broker.port}, "
          f"{a.minutes} min, output {a.out}", file=sys.stderr, flush=True)
    try:
        samples = run_schedule(a, proc, rtsp, broker)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(120)
        err.close()
        sub.drain()
        broker.stop()
        rtsp.stop()
    return {"exit_code": code, "samples": samples, "rtsp_restarts": rtsp.restarts, "broker_restarts": broker.restarts,
            "received": dict(sub.topics), "faces_received": sub.faces, "frames_looped": n}


def run_schedule(a, proc, rtsp: Server, broker: Server) -> list[dict]:
    """Sample every 10 s; restart the RTSP server and the broker on their periods; until --minutes have passed."""
    t0 = time.monotonic()
    end = t0 + a.minutes * 60
    next_rtsp, next_broker, next_sample = t0 + a.rtsp_every, t0 + a.broker_every, t0
    samples: list[dict] = []
    with open(a.out / "samples.jsonl", "w") as log:
        while time.monotonic() < end and proc.poll() is None:
            now = time.monotonic()
            if now >= next_sample and (a.out / "events.jsonl").exists():  # from the first frame on (model loaded)
                s = sample(proc.pid)
                if s:
                    s["t"] = round(now - t0, 1)
                    samples.append(s)
                    log.write(json.dumps(s) + "\n")
                    log.flush()
                next_sample += a.sample_every
            for server, period, attr in ((rtsp, a.rtsp_every, "rtsp"), (broker, a.broker_every, "broker")):
                due = next_rtsp if attr == "rtsp" else next_broker
                if now >= due and now + a.down + 10 < end:
                    print(f"soak: {now - t0:7.1f} s: restarting {server.name}", file=sys.stderr, flush=True)
                    server.restart(a.down)
                    if attr == "rtsp":
                        next_rtsp += period
                    else:
                        next_broker += period
            time.sleep(0.5)
    if proc.poll() is not None:
        print(f"soak: fer-edge ended early with code {proc.returncode}", file=sys.stderr)
    return samples


def count_log(path: Path) -> dict:
    text = path.read_text(errors="replace").splitlines()
    return {"stream_lost": sum("lost the stream" in x for x in text),
            "stream_stalled": sum("no frame for" in x and "reopening" in x for x in text),
            "mqtt_connected_again": sum("mqtt: connected to" in x and x.endswith("again") for x in text),
            "tracebacks": sum(x.startswith("Traceback") for x in text)}


def jsonl_files(path: Path) -> list[Path]:
    """The live file and its rotated ones (--json-max-mb), oldest first: PATH.N ... PATH.1, PATH."""
    rotated = sorted(path.parent.glob(path.name + ".*"), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    return [p for p in rotated if p.suffix[1:].isdigit()] + [path]


def events(path: Path) -> dict:
    frames: collections.Counter = collections.Counter()
    faces, bad = set(), 0
    for part in jsonl_files(path):
        with open(part, encoding="utf-8") as f:
            for line in f:
                try:
                    doc = json.loads(line)
                except json.JSONDecodeError:
                    bad += 1
                    continue
                frames[doc["frame"]] += 1
                faces.update((doc["frame"], face["track"]) for face in doc["faces"])
    return {"lines": sum(frames.values()), "bad_lines": bad, "duplicate_frames": sum(1 for c in frames.values() if c > 1),
            "faces": faces}


def stat_line(samples: list[dict], key: str, unit: str) -> dict:
    ts, ys = [s["t"] for s in samples], [s[key] for s in samples]
    late = [(t, y) for t, y in zip(ts, ys) if t >= 300] or list(zip(ts, ys))  # after the first five minutes
    return {"key": key, "unit": unit, "min": min(ys), "max": max(ys), "first": ys[0], "last": ys[-1],
            "slope_per_h": round(slope_per_hour(ts, ys), 3),
            "slope_per_h_after_5min": round(slope_per_hour([t for t, _ in late], [y for _, y in late]), 3)}


def analyse(a, raw: dict) -> dict:
    ev, logc = events(a.out / "events.jsonl"), count_log(a.out / "fer-edge.log")
    summary = json.loads((a.out / "summary.json").read_text()) if (a.out / "summary.json").exists() else {}
    received = raw["faces_received"]
    published = ev["faces"]
    return {
        "minutes": a.minutes, "commit": a.commit, "exit_code": raw["exit_code"],
        "samples": len(raw["samples"]), "stats": [stat_line(raw["samples"], k, u) for k, u in
                                                  (("rss_mb", "MB"), ("fds", "fds"), ("threads", "threads"))],
        "rtsp_restarts": raw["rtsp_restarts"], "source_reconnects": summary.get("reconnects"),
        "broker_restarts": raw["broker_restarts"], "mqtt_reconnects": logc["mqtt_connected_again"],
        "log": logc, "frames": summary.get("frames"), "json_lines": ev["lines"], "bad_json_lines": ev["bad_lines"],
        "duplicate_frames": ev["duplicate_frames"], "faces_published": len(published),
        "faces_received_distinct": len(received), "faces_received_total": sum(received.values()),
        "faces_missing": len(published - set(received)), "faces_unknown": len(set(received) - published),
        "messages_received": raw["received"], "fps": summary.get("fps"),
        "cpu_share": cpu_share(raw["samples"]),
    }


def cpu_share(samples: list[dict]) -> float:
    """fer-edge's CPU time over the sampled wall time (1.0 = one core busy)."""
    if len(samples) < 2 or samples[-1]["t"] == samples[0]["t"]:
        return 0.0
    return round((samples[-1]["cpu_s"] - samples[0]["cpu_s"]) / (samples[-1]["t"] - samples[0]["t"]), 3)


def git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout
        return sha.strip() + (" (with uncommitted changes)" if dirty.strip() else "")
    except OSError:
        return "unknown"


def verdicts(r: dict) -> list[tuple[str, bool]]:
    rss = next(s for s in r["stats"] if s["key"] == "rss_mb")
    fds = next(s for s in r["stats"] if s["key"] == "fds")
    return [("source reconnects = RTSP restarts", r["source_reconnects"] == r["rtsp_restarts"]),
            ("MQTT reconnects = broker restarts", r["mqtt_reconnects"] == r["broker_restarts"]),
            ("face events received (distinct) = published", r["faces_received_distinct"] == r["faces_published"]),
            ("no frame number twice in the JSON Lines", r["duplicate_frames"] == 0),
            ("every JSON line valid", r["bad_json_lines"] == 0),
            ("fer-edge exited 0 on SIGTERM", r["exit_code"] == 0),
            ("fds flat (max - min <= 4)", fds["max"] - fds["min"] <= 4),
            ("RSS flat (slope after 5 min under 5 MB/h)" if r["minutes"] >= 10 else
             "RSS flat: not judged on a run under 10 minutes", r["minutes"] < 10 or abs(rss["slope_per_h_after_5min"]) < 5.0)]


def write_report(r: dict, path: Path) -> None:
    lines = [f"# Soak: fer-edge on a flapping RTSP camera and a restarting broker ({r['minutes']:g} min)", "",
             "Written by `benchmarks/soak.py` (see its docstring for the parts and the command). "
             f"Ran on commit `{r['commit']}`, {r['samples']} samples of /proc every 10 s.", "",
             "| measure | min | max | first | last | slope per hour | slope per hour after 5 min |",
             "|---|---|---|---|---|---|---|"]
    for s in r["stats"]:
        lines.append(f"| {s['key']} ({s['unit']}) | {s['min']} | {s['max']} | {s['first']} | {s['last']} | "
                     f"{s['slope_per_h']} | {s['slope_per_h_after_5min']} |")
    lines += ["", "| count | value |", "|---|---|"]
    for key in ("cpu_share", "rtsp_restarts", "source_reconnects", "broker_restarts", "mqtt_reconnects", "frames", "fps",
                "json_lines", "bad_json_lines", "duplicate_frames", "faces_published", "faces_received_distinct",
                "faces_received_total", "faces_missing", "faces_unknown", "exit_code"):
        lines.append(f"| {key} | {r[key]} |")
    lines.append(f"| fer-edge log lines (lost / stalled / tracebacks) | {r['log']['stream_lost']} / "
                 f"{r['log']['stream_stalled']} / {r['log']['tracebacks']} |")
    lines += ["", "Checks:", ""] + [f"- {'PASS' if ok else 'FAIL'}: {what}" for what, ok in verdicts(r)]
    lines += ["", "`faces_received_total` above `faces_received_distinct` is QoS 1's at-least-once redelivery "
              "around a broker restart (the same event again, not a new one).", ""]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--rtsp-every", type=float, default=300.0, help="seconds between RTSP server restarts")
    p.add_argument("--broker-every", type=float, default=900.0, help="seconds between Mosquitto restarts")
    p.add_argument("--down", type=float, default=3.0, help="seconds a restarted server stays down")
    p.add_argument("--fps", type=int, default=10, help="frames per second the RTSP server sends")
    p.add_argument("--stall-timeout", type=float, default=5.0)
    p.add_argument("--sample-every", type=float, default=10.0)
    p.add_argument("--out", type=Path, default=ROOT / "out" / "soak")
    p.add_argument("--report", type=Path, help="write the Markdown report here too (default OUT/soak.md)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a check fails (CI)")
    p.add_argument("extra", nargs="*", help="more fer-edge arguments, after -- (e.g. -- --ha-discovery)")
    a = p.parse_args(argv)
    a.out = a.out.resolve()
    a.commit = git_commit()  # the code the soak runs (read now: the checkout may move on during an hour)
    r = analyse(a, soak(a))
    (a.out / "soak.json").write_text(json.dumps(r, indent=1) + "\n")
    for target in {a.out / "soak.md", a.report or a.out / "soak.md"}:
        write_report(r, target)
    print((a.out / "soak.md").read_text(), file=sys.stderr)
    return 1 if a.strict and not all(ok for _, ok in verdicts(r)) else 0


if __name__ == "__main__":
    sys.exit(main())
