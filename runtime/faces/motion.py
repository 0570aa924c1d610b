"""The motion gate: did anything change in the picture, and where?

Each grey frame is shrunk to a small copy (`WIDTH` pixels wide, area-averaged: the average of ~40 camera
pixels, which flattens sensor noise) and compared with a background that follows the scene slowly (a running
average). The difference has its mean taken off (a light that dims or brightens the whole picture moves
every pixel alike), and the pixels still differing by more than `THRESHOLD` grey levels are the moving ones.
About 0.1 ms per frame at 640x480 (grey conversion included); the answer is a mask on the small copy, with
`scale` to frame pixels.
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
        self.scale = 1.0  # frame pixels per small-copy pixel

    def reset(self) -> None:
        self.background = None

    def small(self, gray: np.ndarray) -> np.ndarray:
        """The grey frame as a small float copy: area-averaged by a whole factor (OpenCV's fast path)."""
        h, w = gray.shape[:2]
        k = max(1, -(-w // self.width))
        self.scale = float(k)
        small = gray[:max(k, h // k * k), :w // k * k]
        if k > 1:
            small = cv2.resize(small, (w // k, max(1, h // k)), interpolation=cv2.INTER_AREA)
        return small.astype(np.float32)

    def update(self, gray: np.ndarray) -> np.ndarray:
        """The mask of moving pixels on the small copy (all False on the first frame: nothing to compare)."""
        small = self.small(gray)
        if self.background is None or self.background.shape != small.shape:
            self.background = small
            return np.zeros(small.shape, bool)
        diff = cv2.subtract(small, self.background)
        shift = cv2.mean(diff)[0]  # the whole picture brighter or darker is light, not motion
        cv2.accumulateWeighted(small, self.background, ADAPT)
        return cv2.absdiff(diff, shift) > self.threshold

    def moving(self, mask: np.ndarray) -> bool:
        return np.count_nonzero(mask) >= self.min_pixels

    def outside(self, mask: np.ndarray, boxes) -> np.ndarray:
        """The moving pixels that lie outside the given frame boxes (x, y, w, h)."""
        rest, k = mask.copy(), self.scale
        for x, y, w, h in boxes:
            rest[max(0, int(y // k)):max(0, int(np.ceil((y + h) / k))),
                 max(0, int(x // k)):max(0, int(np.ceil((x + w) / k)))] = False
        return rest

    def rect(self, mask: np.ndarray) -> tuple[int, int, int, int]:
        """The frame rectangle (x, y, w, h) around a mask's moving pixels (at least one)."""
        ys, xs = np.nonzero(mask)
        k = self.scale
        return (int(xs.min() * k), int(ys.min() * k), int((xs.max() + 1 - xs.min()) * k),
                int((ys.max() + 1 - ys.min()) * k))
