"""Face detectors: one small class each, chosen from a dict, same surface (`detect(frame) -> list[FaceBox]`).

- `haar`: OpenCV's frontal-face Haar cascade shipped with opencv-python(-headless) 4.x; needs no download.
- `blazeface`: MediaPipe's BlazeFace short-range TFLite model (128x128 input, 896 SSD anchors); anchors,
  box decoding and weighted NMS are done here in numpy. The model file is given by path, or found inside
  an installed `mediapipe` package.

Boxes are (x, y, w, h) integer pixels clipped to the frame, so faces cut by the frame edge give a
smaller box rather than an error; a frame with no face gives an empty list.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fer_edge.runtime.backends import LiteRTBackend
from fer_edge.runtime.errors import FerEdgeError, MissingExtraError, ModelError

MIN_FACE = 12  # pixels: smaller boxes cannot give a meaningful 48x48 crop
# a box with more than this share of its area inside a larger box is dropped: faces do not nest, but Haar
# fires on a mouth or an eye inside the face (measured on the sample video: a mouth box on 10 frames)
NESTED = 0.6
HAAR_SCALE, HAAR_LIFT = 1.15, 0.08  # BlazeFace box -> Haar-like framing (see BlazeFaceDetector.detect)


@dataclass(frozen=True)
class FaceBox:
    x: int
    y: int
    w: int
    h: int
    score: float = 1.0

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.w, self.h


def clip_box(x0: float, y0: float, x1: float, y1: float, shape, score: float = 1.0) -> FaceBox | None:
    """Corner coordinates -> a FaceBox clipped to the frame, or None when too little of it is inside."""
    fh, fw = shape[:2]
    xa, ya = max(0, int(round(x0))), max(0, int(round(y0)))
    xb, yb = min(fw, int(round(x1))), min(fh, int(round(y1)))
    if xb - xa < MIN_FACE or yb - ya < MIN_FACE:
        return None
    return FaceBox(xa, ya, xb - xa, yb - ya, float(score))


def intersection(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    """Area shared by two (x, y, w, h) boxes."""
    iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return iw * ih


def nested(a: FaceBox, b: FaceBox, share: float = NESTED) -> bool:
    """True when box `a` is smaller than `b` and more than `share` of its area lies inside `b`."""
    return b.w * b.h > a.w * a.h and intersection(a.box, b.box) > share * a.w * a.h


def drop_nested(boxes: list[FaceBox]) -> list[FaceBox]:
    """The boxes that do not lie inside a larger one."""
    return [a for a in boxes if not any(nested(a, b) for b in boxes)]


class HaarDetector:
    """OpenCV Haar cascade (Viola-Jones) on a copy of the frame shrunk to at most `max_width` pixels wide.

    Measured on the 596x336 sample video (115 frames, one face): full size at scale_factor 1.2 missed the
    face on 15 frames at ~44 ms/frame; shrunk to 320 wide at 1.1 it missed 6 at about half the time.
    """

    name = "haar"
    CASCADE = "haarcascade_frontalface_default.xml"

    def __init__(self, model: str | os.PathLike | None = None, scale_factor: float = 1.1, min_neighbors: int = 5,
                 min_size: int = 24, max_width: int | None = 320, **_):
        data = getattr(cv2, "data", None)
        path = Path(model) if model else (Path(data.haarcascades) / self.CASCADE if data else None)
        if not hasattr(cv2, "CascadeClassifier") or path is None:
            raise FerEdgeError("this OpenCV build has no Haar cascades (OpenCV 5 removed them): "
                               "install opencv-python-headless<5 or use --detector blazeface")
        if not path.is_file():
            raise ModelError(f"{path}: no such Haar cascade file")
        try:
            self.cascade = cv2.CascadeClassifier(str(path))
        except (cv2.error, SystemError):  # OpenCV 4.14 raises on a non-cascade file instead of returning an empty one
            raise ModelError(f"{path}: not a loadable Haar cascade (expected an OpenCV .xml cascade)") from None
        if self.cascade.empty():
            raise ModelError(f"{path}: not a loadable Haar cascade")
        self.scale_factor, self.min_neighbors, self.min_size = scale_factor, min_neighbors, (min_size, min_size)
        self.max_width = max_width

    def detect(self, frame: np.ndarray) -> list[FaceBox]:
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        scale = 1.0
        if self.max_width and gray.shape[1] > self.max_width:
            scale = self.max_width / gray.shape[1]
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        rects = self.cascade.detectMultiScale(gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                              minSize=self.min_size)
        rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4) / scale
        boxes = (clip_box(x, y, x + w, y + h, frame.shape) for x, y, w, h in rects)
        return drop_nested([b for b in boxes if b is not None])

    def close(self) -> None:
        self.cascade = None


def litert_interpreter(path: str | os.PathLike, threads: int | None = None):
    """A LiteRT interpreter from the first interpreter module installed (same order as LiteRTBackend)."""
    for name in LiteRTBackend.MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        mod = getattr(mod, "lite", mod)
        try:
            interp = mod.Interpreter(model_path=str(path), num_threads=threads)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{path}: not a loadable .tflite model ({str(exc).splitlines()[0]})") from None
        return interp
    raise MissingExtraError("ai-edge-litert", "litert")


def blazeface_anchors(size: int = 128, strides=(8, 16, 16, 16)) -> np.ndarray:
    """SSD anchor centres (cx, cy) in [0, 1] as MediaPipe's face_detection_short_range graph makes them.

    Layers with the same stride share one grid: stride 8 -> 16x16 cells x 2 anchors, stride 16 -> 8x8 x 6;
    896 in all. Anchor width/height are fixed at 1 (fixed_anchor_size), so they are not stored.
    """
    out, i = [], 0
    while i < len(strides):
        stride, n = strides[i], 0
        while i < len(strides) and strides[i] == stride:
            n += 2  # one aspect ratio (1.0) + one interpolated scale per layer
            i += 1
        cells = size // stride
        ys, xs = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(grid, n, axis=0))
    return np.concatenate(out).astype(np.float32)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's WEIGHTED non-max suppression: overlapping boxes are averaged, weighted by score."""
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    out = []
    while len(scores):
        ious = box_iou(boxes[0], boxes)
        group = ious > iou_threshold
        w = scores[group][:, None]
        out.append(((boxes[group] * w).sum(axis=0) / w.sum(), float(scores[0])))
        boxes, scores = boxes[~group], scores[~group]
    return out


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one corner box (x0, y0, x1, y1) against many."""
    ix0, iy0 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    ix1, iy1 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def find_mediapipe_model(name: str = "face_detection_short_range.tflite") -> Path | None:
    """The BlazeFace file inside an installed mediapipe package (found without importing mediapipe)."""
    try:
        spec = importlib.util.find_spec("mediapipe")
    except (ImportError, ValueError):
        return None
    for root in (spec.submodule_search_locations or []) if spec else []:
        p = Path(root) / "modules" / "face_detection" / name
        if p.is_file():
            return p
    return None


class BlazeFaceDetector:
    """BlazeFace short-range (faces within ~2 m of the camera): ~2 ms per frame on one x86 core."""

    name = "blazeface"
    SIZE = 128
    SCORE_CLIP = 100.0  # MediaPipe clips raw logits to +-100 before the sigmoid

    # MediaPipe's default is 0.5; on the sample video background blur scored up to 0.52 and the face never
    # below 0.70, so 0.6 drops the false faces and keeps the real one on every frame
    def __init__(self, model: str | os.PathLike | None = None, score_threshold: float = 0.6,
                 iou_threshold: float = 0.3, threads: int | None = None, **_):
        path = Path(model) if model else find_mediapipe_model()
        if path is None:
            raise ModelError("BlazeFace needs its model file: pass --detector-model face_detection_short_range.tflite "
                             "(or pip install mediapipe, whose wheel carries it)")
        if not path.is_file():
            raise ModelError(f"{path}: no such BlazeFace model file")
        self.interp = litert_interpreter(path, threads)
        inp = self.interp.get_input_details()
        outs = {tuple(o["shape"][1:]): o["index"] for o in self.interp.get_output_details()}
        if len(inp) != 1 or tuple(inp[0]["shape"][1:]) != (self.SIZE, self.SIZE, 3) \
                or (896, 16) not in outs or (896, 1) not in outs:
            raise ModelError(f"{path}: not a BlazeFace short-range model (expected a 128x128x3 input and "
                             "outputs of shapes 896x16 and 896x1)")
        self.input_index = inp[0]["index"]
        self.reg_index, self.cls_index = outs[(896, 16)], outs[(896, 1)]
        self.anchors = blazeface_anchors(self.SIZE)
        self.score_threshold, self.iou_threshold = score_threshold, iou_threshold
        self._input = np.zeros((1, self.SIZE, self.SIZE, 3), np.float32)

    def _letterbox(self, frame: np.ndarray) -> tuple[float, int, int]:
        """Scale the frame into the 128x128 input keeping its aspect ratio (padding with -1 = black)."""
        h, w = frame.shape[:2]
        scale = self.SIZE / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        top, left = (self.SIZE - nh) // 2, (self.SIZE - nw) // 2
        img = frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        img = cv2.cvtColor(cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        self._input.fill(-1.0)
        self._input[0, top:top + nh, left:left + nw] = img.astype(np.float32) * (2.0 / 255.0) - 1.0
        return scale, top, left

    def detect(self, frame: np.ndarray) -> list[FaceBox]:
        scale, top, left = self._letterbox(frame)
        self.interp.set_tensor(self.input_index, self._input)
        self.interp.invoke()
        reg = self.interp.get_tensor(self.reg_index)[0]
        logits = np.clip(self.interp.get_tensor(self.cls_index)[0, :, 0], -self.SCORE_CLIP, self.SCORE_CLIP)
        scores = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))  # float32 exp overflows at 89
        keep = scores >= self.score_threshold
        if not keep.any():
            return []
        reg, scores, anchors = reg[keep], scores[keep], self.anchors[keep]
        cx = reg[:, 0] / self.SIZE + anchors[:, 0]  # offsets are in input pixels relative to the anchor centre
        cy = reg[:, 1] / self.SIZE + anchors[:, 1]
        bw, bh = reg[:, 2] / self.SIZE, reg[:, 3] / self.SIZE
        corners = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        faces = []
        for (x0, y0, x1, y1), score in weighted_nms(corners, scores, self.iou_threshold):
            # BlazeFace boxes are tighter and lower than Haar's (brows to chin); FER2013 faces were framed
            # like Haar's, so grow and lift them to hand the classifier the framing it was trained on
            # (Haar box ~1.15x the size, centre 0.04 (video) to 0.14 (photos) of a box higher: mean IoU
            # with Haar 0.82 on the sample video at 1.15 / 0.08, against 0.75 for the raw box)
            cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2 - HAAR_LIFT * (y1 - y0), HAAR_SCALE * max(x1 - x0, y1 - y0)
            x0, y0, x1, y1 = cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2
            # input [0, 1] -> letterboxed pixels -> frame pixels
            box = clip_box((x0 * self.SIZE - left) / scale, (y0 * self.SIZE - top) / scale,
                           (x1 * self.SIZE - left) / scale, (y1 * self.SIZE - top) / scale, frame.shape, score)
            if box is not None:
                faces.append(box)
        return drop_nested(faces)

    def close(self) -> None:
        self.interp = None


DETECTORS = {"haar": HaarDetector, "blazeface": BlazeFaceDetector}


def make_detector(name: str, model: str | os.PathLike | None = None, threads: int | None = None, **options):
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise FerEdgeError(f"unknown detector {name!r}: expected one of {', '.join(DETECTORS)}") from None
    return cls(model=model, threads=threads, **options)
