"""Training input: augmentation of uint8 faces, then the one preprocessing contract.

A `keras.utils.PyDataset` (backend-agnostic, so the same code trains on TensorFlow, on a GPU, or on
Keras's PyTorch backend; on a 2-core x86 CPU with torch 2.13, a vgg-lite distillation epoch ran about 5x
slower on the PyTorch backend than on TensorFlow 2.21, so TensorFlow is the default).
Every batch draws its randomness from (seed, epoch, batch index), so a run is repeatable and a resumed
run sees the same augmentations it would have seen without the interruption.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fer_edge.runtime.model.preprocess import PreprocessSpec, preprocess


@dataclass(frozen=True)
class Augment:
    flip: bool = True
    max_rotate: float = 10.0  # degrees
    max_shift: float = 0.1  # fraction of the side
    max_zoom: float = 0.1  # scale in [1 - z, 1 + z]
    brightness: float = 0.2  # +- fraction of 255
    contrast: float = 0.2  # scale in [1 - c, 1 + c] around the mean
    erase: float = 0.25  # probability of erasing one random rectangle (random erasing)
    blur: float = 0.0  # probability of a Gaussian blur (sigma 0.5-1.5): an out-of-focus or moving face
    low_res: float = 0.0  # probability of shrinking to 16-32 px and back: a small, far face a camera sees

    @classmethod
    def strong(cls) -> "Augment":
        """Wider poses, framings and image quality than FER2013's tight, sharp crops: what a detector's crop of a
        face across a room looks like. Meant for teaching (--teacher-views): the teacher labels each view, so
        the student learns the teacher's answer on faces further from FER2013 than its own labels reach."""
        return cls(max_rotate=20.0, max_shift=0.15, max_zoom=0.2, brightness=0.3, contrast=0.35, erase=0.3,
                   blur=0.2, low_res=0.2)

    def __call__(self, faces: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n, h, w = faces.shape[:3]
        out = np.empty_like(faces)
        for i in range(n):
            angle = rng.uniform(-self.max_rotate, self.max_rotate)
            scale = rng.uniform(1 - self.max_zoom, 1 + self.max_zoom)
            m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
            m[:, 2] += rng.uniform(-self.max_shift, self.max_shift, 2) * (w, h)
            if self.flip and rng.random() < 0.5:
                m[0] = -m[0]
                m[0, 2] += w - 1
            out[i] = cv2.warpAffine(faces[i], m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        for i in np.flatnonzero(rng.random(n) < self.blur):
            out[i] = cv2.GaussianBlur(out[i], (0, 0), rng.uniform(0.5, 1.5))
        for i in np.flatnonzero(rng.random(n) < self.low_res):
            side = int(rng.integers(16, 33))
            small = cv2.resize(out[i], (side, side), interpolation=cv2.INTER_AREA)
            out[i] = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        x = out.astype(np.float32)
        mean = x.mean(axis=(1, 2), keepdims=True)
        c = rng.uniform(1 - self.contrast, 1 + self.contrast, (n, 1, 1))
        b = rng.uniform(-self.brightness, self.brightness, (n, 1, 1)) * 255
        x = (x - mean) * c + mean + b
        for i in np.flatnonzero(rng.random(n) < self.erase):
            eh, ew = rng.integers(h // 8, h // 3, 2)
            y0, x0 = rng.integers(0, h - eh), rng.integers(0, w - ew)
            x[i, y0:y0 + eh, x0:x0 + ew] = rng.uniform(0, 255)
        return np.clip(x, 0, 255).astype(np.uint8)


def class_weights(labels: np.ndarray, k: int, mode: str) -> np.ndarray:
    """Per-class loss weights: 'none', 'balanced' (inverse frequency) or 'sqrt' (its square root, milder)."""
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    if mode == "none":
        w = np.ones(k)
    else:
        w = counts.sum() / (k * np.maximum(counts, 1))
        if mode == "sqrt":
            w = np.sqrt(w)
    return (w / (w * counts).sum() * counts.sum()).astype(np.float32)  # mean weight over samples is 1


def fixed_views(faces: np.ndarray, count: int, seed: int, augment: Augment) -> np.ndarray:
    """`count` augmented copies of every face (count, N, H, W), the same for the same seed: the views a teacher
    labels once, so that the student is taught on exactly what it sees (consistent teaching)."""
    return np.stack([augment(faces, np.random.default_rng([seed, 7919, v])) for v in range(count)])


def make_sequence(images, targets, weights, spec: PreprocessSpec, batch_size: int, seed: int,
                  augment: Augment | None, **pydataset_kwargs):
    """Batches of (faces, targets, weights). `images` (N, H, W) are augmented afresh every epoch; `images`
    (K, N, H, W) with `targets` (K, N, C) are fixed views (`fixed_views`): every face comes as one of its K
    views, mirrored at random, with that view's targets (mirroring keeps flip-averaged targets exact)."""
    import keras

    views = images.ndim == 4
    n = images.shape[1] if views else len(images)

    class FaceSequence(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(**pydataset_kwargs)
            self.epoch = 0

        def __len__(self):
            return int(np.ceil(n / batch_size))

        def _order(self):
            return np.random.default_rng([seed, self.epoch]).permutation(n)

        def __getitem__(self, idx):
            rng = np.random.default_rng([seed, self.epoch, idx])
            pick = self._order()[idx * batch_size:(idx + 1) * batch_size]
            if views:
                v = rng.integers(0, len(images), len(pick))
                faces, y = images[v, pick], targets[v, pick]
                mirror = rng.random(len(pick)) < 0.5
                faces[mirror] = faces[mirror][:, :, ::-1]
                return preprocess(faces, spec), y, weights[pick]
            faces = images[pick]
            if augment is not None:
                faces = augment(faces, rng)
            return preprocess(faces, spec), targets[pick], weights[pick]

        def on_epoch_end(self):
            self.epoch += 1

    return FaceSequence()
