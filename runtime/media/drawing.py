"""Pictures of results, drawn with OpenCV only (no matplotlib on a device).

- `draw`: a frame with each face's box, its label and confidence off the face, and probability bars where a
  whole panel fits beside it (`layout` says where; `face_look` is the one place a face's colour and text are chosen);
- `Drawing`: that picture drawn once per frame, on first use, and shared by every output that shows it
  (--record, the window, the browser preview);
- `draw_timeline`: each track's emotion probabilities over time (--timeline FILE.png).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from fer_edge.runtime.model.preprocess import as_bgr

FONT = cv2.FONT_HERSHEY_SIMPLEX
COLOURS = [(80, 200, 80), (60, 160, 255), (255, 140, 60), (200, 80, 200), (60, 220, 220), (240, 240, 80)]
UNSURE = (160, 160, 160)  # a face the model is not sure of (FaceResult.sure): neutral grey, its tag ends in "?"
# one colour per label in the timeline and the preview's charts, in label order (BGR); more labels reuse them
LABEL_COLOURS = [(60, 60, 220), (40, 140, 60), (160, 60, 160), (40, 200, 240), (200, 120, 40), (220, 200, 60),
                 (150, 150, 150), (90, 90, 30)]


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def face_look(face) -> tuple[tuple[int, int, int], str]:
    """The one place a face's colour (BGR) and tag text are chosen: its track's colour, or grey and a "?" when
    the model is not sure of it (FaceResult.sure)."""
    sure = getattr(face, "sure", True)
    colour = COLOURS[face.track % len(COLOURS)] if sure else UNSURE
    return colour, f"#{face.track} {face.label} {face.probs.get(face.label, 0.0):.0%}{'' if sure else ' ?'}"


@dataclass(frozen=True)
class Style:
    """Text sizes for a frame: a tag readable on a 640-wide frame, growing with bigger ones."""
    tag_scale: float
    bar_scale: float
    thickness: int
    line: int  # one bar row's height
    bar_width: int

    @classmethod
    def for_frame(cls, width: int, height: int) -> Style:
        tag = max(0.5, min(width, height) / 700)
        bar = max(0.4, tag * 0.8)
        (w, h), base = cv2.getTextSize("surprise 0.00", FONT, bar, 1)
        return cls(tag, bar, 1 if tag < 0.9 else 2, h + base + 5, w + 8)


@dataclass(frozen=True)
class Placed:
    """Where one face's overlay goes: its tag (label and confidence) and its bars (None: no room)."""
    face: object
    colour: tuple[int, int, int]
    text: str
    tag: tuple[int, int, int, int]  # x0, y0, x1, y1
    panel: tuple[int, int, int, int] | None


def _tag_spot(box, size, frame, avoid) -> tuple[int, int, int, int]:
    """Above the face, else below it, where the tag covers no face and no other tag; failing that the first of
    those spots inside the frame that covers no face, and only then the top of the face itself."""
    (x, y, w, h), (tw, t_h), (fw, fh) = box, size, frame
    tx = min(max(x, 0), max(0, fw - tw))
    spots = [(tx, y - t_h - 2, tx + tw, y - 2), (tx, y + h + 2, tx + tw, y + h + 2 + t_h)]
    inside = [r for r in spots if r[1] >= 0 and r[3] <= fh]
    faces, tags = avoid
    for others in (faces + tags, faces):
        spot = next((r for r in inside if not any(_overlaps(r, o) for o in others)), None)
        if spot:
            return spot
    top = min(max(y, 0), max(0, fh - t_h))
    return tx, top, tx + tw, top + t_h


def _panel_spot(box, tag, rows: int, style: Style, frame, taken) -> tuple[int, int, int, int] | None:
    """Right of the face (or of its tag, when the tag is wider), else left of it, with every row, inside the
    frame and over nothing already placed."""
    (x, y, w, h), (fw, fh), bw = box, frame, style.bar_width
    ph = rows * style.line
    top = min(max(y, 0), fh - ph)
    for px in dict.fromkeys((x + w + 4, max(x + w, tag[2]) + 4, x - bw - 4, min(x, tag[0]) - bw - 4)):
        panel = (px, top, px + style.bar_width, top + ph)
        if top >= 0 and px >= 0 and panel[2] <= fw and not any(_overlaps(panel, o) for o in taken):
            return panel
    return None


def layout(result, width: int, height: int, bars: bool = True) -> list[Placed]:
    """Each face's tag and bars: tags first (every face gets one, off the faces where there is room), then
    bars where a whole panel fits beside its face over no face, tag or other panel."""
    style = Style.for_frame(width, height)
    boxes = [(x, y, x + w, y + h) for x, y, w, h in (f.box for f in result.faces)]
    tags, looks = [], []
    for face in result.faces:
        colour, text = face_look(face)
        (tw, t_h), base = cv2.getTextSize(text, FONT, style.tag_scale, style.thickness)
        tags.append(_tag_spot(face.box, (tw + 6, t_h + base + 6), (width, height), (boxes, tags)))
        looks.append((colour, text))
    placed, panels = [], []
    for face, (colour, text), tag in zip(result.faces, looks, tags):
        panel = None
        if bars and face.probs:
            panel = _panel_spot(face.box, tag, len(face.probs), style, (width, height), boxes + tags + panels)
            panels += [panel] if panel else []
        placed.append(Placed(face, colour, text, tag, panel))
    return placed


def _draw_bars(out: np.ndarray, p: Placed, style: Style) -> None:
    x0, y0, x1, y1 = p.panel
    out[y0:y1, x0:x1] = out[y0:y1, x0:x1] // 3  # darkened behind, so the white text reads on any picture
    for i, (label, prob) in enumerate(p.face.probs.items()):
        by = y0 + i * style.line
        cv2.rectangle(out, (x0, by + 2), (x0 + int((x1 - x0) * prob), by + style.line - 2), p.colour, -1)
        cv2.putText(out, f"{label} {prob:.2f}", (x0 + 3, by + style.line - 5), FONT, style.bar_scale,
                    (255, 255, 255), 1, cv2.LINE_AA)


def draw(image: np.ndarray, result, bars: bool = True) -> np.ndarray:
    """A copy of a BGR frame with each face's box, its label and confidence on a filled tag above the face
    (below it when there is no room), and its probability bars beside the face where a whole panel fits over
    no face and no tag: every face stays visible and every tag readable, in a crowd too."""
    out = image.copy()
    style = Style.for_frame(out.shape[1], out.shape[0])
    placed = layout(result, out.shape[1], out.shape[0], bars)
    for p in placed:
        x, y, w, h = p.face.box
        cv2.rectangle(out, (x, y), (x + w, y + h), p.colour, style.thickness + 1)
    for p in placed:
        if p.panel:
            _draw_bars(out, p, style)
    for p in placed:  # tags last: on top of everything
        x0, y0, x1, y1 = p.tag
        cv2.rectangle(out, (x0, y0), (x1, y1), p.colour, -1)
        (_, t_h), base = cv2.getTextSize(p.text, FONT, style.tag_scale, style.thickness)
        cv2.putText(out, p.text, (x0 + 3, y1 - base - 3), FONT, style.tag_scale, (0, 0, 0), style.thickness,
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
                  row_height: int = 170, frames: dict[int, int] | None = None) -> np.ndarray:
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
        n = (frames or {}).get(track, len(points))  # points may each average several frames
        cv2.putText(img, f"track {track}: {n} frames", (left, y0 - 8), font, 0.5, (30, 30, 30), 1,
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
