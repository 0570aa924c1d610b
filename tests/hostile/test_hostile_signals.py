"""Signals and dead sources: a live run must stop on SIGTERM within 2 s with its summary, whatever its source is
doing; a file run stopped exits 130 with nothing committed; a killed run must leave no half-written file at a
final name. Runtime only, one process per case."""
from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest

from faults import leftovers, start, terminate, wait_for_stderr_file, write_video


@pytest.mark.parametrize("source", [["--camera", "7"],
                                    ["--source", "rtsp://127.0.0.1:9/x", "--stall-timeout", "1", "--max-frames", "5"]],
                         ids=["missing-camera", "dead-rtsp"])
def test_a_live_source_without_frames_stops_on_sigterm(tmp_path, source):
    err = tmp_path / "err.txt"
    summary = tmp_path / "summary.json"
    with open(err, "w") as f:
        proc = start([*source, "--window", "off", "--summary", str(summary)], stderr=f)
    try:
        wait_for_stderr_file(err, "cannot open")
        time.sleep(3.0)  # into the retries: a stall timeout and a few backoff steps
        rc, seconds = terminate(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = err.read_text()
    assert rc == 0 and seconds < 2.0, (rc, seconds, text)
    assert "Traceback" not in text and "(stop requested)" in text
    assert json.loads(summary.read_text())["stopped_by"] == "stop requested"
    # the retry loop says it once per backoff interval, not once per attempt; no OpenCV/FFmpeg lines
    assert text.count("cannot open") == 1 and "WARN" not in text and "Connection" not in text, text


def test_sigkill_leaves_no_unplayable_video_at_the_final_name(tmp_path):
    video = write_video(tmp_path / "in.avi", 20)
    out, events = tmp_path / "out.mp4", tmp_path / "events.jsonl"
    proc = start(["--source", str(video), "--loop", "100000", "--record", str(out), "--json", str(events), "--quiet"])
    try:
        t0 = time.monotonic()
        while not any(p.stat().st_size > 0 for p in tmp_path.glob(".out.mp4.tmp*")):
            assert time.monotonic() - t0 < 60 and proc.poll() is None, "the run never started writing"
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
    assert not out.exists() and not events.exists()  # a file's outputs sit under their hidden temporary names
    written = list(tmp_path.glob(".events.jsonl.tmp*"))
    assert len(written) == 1 and all(json.loads(line)["frame"] >= 0 for line in written[0].read_text().splitlines())


def test_sigterm_on_a_file_run_exits_130_and_commits_nothing(tmp_path):
    """A video (or a folder) is finite work: a stop is an interruption, as for fer-convert (issue 35); only a
    live source's stop is its normal end (test_a_live_source_without_frames_stops_on_sigterm)."""
    video = write_video(tmp_path / "in.avi", 20)
    out, events, summary = tmp_path / "out.mp4", tmp_path / "events.jsonl", tmp_path / "summary.json"
    err = tmp_path / "err.txt"
    with open(err, "w") as f:
        proc = start(["--source", str(video), "--loop", "100000", "--record", str(out), "--json", str(events),
                      "--summary", str(summary)], stderr=f)
    try:
        t0 = time.monotonic()
        while not any(p.stat().st_size > 2000 for p in tmp_path.glob(".events.jsonl.tmp*")):
            assert time.monotonic() - t0 < 60 and proc.poll() is None, err.read_text()
            time.sleep(0.1)
        rc, seconds = terminate(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = err.read_text()
    assert rc == 130 and seconds < 2.0 and text.strip().endswith("interrupted (SIGTERM)"), (rc, seconds, text)
    assert "Traceback" not in text
    assert not out.exists() and not events.exists() and not summary.exists()
    assert leftovers(tmp_path) == []


# -- 16. a damaged video's corrupt count is the frames really missing ----------------------------------------

class _DamagedCapture:
    """A VideoCapture whose file claims 40 frames: 10 good, 5 undecodable, 10 good, then 15 that fail to the end."""

    def __init__(self, *_):
        self.pos, self.plan = 0, [True] * 10 + [False] * 5 + [True] * 10 + [False] * 15

    def isOpened(self):
        return True

    def read(self):
        ok = self.plan[self.pos] if self.pos < len(self.plan) else False
        self.pos += 1
        return (True, np.zeros((8, 8, 3), np.uint8)) if ok else (False, None)

    def get(self, prop):
        return {cv2.CAP_PROP_FRAME_COUNT: 40.0, cv2.CAP_PROP_FPS: 10.0, cv2.CAP_PROP_POS_FRAMES: float(self.pos),
                cv2.CAP_PROP_POS_MSEC: self.pos * 100.0}.get(prop, 0.0)

    def release(self):
        pass


def test_corrupt_frames_are_the_missing_ones_not_the_reads_before_giving_up(monkeypatch, tmp_path):
    from fer_edge.runtime.media import sources

    monkeypatch.setattr(sources.cv2, "VideoCapture", _DamagedCapture)
    src = sources.VideoFileSource(tmp_path / "damaged.mp4")
    frames = list(src)
    assert sum(f.image is not None for f in frames) == 20
    assert src.corrupt == sum(f.image is None for f in frames) == 5
