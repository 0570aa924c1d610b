"""What the frame loop gives its outputs: per frame, the faces found, each with its box, label, probabilities
and track. Typed and never None: a frame without a face has an empty list. Sinks, the MQTT link, the preview
and the HTTP API read these, never the pipeline that made them."""
from __future__ import annotations

from dataclasses import dataclass, field

from fer_edge.runtime.core.redact import redact


@dataclass(frozen=True)
class FaceResult:
    box: tuple[int, int, int, int]  # x, y, w, h in frame pixels
    label: str
    probs: dict[str, float]  # label -> probability (smoothed when --smooth > 0)
    track: int
    score: float = 1.0  # detector confidence, 0-1
    # where the detector gives them (YuNet): right eye, left eye, nose tip, right and left mouth corners, as
    # (x, y) frame pixels; None otherwise. Not in to_dict: the JSON Lines format is unchanged
    landmarks: tuple[tuple[float, float], ...] | None = None
    # the top probability reaches the model's confidence threshold (or --min-confidence); label and probs are the
    # same either way. Shares, dominant emotions and Home Assistant count sure faces only
    sure: bool = True

    def to_dict(self) -> dict:
        return {"box": list(self.box), "label": self.label,
                "probs": {k: round(v, 4) for k, v in self.probs.items()}, "track": self.track, "sure": self.sure}


@dataclass(frozen=True)
class FrameResult:
    frame: int
    time: float
    faces: list[FaceResult] = field(default_factory=list)
    source: str = ""  # the file name, for images, folders and API uploads
    # visit events (runtime.faces.visits) that happened on this frame: start, update, and end of each visit that
    # ended here (an end's time is its last frame's); not in to_dict: they go to --visits and MQTT T/visit
    visits: list[dict] = field(default_factory=list)
    # someone is in view (runtime/faces/occupancy.py: a track with a sure frame alive, or gone for less than the
    # hold time); a stream's frames only. Not in to_dict: Home Assistant's occupancy, the preview and the summary
    in_view: bool = False

    def to_dict(self) -> dict:
        d = {"frame": self.frame, "time": round(self.time, 4), "faces": [f.to_dict() for f in self.faces]}
        if self.source:
            d["source"] = redact(self.source)
        return d
