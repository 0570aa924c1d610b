"""Outputs of a run: JSON Lines, an annotated video or image, a window, and the end-of-run summary.

Every output of a run is a `Sink` (the one contract): `write(frame, result)` for each frame (False asks the
run to stop: a closed window), `write_visits(events)` for visit events that come without a frame (a live
source's visits still open when it stopped), and `finish(commit)` once at the end: with commit its files take
their final names (and a link says goodbye), without it nothing staged is left. `finish_all` finishes a run's
sinks in order, every one of them even when one raises. A finite run that fails commits nothing; a live service
keeps what it recorded (runtime/recognize/pipeline.py's `Pipeline.run`).
"""
from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import sys
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from fer_edge.runtime.data.datasets import IMAGE_SUFFIXES
from fer_edge.runtime.core.errors import FerEdgeError
from fer_edge.runtime.media.drawing import annotated, draw_timeline
from fer_edge.runtime.core.fileio import OutputFile
from fer_edge.runtime.core.results import FrameResult

log = logging.getLogger("fer_edge.runtime")

TIMELINE_POINTS = 600  # points kept per track for --timeline and --report (an hour of video is averaged down)


class Sink(Protocol):
    """The contract every output of a run keeps (subclass it for the defaults of the optional parts)."""

    def write(self, frame, result: FrameResult) -> bool | None:
        """One frame and its result; False asks the run to stop."""

    def write_visits(self, events: list[dict]) -> None:
        """Visit events that come without a frame (a live source's visits open when it stopped)."""

    def finish(self, commit: bool) -> None:
        """The run is over: commit (files renamed into place, goodbyes said), or leave nothing staged behind."""


def finish_all(sinks, commit: bool) -> None:
    """Finish every sink, in order, whichever of them raises (the first error is raised once all have had
    their turn, the others chained to it)."""
    with contextlib.ExitStack() as stack:
        for sink in reversed(list(sinks)):
            stack.callback(sink.finish, commit)


def _output(target, force: bool, option: str) -> OutputFile:
    return target if isinstance(target, OutputFile) else OutputFile(target, force, option)


class JsonLinesSink(Sink):
    """One JSON object per processed frame: {frame, time, faces: [{box, label, probs, track}]}.

    Written under a temporary name. A live source's events (`stream`, and any rotated file) take the final
    name with the first frame, so a running camera's events can be followed live (`tail -f`); a file's or a
    folder's take it when the run ends, so a stopped or failed run leaves none. A run that fails to start
    (`finish(False)`) leaves no file and an old one untouched; every line is flushed, so even SIGKILL leaves
    whole lines.

    With `max_bytes`, the live file is rotated between two lines once it reaches that size: FILE becomes
    FILE.1 (FILE.1 becomes FILE.2, ... the oldest beyond `keep` is deleted) and a new FILE starts, so every
    finished file is complete JSON Lines and no line is split or lost at the boundary."""

    def __init__(self, target: str | os.PathLike | OutputFile, force: bool = False, max_bytes: int | None = None,
                 keep: int = 5, stream: bool = True):
        self.out = _output(target, force, "--json")
        self.stream = stream or max_bytes is not None
        if max_bytes is not None and self.out.stdout:
            raise FerEdgeError("--json-max-mb: cannot rotate standard output (--json -): give a file name")
        self.max_bytes, self.keep = max_bytes, keep
        self.file = self.out.open("w", encoding="utf-8")
        self.lines = self.size = self.rotations = 0

    def write(self, frame, result: FrameResult):
        self.write_line(result.to_dict())

    def write_line(self, doc: dict) -> None:
        line = json.dumps(doc, separators=(",", ":")) + "\n"
        self.file.write(line)
        self.file.flush()  # a line per frame survives a kill; cheap next to a detector run
        self.lines += 1
        self.size += len(line.encode("utf-8"))
        if self.lines == 1 and self.stream:
            self.out.commit()  # the run has started: the events take the final name (the open file follows)
        if self.max_bytes is not None and self.size >= self.max_bytes:
            self.rotate()

    def rotate(self) -> None:
        """FILE -> FILE.1 (older ones shifted, the one past `keep` deleted), then a new, empty FILE."""
        self.file.close()
        rotate_numbered(self.out.path, self.keep)
        self.file = open(self.out.path, "w", encoding="utf-8")
        self.size = 0
        self.rotations += 1

    def finish(self, commit: bool) -> None:
        if self.file is None:
            return
        file, self.file = self.file, None
        if not self.out.stdout:
            file.close()  # (a live file, already at its final name, keeps every whole line it has)
        self.out.commit() if commit else self.out.discard()


class VisitsSink(JsonLinesSink):
    """--visits FILE.jsonl: one JSON object per visit event (start, update, end; runtime.faces.visits), rotated
    like --json; a run without a visit leaves an empty file."""

    def write(self, frame, result: FrameResult):
        self.write_visits(result.visits)

    def write_visits(self, events: list[dict]) -> None:
        for event in events:
            self.write_line(event)


