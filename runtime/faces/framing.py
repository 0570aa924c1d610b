"""Faces cut out the way the classifier saw them in training: FER2013's registered, tight crops.

A detector's box is not a FER2013 crop: boxes differ by detector, sit higher or lower, and a tilted head
stays tilted. Where the detector gives eye and mouth landmarks (YuNet, BlazeFace), `face_crops` turns
the face so the eyes are (nearly) level and cuts a square whose scale and offset put the eyes and mouth
where FER2013 faces have them. The constants come from running YuNet on upscaled FER2013 Training faces
(benchmarks/fer2013_framing.py, results in benchmarks/fer2013_framing.json; 2,874 of 3,000 faces found):
in a 48x48 FER2013 face the median eye midpoint sits at (23.8, 18.2), the eyes 17.2 pixels apart and the
mouth 17.8 pixels from the eye midpoint; half the faces lie within about +-1.3 pixels of that position and
+-9% of that scale, and their eyes within 4 degrees of level, so FER2013 is registered, loosely.

Faces without landmarks (Haar, or `--framing box`) are cut at their box grown by the model's crop margin,
as before. This module is the one place faces are cut: the stream pipeline, the HTTP API and fer-explain
all call `face_crops`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import cv2
import numpy as np

from fer_edge.runtime.core.boxes import FaceBox
from fer_edge.runtime.model.preprocess import PreprocessSpec, crop_faces

MAX_UPSCALE = 4  # an aligned crop is cut at the face's own resolution, at most 4x the model input


@dataclass(frozen=True)
class Framing:
    """Where FER2013 puts a face in its crop, as fractions of the crop's width (x) and height (y)."""

    eye_x: float = 0.4966  # eye midpoint, from the left
    eye_y: float = 0.3800  # eye midpoint, from the top
    eye_dist: float = 0.3585  # distance between the eye centres
    eye_mouth: float = 0.3711  # eye midpoint to mouth midpoint
    # FER2013's own eyes are tilted by up to ~4 degrees either way (its quartiles), so only the tilt beyond
    # that is turned away: an upright face is not rotated by the landmarks' noise, and the angle the crop
    # is turned by changes smoothly from frame to frame
    level_beyond: float | None = 4.0  # degrees; None: never turn
    # the face's size is judged from the eye-mouth distance: on FER2013 it is measured alike with and without a
    # border around the face (0.371 and 0.379 of the crop), where the eye distance moves twice as much (0.359
    # and 0.376). On tfeid-dev the four ways lie within 2.4 points (57.6-60.0%, benchmarks/framing_accuracy.md), too
    # close to choose by; the stability of the measurement decides
    size_from: str = "mouth"  # "mouth" | "eyes" | "mean" | "max"

    def crop_side(self, eye_dist: float, eye_mouth: float) -> float:
        """The side of the FER2013-like crop, in frame pixels, for a face with these distances."""
        by_eyes, by_mouth = eye_dist / self.eye_dist, eye_mouth / self.eye_mouth
        return {"max": max, "eyes": lambda a, b: a, "mouth": lambda a, b: b,
                "mean": lambda a, b: (a + b) / 2}[self.size_from](by_eyes, by_mouth)

    def describe(self) -> str:
        """One sentence for a model card or a summary."""
        turn = f"eye tilt beyond {self.level_beyond:g} degrees levelled, " if self.level_beyond is not None else ""
        by = {"mouth": "eye-mouth distance", "eyes": "eye distance", "mean": "mean of both distances",
              "max": "larger of both distances"}[self.size_from]
        return (f"{turn}eye midpoint at ({self.eye_x:.3f}, {self.eye_y:.3f}) of the crop, crop side from the {by} "
                f"(eyes {self.eye_dist:.3f} apart and mouth {self.eye_mouth:.3f} below them, as fractions of the side: "
                f"FER2013's median framing, measured with YuNet landmarks); faces without landmarks: the detector's box")

    def to_dict(self) -> dict:
        return asdict(self)


FER2013 = Framing()
FRAMINGS = {"fer2013": FER2013, "box": None}  # --framing: landmarks -> FER2013's framing, or the box only


def face_geometry(landmarks, framing: Framing) -> tuple[float, float, float, float]:
    """(eye midpoint x, y, eye-line angle in degrees, FER2013-like crop side in pixels) from 5 landmarks."""
    (rx, ry), (lx, ly), _, (mrx, mry), (mlx, mly) = landmarks[:5]
    ex, ey = (rx + lx) / 2, (ry + ly) / 2
    mx, my = (mrx + mlx) / 2, (mry + mly) / 2
    side = framing.crop_side(math.hypot(lx - rx, ly - ry), math.hypot(mx - ex, my - ey))
    return ex, ey, math.degrees(math.atan2(ly - ry, lx - rx)), side


