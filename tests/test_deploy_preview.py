"""Browser preview (--serve): the state by frame and the charts' history, the page, frames, MJPEG stream and
token over HTTP, then the page in headless Chromium.

The Chromium test (docs/browser.py: the DevTools protocol on a pipe) loads the page of a live run on the
looping sample video and checks that the chart is drawn and its pixels change over time, that the face list
names the tracked face and the bars show the values of the frame the page says it shows, that every request
went to the preview's own origin, and that a screenshot holds the annotated frame. Skips with the reason
when chromium is not installed (.ci/run installs it).
"""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_edge.runtime.core.errors import FerEdgeError
from fer_edge.runtime.core.results import FaceResult, FrameResult
from fer_edge.runtime.serve import preview
from fer_edge.runtime.serve.preview import PreviewOptions, PreviewServer, parse_bind
from fer_edge.runtime.media.drawing import COLOURS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs"))
from browser import Chromium, find_chromium  # noqa: E402  (docs/browser.py)

TFLITE = Path(__file__).parent / "assets" / "tiny_fer.tflite"
CHROMIUM = find_chromium()
TOKEN = "t0ken-for-the-preview"
WINDOW = (1100, 520)


def test_bind_parsing():
    assert parse_bind("8080") == ("127.0.0.1", 8080)  # a bare port stays on this machine
    assert parse_bind("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_bind("[::1]:8080") == ("::1", 8080)
    with pytest.raises(FerEdgeError, match="PORT"):
        parse_bind("localhost:http")


def _frame(n: int, sure: bool = True) -> FrameResult:
    return FrameResult(n, n / 25, [FaceResult((10, 10, 50, 50), "happy", {"happy": 0.8, "sad": 0.2}, 1, sure=sure)])


def test_state_by_frame_and_the_charts_history():
    """state(seq) is that frame's own (with its sure flag); with `since`, the chart points after `since` up to
    that frame, that frame's own the last; frames older than the last RECENT are no longer answered."""
    server = PreviewServer(PreviewOptions("127.0.0.1:0"))
    try:
        for n in range(1, 6):
            server.write(None, _frame(n, sure=n != 3))
        assert server.state()["seq"] == 5 and server.state()["frame"] == 5
        assert server.state(3)["faces"][0]["sure"] is False and server.state(2)["faces"][0]["sure"] is True
        first = server.state(3, since=-1)
        seqs = [p["seq"] for p in first["history"]]
        assert seqs[0] == 1 and seqs[-1] == 3 and seqs == sorted(set(seqs))
        assert first["history"][-1]["faces"] == first["faces"]
        later = server.state(5, since=first["history"][-1]["seq"])
        assert [p["seq"] for p in later["history"]][-1] == 5 and all(p["seq"] > 3 for p in later["history"])
        for n in range(6, 7 + preview.RECENT):
            server.write(None, _frame(n))
        assert server.state(3) is None and server.state(6 + preview.RECENT)["frame"] == 6 + preview.RECENT
    finally:
        server.finish(True)


def test_the_charts_keep_one_point_a_tenth_of_a_second_for_a_minute():
    server = PreviewServer(PreviewOptions("127.0.0.1:0"))
    try:
        for i in range(2400):  # 120 s at 20 fps
            server._remember(i, i * 0.05, _frame(i))
        times = [t for _, t, _ in server._history]
        assert times[-1] - times[0] <= preview.HISTORY_S and times[-1] == pytest.approx(119.95)
        assert min(np.diff(times)) >= preview.HISTORY_STEP_S - 1e-9 and len(times) <= 601
    finally:
        server.finish(True)


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
    with pytest.raises(urllib.error.HTTPError) as err:
        _get(f"{base}/frame.jpg?after=0")
    assert err.value.code == 401
    page = _get(f"{base}/", {"Authorization": f"Bearer {TOKEN}"}).read().decode()
    assert "frame.jpg" in page and "state.json" in page and "http" not in page.split("<script>")[1]
    state = json.load(_get(f"{base}/state.json?token={TOKEN}"))
    assert state["faces"] and set(state["faces"][0]["probs"]) >= {"happy"} and state["faces"][0]["sure"] is True
    # a frame names itself, and that frame's state is there to ask for (the page's pairing)
    r = _get(f"{base}/frame.jpg?after={state['seq']}&token={TOKEN}")
    seq = int(r.headers["X-Frame-Seq"])
    assert seq > state["seq"] and cv2.imdecode(np.frombuffer(r.read(), np.uint8), cv2.IMREAD_COLOR).shape[1::-1] == size
    same = json.load(_get(f"{base}/state.json?seq={seq}&since=-1&token={TOKEN}"))
    assert same["seq"] == seq and same["history"][-1]["seq"] == seq
    with pytest.raises(urllib.error.HTTPError) as err:
        _get(f"{base}/state.json?seq=many&token={TOKEN}")
    assert err.value.code == 400 and b"seq: expected a number" in err.value.read()
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


# What the page shows, read in one go: the frame it says it shows, the face list, the bars' values, and the
# chart's pixels above its time axis (a checksum, and how many are bright: lines, not the dark background)
SNAPSHOT = """(() => {
  const c = document.querySelector("canvas");
  if (!c) return null;
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height - 14).data;
  let sum = 0, bright = 0;
  for (let i = 0; i < d.length; i += 4) {
    sum = (sum * 31 + d[i] + 7 * d[i + 1] + 13 * d[i + 2]) % 1000000007;
    if (Math.max(d[i], d[i + 1], d[i + 2]) > 100) bright++;
  }
  return {seq: +document.body.dataset.seq, image: +document.getElementById("frame").dataset.seq,
          list: [...document.querySelectorAll("#list li")].map(li => [+li.dataset.track, li.textContent]),
          bars: [...document.querySelectorAll("#faces .face")].map(f => [+f.dataset.track,
                 [...f.querySelectorAll(".row")].map(r => [r.querySelector(".name").textContent,
                                                             +r.lastElementChild.textContent])]),
          sum: sum, bright: bright, drawn: +document.body.dataset.drawn};
})()"""


def _snapshot_with_state(browser, base):
    """A snapshot and the server's state of the frame it shows (taken again if that frame already left)."""
    for _ in range(20):
        snap = browser.evaluate(SNAPSHOT)
        try:
            return snap, json.load(_get(f"{base}/state.json?seq={snap['seq']}&token={TOKEN}"))
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
    raise AssertionError("the page's frame was never among the server's recent frames")


@pytest.mark.slow
def test_headless_chromium_draws_the_chart_lists_the_face_and_fetches_nothing_else(live):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt install chromium; .ci/run installs it)")
    base, proc, (w, h) = live
    with Chromium(WINDOW) as browser:
        browser.open(f"{base}/?token={TOKEN}")
        browser.wait_for("+(document.querySelector('canvas') || {dataset: {}}).dataset.seconds >= 2", 60,
                         "a chart of two seconds on the page")
        first, _ = _snapshot_with_state(browser, base)
        browser.wait_for(f"document.body.dataset.drawn >= {first['drawn'] + 10}", 60, "ten more frames on the page")
        snap, state = _snapshot_with_state(browser, base)
        png = cv2.imdecode(np.frombuffer(browser.screenshot(), np.uint8), cv2.IMREAD_COLOR)
        requests = list(browser.requests)

    # the chart is drawn (lines over the background) and moves on with the video
    assert first["bright"] > 100 and snap["bright"] > 100, f"no chart lines: {first['bright']}, {snap['bright']}"
    assert snap["sum"] != first["sum"], "the chart's pixels did not change in ten frames"
    # the list names the tracked face with its label; image, list and bars are of one frame
    assert snap["image"] == snap["seq"] and state["faces"]
    assert [t for t, _ in snap["list"]] == [f["track"] for f in state["faces"]]
    for (track, text), face in zip(snap["list"], state["faces"]):
        assert text.startswith(f"#{track} {face['label']}"), text
    for (track, rows), face in zip(snap["bars"], state["faces"]):
        assert track == face["track"] and [k for k, _ in rows] == list(face["probs"])
        assert all(abs(v - face["probs"][k]) <= 0.005 + 1e-9 for k, v in rows), (rows, face["probs"])
    # nothing from elsewhere: every request (page, frames, states, the images' blob: URLs) is the preview's own
    origins = {"{0.scheme}://{0.netloc}".format(urllib.parse.urlsplit(u.removeprefix("blob:"))) for u in requests}
    assert origins == {base} and any("/frame.jpg" in u for u in requests), (origins, requests[:5])

    assert png.shape[:2] == (WINDOW[1], WINDOW[0]) and png.std() > 10, "the screenshot is blank"
    view = png[12:12 + h, 12:12 + w].astype(np.int16)  # body padding 12 px; the image at its natural size
    assert view.std() > 20 and np.abs(np.diff(view, axis=1)).mean() > 2, "the frame region holds no picture"
    # the annotation: pixels of the box colours of the tracks on screen (JPEG moves colours a little)
    box_pixels = sum(int((np.abs(view - np.array(COLOURS[t % len(COLOURS)], np.int16)).max(axis=2) < 40).sum())
                     for t, _ in snap["list"])
    # 1000: the raw sample frames hold at most 382 pixels of these colours (bokeh lights); drawn ones ~3000
    assert box_pixels > 1000, f"no annotation drawn on the frame ({box_pixels} box-colour pixels)"
    print(f"chromium: {len(requests)} requests, all to {base}; chart {first['bright']} -> {snap['bright']} bright "
          f"pixels; {box_pixels} box-colour pixels in the frame")


