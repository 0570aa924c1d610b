"""Face boxes: the one type detectors, the tracker and the framing share, and the geometry on them.

A `FaceBox` is (x, y, w, h) integer pixels clipped to the frame, a detector score and, where the detector
gives them, five landmarks (right eye, left eye, nose tip, right and left mouth corners, in the person's
own left/right, as float pixel coordinates). Faces cut by the frame edge give a smaller box rather than
an error; a frame with no face gives an empty list.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

MIN_FACE = 12  # pixels: smaller boxes cannot give a meaningful 48x48 crop
# a box with more than this share of its area inside a larger box is dropped: faces do not nest, but Haar
# fires on a mouth or an eye inside the face (measured on the sample video: a mouth box on 10 frames)
NESTED = 0.6

Landmarks = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class FaceBox:
    x: int
    y: int
    w: int
    h: int
    score: float = 1.0
    landmarks: Landmarks | None = None  # right eye, left eye, nose, right and left mouth corners

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.w, self.h

    def moved(self, dx: float, dy: float, shape) -> "FaceBox | None":
        """The same face shifted by (dx, dy) pixels, landmarks included, clipped to a frame of `shape`."""
        out = clip_box(self.x + dx, self.y + dy, self.x + self.w + dx, self.y + self.h + dy, shape, self.score)
        if out is None or self.landmarks is None:
            return out
        return replace(out, landmarks=tuple((px + dx, py + dy) for px, py in self.landmarks))


def clip_box(x0: float, y0: float, x1: float, y1: float, shape, score: float = 1.0,
             landmarks: Landmarks | None = None) -> FaceBox | None:
    """Corner coordinates -> a FaceBox clipped to the frame, or None when too little of it is inside."""
    fh, fw = shape[:2]
    xa, ya = max(0, int(round(x0))), max(0, int(round(y0)))
    xb, yb = min(fw, int(round(x1))), min(fh, int(round(y1)))
    if xb - xa < MIN_FACE or yb - ya < MIN_FACE:
        return None
    return FaceBox(xa, ya, xb - xa, yb - ya, float(score), landmarks)


def scale_faces(faces: list[FaceBox], factor: float, shape) -> list[FaceBox]:
    """Boxes found on a resized copy of a frame -> boxes (and landmarks) on the frame of `shape`."""
    if factor == 1.0:
        return faces
    out = []
    for f in faces:
        lms = None if f.landmarks is None else tuple((px * factor, py * factor) for px, py in f.landmarks)
        box = clip_box(f.x * factor, f.y * factor, (f.x + f.w) * factor, (f.y + f.h) * factor, shape, f.score, lms)
        if box is not None:
            out.append(box)
    return out


def intersection(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    """Area shared by two (x, y, w, h) boxes."""
    iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return iw * ih


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    inter = intersection(a, b)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def corner_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one corner box (x0, y0, x1, y1) against many (numpy, for non-max suppression)."""
    ix0, iy0 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    ix1, iy1 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def nested(a: FaceBox, b: FaceBox, share: float = NESTED) -> bool:
    """True when box `a` is smaller than `b` and more than `share` of its area lies inside `b`."""
    return b.w * b.h > a.w * a.h and intersection(a.box, b.box) > share * a.w * a.h


def drop_nested(boxes: list[FaceBox]) -> list[FaceBox]:
    """The boxes that do not lie inside a larger one."""
    return [a for a in boxes if not any(nested(a, b) for b in boxes)]


def expand_box(box, margin: float, frame_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(x, y, w, h) grown by `margin` of its size on every side, clipped to the frame."""
    x, y, bw, bh = (float(v) for v in box)
    fh, fw = frame_shape[:2]
    x0 = max(0, int(round(x - margin * bw)))
    y0 = max(0, int(round(y - margin * bh)))
    x1 = min(fw, int(round(x + bw + margin * bw)))
    y1 = min(fh, int(round(y + bh + margin * bh)))
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)