def rotate_numbered(path: Path, keep: int) -> None:
    """PATH.keep is deleted, PATH.(n) becomes PATH.(n+1) from the oldest down, and PATH becomes PATH.1."""
    Path(f"{path}.{keep}").unlink(missing_ok=True)
    for n in range(keep - 1, 0, -1):
        older = Path(f"{path}.{n}")
        if older.exists():
            os.replace(older, f"{path}.{n + 1}")
    os.replace(path, f"{path}.1")


class RecordSink(Sink):
    """Annotated frames to a video file (.mp4, .avi, .mkv) or to image files (.jpg, .png: the first frame
    at the name given, the others at NAME-FRAME.jpg). Every file is written under a temporary name and
    renamed when complete, so a killed run never leaves an unplayable video at the final name."""

    FOURCC = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}

    def __init__(self, target: str | os.PathLike | OutputFile, fps: float = 0.0, force: bool = False):
        path = Path(target.path if isinstance(target, OutputFile) else target)
        suffix = path.suffix.lower()
        if suffix not in IMAGE_SUFFIXES and suffix not in self.FOURCC:
            raise FerEdgeError(f"--record {path}: cannot record {suffix or 'files without a suffix'}: expected one of "
                               f"{', '.join(sorted(self.FOURCC))} (video) or {', '.join(sorted(IMAGE_SUFFIXES))} (images)")
        self.images = suffix in IMAGE_SUFFIXES
        if self.images and not force:
            taken = sorted(path.parent.glob(f"{glob.escape(path.stem)}-[0-9][0-9][0-9][0-9][0-9][0-9]{suffix}"))
            if taken:
                raise FerEdgeError(f"--record {path}: {taken[0].name} and {len(taken) - 1} more frame images already "
                                   "exist: pass --force to overwrite them")
        self.out = _output(target, force, "--record")
        self.path = self.out.path
        self.fps = fps if 0 < fps <= 240 else 25.0  # live sources have no container rate: a nominal one
        self.writer = None
        self.frames = 0

    def write(self, frame, result: FrameResult):
        image = annotated(frame, result)
        if self.images:
            if self.frames == 0:
                self._imwrite(self.out.target, image)
            else:
                with OutputFile(self.path.with_name(f"{self.path.stem}-{result.frame:06d}{self.path.suffix}"),
                                force=True) as out:
                    self._imwrite(out.target, image)
        else:
            if self.writer is None:
                h, w = image.shape[:2]
                self.size = (w, h)
                self.writer = cv2.VideoWriter(str(self.out.target),
                                              cv2.VideoWriter_fourcc(*self.FOURCC[self.path.suffix.lower()]),
                                              self.fps, self.size)
                if not self.writer.isOpened():
                    raise FerEdgeError(f"{self.path}: OpenCV could not open a video writer for it")
            if image.shape[1::-1] != self.size:  # a stream that changed resolution
                image = cv2.resize(image, self.size)
            self.writer.write(image)
        self.frames += 1

    @staticmethod
    def _imwrite(target: Path, image: np.ndarray) -> None:
        if not cv2.imwrite(str(target), image):
            raise FerEdgeError(f"{target}: OpenCV could not write this image")

    def finish(self, commit: bool) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if commit and self.frames:
            self.out.commit()
        else:
            self.out.discard()  # no frame: no empty file at the final name


def gui_available() -> tuple[bool, str]:
    """Whether OpenCV can open a window here, and why not."""
    info = cv2.getBuildInformation()
    gui = info.split("GUI:", 1)[1].splitlines()[0].strip() if "GUI:" in info else ""
    if gui.upper() in ("", "NONE"):
        return False, "this OpenCV build has no GUI (opencv-python-headless)"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "no display (DISPLAY is not set)"
    return True, ""


class WindowSink(Sink):
    """The annotated frames in an OpenCV window; q or Esc stops the run."""

    def __init__(self, title: str = "fer-edge"):
        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)

    def write(self, frame, result: FrameResult):
        cv2.imshow(self.title, annotated(frame, result))
        key = cv2.waitKey(1) & 0xFF
        return key not in (ord("q"), 27)

    def finish(self, commit: bool) -> None:
        cv2.destroyWindow(self.title)


