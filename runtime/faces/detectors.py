"""Face detectors: one small class each, chosen from a dict, all with the `Detector` surface.

- `yunet` (default): OpenCV's `cv2.FaceDetectorYN` with the YuNet model shipped in the package (MIT, see
  models/NOTICE.md); boxes and five landmarks, faces of about 10 to 300 pixels; OpenCV 4.8+ and 5.x.
- `haar`: OpenCV's frontal-face Haar cascade shipped with opencv-python(-headless) 4.x (OpenCV 5 removed it).
- `blazeface`: MediaPipe's BlazeFace short-range TFLite model (128x128 input, 896 SSD anchors); anchors,
  box and keypoint decoding and weighted NMS are done here in numpy. The model file is given by path, or
  found inside an installed `mediapipe` package.

The caller owns the frame: it computes the grey image once, and `detect_at` shrinks both to the detect size
and maps the boxes back, so a detector only finds faces in what it is handed. Each detector
declares the options it takes (`OPTIONS`, the `--detect-*` flags); `make_detector` refuses any other.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from fer_edge.runtime.model.backends import litert_interpreter
from fer_edge.runtime.core.boxes import MIN_FACE, FaceBox, clip_box, corner_iou, drop_nested, scale_faces
from fer_edge.runtime.core.errors import FerEdgeError, ModelError
from fer_edge.runtime.model.shipped import shipped_file

HAAR_SCALE, HAAR_LIFT = 1.15, 0.08  # BlazeFace box -> Haar-like framing (see BlazeFaceDetector.detect)


class Detector(Protocol):
    """What the pipeline needs of a face detector."""

    name: str
    OPTIONS: dict[str, str]  # option name -> what it means (the --detect-NAME flag)
    SIZES: tuple[int | None, int | None]  # default detect width for (streams, photos); None: the whole frame
    LANDMARKS: bool  # gives five landmarks per face (a model aligned on them needs this)

    def detect(self, frame: np.ndarray, gray: np.ndarray) -> list[FaceBox]:
        """Faces in a BGR frame (`gray` is the same frame in grey, computed once by the caller)."""

    def close(self) -> None:
        """Release the model."""


def detect_at(detector: Detector, frame: np.ndarray, gray: np.ndarray, width: int | None) -> list[FaceBox]:
    """Faces found on a copy of the frame shrunk to `width` pixels (never enlarged), in frame pixels."""
    if not width or frame.shape[1] <= width:
        return detector.detect(frame, gray)
    scale = width / frame.shape[1]
    small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    # a detector that reads colour only (GRAY False) is not handed a grey copy it would not look at
    small_gray = cv2.resize(gray, small.shape[1::-1], interpolation=cv2.INTER_AREA) if getattr(
        detector, "GRAY", True) else None
    return scale_faces(detector.detect(small, small_gray), 1.0 / scale, frame.shape)


def quiet_opencv_log(level: int | None = None) -> int | None:
    """Set OpenCV's own log level (default: errors only) and return the one it had, to put back; None where this
    OpenCV lacks cv2.utils.logging (a fresh OpenCV 5.0 install once did). The CLI quiets OpenCV for the whole run;
    YuNet is made with it quiet, so `Recognizer()` from Python prints no warning of OpenCV 5's either."""
    try:
        from cv2.utils import logging as cv_logging
    except ImportError:
        return None
    previous = cv_logging.getLogLevel()
    cv_logging.setLogLevel(cv_logging.LOG_LEVEL_ERROR if level is None else level)
    return previous


