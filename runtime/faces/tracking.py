"""Face tracks across frames: IoU matching, per-track EMA smoothing, and box following between detections.

A detector run gives boxes; `Tracker.update` matches them to the live tracks by IoU (greedy, highest
first), opens a track for each unmatched box and keeps an unmatched track alive for `max_missed`
detector runs at its last box (a face the detector misses for a frame or two does not blink out); a
track matched on one run only ends at its first miss, so a one-off false box is not carried on.
On frames where the detector does not run (`--detect-every K`), `Tracker.follow` moves every box by
template matching a grey patch from the previous frame in a window around it: ~0.1 ms per face.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fer_edge.runtime.core.boxes import FaceBox, iou, nested

FOLLOW_SIDE = 32  # template side in pixels after shrinking: enough texture to match, cheap to search
SEARCH = 0.5  # search window = box grown by this fraction of its size on every side
MIN_MATCH = 0.5  # normalised correlation below this: the face was lost, keep the box where it was
FLAT = 2.0  # grey-level standard deviation below which a patch has no picture to follow


@dataclass
class Track:
    id: int
    box: FaceBox
    missed: int = 0  # detector runs in a row without a matching box
    hits: int = 1
    probs: np.ndarray | None = None  # smoothed probabilities


class Tracker:
    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 3, smooth: float = 0.0):
        if not 0.0 <= smooth < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), found {smooth}")
        self.iou_threshold, self.max_missed, self.smooth = iou_threshold, max_missed, smooth
        self.tracks: list[Track] = []
        self.finished: list[Track] = []  # tracks that ended, kept for the summary
        self._next_id = 1
        self._prev_gray: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the live tracks (a new, unrelated image or a reconnected camera)."""
        self.finished.extend(self.tracks)
        self.tracks = []
        self._prev_gray = None

    def update(self, boxes: list[FaceBox], gray: np.ndarray | None = None, checked: set | None = None) -> list[Track]:
        """Match a detector run's boxes to tracks; return the tracks to report for this frame. `checked`: the ids
        of the tracks the detector looked for (a region search); the others count no miss (default: all)."""
        pairs = sorted(((iou(t.box.box, b.box), ti, bi) for ti, t in enumerate(self.tracks)
                        for bi, b in enumerate(boxes)), reverse=True)
        used_t, used_b = set(), set()
        for score, ti, bi in pairs:
            if score < self.iou_threshold:
                break
            if ti in used_t or bi in used_b:
                continue
            used_t.add(ti)
            used_b.add(bi)
            t = self.tracks[ti]
            t.box, t.missed, t.hits = boxes[bi], 0, t.hits + 1
        alive = []
        for ti, t in enumerate(self.tracks):
            if ti not in used_t and (checked is None or t.id in checked):
                t.missed += 1
            # a track seen on one detector run only is dropped at its first miss: a one-off false box must not
            # be reported for max_missed more runs, while a confirmed face survives a missed detection or two
            (alive if t.missed <= (self.max_missed if t.hits > 1 else 0) else self.finished).append(t)
        for bi, b in enumerate(boxes):
            # a new box inside a face already tracked (a mouth, on a frame where the face itself was missed)
            if bi not in used_b and not any(nested(b, t.box) for t in alive):
                alive.append(Track(self._next_id, b))
                self._next_id += 1
        self.tracks = alive
        self._prev_gray = gray
        return list(self.tracks)

    def follow(self, gray: np.ndarray) -> list[Track]:
        """Move every track's box to where its patch from the previous frame matches best in this one."""
        prev, self._prev_gray = self._prev_gray, gray
        if prev is None or prev.shape != gray.shape:
            return list(self.tracks)
        for t in self.tracks:
            moved = follow_box(prev, gray, t.box)
            if moved is not None:
                t.box = moved
        return list(self.tracks)

    def smooth_probs(self, track: Track, probs: np.ndarray) -> np.ndarray:
        """EMA over the track's frames: p = smooth * previous + (1 - smooth) * new."""
        if track.probs is None or self.smooth == 0.0:
            track.probs = probs.astype(np.float32, copy=True)
        else:
            track.probs = self.smooth * track.probs + (1.0 - self.smooth) * probs
        return track.probs

    def all_tracks(self) -> list[Track]:
        return self.finished + self.tracks


def follow_box(prev: np.ndarray, gray: np.ndarray, box: FaceBox) -> FaceBox | None:
    """The box moved to where its patch of `prev` matches `gray` best (landmarks moved alike); None: lost."""
    x, y, w, h = box.box
    scale = FOLLOW_SIDE / max(w, h)
    if scale >= 1.0:
        scale = 1.0
    tpl = prev[y:y + h, x:x + w]
    sx0, sy0 = max(0, int(x - SEARCH * w)), max(0, int(y - SEARCH * h))
    sx1, sy1 = min(gray.shape[1], int(x + w + SEARCH * w)), min(gray.shape[0], int(y + h + SEARCH * h))
    win = gray[sy0:sy1, sx0:sx1]
    if tpl.size == 0 or win.shape[0] <= h or win.shape[1] <= w:
        return None  # box at the frame edge with no room to search: keep it
    if scale < 1.0:
        tpl = cv2.resize(tpl, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        win = cv2.resize(win, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    if win.shape[0] < tpl.shape[0] or win.shape[1] < tpl.shape[1]:
        return None
    if float(cv2.meanStdDev(tpl)[1][0, 0]) < FLAT:  # a featureless patch (a blank frame) matches anywhere
        return None
    res = cv2.matchTemplate(win, tpl, cv2.TM_CCOEFF_NORMED)
    _, best, _, (bx, by) = cv2.minMaxLoc(res)
    if not np.isfinite(best) or best < MIN_MATCH:
        return None
    return box.moved(sx0 + bx / scale - x, sy0 + by / scale - y, gray.shape)  # landmarks move with it