class PrintSink(Sink):
    """One readable line per face (the --image output)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def write(self, frame, result: FrameResult):
        name = result.source or f"frame {result.frame}"
        if not result.faces:
            print(f"{name}: no face", file=self.stream)
        for f in result.faces:
            top = sorted(f.probs.items(), key=lambda kv: -kv[1])[:3]
            print(f"{name}: face {f.track} at {list(f.box)}: {f.label}{'' if f.sure else ' (unsure)'} "
                  f"({', '.join(f'{k} {v:.2f}' for k, v in top)})", file=self.stream)

    def finish(self, commit: bool) -> None:
        self.stream.flush()


class Timeline:
    """One track's probabilities over time in at most 2 x TIMELINE_POINTS points of equal weight: each point
    averages `step` frames, and `step` doubles (neighbours merged) whenever the points fill up."""

    def __init__(self):
        self.points: list[list] = []  # [time, probs, sure, frames]
        self.step = 1
        self.pending: list | None = None  # the point being filled

    def add(self, t: float, probs: list[float], sure: float) -> None:
        point = [t, probs, sure, 1.0]
        self.pending = point if self.pending is None else _merge(self.pending, point)
        if self.pending[3] >= self.step:
            self.points.append(self.pending)
            self.pending = None
            if len(self.points) >= 2 * TIMELINE_POINTS:
                self.points = [_merge(a, b) for a, b in zip(self.points[::2], self.points[1::2])]
                self.step *= 2

    def all(self) -> list[list]:
        return self.points + ([self.pending] if self.pending is not None else [])


def _merge(a: list, b: list) -> list:
    w = a[3] + b[3]
    return [(a[0] * a[3] + b[0] * b[3]) / w, [(x * a[3] + y * b[3]) / w for x, y in zip(a[1], b[1])],
            (a[2] * a[3] + b[2] * b[3]) / w, w]


class TimelineSink(Sink):
    """--timeline FILE.png: each track's emotion probabilities over time, drawn when the run ends (kept as the
    report keeps them, `Timeline`: bounded memory however long the run)."""

    def __init__(self, target, labels: tuple[str, ...], force: bool = False):
        self.out = _output(target, force, "--timeline")
        if self.out.path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            self.out.discard()
            raise FerEdgeError(f"--timeline {self.out.path}: expected a .png or .jpg file name")
        self.labels = labels
        self.tracks: dict[int, Timeline] = {}

    def write(self, frame, result: FrameResult):
        for f in result.faces:
            self.tracks.setdefault(f.track, Timeline()).add(result.time, [f.probs[k] for k in self.labels],
                                                            float(f.sure))

    def finish(self, commit: bool) -> None:
        if self.tracks is None:
            return
        tracks, self.tracks = self.tracks, None
        if not commit:
            self.out.discard()
            return
        points = {track: [(p[0], np.array(p[1])) for p in t.all()] for track, t in tracks.items()}
        frames = {track: int(sum(p[3] for p in t.all())) for track, t in tracks.items()}
        RecordSink._imwrite(self.out.target, draw_timeline(points, self.labels, frames=frames))
        self.out.commit()


class ProgressSink(Sink):
    """Advances a progress bar (runtime.core.progress) to each frame's position in its source; frames skipped as
    corrupt count too. The run closes the bar: only it knows whether the source ended."""

    def __init__(self, bar):
        self.bar = bar

    def write(self, frame, result: FrameResult):
        self.bar.update_to(result.frame + 1)


def format_summary(summary: dict) -> str:
    lines = [f"frames {summary['frames']} in {summary['seconds']:.2f} s = {summary['fps']:.1f} fps "
             f"({summary['stopped_by']}); faces {summary['faces']} on {summary['frames_with_face']} frames{_in_view(summary)}; "
             f"corrupt frames skipped {summary['corrupt_frames']}; reconnects {summary['reconnects']}",
             "per frame ms: " + ", ".join(f"{k} {v:.2f}" for k, v in summary["stage_ms"].items())]
    sc = summary.get("schedule")
    if sc:
        lines.append(f"schedule ({sc['mode']}): full detections {sc['full_detections']} ({sc['fine_detections']} at "
                     f"the photo width), region detections {sc['region_detections']}, motion searches "
                     f"{sc['motion_searches']}, frames without detection {sc['frames_skipped']}, classifications "
                     f"per frame {sc['classifications_per_frame']:.2f}")
    if summary["faces"]:
        share = sorted(summary["emotion_share"].items(), key=lambda kv: -kv[1])
        lines.append(f"emotions of the {summary['faces'] - summary['unsure_faces']} sure faces: "
                     + (", ".join(f"{k} {v:.1%}" for k, v in share if v > 0) or "none")
                     + f"; unsure faces {summary['unsure_faces']}; visits {summary['visits']}")
    if summary.get("unreadable"):
        lines.append(f"unreadable files ({len(summary['unreadable'])}): " + ", ".join(summary["unreadable"]))
    for t in summary["tracks"]:
        lines.append(f"track {t['track']}: {t['dominant'] or 'no sure frame'} on {t['share']:.0%} of its "
                     f"{t['frames'] - t['unsure_frames']} sure frames ({t['unsure_frames']} unsure)")
    return "\n".join(lines)


def _in_view(summary: dict) -> str:
    """'; in view 12.3 s (2 times)': runtime/faces/occupancy.py's figures, where the run has them."""
    v = summary.get("in_view")
    return f"; in view {v['seconds']:.1f} s ({v['periods']} times)" if v and v["periods"] else ""
