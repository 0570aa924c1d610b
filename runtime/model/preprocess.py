"""The preprocessing contract, defined once.

face crop -> the model's colour (grey, RGB or BGR) -> resize to the model's input -> optional histogram
equalisation (grey) -> scale to the model's value range, or per channel by a mean and std on the 0-1 scale
(ImageNet's, for most colour models). Training, calibration, conversion parity checks and the device runtime
all call `preprocess`; the spec that parameterises it travels inside every exported model's metadata.
Where the face is cut (a FER2013-like framing, or a 5-point alignment onto the template the spec carries)
is runtime/faces/framing.py's.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import cv2
import numpy as np

from fer_edge.runtime.core.boxes import expand_box
from fer_edge.runtime.core.errors import FerEdgeError

VALUE_RANGES = {"0,1": (0.0, 1.0), "-1,1": (-1.0, 1.0), "0,255": (0.0, 255.0)}
# --normalize imagenet: torchvision's mean and std on the 0-1 scale, in RGB order
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
NORMALIZE_CHOICES = (*VALUE_RANGES, "imagenet")
COLOURS = ("grey", "rgb", "bgr")  # what the input channels hold
ALIGNS = ("none", "5point")
# --align 5point: where the five landmarks (right eye, left eye, nose, right and left mouth corners) land in a
# 112x112 crop, as fractions of its side: the ArcFace template (insightface), which OpenCV Zoo's facial
# expression model (MobileFaceNet) aligns its faces onto
TEMPLATE_5POINT = ((38.2946 / 112, 51.6963 / 112), (73.5318 / 112, 51.5014 / 112), (56.0252 / 112, 71.7366 / 112),
                   (41.5493 / 112, 92.3655 / 112), (70.7299 / 112, 92.2041 / 112))


def _floats(values, n: int, what: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if len(out) != n or not all(np.isfinite(out)):
        raise FerEdgeError(f"{what} must be {n} finite numbers, found {list(values)}")
    return out


@dataclass(frozen=True)
class PreprocessSpec:
    size: tuple[int, int] = (48, 48)  # (height, width) of the model input
    channels: int = 1  # 1 = grey; 3 = colour (see `colour`) or grey replicated to 3 channels
    value_range: tuple[float, float] = (0.0, 1.0)  # what 0 and 255 map to (unless mean and std are given)
    equalize: bool = False  # cv2.equalizeHist after resizing (grey models)
    crop_margin: float = 0.0  # grow detector boxes by this fraction of their size on every side
    colour: str = "grey"  # what the channels hold: grey, or colour in RGB or BGR order
    mean: tuple[float, ...] | None = None  # per channel, on the 0-1 scale: (x / 255 - mean) / std
    std: tuple[float, ...] | None = None
    align: str = "none"  # "5point": the face warped onto `template` by a similarity of the detector's landmarks
    template: tuple[tuple[float, float], ...] | None = None  # five (x, y) fractions of the crop
    align_margin: float = 0.0  # the template shrunk towards the centre so this fraction of the side is border

    def __post_init__(self):
        self._check_colour()
        self._check_shape_and_range()

    def _check_colour(self):
        if self.colour not in COLOURS:
            raise FerEdgeError(f"preprocessing colour must be one of {', '.join(COLOURS)}, found {self.colour!r}")
        if self.colour != "grey" and self.channels != 3:
            raise FerEdgeError(f"a {self.colour} model takes 3 channels, found {self.channels}")
        if self.colour != "grey" and self.equalize:
            raise FerEdgeError("histogram equalisation (--equalize) applies to grey models only")
        if (self.mean is None) != (self.std is None):
            raise FerEdgeError("give both a mean and a std (--mean R,G,B --std R,G,B), or neither")
        if self.mean is not None:
            mean, std = _floats(self.mean, self.channels, "mean"), _floats(self.std, self.channels, "std")
            if min(std) <= 0:
                raise FerEdgeError(f"std must be positive, found {list(std)}")
            object.__setattr__(self, "mean", mean)
            object.__setattr__(self, "std", std)
        if self.align not in ALIGNS:
            raise FerEdgeError(f"alignment must be one of {', '.join(ALIGNS)}, found {self.align!r}")
        if self.align == "5point":
            t = self.template if self.template is not None else TEMPLATE_5POINT
            pts = tuple(_floats(p, 2, "a template point") for p in t)
            if len(pts) != 5 or not all(-0.5 <= v <= 1.5 for p in pts for v in p):
                raise FerEdgeError(f"an alignment template is five (x, y) fractions of the crop, found {t}")
            if not 0.0 <= float(self.align_margin) < 0.5:
                raise FerEdgeError(f"alignment margin must be in [0, 0.5), found {self.align_margin}")
            object.__setattr__(self, "template", pts)
            object.__setattr__(self, "align_margin", float(self.align_margin))
        elif self.template is not None:
            raise FerEdgeError("an alignment template needs align 5point")

    def _check_shape_and_range(self):
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

    @property
    def bounds(self) -> tuple[float, float]:
        """The smallest and largest value the model's input can hold (over every channel)."""
        if self.mean is None:
            return self.value_range
        lows = [(0.0 - m) / s for m, s in zip(self.mean, self.std)]
        highs = [(1.0 - m) / s for m, s in zip(self.mean, self.std)]
        return float(min(lows)), float(max(highs))

    def scaling(self) -> tuple:
        """Everything that maps a crop's pixels to the model's input values (calibration sets must match it)."""
        return (self.colour, self.value_range, self.mean, self.std, self.equalize)

    def describe(self) -> str:
        """One phrase for logs and cards: 224x224 rgb, mean/std [...], aligned 5point."""
        scale = (f"mean {list(self.mean)} std {list(self.std)}" if self.mean is not None
                 else f"values {list(self.value_range)}")
        return (f"{self.size[0]}x{self.size[1]}x{self.channels} {self.colour}, {scale}"
                f"{', equalized' if self.equalize else ''}{', aligned 5point' if self.align == '5point' else ''}")

    # keys written only when they differ from these defaults, so a grey model's metadata reads as before
    _OPTIONAL = {"colour": "grey", "mean": None, "std": None, "align": "none", "template": None, "align_margin": 0.0}

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in self._OPTIONAL or v != self._OPTIONAL[k]}
        return {k: [list(p) for p in v] if k == "template" else list(v) if isinstance(v, tuple) else v
                for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessSpec":
        known = {"size", "channels", "value_range", "equalize", "crop_margin", *cls._OPTIONAL}
        unknown = set(d) - known
        if unknown:
            raise FerEdgeError(f"unknown preprocessing keys {sorted(unknown)}: expected {sorted(known)}")
        deep = lambda v: tuple(deep(x) for x in v) if isinstance(v, list) else v
        return cls(**{k: deep(v) for k, v in d.items()})


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
    out = np.empty((len(faces), h, w, spec.channels), dtype=np.float32)
    for i, face in enumerate(faces):
        p = prepare(face, spec, i)
        out[i] = p if p.ndim == 3 else p[:, :, None]  # a grey face broadcasts over 1 or 3 channels
    if spec.mean is not None:
        out *= 1.0 / 255.0
        out -= np.asarray(spec.mean, np.float32)
        out /= np.asarray(spec.std, np.float32)
        return out
    lo, hi = spec.value_range
    out *= (hi - lo) / 255.0
    out += lo
    return out


def prepare(face: np.ndarray, spec: PreprocessSpec, index: int = 0) -> np.ndarray:
    """One face crop -> uint8 at the model's size in its colour: H x W grey, or H x W x 3 in RGB or BGR order."""
    if spec.colour == "grey":
        g = to_gray(face)
    else:
        try:
            g = as_bgr(face)  # a grey face (FER2013) for a colour model: its grey copied to the three channels
        except FrameError as exc:
            raise FerEdgeError(f"face {index}: {exc}") from None
        if spec.colour == "rgb":
            g = cv2.cvtColor(g, cv2.COLOR_BGR2RGB)
    if g.size == 0:
        raise FerEdgeError(f"face {index} is empty (shape {g.shape})")
    g = fit_size(g, spec)
    if spec.equalize:
        g = cv2.equalizeHist(g)
    return g


def fit_size(face: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """A crop resized to the model's input size as `preprocess` does it (area when shrinking, else linear),
    channels untouched: a face stored at this size goes through `preprocess` exactly as the live crop would."""
    h, w = spec.size
    if face.shape[:2] == (h, w):
        return face
    shrink = face.shape[0] > h or face.shape[1] > w
    return cv2.resize(face, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def crop_faces(frame: np.ndarray, boxes: Sequence[Iterable[float]], spec: PreprocessSpec) -> list[np.ndarray]:
    """Cut the face boxes (x, y, w, h in pixels) out of a frame, grown by the spec's crop margin."""
    crops = []
    for box in boxes:
        x, y, bw, bh = expand_box(box, spec.crop_margin, frame.shape)
        if bw == 0 or bh == 0:
            raise FerEdgeError(f"face box {tuple(box)} lies outside the {frame.shape[1]}x{frame.shape[0]} frame")
        crops.append(frame[y:y + bh, x:x + bw])
    return crops
