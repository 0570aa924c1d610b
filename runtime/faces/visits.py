"""Visits: a track from the frame it appears to the frame it is dropped, reported as events.

    visits = Visits(min_visit=0.5, update_every=None)
    events = visits.update(result)      # each frame's FrameResult -> its start / update / end events
    events = visits.close()             # the source ended: the end of every visit still open

`start` (track, time and frame of its first frame, box) is said once the visit has lasted `min_visit` seconds, so
a false detection of a frame or two never becomes an event; `end` is said on the frame the track is dropped, with
its first and last frames' times, seconds, frames, sure frames, the dominant emotion over sure frames (None
without one), each emotion's share of the sure frames and the peak (the surest sure frame: label, probability,
time); `update` carries the same figures so far every `update_every` seconds (None: never).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from fer_edge.runtime.core.errors import FerEdgeError
from fer_edge.runtime.core.results import FaceResult, FrameResult
from fer_edge.runtime.faces.facestats import FaceStats

DEFAULT_MIN_VISIT = 0.5  # seconds: shorter tracks are no visit


def check_visit_options(min_visit: float, update_every: float | None) -> None:
    if not (isinstance(min_visit, (int, float)) and math.isfinite(min_visit) and min_visit >= 0):
        raise FerEdgeError(f"--min-visit must be a number of seconds from 0 up, found {min_visit}")
    if update_every is not None and not (isinstance(update_every, (int, float)) and math.isfinite(update_every)
                                         and update_every > 0):
        raise FerEdgeError(f"--visit-update must be a number of seconds above 0, found {update_every}")


@dataclass
class Visit:
    track: int
    start: float
    start_frame: int
    box: tuple
    end: float = 0.0
    end_frame: int = 0
    frames: int = 0
    stats: FaceStats = field(default_factory=FaceStats)  # sure frames per label, unsure frames
    peak: dict | None = None  # the surest sure frame: label, prob, time
    reported: bool = False  # `start` said
    last_update: float = 0.0

    def add(self, face: FaceResult, frame: int, t: float) -> None:
        self.end, self.end_frame, self.frames = t, frame, self.frames + 1
        self.stats.add(face)
        if face.sure:
            p = face.probs[face.label]
            if self.peak is None or p > self.peak["prob"]:
                self.peak = {"label": face.label, "prob": round(p, 4), "time": round(t, 4)}

    def figures(self) -> dict:
        return {"track": self.track, "start": round(self.start, 4), "start_frame": self.start_frame,
                "end": round(self.end, 4), "end_frame": self.end_frame, "seconds": round(self.end - self.start, 4),
                "frames": self.frames, "sure_frames": self.stats.sure, "dominant": self.stats.dominant(),
                "share": self.stats.shares(), "peak": self.peak}


class Visits:
    def __init__(self, min_visit: float = DEFAULT_MIN_VISIT, update_every: float | None = None):
        check_visit_options(min_visit, update_every)
        self.min_visit, self.update_every = float(min_visit), update_every
        self.open: dict[int, Visit] = {}
        self.reported = 0  # visits that ended and were reported

    def update(self, result: FrameResult) -> list[dict]:
        """One frame: its faces extend or open visits; a visit whose track is gone ends."""
        events, seen = [], set()
        for face in result.faces:
            seen.add(face.track)
            v = self.open.get(face.track)
            if v is None:
                v = self.open[face.track] = Visit(face.track, result.time, result.frame, tuple(face.box),
                                                  last_update=result.time)
            v.add(face, result.frame, result.time)
            if not v.reported and v.end - v.start >= self.min_visit:
                v.reported = True
                events.append({"event": "start", "track": v.track, "time": round(v.start, 4),
                               "frame": v.start_frame, "box": list(v.box)})
            elif v.reported and self.update_every and result.time - v.last_update >= self.update_every:
                v.last_update = result.time
                events.append({"event": "update", "time": round(result.time, 4), **v.figures()})
        for track in [t for t in self.open if t not in seen]:
            events += self._end(self.open.pop(track))
        return events

    def close(self) -> list[dict]:
        """The source ended: every open visit ends at its last frame."""
        events = []
        for track in list(self.open):
            events += self._end(self.open.pop(track))
        return events

    def _end(self, v: Visit) -> list[dict]:
        if not v.reported:
            return []
        self.reported += 1
        return [{"event": "end", "time": round(v.end, 4), **v.figures()}]
