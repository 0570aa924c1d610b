"""The README's screenshots: the live preview (`fer-edge --serve`), and the HTML report once `fer-edge` has
`--report`, made in headless Chromium from a short video of docs/assets/astronaut.jpg (Eileen Collins, NASA,
public domain; the copy scikit-image ships as `skimage.data.astronaut`), so no third-party picture is in them.

    python docs/screenshots.py            # writes docs/preview.png (and docs/report.png)
    python docs/screenshots.py --check    # CI: makes them again in a temporary folder and checks them

--check fails when a fresh screenshot differs from the committed one in width and height, when either is
blank, or when one is over MAX_BYTES; pixels are not compared (renderers differ). One not committed yet (the
report's, on the commit that brings --report) is named on stderr. Needs Debian's `chromium`
(.ci/run installs it).
"""
from __future__ import annotations

import argparse
import io
import json
import math
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser import Chromium  # noqa: E402  (docs/browser.py)

DOCS = Path(__file__).resolve().parent
PORTRAIT = DOCS / "assets" / "astronaut.jpg"
SHOTS = {"preview": (1100, 400), "report": (1100, 1040)}  # name -> viewport
MAX_BYTES = 150_000
TOKEN = "screenshot-token-sixteen"  # serve tokens are 16 characters or more (URL-safe: it goes in a query)


def make_video(path: Path, seconds: float = 6.0, fps: float = 25.0, size=(640, 360)) -> Path:
    """The portrait filling a 640x360 frame, panning slowly so the face moves like a person's would."""
    w, h = size
    face = cv2.resize(cv2.imread(str(PORTRAIT)), (w, w), interpolation=cv2.INTER_CUBIC)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(int(seconds * fps)):
        top = int(70 + 40 * math.sin(2 * math.pi * i / (seconds * fps)))
        out.write(face[top:top + h])
    out.release()
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(video: Path) -> tuple[subprocess.Popen, str]:
    """fer-edge on the looped video with the preview on a free port, once it has served a face."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fer_edge.runtime.cli", "--source", str(video), "--loop", "100000",
                             "--quiet", "--serve", f"127.0.0.1:{port}", "--serve-token", TOKEN],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/state.json?token={TOKEN}", timeout=2) as r:
                if json.load(r)["faces"]:
                    return proc, base
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"screenshots: the preview showed no face in 90 s: {proc.stderr.read()[-1000:]}")


def shoot_preview(video: Path) -> bytes:
    proc, base = _serve(video)
    try:
        with Chromium(SHOTS["preview"]) as browser:
            browser.open(f"{base}/?token={TOKEN}")
            # 15 s of history, so the chart shows a stretch, not a dot
            browser.wait_for("+(document.querySelector('canvas') || {dataset: {}}).dataset.seconds >= 15", 90,
                             "the preview's chart")
            return browser.screenshot()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def has_report() -> bool:
    helptext = subprocess.run([sys.executable, "-m", "fer_edge.runtime.cli", "--help"], capture_output=True,
                              text=True).stdout
    return "--report" in helptext


def shoot_report(video: Path, folder: Path) -> bytes:
    page = folder / "report.html"
    # run beside the video, so the report names it as a user's would be named, not by a temporary path
    subprocess.run([sys.executable, "-m", "fer_edge.runtime.cli", "--source", video.name, "--quiet", "--report",
                    page.name], check=True, stdout=subprocess.DEVNULL, cwd=video.parent)
    with Chromium(SHOTS["report"]) as browser:
        browser.open(page.as_uri())
        browser.wait_for("document.readyState === 'complete'", 30, "the report page")
        time.sleep(1.0)  # its charts draw on load
        return browser.screenshot()


def small_png(png: bytes) -> bytes:
    """A screenshot as a 256-colour palette PNG (octree keeps the charts' few bright colours): a third of the
    bytes."""
    from PIL import Image

    out = io.BytesIO()
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(256, method=Image.Quantize.FASTOCTREE).save(out, "PNG", optimize=True)
    return out.getvalue()


def blank(path: Path) -> bool:
    image = cv2.imread(str(path))
    return image is None or float(image.std()) < 10


def make(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    made = []
    with tempfile.TemporaryDirectory(prefix="fer-edge-shots-") as tmp:
        video = make_video(Path(tmp) / "astronaut.avi")
        jobs = {"preview": lambda: shoot_preview(video)}
        if has_report():
            jobs["report"] = lambda: shoot_report(video, Path(tmp))
        else:
            print("screenshots: fer-edge has no --report yet: docs/report.png not made", file=sys.stderr)
        for name, job in jobs.items():
            path = out / f"{name}.png"
            tmp_path = path.with_suffix(".png.tmp")
            tmp_path.write_bytes(small_png(job()))
            tmp_path.replace(path)
            made.append(path)
            print(f"{path}: {cv2.imread(str(path)).shape[1]}x{cv2.imread(str(path)).shape[0]}, "
                  f"{path.stat().st_size // 1000} KB", file=sys.stderr)
    return made


def check(fresh: list[Path]) -> list[str]:
    problems = []
    for path in fresh:
        kept = DOCS / path.name
        if not kept.is_file():  # a new page (the report, when --report lands): said, not failed, until committed
            print(f"screenshots: {kept} is not committed yet: run python docs/screenshots.py and commit it",
                  file=sys.stderr)
            continue
        shapes = [cv2.imread(str(p)).shape for p in (kept, path)]
        if shapes[0] != shapes[1]:
            problems.append(f"{kept}: {shapes[0][1]}x{shapes[0][0]}, a fresh one is {shapes[1][1]}x{shapes[1][0]}")
        for p in (kept, path):
            if blank(p):
                problems.append(f"{p} is blank")
            if p.stat().st_size > MAX_BYTES:
                problems.append(f"{p} is {p.stat().st_size} bytes, over {MAX_BYTES}")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="make them in a temporary folder and check docs/'s")
    args = parser.parse_args(argv)
    if not args.check:
        make(DOCS)
        return 0
    with tempfile.TemporaryDirectory(prefix="fer-edge-shots-check-") as tmp:
        problems = check(make(Path(tmp)))
    for line in problems:
        print(f"screenshots: {line}", file=sys.stderr)
    print("screenshots: " + ("FAILED" if problems else "ok: same sizes as docs/, not blank, small"), file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
