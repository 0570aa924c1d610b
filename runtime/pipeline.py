"""The frame pipeline: frame -> faces -> crops -> classifier -> tracks and smoothing -> results.

    opts = PipelineOptions(model="models/fer-vgg_int8.tflite", detector="blazeface", detector_model=path)
    with Pipeline(opts) as pipe:
        result = pipe.process(frame)            # one frame of a stream (tracks carry over)
        result = pipe.process_image(photo)      # one unrelated photo
        stats = pipe.run(source, sinks, stop)   # a whole source, until it ends or `stop` is set

Results are typed and never None: a frame without a face has `faces == []`.
"""
from __future__ import annotations

import importlib.resources
import importlib.util
import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fer_edge.runtime.backends import Classifier
from fer_edge.runtime.detectors import FaceBox, make_detector
from fer_edge.runtime.errors import FerEdgeError, ModelError
from fer_edge.runtime.images import MIN_SIDE
from fer_edge.runtime.preprocess import crop_faces
from fer_edge.runtime.tracking import Tracker

log = logging.getLogger("fer_edge.runtime")

DEFAULT_MODEL = "fer-vgg_int8.tflite"
SHIPPED = "fer-{name}_int8.tflite"  # a shipped model's runtime file; `--model NAME` selects it by NAME
STAGES = ("read", "detect", "track", "classify", "output")


def _models_dirs() -> list[Path]:
    """The folders of the fer_edge.models package data (shipped model files)."""
    try:
        return [Path(str(importlib.resources.files("fer_edge.models")))]
    except (ModuleNotFoundError, NotADirectoryError):
        # models/ holds no code, so it is a namespace package; Python 3.11's resources reader rejects the
        # path hook of a setuptools editable install ("MultiplexedPath only supports directories")
        spec = importlib.util.find_spec("fer_edge.models")
        return [Path(p) for p in (spec.submodule_search_locations or []) if spec and Path(p).is_dir()]


def shipped_models() -> dict[str, Path]:
    """Short name -> runtime file of every model this install ships (e.g. 'vgg' -> fer-vgg_int8.tflite)."""
    prefix, suffix = SHIPPED.split("{name}")
    found = {}
    for folder in _models_dirs():
        for f in sorted(folder.glob(SHIPPED.format(name="*"))):
            found.setdefault(f.name[len(prefix):-len(suffix)], f)
    return found


def default_model() -> Path:
    """The model shipped in the fer_edge.models package data."""
    for folder in _models_dirs():
        if (folder / DEFAULT_MODEL).is_file():
            return folder / DEFAULT_MODEL
    raise ModelError(f"this install ships no default model ({DEFAULT_MODEL} in fer_edge.models): "
                     "pass --model FILE (.tflite or .onnx, made by fer-convert)")


def resolve_model(model: str | os.PathLike | None) -> Path:
    """--model: None is the shipped default; an existing path is itself; else the short name of a shipped
    model ('vgg', or 'fer-vgg')."""
    if model is None or str(model) == "":
        return default_model()
    path = Path(model)
    if path.exists() or path.suffix or os.sep in str(model):  # a path, even a wrong one: let the loader say
        return path
    shipped = shipped_models()
    name = str(model).removeprefix("fer-")
    if name in shipped:
        return shipped[name]
    raise ModelError(f"--model {model}: no such file, and not the name of a shipped model: expected a .tflite or "
                     f".onnx file or one of {', '.join(shipped) or '(none shipped)'}")