BAND = """(() => {  // pixels of the chart's unsure band (#3b3e46) above its time axis
  const c = document.querySelector("canvas"), d = c.getContext("2d").getImageData(0, 0, c.width, c.height - 14).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) n += d[i] === 59 && d[i + 1] === 62 && d[i + 2] === 70;
  return n;
})()"""


class Fed:
    """A PreviewServer fed 25 frames a second from a thread, as a camera would: frame n's face is `face(n)`."""

    def __init__(self, face, port: int = 0):
        from fer_edge.runtime.media.sources import Frame

        self.server, self._stop = PreviewServer(PreviewOptions(f"127.0.0.1:{port}")), threading.Event()
        self.url = f"http://127.0.0.1:{self.server.port}/"

        def feed():
            n = 0
            while not self._stop.is_set():
                n += 1
                self.server.write(Frame(np.full((240, 320, 3), 90, np.uint8), n, n / 25),
                                  FrameResult(n, n / 25, [face(n)]))
                self._stop.wait(0.04)

        self._thread = threading.Thread(target=feed, daemon=True)
        self._thread.start()

    def close(self):
        self._stop.set()
        self._thread.join(10)
        self.server.finish(True)


def _face(track: int = 1, sure: bool = True) -> FaceResult:
    return FaceResult((10, 10, 50, 50), "happy", {"happy": 0.8, "sad": 0.2}, track, sure=sure)


