"""The preprocessing contract, defined once.

face crop -> grayscale -> resize to the model's input -> optional histogram equalisation -> scale to
the model's value range. Training, calibration, conversion parity checks and the device runtime all
call `preprocess`; the spec that parameterises it travels inside every exported model's metadata.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import cv2
import numpy as np

from fer_edge.runtime.core.boxes import expand_box
from fer_edge.runtime.core.errors import FerEdgeError

VALUE_RANGES = {"0,1": (0.0, 1.0), "-1,1": (-1.0, 1.0), "0,255": (0.0, 255.0)}


@dataclass(frozen=True)
class PreprocessSpec:
    size: tuple[int, int] = (48, 48)  # (height, width) of the model input
    channels: int = 1  # 1 = grey; 3 = grey replicated to 3 channels (models trained on RGB-shaped input)
    value_range: tuple[float, float] = (0.0, 1.0)  # what 0 and 255 map to
    equalize: bool = False  # cv2.equalizeHist after resizing
    crop_margin: float = 0.0  # grow detector boxes by this fraction of their size on every side

    def __post_init__(self):
        size = tuple(int(v) for v in self.size)
        if len(size) != 2 or min(size) < 8 or max(size) > 1024:
            raise FerEdgeError(f"preprocessing size must be (height, width) between 8 and 1024, found {self.size}")
        if self.channels not in (1, 3):
            raise FerEdgeError(f"preprocessing channels must be 1 or 3, found {self.channels}")
        lo, hi = (float(v) for v in self.value_range)
        if not lo < hi:
            raise FerEdgeError(f"value range must be (low, high) with low < high, found {self.value_range}")
        if not isinstance(self.equalize, (bool, np.bool_)):  # bool("false") would be True
            raise FerEdgeError(f"preprocessing equalize must be true or false, found {self.equalize!r}")
        if not 0.0 <= self.crop_margin <= 1.0:
            raise FerEdgeError(f"crop margin must be between 0 and 1, found {self.crop_margin}")
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "value_range", (lo, hi))
        object.__setattr__(self, "equalize", bool(self.equalize))
        object.__setattr__(self, "crop_margin", float(self.crop_margin))

    @classmethod
    def parse_range(cls, text: str) -> tuple[float, float]:
        """'0,1' or '-1,1' (command-line form) -> (low, high)."""
        key = text.replace(" ", "")
        if key not in VALUE_RANGES:
            raise FerEdgeError(f"unknown value range {text!r}: expected one of {', '.join(VALUE_RANGES)}")
        return VALUE_RANGES[key]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["size"] = list(self.size)
        d["value_range"] = list(self.value_range)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessSpec":
        known = {"size", "channels", "value_range", "equalize", "crop_margin"}
        unknown = set(d) - known
        if unknown:
            raise FerEdgeError(f"unknown preprocessing keys {sorted(unknown)}: expected {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def to_gray(image: np.ndarray) -> np.ndarray:
    """Grey uint8 from a grey, BGR or BGRA uint8 image."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise FerEdgeError(f"face images must be uint8, found {image.dtype}")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise FerEdgeError(f"a face image must be HxW, HxWx1, HxWx3 (BGR) or HxWx4 (BGRA), found shape {image.shape}")


class FrameError(FerEdgeError):
    """A frame that cannot be processed (wrong dtype or shape): counted as corrupt and skipped."""


def as_bgr(image) -> np.ndarray:
    """Grey, BGR or BGRA uint8 -> BGR uint8 (the drawing and detection format)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.size == 0:
        raise FrameError(f"a frame must be non-empty uint8, found {image.dtype} {image.shape}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    raise FrameError(f"a frame must be HxW, HxWx3 or HxWx4, found shape {image.shape}")


def preprocess(faces: np.ndarray | Sequence[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """Face crops (a uint8 batch NxHxW[xC] or a list of crops of any size) -> float32 NxHxWxC model input."""
    if isinstance(faces, np.ndarray) and (faces.ndim == 2 or (faces.ndim == 3 and faces.shape[2] in (3, 4))):
        # (H, W, 3|4) is one BGR(A) face, not H grey faces 3 or 4 pixels wide
        raise FerEdgeError(f"preprocess takes a batch of faces, found one image of shape {faces.shape}: "
                           "wrap a single face in a list")
    h, w = spec.size
    lo, hi = spec.value_range
    out = np.empty((len(faces), h, w, spec.channels), dtype=np.float32)
    for i, face in enumerate(faces):
        g = to_gray(face)
        if g.size == 0:
            raise FerEdgeError(f"face {i} is empty (shape {g.shape})")
        if g.shape != (h, w):
            shrink = g.shape[0] > h or g.shape[1] > w
            g = cv2.resize(g, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        if spec.equalize:
            g = cv2.equalizeHist(g)
        out[i] = g[:, :, None]  # broadcasts over 1 or 3 channels
    out *= (hi - lo) / 255.0
    out += lo
    return out


def crop_faces(frame: np.ndarray, boxes: Sequence[Iterable[float]], spec: PreprocessSpec) -> list[np.ndarray]:
    """Cut the face boxes (x, y, w, h in pixels) out of a frame, grown by the spec's crop margin."""
    crops = []
    for box in boxes:
        x, y, bw, bh = expand_box(box, spec.crop_margin, frame.shape)
        if bw == 0 or bh == 0:
            raise FerEdgeError(f"face box {tuple(box)} lies outside the {frame.shape[1]}x{frame.shape[0]} frame")
        crops.append(frame[y:y + bh, x:x + bw])
    return crops
