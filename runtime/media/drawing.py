"""Pictures of results, drawn with OpenCV only (no matplotlib on a device).

- `draw`: a frame with each face's box, label and probability bars (bars only where they hide no face);
- `Drawing`: that picture drawn once per frame, on first use, and shared by every output that shows it
  (--record, the window, the browser preview);
- `draw_timeline`: each track's emotion probabilities over time (--timeline FILE.png).
"""
from __future__ import annotations

import threading

import cv2
import numpy as np

from fer_edge.runtime.model.preprocess import as_bgr

COLOURS = [(80, 200, 80), (60, 160, 255), (255, 140, 60), (200, 80, 200), (60, 220, 220), (240, 240, 80)]
UNSURE = (160, 160, 160)  # a face the model is not sure of (FaceResult.sure): neutral grey, its tag ends in "?"
# one colour per label in the timeline, in label order (BGR); more labels than colours reuse them
LABEL_COLOURS = [(60, 60, 220), (40, 140, 60), (160, 60, 160), (40, 200, 240), (200, 120, 40), (220, 200, 60),
                 (150, 150, 150), (90, 90, 30)]


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _colour(face) -> tuple:
    return COLOURS[face.track % len(COLOURS)] if getattr(face, "sure", True) else UNSURE


def draw(image: np.ndarray, result, bars: bool = True) -> np.ndarray:
    """A copy of a BGR frame with each face's box, its label on a filled tag, and probability bars beside
    the box. In a crowd the bars go right or left of a face where they cover no other face and no other
    face's bars, and are left out where neither side is free: every face stays visible and every label
    readable."""
    out = image.copy()
    fh, fw = out.shape[:2]
    font, fs = cv2.FONT_HERSHEY_SIMPLEX, max(0.35, min(fw, fh) / 900)
    th = max(1, int(round(fs * 2)))
    line = int(22 * fs / 0.5)
    width = int(110 * fs / 0.5)
    boxes = [(x, y, x + w, y + h) for x, y, w, h in (f.box for f in result.faces)]
    taken = []  # panels placed so far
    for n, face in enumerate(result.faces):
        x, y, w, h = face.box
        colour = _colour(face)
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, th + 1)
        if bars and face.probs:
            rows = min(len(face.probs), max(0, (fh - max(y, 0)) // line))
            others = boxes[:n] + boxes[n + 1:] + taken
            for bx in (x + w + 6, x - width - 6):  # right of the box, else left
                panel = (bx, max(y, 0), bx + width, max(y, 0) + rows * line)
                if rows and bx >= 0 and panel[2] <= fw and not any(_overlaps(panel, o) for o in others):
                    taken.append(panel)
                    for i, (label, p) in enumerate(list(face.probs.items())[:rows]):
                        by = panel[1] + i * line
                        cv2.rectangle(out, (bx, by + 2), (bx + int(width * p), by + line - 2), colour, -1)
                        cv2.putText(out, f"{label} {p:.2f}", (bx + 2, by + line - 5), font, fs * 0.8,
                                    (255, 255, 255), th, cv2.LINE_AA)
                    break
    tags = []
    for face in result.faces:  # tags last: on top of any box or bar
        x, y, w, h = face.box
        colour = _colour(face)
        text = f"#{face.track} {face.label} {face.probs.get(face.label, 0.0):.0%}{'' if face.sure else ' ?'}"
        (tw, t_h), base = cv2.getTextSize(text, font, fs * 1.2, th + 1)
        tx = min(max(x, 0), max(0, fw - tw - 4))
        spots = [ty for ty in (y - 6, y + t_h + 6, y + h - base - 2) if ty - t_h - 4 >= 0 and ty + base <= fh]
        # above the box, else inside its top, else inside its bottom: the first spot no other tag covers
        rects = [(tx, ty - t_h - 4, tx + tw + 4, ty + base) for ty in spots or [t_h + 4]]
        rect = next((r for r in rects if not any(_overlaps(r, t) for t in tags)), rects[0])
        tags.append(rect)
        ty = rect[1] + t_h + 4
        cv2.rectangle(out, rect[:2], rect[2:], colour, -1)
        cv2.putText(out, text, (tx + 2, ty), font, fs * 1.2, (0, 0, 0), th + 1, cv2.LINE_AA)
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
