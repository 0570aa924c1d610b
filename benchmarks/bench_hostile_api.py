"""What a decompression bomb costs `fer-edge serve-api`: time to the answer and the server's peak memory.

    python benchmarks/bench_hostile_api.py --out benchmarks/hostile_api.json

Starts `fer-edge serve-api` (the shipped model, Haar, one thread) as its own process, posts a normal photo
and then the bomb of the hostile run (a 30000 x 30000 grey PNG, 875 KB on disk, 900 MB of pixels once
decoded, generated here with zlib), and reads the server's peak resident memory (VmHWM in
/proc/PID/status, Linux) after each request. The bomb must be refused (4xx) from its header: in well under
a second and without the server's peak memory moving. Results and the machine go to --out as JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "hostile"))
from faults import png_bomb  # noqa: E402  (the hostile tests' generator: one definition of the bomb)

from fer_edge.runtime.core.fileio import OutputFile  # noqa: E402


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc: this measurement needs Linux")


def _post(port: int, name: str, data: bytes) -> tuple[int, float, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    return status, time.perf_counter() - t0, text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="results as JSON")
    p.add_argument("--force", action="store_true")
    a = p.parse_args()
    out = OutputFile(a.out, a.force, "--out")
    work = Path(out.target).parent
    bomb = png_bomb(work / f".bomb{uuid.uuid4().hex}.png")
    photo = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8))[1].tobytes()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "fer_edge.runtime.cli", "serve-api", "--port", str(port),
                               "--threads", "1"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"serve-api did not start: {server.stderr.read() if server.stderr else ''}")
                time.sleep(0.2)
        rows = {"after start": {"peak_rss_mb": round(_peak_rss_mb(server.pid), 1)}}
        for name, data in (("photo 640x480", photo), ("bomb 30000x30000", bomb.read_bytes())):
            status, seconds, text = _post(port, name, data)
            rows[name] = {"bytes": len(data), "status": status, "seconds": round(seconds, 3),
                          "peak_rss_mb": round(_peak_rss_mb(server.pid), 1), "answer": text[:200]}
    finally:
        server.terminate()
        server.wait(30)
        bomb.unlink()
    doc = {"command": " ".join(["python", *sys.argv]), "machine": platform.platform(),
           "cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
           "note": "peak RSS is VmHWM of the serve-api process after each request", "results": rows}
    with out:
        Path(out.target).write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
