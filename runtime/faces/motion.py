"""The motion gate: did anything change in the picture, and where?

Each grey frame is shrunk to a small copy (at most `WIDTH` pixels wide, halved by area averaging: the average
of ~64 camera pixels at 640 wide, which flattens sensor noise) and compared with a background that follows
the scene slowly (a running average). The difference has its mean taken off (a light that dims or brightens
the whole picture moves every pixel alike), and the pixels still differing by more than `THRESHOLD` grey
levels are the moving ones. The answer is a mask on the small copy, with `scale` to frame pixels. The small
copy is also kept (`current`), so the schedule can tell whether the picture changed since an earlier one.
"""
from __future__ import annotations

import cv2
import numpy as np

WIDTH = 96  # pixels of the small grey copy
THRESHOLD = 10.0  # grey levels above the scene-wide change
ADAPT = 0.3  # weight of the new frame in the background (a moved object settles in ~6 frames)
MIN_PIXELS = 2  # fewer moving pixels than this (on the small copy) is noise


class MotionGate:
    def __init__(self, width: int = WIDTH, threshold: float = THRESHOLD, min_pixels: int = MIN_PIXELS):
        self.width, self.threshold, self.min_pixels = width, threshold, min_pixels
        self.background: np.ndarray | None = None
        self.current: np.ndarray | None = None  # the latest frame's small copy
        self.scale = 1.0  # frame pixels per small-copy pixel

    def reset(self) -> None:
        self.background = self.current = None

    def small(self, gray: np.ndarray) -> np.ndarray:
        """The grey frame as a small float copy: halved by area averaging (OpenCV's fastest path, ~2x cheaper than
        one resize by a whole factor) until it is at most `width` pixels wide."""
        small, k = gray, 1
        while small.shape[1] > self.width and min(small.shape[:2]) >= 2:
            h, w = small.shape[0] // 2 * 2, small.shape[1] // 2 * 2
            small = cv2.resize(small[:h, :w], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
            k *= 2
        self.scale = float(k)
        return small.astype(np.float32)

    def update(self, gray: np.ndarray) -> np.ndarray:
        """The mask of moving pixels on the small copy (all False on the first frame: nothing to compare)."""
        small = self.current = self.small(gray)
        if self.background is None or self.background.shape != small.shape:
            self.background = small.copy()
            return np.zeros(small.shape, bool)
        mask = self.differing(small, self.background)
        cv2.accumulateWeighted(small, self.background, ADAPT)
        return mask

    def differing(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The mask of pixels where two small copies differ by more than the threshold, once the whole picture's
        change is taken off (the whole picture brighter or darker is light, not motion)."""
        diff = cv2.subtract(a, b)
        return cv2.absdiff(diff, cv2.mean(diff)[0]) > self.threshold

    def changed_since(self, snapshot: np.ndarray | None, outside=(), within: tuple | None = None) -> bool:
        """Does the latest frame differ from an earlier small copy (`current` then), outside the given frame boxes
        or within one? A change too slow for the running background to call motion (a light coming on slowly, a
        face turning into view by degrees) still adds up against the snapshot."""
        if snapshot is None or self.current is None or snapshot.shape != self.current.shape:
            return True
        if within:  # only that part compared (its own light change taken off)
            part = self.within(self.current, within)
            return part.size > 0 and self.moving(self.differing(part, self.within(snapshot, within)))
        return self.moving(self.outside(self.differing(self.current, snapshot), outside))

    def moving(self, mask: np.ndarray) -> bool:
        return np.count_nonzero(mask) >= self.min_pixels

    def cells(self, box: tuple) -> tuple[slice, slice]:
        """The rows and columns of the small copy under a frame box (x, y, w, h), clipped at its top and left."""
        x, y, w, h = box
        k = self.scale
        return (slice(max(0, int(y // k)), max(0, int(np.ceil((y + h) / k)))),
                slice(max(0, int(x // k)), max(0, int(np.ceil((x + w) / k)))))

    def within(self, mask: np.ndarray, box: tuple) -> np.ndarray:
        """The part of a mask under a frame box (x, y, w, h)."""
        return mask[self.cells(box)]

    def outside(self, mask: np.ndarray, boxes) -> np.ndarray:
        """The moving pixels that lie outside the given frame boxes (x, y, w, h)."""
        rest = mask.copy()
        for box in boxes:
            rest[self.cells(box)] = False
        return rest

    def rect(self, mask: np.ndarray) -> tuple[int, int, int, int]:
        """The frame rectangle (x, y, w, h) around a mask's moving pixels (at least one)."""
        ys, xs = np.nonzero(mask)
        k = self.scale
        return (int(xs.min() * k), int(ys.min() * k), int((xs.max() + 1 - xs.min()) * k),
                int((ys.max() + 1 - ys.min()) * k))