class YuNetDetector:
    """YuNet through cv2.FaceDetectorYN: a box, five landmarks and a score per face.

    Default detect widths, score and NMS thresholds are measured by benchmarks/detector_defaults.py (its
    results are in benchmarks/detector_defaults.json): 320 px for streams, where the sample video's face is
    found on every frame at a third of the full-size time, 640 px for photos, where small faces in group
    photos need the pixels.
    """

    name = "yunet"
    FILE = "face_detection_yunet_2026may.onnx"
    OPTIONS = {"score": "minimum face score, 0-1 (default 0.6)",
               "nms": "IoU above which overlapping boxes are merged (default 0.3)"}
    SIZES = (320, 640)
    LANDMARKS = True
    GRAY = False  # detect() reads the colour frame only
    STRIDE = 32  # its coarsest feature map's stride: a crop whose origin is a multiple of it sees the same grid
    TOP_K = 5000  # candidates kept before NMS (OpenCV's default)

    def __init__(self, model: str | os.PathLike | None = None, threads: int | None = None, score: float = 0.6,
                 nms: float = 0.3):
        # threads: OpenCV's DNN module follows cv2.setNumThreads, which the CLI sets from --threads
        if not hasattr(cv2, "FaceDetectorYN"):
            raise FerEdgeError(f"this OpenCV ({cv2.__version__}) has no FaceDetectorYN: YuNet needs OpenCV 4.8 or "
                               "later (pip install -U opencv-python-headless)")
        path = Path(model) if model else shipped_file(self.FILE)
        if path is None:
            raise ModelError(f"this install ships no {self.FILE}: pass --detector-model FILE (YuNet .onnx)")
        if not path.is_file():
            raise ModelError(f"{path}: no such YuNet model file")
        _check_unit("--detect-score", score)
        _check_unit("--detect-nms", nms)
        try:
            previous = quiet_opencv_log()  # OpenCV 5 warns "Targets are not supported by the new graph engine"
            try:
                self.net = cv2.FaceDetectorYN.create(str(path), "", (320, 240), float(score), float(nms), self.TOP_K)
            finally:
                quiet_opencv_log(previous)
        except cv2.error:
            raise ModelError(f"{path}: not a loadable YuNet model (expected face_detection_yunet_*.onnx)") from None
        self._input_size = (320, 240)

    def detect(self, frame: np.ndarray, gray: np.ndarray) -> list[FaceBox]:
        h, w = frame.shape[:2]
        if min(h, w) < MIN_FACE:  # no face fits; on a 1x1 image the network answers infinities
            return []
        if (w, h) != self._input_size:
            self.net.setInputSize((w, h))
            self._input_size = (w, h)
        _, rows = self.net.detect(frame)
        faces = []
        for r in () if rows is None else rows[np.isfinite(rows).all(axis=1)]:
            lms = tuple((float(r[4 + 2 * i]), float(r[5 + 2 * i])) for i in range(5))
            box = clip_box(r[0], r[1], r[0] + r[2], r[1] + r[3], frame.shape, float(r[14]), lms)
            if box is not None:
                faces.append(box)
        return drop_nested(faces)

    def close(self) -> None:
        self.net = None


class HaarDetector:
    """OpenCV Haar cascade (Viola-Jones), where the OpenCV build still has CascadeClassifier (4.x).

    Measured on the 596x336 sample video (115 frames, one face): full size at scale_factor 1.2 missed the
    face on 15 frames at ~44 ms/frame; shrunk to 320 wide at 1.1 it missed 6 at about half the time.
    """

    name = "haar"
    CASCADE = "haarcascade_frontalface_default.xml"
    OPTIONS: dict[str, str] = {}
    SIZES = (320, 320)
    LANDMARKS = False
    SCALE_FACTOR, MIN_NEIGHBORS, MIN_SIZE = 1.1, 5, 24

    def __init__(self, model: str | os.PathLike | None = None, threads: int | None = None):
        # threads: the cascade follows cv2.setNumThreads, which the CLI sets from --threads
        data = getattr(cv2, "data", None)
        path = Path(model) if model else (Path(data.haarcascades) / self.CASCADE if data else None)
        if not hasattr(cv2, "CascadeClassifier") or path is None:
            raise FerEdgeError(f"this OpenCV ({cv2.__version__}) has no Haar cascades (OpenCV 5 removed them): "
                               "use the default --detector yunet, or install opencv-python-headless<5")
        if not path.is_file():
            raise ModelError(f"{path}: no such Haar cascade file")
        try:
            self.cascade = cv2.CascadeClassifier(str(path))
        except (cv2.error, SystemError):  # OpenCV 4.14 raises on a non-cascade file instead of returning an empty one
            raise ModelError(f"{path}: not a loadable Haar cascade (expected an OpenCV .xml cascade)") from None
        if self.cascade.empty():
            raise ModelError(f"{path}: not a loadable Haar cascade")

    def detect(self, frame: np.ndarray, gray: np.ndarray) -> list[FaceBox]:
        rects = self.cascade.detectMultiScale(gray, scaleFactor=self.SCALE_FACTOR, minNeighbors=self.MIN_NEIGHBORS,
                                              minSize=(self.MIN_SIZE, self.MIN_SIZE))
        rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
        boxes = (clip_box(x, y, x + w, y + h, frame.shape) for x, y, w, h in rects)
        return drop_nested([b for b in boxes if b is not None])

    def close(self) -> None:
        self.cascade = None