@dataclass
class PipelineOptions:
    model: str | os.PathLike | None = None  # None: the shipped default model
    labels: str | None = None  # for models without metadata: fer2013 | ferplus
    normalize: str | None = None  # for models without metadata: 0,1 | -1,1 | 0,255
    equalize: bool | None = None
    threads: int | None = None
    providers: list[str] | None = None  # onnxruntime execution providers
    kernels: str | None = None  # LiteRT: default (XNNPACK, when None) | builtin
    detector: str = "haar"
    detector_model: str | os.PathLike | None = None
    detect_every: int = 1  # run the detector every K frames, follow the boxes in between
    smooth: float = 0.0  # EMA weight of the past per track, in [0, 1); 0 = off
    max_missed: int = 3  # detector runs a track survives without a matching box
    iou_threshold: float = 0.3

    def __post_init__(self):
        if int(self.detect_every) < 1:
            raise FerEdgeError(f"--detect-every must be 1 or more, found {self.detect_every}")
        if not 0.0 <= float(self.smooth) < 1.0:
            raise FerEdgeError(f"--smooth must be in [0, 1), found {self.smooth}")
        if self.threads is not None and int(self.threads) < 1:
            raise FerEdgeError(f"--threads must be 1 or more, found {self.threads}")


@dataclass(frozen=True)
class FaceResult:
    box: tuple[int, int, int, int]  # x, y, w, h in frame pixels
    label: str
    probs: dict[str, float]  # label -> probability (smoothed when --smooth > 0)
    track: int
    score: float = 1.0  # detector confidence

    def to_dict(self) -> dict:
        return {"box": list(self.box), "label": self.label,
                "probs": {k: round(v, 4) for k, v in self.probs.items()}, "track": self.track}


@dataclass(frozen=True)
class FrameResult:
    frame: int
    time: float
    faces: list[FaceResult] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"frame": self.frame, "time": round(self.time, 4), "faces": [f.to_dict() for f in self.faces]}


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


class RunStats:
    """Counts and timings of one run, turned into the end-of-run summary."""

    def __init__(self, labels: tuple[str, ...]):
        self.labels = labels
        self.frames = self.corrupt = self.faces = self.frames_with_face = self.reconnects = 0
        self.stage_s = dict.fromkeys(STAGES, 0.0)
        self.label_counts: Counter = Counter()
        self.started = time.perf_counter()
        self.seconds = 0.0
        self.tracks: list = []
        self.stopped_by = "end of source"

    def add(self, result: FrameResult) -> None:
        self.frames += 1
        self.faces += len(result.faces)
        self.frames_with_face += bool(result.faces)
        self.label_counts.update(f.label for f in result.faces)

    def summary(self) -> dict:
        n = max(self.frames, 1)
        tracks = []
        for t in sorted(self.tracks, key=lambda t: t.id):
            total = sum(t.counts.values())
            if total:
                label, count = max(t.counts.items(), key=lambda kv: kv[1])
                tracks.append({"track": t.id, "frames": total, "dominant": label, "share": round(count / total, 4)})
        return {
            "frames": self.frames, "corrupt_frames": self.corrupt, "reconnects": self.reconnects,
            "stopped_by": self.stopped_by, "seconds": round(self.seconds, 3),
            "fps": round(self.frames / self.seconds, 2) if self.seconds > 0 else 0.0,
            "stage_ms": {k: round(v * 1000 / n, 3) for k, v in self.stage_s.items()},
            "faces": self.faces, "frames_with_face": self.frames_with_face,
            "emotion_share": {k: round(self.label_counts[k] / self.faces, 4) if self.faces else 0.0
                              for k in self.labels},
            "tracks": tracks,
        }


