"""`fer_edge.Recognizer`: faces and emotions from Python, on the same Pipeline the `fer-edge` command runs.

    from fer_edge import Recognizer

    with Recognizer() as rec:                          # the shipped default model, YuNet faces
        for face in rec.analyze("photo.jpg"):          # a path, a BGR numpy array or the bytes of an image file
            print(face.label, face.probs[face.label], face.box)
        for result in rec.stream("video.mp4"):         # a camera index, a video file, a URL or a folder
            print(result.frame, [f.label for f in result.faces])

Results are the runtime's own types (`FaceResult`, `FrameResult`), never None: no face is an empty list.
Errors are the CLI's (`FerEdgeError` subclasses: `ImageError`, `SourceError`, `ModelError`, ...).
"""
from __future__ import annotations

import dataclasses
import os
import threading
from typing import Iterator, Union

import numpy as np

from fer_edge.runtime.core.boxes import MIN_FACE, clip_box
from fer_edge.runtime.faces.detectors import DEFAULT_DETECTOR
from fer_edge.runtime.media.drawing import draw
from fer_edge.runtime.core.errors import FerEdgeError
from fer_edge.runtime.media.images import ImageError, decode_image, read_image
from fer_edge.runtime.recognize.pipeline import Pipeline, PipelineOptions
from fer_edge.runtime.model.preprocess import as_bgr
from fer_edge.runtime.core.results import FaceResult, FrameResult
from fer_edge.runtime.media.sources import open_source

ImageInput = Union[str, os.PathLike, np.ndarray, bytes, bytearray, memoryview]
SourceInput = Union[int, str, os.PathLike]
# the runtime's options a Recognizer takes as keywords (besides model and detector): PipelineOptions' fields
OPTIONS = tuple(f.name for f in dataclasses.fields(PipelineOptions) if f.name not in ("model", "detector"))


