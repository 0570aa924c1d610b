"""Pictures of results, drawn with OpenCV only (no matplotlib on a device).

- `draw`: a frame with each face's box, label and probability bars;
- `Drawing`: that picture drawn once per frame, on first use, and shared by every output that shows it
  (--record, the window, the browser preview);
- `draw_timeline`: each track's emotion probabilities over time (--timeline FILE.png).
"""
from __future__ import annotations

import threading

import cv2
import numpy as np

from fer_edge.runtime.preprocess import as_bgr

COLOURS = [(80, 200, 80), (60, 160, 255), (255, 140, 60), (200, 80, 200), (60, 220, 220), (240, 240, 80)]
# one colour per label in the timeline, in label order (BGR); more labels than colours reuse them
LABEL_COLOURS = [(60, 60, 220), (40, 140, 60), (160, 60, 160), (40, 200, 240), (200, 120, 40), (220, 200, 60),
                 (150, 150, 150), (90, 90, 30)]


def draw(image: np.ndarray, result, bars: bool = True) -> np.ndarray:
    """A copy of a BGR frame with each face's box, label and probability bars (like the classic demo)."""
    out = image.copy()
    fh, fw = out.shape[:2]
    font, fs = cv2.FONT_HERSHEY_SIMPLEX, max(0.35, min(fw, fh) / 900)
    th = max(1, int(round(fs * 2)))
    line = int(22 * fs / 0.5)
    for face in result.faces:
        x, y, w, h = face.box
        colour = COLOURS[face.track % len(COLOURS)]
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, th + 1)
        text = f"#{face.track} {face.label} {face.probs[face.label]:.0%}"
        cv2.putText(out, text, (x, max(line, y - 6)), font, fs * 1.2, colour, th + 1, cv2.LINE_AA)
        if not bars:
            continue
        # bars beside the box (right side if there is room, else left)
        width = int(110 * fs / 0.5)
        bx = x + w + 6 if x + w + 6 + width < fw else max(0, x - width - 6)
        for i, (label, p) in enumerate(face.probs.items()):
            by = y + i * line
            if by + line > fh:
                break
            cv2.rectangle(out, (bx, by + 2), (bx + int(width * p), by + line - 2), colour, -1)
            cv2.putText(out, f"{label} {p:.2f}", (bx + 2, by + line - 5), font, fs * 0.8, (255, 255, 255), th,
                        cv2.LINE_AA)
    return out


class Drawing:
    """The annotated picture of one frame, drawn on first use only, whichever output asks first."""

    def __init__(self, image: np.ndarray, result):
        self.source, self.result = image, result
        self._image: np.ndarray | None = None
        self._lock = threading.Lock()  # the preview asks from its own thread

    def image(self) -> np.ndarray:
        with self._lock:
            if self._image is None:
                self._image = draw(self.source, self.result)
            return self._image


def annotated(frame, result) -> np.ndarray:
    """A source frame's annotated picture: the pipeline's shared Drawing, or drawn here when it has none."""
    drawing = getattr(frame, "drawing", None)
    if drawing is not None:
        return drawing.image()
    return draw(as_bgr(frame.image), result)


def draw_timeline(tracks: dict[int, list[tuple[float, np.ndarray]]], labels: tuple[str, ...], width: int = 1000,
                  row_height: int = 170) -> np.ndarray:
    """One panel per track: each label's probability (0-1, y) over time in seconds (x), a legend on top."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    left, right, top, gap = 56, 16, 40, 34
    rows = max(1, len(tracks))
    img = np.full((top + rows * (row_height + gap) + 20, width, 3), 255, np.uint8)  # + the time axis labels
    x = left
    for i, label in enumerate(labels):  # legend
        colour = LABEL_COLOURS[i % len(LABEL_COLOURS)]
        cv2.line(img, (x, 20), (x + 22, 20), colour, 3)
        cv2.putText(img, label, (x + 27, 25), font, 0.5, (30, 30, 30), 1, cv2.LINE_AA)
        x += 40 + 10 * len(label)
    if not tracks:
        cv2.putText(img, "no face was tracked", (left, top + row_height // 2), font, 0.6, (30, 30, 30), 1, cv2.LINE_AA)
        return img
    t_end = max(t for points in tracks.values() for t, _ in points)
    t_end = t_end if t_end > 0 else 1.0
    plot_w = width - left - right
    for row, (track, points) in enumerate(sorted(tracks.items())):
        y0 = top + row * (row_height + gap) + gap - 8
        cv2.putText(img, f"track {track}: {len(points)} frames", (left, y0 - 8), font, 0.5, (30, 30, 30), 1,
                    cv2.LINE_AA)
        cv2.rectangle(img, (left, y0), (left + plot_w, y0 + row_height), (190, 190, 190), 1)
        for frac in (0.0, 0.5, 1.0):
            y = int(y0 + row_height * (1 - frac))
            cv2.putText(img, f"{frac:.1f}", (left - 34, y + 4), font, 0.4, (90, 90, 90), 1, cv2.LINE_AA)
        times = np.array([t for t, _ in points])
        probs = np.stack([p for _, p in points])
        xs = left + times / t_end * plot_w
        for i in range(probs.shape[1]):
            ys = y0 + row_height * (1 - probs[:, i])
            pts = np.round(np.stack([xs, ys], axis=1)).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(img, [pts], False, LABEL_COLOURS[i % len(LABEL_COLOURS)], 2, cv2.LINE_AA)
    y = img.shape[0] - 8
    cv2.putText(img, "0 s", (left, y), font, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.putText(img, f"{t_end:.1f} s", (left + plot_w - 50, y), font, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
    return img