def align_matrix(landmarks, framing: Framing, out_w: int, out_h: int) -> np.ndarray:
    """The 2x3 affine map from frame pixels to an out_w x out_h crop framed like FER2013."""
    ex, ey, angle, side = face_geometry(landmarks, framing)
    limit = framing.level_beyond
    turn = 0.0 if limit is None else math.copysign(max(0.0, abs(angle) - limit), angle)
    m = cv2.getRotationMatrix2D((ex, ey), turn, out_w / max(side, 1e-6))
    m[0, 2] += framing.eye_x * out_w - ex
    m[1, 2] += framing.eye_y * out_h - ey
    return m


def face_crops(image: np.ndarray, faces: Sequence[FaceBox], spec: PreprocessSpec,
               framing: Framing | None = FER2013) -> list[np.ndarray]:
    """One crop per face, ready for `preprocess`: warped onto the model's own 5-point template where its spec
    says so, else FER2013-framed where there are landmarks, else the box.

    `image` is the frame in grey (a grey model's: cheaper to warp) or BGR (a colour model's: `crop_source`).
    """
    crops = []
    for face in faces:
        if spec.align == "5point" and face.landmarks is not None:
            crops.append(_template_aligned(image, face.landmarks, spec))
            continue
        if framing is not None and face.landmarks is not None:
            crops.append(_aligned(image, face.landmarks, framing, spec))
            continue
        crops += crop_faces(image, [face.box], spec)
    return crops


def _aligned(image: np.ndarray, landmarks, framing: Framing, spec: PreprocessSpec) -> np.ndarray:
    h, w = spec.size
    # cut at the face's own resolution (never below the model input, at most MAX_UPSCALE times it), so
    # preprocess shrinks it with INTER_AREA like any other crop instead of the warp aliasing a large face
    out_w = int(min(max(round(face_geometry(landmarks, framing)[3]), w), MAX_UPSCALE * w))
    out_h = max(1, round(out_w * h / w))
    m = align_matrix(landmarks, framing, out_w, out_h)
    return cv2.warpAffine(image, m, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_source(frame_bgr: np.ndarray, gray: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The picture a model's faces are cut from: the grey frame for a grey model, the colour one otherwise."""
    return gray if spec.colour == "grey" else frame_bgr


def template_points(spec: PreprocessSpec, out_w: int, out_h: int) -> np.ndarray:
    """The spec's five template points in pixels of an out_w x out_h crop, shrunk towards its centre by the margin."""
    t = np.asarray(spec.template, np.float64)
    t = 0.5 + (t - 0.5) * (1.0 - 2.0 * spec.align_margin)
    return (t * np.array([out_w, out_h])).astype(np.float32)


def _template_aligned(image: np.ndarray, landmarks, spec: PreprocessSpec) -> np.ndarray:
    """The face warped by the similarity (rotation, uniform scale, shift) that best puts its five landmarks on
    the template, cut at up to MAX_UPSCALE times the model input so `preprocess` shrinks it like any crop."""
    h, w = spec.size
    src = np.asarray(landmarks[:5], np.float32)
    eye_side = float(np.hypot(*(src[1] - src[0])))
    tmpl = template_points(spec, w, h)
    k = int(min(max(round(eye_side / max(float(np.hypot(*(tmpl[1] - tmpl[0]))), 1e-6)), 1), MAX_UPSCALE))
    m = similarity(src, template_points(spec, w * k, h * k))
    return cv2.warpAffine(image, m, (w * k, h * k), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 least-squares similarity map from points `src` to `dst` (Umeyama's, without reflection);
    points all on one spot give a pure shift."""
    ms, md = src.mean(0), dst.mean(0)
    s0, d0 = src - ms, dst - md
    norm = float((s0 ** 2).sum())
    a = float((s0 * d0).sum()) / norm if norm > 0 else 1.0
    b = float((s0[:, 0] * d0[:, 1] - s0[:, 1] * d0[:, 0]).sum()) / norm if norm > 0 else 0.0
    r = np.array([[a, -b], [b, a]])
    return np.hstack([r, (md - r @ ms)[:, None]]).astype(np.float64)