@pytest.mark.slow
def test_headless_chromium_tells_unsure_stretches_apart():
    """A face sure for a second and unsure the next: the page marks the unsure face in its list ('?') and
    bars, and the chart paints the unsure stretches' band."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt install chromium; .ci/run installs it)")
    fed = Fed(lambda n: _face(sure=(n // 25) % 2 == 0))
    try:
        with Chromium(WINDOW) as browser:
            browser.open(fed.url)
            browser.wait_for("document.getElementById('list').textContent.includes('happy ?')", 60, "an unsure face")
            browser.wait_for("!!document.querySelector('#faces .row.unsure')", 60, "grey bars of an unsure face")
            browser.wait_for("document.getElementById('list').textContent.includes('#1 happy 80%')", 60, "a sure face")
            browser.wait_for("+document.querySelector('canvas').dataset.seconds >= 2.5", 60, "a chart of 2.5 s")
            band = browser.evaluate(BAND)
    finally:
        fed.close()
    assert band > 500, f"the chart has no unsure stretch ({band} band pixels)"


@pytest.mark.slow
def test_an_open_page_follows_a_restarted_preview():
    """fer-edge restarted on the same port (systemd does it): the open page shows the new run's face and
    starts its charts anew, with no reload."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt install chromium; .ci/run installs it)")
    fed = Fed(lambda n: _face(track=1))
    port = fed.server.port
    try:
        with Chromium(WINDOW) as browser:
            browser.open(fed.url)
            browser.wait_for("+document.querySelector('canvas').dataset.seconds >= 2", 60, "two seconds of chart")
            fed.close()
            fed = Fed(lambda n: _face(track=7), port=port)
            browser.wait_for("document.getElementById('list').textContent.startsWith('#7 happy')", 60,
                             "the restarted run's face")
            seconds = float(browser.evaluate("document.querySelector('#faces .face[data-track=\"7\"] canvas')"
                                             ".dataset.seconds"))
    finally:
        fed.close()
    assert seconds < 2, f"the new run's chart holds {seconds} s: the old run's points were kept"