def _check_unit(flag: str, value: float) -> None:
    if not 0.0 < float(value) < 1.0:
        raise FerEdgeError(f"{flag} must be between 0 and 1, found {value}")


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
    """MediaPipe's WEIGHTED non-max suppression: overlapping boxes are averaged, weighted by score.

    `boxes` rows start with the corners (x0, y0, x1, y1); any further columns (keypoints) are averaged too.
    """
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    out = []
    while len(scores):
        ious = corner_iou(boxes[0, :4], boxes[:, :4])
        group = ious > iou_threshold
        w = scores[group][:, None]
        out.append(((boxes[group] * w).sum(axis=0) / w.sum(), float(scores[0])))
        boxes, scores = boxes[~group], scores[~group]
    return out


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
    OPTIONS = {"score": "minimum face score, 0-1 (default 0.6)",
               "nms": "IoU above which overlapping boxes are averaged (default 0.3)"}
    SIZES = (320, 320)  # its input is 128x128 anyway: a smaller copy only makes the resize cheaper
    LANDMARKS = True  # eyes, nose and the mouth centre (given for both mouth corners)
    GRAY = False  # detect() reads the colour frame only

    # MediaPipe's default is 0.5; on the sample video background blur scored up to 0.52 and the face never
    # below 0.70, so 0.6 drops the false faces and keeps the real one on every frame
    def __init__(self, model: str | os.PathLike | None = None, threads: int | None = None, score: float = 0.6,
                 nms: float = 0.3):
        path = Path(model) if model else find_mediapipe_model()
        if path is None:
            raise ModelError("BlazeFace needs its model file: pass --detector-model face_detection_short_range.tflite "
                             "(or pip install mediapipe, whose wheel carries it)")
        if not path.is_file():
            raise ModelError(f"{path}: no such BlazeFace model file")
        self.interpreter = litert_interpreter(path, threads)[0]
        inp = self.interpreter.get_input_details()
        outs = {tuple(o["shape"][1:]): o["index"] for o in self.interpreter.get_output_details()}
        if len(inp) != 1 or tuple(inp[0]["shape"][1:]) != (self.SIZE, self.SIZE, 3) \
                or (896, 16) not in outs or (896, 1) not in outs:
            raise ModelError(f"{path}: not a BlazeFace short-range model (expected a 128x128x3 input and "
                             "outputs of shapes 896x16 and 896x1)")
        self.input_index = inp[0]["index"]
        self.reg_index, self.cls_index = outs[(896, 16)], outs[(896, 1)]
        self.anchors = blazeface_anchors(self.SIZE)
        _check_unit("--detect-score", score)
        _check_unit("--detect-nms", nms)
        self.score_threshold, self.iou_threshold = float(score), float(nms)
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

    def detect(self, frame: np.ndarray, gray: np.ndarray) -> list[FaceBox]:
        scale, top, left = self._letterbox(frame)
        self.interpreter.set_tensor(self.input_index, self._input)
        self.interpreter.invoke()
        reg = self.interpreter.get_tensor(self.reg_index)[0]
        logits = np.clip(self.interpreter.get_tensor(self.cls_index)[0, :, 0], -self.SCORE_CLIP, self.SCORE_CLIP)
        scores = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))  # float32 exp overflows at 89
        keep = scores >= self.score_threshold
        if not keep.any():
            return []
        reg, scores, anchors = reg[keep], scores[keep], self.anchors[keep]
        cx = reg[:, 0] / self.SIZE + anchors[:, 0]  # offsets are in input pixels relative to the anchor centre
        cy = reg[:, 1] / self.SIZE + anchors[:, 1]
        bw, bh = reg[:, 2] / self.SIZE, reg[:, 3] / self.SIZE
        corners = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        # keypoints: right eye, left eye, nose tip, mouth centre, right and left ear, like the box centre
        keypoints = reg[:, 4:16].reshape(-1, 6, 2) / self.SIZE + anchors[:, None, :]
        rows = np.concatenate([corners, keypoints.reshape(-1, 12)], axis=1)
        to_frame = lambda px, py: ((px * self.SIZE - left) / scale, (py * self.SIZE - top) / scale)
        faces = []
        for row, score in weighted_nms(rows, scores, self.iou_threshold):
            x0, y0, x1, y1 = row[:4]
            kp = row[4:].reshape(6, 2)
            # the five landmarks YuNet gives, with the mouth centre for both mouth corners
            lms = tuple(to_frame(*kp[i]) for i in (0, 1, 2, 3, 3))
            # BlazeFace boxes are tighter and lower than Haar's (brows to chin); the box framing (faces without
            # landmarks, --framing box) was tuned on Haar's, so grow and lift them to match
            # (Haar box ~1.15x the size, centre 0.04 (video) to 0.14 (photos) of a box higher: mean IoU
            # with Haar 0.82 on the sample video at 1.15 / 0.08, against 0.75 for the raw box)
            cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2 - HAAR_LIFT * (y1 - y0), HAAR_SCALE * max(x1 - x0, y1 - y0)
            box = clip_box(*to_frame(cx - side / 2, cy - side / 2), *to_frame(cx + side / 2, cy + side / 2),
                           frame.shape, score, lms)
            if box is not None:
                faces.append(box)
        return drop_nested(faces)

    def close(self) -> None:
        self.interpreter = None



DETECTORS = {"yunet": YuNetDetector, "haar": HaarDetector, "blazeface": BlazeFaceDetector}
DEFAULT_DETECTOR = "yunet"


def make_detector(name: str, model: str | os.PathLike | None = None, threads: int | None = None,
                  **options) -> Detector:
    """The detector called `name`; `options` (score, nms, ...) must be among those it declares."""
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise FerEdgeError(f"unknown detector {name!r}: expected one of {', '.join(DETECTORS)}") from None
    unknown = sorted(set(options) - set(cls.OPTIONS))
    if unknown:
        takes = ", ".join(f"--detect-{k}" for k in cls.OPTIONS) or "none"
        raise FerEdgeError(f"--detector {name} does not take {', '.join(f'--detect-{k}' for k in unknown)} "
                           f"(its options: {takes})")
    return cls(model=model, threads=threads, **options)
