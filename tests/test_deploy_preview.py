"""Browser preview (--serve): the page, the MJPEG stream and the token, then the page in headless Chromium.

The Chromium test loads the page of a live run, checks the DOM after the page's scripts ran (the stream
image loaded, the emotion bars filled from state.json) and checks a screenshot for content: not blank,
the stream region textured like a video frame, the face box colour of the drawn annotation in it.
Skips with the reason when chromium is not installed (.ci/run installs it).
"""
from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_edge.runtime.core.errors import FerEdgeError
from fer_edge.runtime.serve.preview import parse_bind
from fer_edge.runtime.media.drawing import COLOURS

TFLITE = Path(__file__).parent / "assets" / "tiny_fer.tflite"
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
TOKEN = "t0ken"
WINDOW = (1100, 520)


def test_bind_parsing():
    assert parse_bind("8080") == ("127.0.0.1", 8080)  # a bare port stays on this machine
    assert parse_bind("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_bind("[::1]:8080") == ("::1", 8080)
    with pytest.raises(FerEdgeError, match="PORT"):
        parse_bind("localhost:http")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, headers=None, timeout=10):
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout)


@pytest.fixture
def live(tmp_path, samples_dir):
    """A fer-edge run on the sample video (looped so it outlives the test) serving on a free port."""
    port = _free_port()
    video = samples_dir / "fer_test.mp4"
    cmd = [sys.executable, "-m", "fer_edge.runtime.cli", "--source", str(video), "--model", str(TFLITE),
           "--threads", "1", "--loop", "100", "--quiet", "--serve", f"127.0.0.1:{port}", "--serve-token", TOKEN]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            state = json.load(_get(f"{base}/state.json?token={TOKEN}", timeout=2))
            if state["frames"] > 0 and state["faces"]:
                break
        except (urllib.error.URLError, ConnectionError):
            pass
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the preview served no frame with a face in 60 s"
        time.sleep(0.2)
    cap = cv2.VideoCapture(str(video))
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    cap.release()
    yield base, proc, size
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
def test_page_stream_state_and_token(live):
    base, proc, size = live
    with pytest.raises(urllib.error.HTTPError) as err:
        _get(f"{base}/state.json")
    assert err.value.code == 401
    page = _get(f"{base}/", {"Authorization": f"Bearer {TOKEN}"}).read().decode()
    assert "stream.mjpg" in page and "state.json" in page
    state = json.load(_get(f"{base}/state.json?token={TOKEN}"))
    assert state["faces"] and set(state["faces"][0]["probs"]) >= {"happy"}
    frames = []
    with _get(f"{base}/stream.mjpg?token={TOKEN}") as r:
        assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        for _ in range(2):  # two parts, and the stream moves on
            headers = {}
            line = r.readline()
            while line.strip() != b"--ferframe":
                line = r.readline()
            while (line := r.readline().strip()):
                k, v = line.decode().split(":", 1)
                headers[k.lower()] = v.strip()
            body = r.read(int(headers["content-length"]))
            image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
            assert image.shape[1::-1] == size
            frames.append(image)
    assert not np.array_equal(frames[0], frames[1])
    proc.send_signal(signal.SIGTERM)  # the service stops cleanly and frees the port
    assert proc.wait(20) == 0


def _chromium(args: list[str], profile: Path, url: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=3000",
           *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


@pytest.mark.slow
def test_headless_chromium_shows_the_annotated_stream(live, tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt install chromium; .ci/run installs it)")
    base, proc, (w, h) = live
    url = f"{base}/?token={TOKEN}"
    dom = _chromium(["--dump-dom"], tmp_path / "profile-dom", url).stdout
    assert 'data-image-frames="' in dom, "the stream image never loaded"
    assert 'data-frames="' in dom and "fps" in dom and 'class="fill"' in dom, "the emotion bars were not drawn"

    tracks = {f["track"] for f in json.load(_get(f"{base}/state.json?token={TOKEN}"))["faces"]}
    shot = tmp_path / "preview.png"
    done = _chromium([f"--screenshot={shot}"], tmp_path / "profile-shot", url)
    assert shot.is_file(), done.stderr[-2000:]
    png = cv2.imread(str(shot))
    assert png.shape[:2] == (WINDOW[1], WINDOW[0])
    assert png.std() > 10, "the screenshot is blank"
    view = png[12:12 + h, 12:12 + w].astype(np.int16)  # body padding 12 px; the image at its natural size
    assert view.std() > 20 and np.abs(np.diff(view, axis=1)).mean() > 2, "the stream region holds no picture"
    # the annotation: pixels of the box colours of the tracks on screen (JPEG moves colours a little)
    box_pixels = sum(int((np.abs(view - np.array(COLOURS[t % len(COLOURS)], np.int16)).max(axis=2) < 40).sum())
                     for t in tracks)
    # 1000: the raw sample frames hold at most 382 pixels of these colours (bokeh lights); drawn ones ~3000
    assert box_pixels > 1000, f"no annotation drawn on the frame ({box_pixels} box-colour pixels)"
    side = png[:, 12 + w + 16:].astype(np.int16)  # the page's bars (#ffb347 for the top label)
    bar_pixels = int((np.abs(side - np.array((71, 179, 255), np.int16)).max(axis=2) < 30).sum())
    assert bar_pixels > 100, "no emotion bar on the page"
    print(f"chromium screenshot {png.shape[1]}x{png.shape[0]}: std {png.std():.1f}, stream region std "
          f"{view.std():.1f}, {box_pixels} box-colour pixels, {bar_pixels} bar pixels")
