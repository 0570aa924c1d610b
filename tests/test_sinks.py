"""The one sink contract (issue 44): write / write_visits / finish(commit). A finite run that fails commits
nothing (its --timeline PNG included), a live service keeps what it recorded when another output fails, and one
output failing to finish does not leave the others unfinished."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fer_edge.runtime.media.sinks import JsonLinesSink, RecordSink, Sink, TimelineSink, finish_all
from fer_edge.runtime.media.sources import Frame
from fer_edge.runtime.recognize.pipeline import Pipeline, PipelineOptions

TFLITE = Path(__file__).parent / "assets" / "tiny_fer.tflite"


class Source:
    stills, fps, reconnects = False, 25.0, 0

    def __init__(self, live: bool):
        self.live = live

    def __iter__(self):
        for i in range(6):
            yield Frame(np.full((120, 160, 3), 40 * i, np.uint8), i, i / 25)


class Broken(Sink):
    """Fails on its fourth frame (a disk gone, a socket closed)."""

    def __init__(self):
        self.frames = 0

    def write(self, frame, result):
        self.frames += 1
        if self.frames == 4:
            raise OSError(28, "No space left on device")


def _run(tmp_path: Path, live: bool) -> list[str]:
    sinks = [JsonLinesSink(tmp_path / "run.jsonl", stream=False), RecordSink(tmp_path / "run.avi", 25.0),
             TimelineSink(tmp_path / "run.png", ("happy", "sad")), Broken()]
    with Pipeline(PipelineOptions(model=TFLITE, threads=1)) as pipe, pytest.raises(OSError, match="No space"):
        pipe.run(Source(live), sinks)
    return sorted(p.name for p in tmp_path.iterdir())


def test_a_finite_run_that_fails_commits_nothing(tmp_path):
    assert _run(tmp_path, live=False) == []  # no JSON Lines, no video, no timeline PNG, no temporary file


def test_a_live_service_keeps_what_it_recorded_when_another_output_fails(tmp_path):
    assert _run(tmp_path, live=True) == ["run.avi", "run.jsonl", "run.png"]
    assert (tmp_path / "run.avi").stat().st_size > 0


class Finishing(Sink):
    def __init__(self, log: list, name: str, fails: bool = False):
        self.log, self.name, self.fails = log, name, fails

    def write(self, frame, result):
        pass

    def finish(self, commit: bool) -> None:
        self.log.append((self.name, commit))
        if self.fails:
            raise RuntimeError(f"{self.name} failed")


def test_every_sink_is_finished_in_order_when_one_raises():
    log: list = []
    sinks = [Finishing(log, "a"), Finishing(log, "b", fails=True), Finishing(log, "c")]
    with pytest.raises(RuntimeError, match="b failed"):
        finish_all(sinks, commit=True)
    assert log == [("a", True), ("b", True), ("c", True)]


def test_a_long_timeline_is_kept_in_bounded_memory_and_drawn(tmp_path):
    """--timeline keeps each track as the report does (runtime/media/sinks.py's Timeline): an hour at 25 fps
    is a few hundred points, and the PNG is drawn from them."""
    from fer_edge.runtime.core.results import FaceResult, FrameResult
    from fer_edge.runtime.media.sinks import TIMELINE_POINTS

    sink = TimelineSink(tmp_path / "t.png", ("happy", "sad"))
    face = FaceResult((1, 2, 3, 4), "happy", {"happy": 0.7, "sad": 0.3}, 1)
    for i in range(25 * 3600):
        sink.write(None, FrameResult(i, i / 25, [face]))
    assert len(sink.tracks[1].all()) < 2 * TIMELINE_POINTS
    sink.finish(True)
    assert (tmp_path / "t.png").stat().st_size > 0 and [p.name for p in tmp_path.iterdir()] == ["t.png"]