class Pipeline:
    def __init__(self, options: PipelineOptions | None = None, **overrides):
        self.options = opts = options or PipelineOptions(**overrides)
        self.classifier = Classifier(resolve_model(opts.model), labels=opts.labels, normalize=opts.normalize,
                                     equalize=opts.equalize, threads=opts.threads, providers=opts.providers,
                                     kernels=opts.kernels)
        self.detector = make_detector(opts.detector, opts.detector_model, threads=opts.threads)
        self.labels = self.classifier.labels
        self.tracker = Tracker(opts.iou_threshold, opts.max_missed, opts.smooth)
        self.stats = RunStats(self.labels)
        self._since_detect = 0

    # -- one frame ------------------------------------------------------------------------------

    def process(self, image, index: int = 0, t: float = 0.0) -> FrameResult:
        """One frame of a stream: detect (every K frames) or follow, classify all faces in one call."""
        s = self.stats.stage_s
        frame = as_bgr(image)
        t0 = time.perf_counter()
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        detect = self._since_detect % self.options.detect_every == 0 or not self.tracker.tracks
        # a sliver (2000x1) holds no face, and detectors that downscale it would make it 0 pixels high
        boxes = (self.detector.detect(frame) if min(frame.shape[:2]) >= MIN_SIDE else []) if detect else None
        t1 = time.perf_counter()
        tracks = self.tracker.update(boxes, gray) if detect else self.tracker.follow(gray)
        self._since_detect = 1 if detect else self._since_detect + 1
        t2 = time.perf_counter()
        crops = crop_faces(frame, [tr.box.box for tr in tracks], self.classifier.meta.preprocess)
        probs = self.classifier.predict(crops)
        t3 = time.perf_counter()
        faces = []
        for tr, p in zip(tracks, probs):
            p = self.tracker.smooth_probs(tr, p)
            label = self.labels[int(np.argmax(p))]
            tr.counts[label] = tr.counts.get(label, 0) + 1
            faces.append(FaceResult(tr.box.box, label, {k: float(v) for k, v in zip(self.labels, p)}, tr.id,
                                    tr.box.score))
        s["detect"] += t1 - t0
        s["track"] += (t2 - t1) + (time.perf_counter() - t3)
        s["classify"] += t3 - t2
        return FrameResult(index, t, faces)

    def process_image(self, image, index: int = 0, t: float = 0.0) -> FrameResult:
        """One photo unrelated to the previous one: fresh tracks, the detector always runs."""
        self.tracker.reset()
        self._since_detect = 0
        return self.process(image, index, t)

    def classify_boxes(self, image, boxes: list[FaceBox]) -> np.ndarray:
        """Probabilities for given face boxes (no detection, no tracking)."""
        frame = as_bgr(image)
        return self.classifier.predict(crop_faces(frame, [b.box for b in boxes], self.classifier.meta.preprocess))

    # -- a whole source -------------------------------------------------------------------------

    def run(self, source, sinks=(), stop: threading.Event | None = None, max_frames: int | None = None) -> RunStats:
        """Process a source until it ends, `stop` is set or a sink asks to stop; sinks are closed after."""
        stop = stop or threading.Event()
        stats = self.stats = RunStats(self.labels)
        stills = getattr(source, "stills", False)  # unrelated photos: no tracking across them
        if hasattr(source, "stop_with"):
            source.stop_with(stop)  # a live source retrying a dead camera must end when the run is stopped
        frames = iter(source)
        try:
            while not stop.is_set():
                t0 = time.perf_counter()
                frame = next(frames, None)
                stats.stage_s["read"] += time.perf_counter() - t0
                if frame is None:
                    break
                if stop.is_set():
                    break
                if frame.image is None:
                    stats.corrupt += 1  # the source counted and logged it too; here it is only skipped
                    continue
                try:
                    result = (self.process_image if stills else self.process)(frame.image, frame.index, frame.time)
                except FrameError as exc:
                    stats.corrupt += 1
                    log.warning("frame %d skipped: %s", frame.index, exc)
                    continue
                stats.add(result)
                t0 = time.perf_counter()
                for sink in sinks:
                    if sink.write(frame, result) is False:
                        stats.stopped_by = f"{type(sink).__name__} (window closed)"
                        stop.set()
                stats.stage_s["output"] += time.perf_counter() - t0
                if max_frames is not None and stats.frames >= max_frames:
                    stats.stopped_by = "--max-frames"
                    break
            if stop.is_set() and stats.stopped_by == "end of source":
                stats.stopped_by = "stop requested"
        finally:
            close = getattr(source, "close", None)
            if close:
                close()
            stats.seconds = time.perf_counter() - stats.started
            stats.reconnects = getattr(source, "reconnects", 0)
            stats.tracks = self.tracker.all_tracks()
            for sink in sinks:
                sink.close()
        return stats

    # -- cleanup ---------------------------------------------------------------------------------

    def close(self) -> None:
        self.detector.close()
        self.classifier = None

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
