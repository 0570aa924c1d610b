"""Progress bars (issue 39, point 4): on a terminal a bar on stderr that reaches 100% for work of known length;
nothing piped, with --quiet or for a live source; `--json -` stays clean. Each fer-edge run is a real process,
its stderr a pseudo-terminal (pty) where a terminal is the point."""
from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import sys
import time

import pytest

from fer_edge.runtime.core import progress
from fer_edge.runtime.core.progress import REDRAWS_PER_S, Progress

BAR_MARKS = ("\r", "\x1b[K", "% |", "\u2588", "\u2591")  # what only a drawn bar writes


class Tty(io.StringIO):
    """A stream that says it is a terminal, and counts its writes."""

    encoding = "utf-8"

    def __init__(self):
        super().__init__()
        self.writes = 0

    def isatty(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)


def wait_for(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_bar_on_a_terminal_is_redrawn_by_its_thread_and_ends_at_100_percent():
    tty = Tty()
    with Progress(40, "frames", stream=tty) as bar:
        bar.update(5)
        assert wait_for(lambda: " 5/40 " in tty.getvalue()), tty.getvalue()  # redrawn without another update
        for _ in range(35):
            bar.update()
    text = tty.getvalue()
    assert text.startswith("\r\x1b[Kframes  12% |\u2588\u2588\u2588\u2591")
    last = text.rsplit("\r\x1b[K", 1)[1]
    assert last.startswith("frames 100% |" + "\u2588" * 28 + "|") and " 40/40 " in last and "/s" in last
    assert text.endswith("\n") and text.count("\n") == 1


def test_updates_only_store_a_number_and_redraws_are_rate_limited():
    tty = Tty()
    bar = Progress(10**6, stream=tty)
    t0 = time.monotonic()
    for _ in range(200_000):
        bar.update()
    seconds = time.monotonic() - t0
    bar.close()
    # the bar's thread draws at most REDRAWS_PER_S times a second; close() writes the last line once
    assert tty.writes <= REDRAWS_PER_S * seconds + 2, (tty.writes, seconds)


def test_time_left_is_estimated_from_the_rate():
    bar = Progress(100, stream=Tty())
    bar.started -= 10.0  # 25 done in 10 s: 2.5/s, 75 left = 30 s
    bar.done = 25
    assert "2.5/s  0:30 left" in bar.line()
    bar.close()


@pytest.mark.parametrize("kwargs", [{"quiet": True}, {"total": 0}, {"total": None}])
def test_no_bar_when_quiet_or_of_unknown_length(kwargs):
    tty = Tty()
    with Progress(**{"total": 10, **kwargs}, stream=tty) as bar:
        for _ in range(10):
            bar.update()
    assert tty.getvalue() == "" and not bar.on


def test_no_bar_when_the_stream_is_not_a_terminal():
    out = io.StringIO()
    with Progress(10, stream=out) as bar:
        bar.update(10)
    assert out.getvalue() == ""


# -- fer-edge as a user runs it ------------------------------------------------------------------------------

def _run_with_tty_stderr(argv: list[str], timeout: float = 300) -> tuple[int, str, str]:
    """fer-edge with stderr on a pseudo-terminal (a person's terminal) and stdout on a pipe."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "fer_edge.runtime.cli", *argv], stdout=subprocess.PIPE,
                            stderr=slave, stdin=subprocess.DEVNULL, env={**os.environ, "TERM": "xterm"})
    os.close(slave)
    err, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            err += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    out = proc.stdout.read().decode()
    return proc.wait(timeout), out, err.decode(errors="replace")


def test_video_on_a_terminal_shows_a_bar_that_reaches_100_percent(samples_dir):
    rc, out, err = _run_with_tty_stderr(["--source", str(samples_dir / "fer_test.mp4"), "--threads", "1"])
    assert rc == 0, err
    assert "frames" in err and "% |" in err and "/s" in err
    assert "frames 100% |" in err, err[-600:]
    assert out == ""


def test_json_to_stdout_stays_clean_with_a_bar_on_the_terminal(samples_dir):
    rc, out, err = _run_with_tty_stderr(["--source", str(samples_dir / "fer_test.mp4"), "--json", "-",
                                         "--max-frames", "30", "--threads", "1"])
    assert rc == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 30 and not any(mark in out for mark in BAR_MARKS)
    assert "frames 100% |" in err  # --max-frames 30 of the video: the bar's total is 30


def test_quiet_on_a_terminal_draws_no_bar(samples_dir):
    rc, _, err = _run_with_tty_stderr(["--source", str(samples_dir / "fer_test.mp4"), "--quiet",
                                       "--max-frames", "10", "--threads", "1"])
    assert rc == 0 and not any(mark in err for mark in BAR_MARKS), err


def test_piped_runs_have_no_bar_characters(samples_dir, tmp_path):
    for argv in (["--source", str(samples_dir / "fer_test.mp4"), "--max-frames", "20"],
                 ["--source", str(samples_dir / "fer_test.mp4"), "--max-frames", "20", "--json", "-"]):
        proc = subprocess.run([sys.executable, "-m", "fer_edge.runtime.cli", *argv, "--threads", "1"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert not any(mark in proc.stdout + proc.stderr for mark in BAR_MARKS), proc.stderr
        assert "frames 20 in" in proc.stderr  # the summary is there, as before


def test_one_bar_at_a_time_nested_work_stays_hidden_and_a_printed_line_clears_the_bar(monkeypatch):
    from fer_edge.runtime.core.progress import printing

    tty = Tty()
    with Progress(3, "recipes", stream=tty) as outer:
        outer.update()
        with Progress(100, "calibration faces", stream=tty) as inner:
            inner.update(100)
        assert not inner.on
        assert wait_for(lambda: "recipes  33% |" in tty.getvalue())
        with printing():
            tty.write("a log line\n")
        assert tty.getvalue().endswith("\r\x1b[Ka log line\n")  # the bar cleared first
        assert wait_for(lambda: tty.getvalue().split("a log line\n")[1].startswith("\r\x1b[Krecipes  33% |"))
        outer.update()
    text = tty.getvalue()
    assert "calibration faces" not in text and "recipes 100% |" in text
    with Progress(2, "next", stream=tty) as after:  # the outer bar closed: a new one shows again
        assert after.on
    dropped = Progress(5, "dropped", stream=tty)
    assert dropped.on
    del dropped  # a bar never closed (a generator left unfinished) does not hide the next ones
    assert wait_for(lambda: progress._shown() is None)  # (its thread may hold it for the length of a redraw)
    assert Progress(5, "later", stream=tty).on


def test_calibration_passes_show_a_bar_on_a_terminal(monkeypatch):
    import numpy as np

    from fer_edge.calibration.sampler import CalibrationSet

    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    cs = CalibrationSet(np.zeros((50, 48, 48, 1), np.float32), np.zeros(50, np.int64), np.arange(50))
    assert sum(1 for _ in cs.representative_dataset()()) == 50  # TFLite's pass
    assert tty.getvalue().count("calibration faces 100% |") == 1
    reader = cs.reader("input", batch_size=8)  # onnxruntime's pass, after its own rewind
    feeds = list(iter(reader))
    assert len(feeds) == 7 and tty.getvalue().count("calibration faces 100% |") == 2
    assert "calibration faces   0%" not in tty.getvalue()  # a rewind before any face leaves no line


def test_verify_on_a_terminal_shows_a_bar_of_faces(data_dir):
    rc, out, err = _run_with_tty_stderr(["verify", "--data", str(data_dir), "--limit", "600", "--threads", "1"])
    assert rc == 0, err
    assert "faces 100% |" in err and " 600/600 " in err


def test_fer_train_epochs_bar_where_keras_shows_none(monkeypatch):
    pytest.importorskip("keras", reason="fer-train needs Keras (the [train] extra)")
    from fer_edge.training.backend import import_keras
    from fer_edge.training.train import _epoch_bar

    keras = import_keras()

    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    callback = _epoch_bar(keras, 3)
    assert isinstance(callback, keras.callbacks.Callback)
    for epoch in range(3):
        callback.on_epoch_end(epoch)
    callback.on_train_end()
    assert "epochs 100% |" in tty.getvalue() and " 3/3 " in tty.getvalue()


class VideoCamera:
    """A camera (VideoCapture-like) that shows the sample video's frames, looping, at a camera's pace."""

    def __init__(self, video):
        import cv2

        cap = cv2.VideoCapture(str(video))
        self.frames = [cap.read()[1] for _ in range(40)]
        cap.release()
        self.n = 0

    def isOpened(self):
        return True

    def read(self):
        time.sleep(0.01)
        self.n += 1
        return True, self.frames[self.n % len(self.frames)]

    def release(self):
        pass


def test_a_live_source_shows_no_bar_and_its_report_has_the_track(samples_dir, tmp_path, monkeypatch):
    from fer_edge.runtime import cli
    from fer_edge.runtime.media import sources

    camera = VideoCamera(samples_dir / "fer_test.mp4")
    monkeypatch.setattr(sources, "open_source", lambda *a, **k: sources.LiveSource(lambda: camera, "camera 0"))
    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    page = tmp_path / "camera.html"
    rc = cli.main(["--camera", "0", "--max-frames", "25", "--window", "off", "--report", str(page), "--threads", "1"])
    assert rc == 0, tty.getvalue()
    assert not any(mark in tty.getvalue() for mark in BAR_MARKS) and "frames 25 in" in tty.getvalue()
    text = page.read_text(encoding="utf-8")
    assert "<h1>fer-edge report: camera 0</h1>" in text and '<svg class="timeline" data-track="1"' in text