def load_image(image: ImageInput) -> np.ndarray:
    """A path, the bytes of an image file, or a uint8 array (grey, BGR or BGRA) -> a BGR uint8 array.

    Files and bytes are read like the CLI's images (size checked from the header before decoding); anything
    else raises ImageError (a FerEdgeError) saying what was expected."""
    if isinstance(image, np.ndarray):
        return as_bgr(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return as_bgr(decode_image(bytes(image), "the image bytes"))
    if isinstance(image, (str, os.PathLike)):
        return as_bgr(read_image(image))
    raise ImageError(f"expected an image path, a numpy array (HxW or HxWx3 uint8, BGR) or the bytes of an image "
                     f"file, found {type(image).__name__}")


class Recognizer:
    """Facial expressions in photos and streams: a detector finds faces, the classifier labels each one.

    `model`: None (the shipped default), a shipped model's short name (`"vgg"`, `"lite"`) or a `.tflite` /
    `.onnx` file made by fer-convert. `detector`: `"yunet"` (default), `"haar"` or `"blazeface"`. Other
    keywords are the runtime's options, as `fer-edge` takes them (see `OPTIONS`): e.g. `threads=1`,
    `detect_size=640` (pixels wide the detector sees), `detect_options={"score": 0.7}`, `smooth=0.5`,
    `detect_every=3` (streams), `framing="box"`.

    Usable as a context manager; safe to reuse across calls and threads (calls to `analyze` take turns,
    each `stream` has its own tracks)."""

    def __init__(self, model: str | os.PathLike | None = None, detector: str = DEFAULT_DETECTOR, **options):
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise FerEdgeError(f"Recognizer does not take {', '.join(unknown)}: its options are model, detector, "
                               f"{', '.join(OPTIONS)}")
        self.options = PipelineOptions(model=model, detector=detector, **options)
        self._pipeline: Pipeline | None = Pipeline(self.options)  # loads the model now: a wrong path fails here
        self._lock = threading.Lock()

    @property
    def labels(self) -> tuple[str, ...]:
        """The model's labels, in its output order (the keys of every face's `probs`)."""
        return self._open().labels

    def analyze(self, image: ImageInput) -> list[FaceResult]:
        """The faces in one photo: for each, `box` (x, y, width, height in image pixels), `label`, `probs`
        (label -> probability, 0-1, summing to 1), `score` (the detector's confidence, 0-1), `landmarks`
        (five (x, y) points in image pixels where the detector gives them, else None) and `sure` (the top
        probability reaches the model's threshold or `min_confidence`). No face: []."""
        frame = load_image(image)
        with self._lock:
            return list(self._open().process_photo(frame).faces)

    def classify(self, image: ImageInput, boxes: list[tuple[int, int, int, int]]) -> list[dict[str, float]]:
        """Probabilities (label -> 0-1) for faces whose boxes (x, y, width, height in image pixels) you found
        yourself: no detection; a bare box has no landmarks, so the face is cut from the box alone (the detector's
        own faces are also levelled by their eyes), and scores can differ a little. A box outside the image raises."""
        frame = load_image(image)
        faces = []
        for box in boxes:
            x, y, w, h = (int(v) for v in box)
            face = clip_box(x, y, x + w, y + h, frame.shape)
            if face is None:
                raise FerEdgeError(f"box {tuple(box)} holds no face of at least {MIN_FACE} pixels inside the "
                                   f"{frame.shape[1]}x{frame.shape[0]} image")
            faces.append(face)
        if not faces:
            return []
        with self._lock:
            pipeline = self._open()
            probs = pipeline.classify_boxes(frame, faces)
        return [{k: float(v) for k, v in zip(pipeline.labels, p)} for p in probs]

    def stream(self, source: SourceInput, *, max_frames: int | None = None, loop: int = 1,
               stall_timeout: float = 5.0) -> Iterator[FrameResult]:
        """Results frame by frame from a camera index (0), a video file, an rtsp:// or http:// URL, a GStreamer
        pipeline or a folder of images; faces keep their `track` id across frames, `time` is in seconds (media
        time for files); each result's `visits` holds the visit events of its frame (start, update, end; the last
        result of a file ends every visit still open). A wrong source raises here, at the call; the source is
        closed when the loop ends, breaks or raises."""
        return (result for _, result in self.frames(source, max_frames=max_frames, loop=loop,
                                                    stall_timeout=stall_timeout))

    def frames(self, source: SourceInput, *, max_frames: int | None = None, loop: int = 1,
               stall_timeout: float = 5.0) -> Iterator[tuple[np.ndarray, FrameResult]]:
        """Like `stream`, with each frame's BGR image beside its result (to draw on or show: `draw`)."""
        self._open()
        if max_frames is not None and max_frames < 1:
            raise FerEdgeError(f"max_frames must be 1 or more, found {max_frames}")
        src = open_source(source, loop=loop, stall_timeout=stall_timeout)
        try:
            pipeline = Pipeline(self.options)  # its own tracks, so streams and analyze calls do not mix
        except BaseException:
            src.close()
            raise
        return self._frames(pipeline, src, max_frames)

    @staticmethod
    def _frames(pipeline: Pipeline, source, max_frames: int | None) -> Iterator[tuple[np.ndarray, FrameResult]]:
        with pipeline:
            results = pipeline.results(source, max_frames=max_frames)
            try:
                for frame, result in results:
                    yield as_bgr(frame.image), result
            finally:
                results.close()  # closes the source at once when the caller's loop breaks

    @staticmethod
    def draw(image: np.ndarray, result: FrameResult | list[FaceResult]) -> np.ndarray:
        """A copy of a BGR image with each face's box, label and probability bars (as `fer-edge --record`)."""
        if isinstance(result, list):
            result = FrameResult(0, 0.0, result)
        return draw(as_bgr(image), result)

    def _open(self) -> Pipeline:
        if self._pipeline is None:
            raise FerEdgeError("this Recognizer is closed: make a new one")
        return self._pipeline

    def close(self) -> None:
        """Free the model and the detector; the Recognizer cannot be used after."""
        with self._lock:
            if self._pipeline is not None:
                self._pipeline.close()
                self._pipeline = None

    def __enter__(self) -> "Recognizer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
