"""The `fer` package's documented API (`FER`, `Video`, `InvalidImage`) with fer-edge underneath; users import it
as `fer_edge.compat`. Same names, arguments and result shapes as fer 25.10; what differs is in docs/python.md:
faces come from YuNet (not Haar or MTCNN: no PyTorch, no TensorFlow), emotions from fer-edge's INT8 model,
whose probabilities are calibrated and so less extreme. pandas is needed only by the pandas methods
(`pip install 'fer-edge[compat]'`).
"""
from __future__ import annotations

import base64
import binascii
import csv
import logging
import os
import zipfile
from pathlib import Path

import cv2
import numpy as np

from fer_edge.runtime.media.drawing import draw
from fer_edge.runtime.core.errors import FerEdgeError, require
from fer_edge.runtime.media.images import ImageError, decode_image
from fer_edge.runtime.model.preprocess import FrameError
from fer_edge.runtime.recognize.recognizer import Recognizer, load_image
from fer_edge.runtime.core.results import FaceResult, FrameResult
from fer_edge.runtime.media.sources import SourceError, VideoFileSource

log = logging.getLogger("fer_edge.compat")


class InvalidImage(ImageError):
    """Not an image (fer.exceptions.InvalidImage): None (what cv2.imread gives for a file it cannot read), a
    missing or undecodable file, a bad base64 image, an array that is not uint8 HxW[x3|x4]."""


class InvalidOption(FerEdgeError, ValueError):
    """An argument fer would refuse with ValueError (and still a FerEdgeError)."""


def _load(img) -> np.ndarray:
    """fer's image inputs -> BGR: a path, a numpy array, a base64 `data:image/...` string; InvalidImage otherwise."""
    if img is None:
        raise InvalidImage("Image not valid: found None (cv2.imread gives None for a file it cannot read)")
    if isinstance(img, str) and img.startswith(("http://", "https://")):
        raise InvalidImage(f"{img}: fer_edge.compat does not download images: fetch it and pass the bytes or a path")
    try:
        if isinstance(img, str) and img.startswith("data:image/"):
            try:
                data = base64.b64decode(img.split(",", 1)[1], validate=True)
            except (IndexError, binascii.Error) as exc:
                raise InvalidImage(f"a data:image/ string whose base64 cannot be read ({exc})") from None
            return load_image(decode_image(data, "the base64 image"))
        return load_image(img)
    except (ImageError, FrameError) as exc:
        if isinstance(exc, InvalidImage):
            raise
        raise InvalidImage(str(exc)) from None


class FER:
    """fer's `FER`: `detect_emotions(img)` -> `[{"box": [x, y, w, h], "emotions": {label: p}}]` (p rounded to
    2 decimals as fer does), `top_emotion(img)` -> `(label, score)` or `(None, None)`.

    fer's arguments are accepted: `cascade_file` selects OpenCV's Haar detector with that cascade (OpenCV 4.x);
    `min_face_size` (pixels) drops smaller faces as fer does; `mtcnn`, `use_tflite`, `scale_factor`,
    `min_neighbors` and `offsets` are checked as fer checks them and otherwise have no effect (YuNet finds the
    faces, fer-edge's INT8 model runs on faces framed the FER2013 way); `tfserving=True` is refused. fer-edge's
    own keywords: `model` (a shipped name or a .tflite/.onnx file), `detector`, `threads`."""

    def __init__(self, cascade_file: str | None = None, mtcnn: bool = False, tfserving: bool = False,
                 use_tflite: bool = True, scale_factor: float = 1.1, min_face_size: int = 50,
                 min_neighbors: int = 5, offsets: tuple = (10, 10), *, model: str | os.PathLike | None = None,
                 detector: str | None = None, threads: int | None = None):
        if scale_factor <= 1.0:
            raise InvalidOption("scale_factor must be greater than 1.0")
        if min_face_size < 1:
            raise InvalidOption("min_face_size must be at least 1")
        if min_neighbors < 0:
            raise InvalidOption("min_neighbors must be non-negative")
        if not isinstance(offsets, (tuple, list)) or len(offsets) != 2:
            raise InvalidOption("offsets must be a tuple or list of length 2")
        if tfserving:
            raise InvalidOption("tfserving=True: fer-edge runs its model in this process, not through TensorFlow "
                                "Serving; leave tfserving out")
        self.min_face_size = int(min_face_size)
        self.mtcnn, self.use_tflite = bool(mtcnn), bool(use_tflite)  # kept for code that reads them; no effect
        options = {"detector_model": cascade_file} if cascade_file else {}
        self.recognizer = Recognizer(model, detector or ("haar" if cascade_file else "yunet"), threads=threads,
                                     **options)
        self.emotions: list[dict] = []

    def _get_labels(self) -> dict[int, str]:
        """fer's index -> class name, read from the model (FER2013's order for fer-edge's default model, which fer
        shares; a model of other classes gives its own)."""
        return dict(enumerate(self.recognizer.labels))

    def find_faces(self, img, bgr: bool = True) -> list[list[int]]:
        """Face boxes [x, y, w, h] in image pixels (at least `min_face_size` wide and high)."""
        return [list(f.box) for f in self._faces(_load(img))]

    def _faces(self, image: np.ndarray) -> list[FaceResult]:
        return [f for f in self.recognizer.analyze(image) if min(f.box[2:]) >= self.min_face_size]

    def detect_emotions(self, img, face_rectangles=None) -> list[dict]:
        """Faces and their emotions in an image path, a BGR (or grey) numpy array or a base64 data URI;
        `face_rectangles` ([x, y, w, h] each) skips detection. No face: []."""
        image = _load(img)
        if face_rectangles is None:
            found = [(list(f.box), f.probs) for f in self._faces(image)]
        else:
            boxes = [[int(v) for v in box] for box in face_rectangles]
            found = list(zip(boxes, self.recognizer.classify(image, boxes)))
        self.emotions = [{"box": box, "emotions": {k: round(float(p), 2) for k, p in probs.items()}}
                         for box, probs in found]
        return self.emotions

    def batch_detect_emotions(self, imgs: list) -> list[list[dict]]:
        return [self.detect_emotions(img) for img in imgs]

    def top_emotion(self, img) -> tuple[str | None, float | None]:
        """The first face's most likely emotion and its score, or (None, None) without a face."""
        faces = self.detect_emotions(img)
        if not faces:
            return None, None
        label = max(faces[0]["emotions"], key=faces[0]["emotions"].get)
        return label, faces[0]["emotions"][label]

    def close(self) -> None:
        self.recognizer.close()

    def __enter__(self) -> "FER":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Video:
    """fer's `Video(path).analyze(detector)`: one `detector.detect_emotions` per analysed frame, frames read by
    fer-edge's video source. `output="csv"` returns rows (and writes `data.csv` as fer does), `"pandas"` a
    DataFrame. fer's outputs by default: `outdir/NAME_output.EXT` (annotated video), one JPEG per frame zipped
    into `outdir/images.zip`. Accepted without effect: lang, include_audio, size_multiplier, batch_size,
    use_async_io."""

    def __init__(self, video_file: str | os.PathLike, outdir: str = "output", first_face_only: bool = True,
                 tempfile: str | None = None):
        if not os.path.exists(video_file):
            raise SourceError(f"Video file not found at {os.path.abspath(video_file)}")
        self.filepath, self.outdir, self.tempfile = str(video_file), str(outdir), tempfile
        self.filename = Path(self.filepath).name
        if not first_face_only:
            log.error("Only single-face charting is implemented")
        self.first_face_only = first_face_only

    def analyze(self, detector: FER, display: bool = False, output: str = "csv", frequency: int | None = None,
                max_results: int | None = None, save_fps: int | None = None, video_id: str | None = None,
                save_frames: bool = True, save_video: bool = True, annotate_frames: bool = True,
                zip_images: bool = True, detection_box: dict | None = None, lang: str = "en",
                include_audio: bool = False, size_multiplier: int = 1, batch_size: int = 1,
                use_async_io: bool = True):
        """Emotions of every `frequency`-th frame (or `fps // save_fps`), up to `max_results` frames; frames
        with no face are left out of the result, as in fer."""
        if output not in ("csv", "pandas"):
            raise InvalidOption(f"output must be 'csv' or 'pandas', found {output!r}")
        source = VideoFileSource(self.filepath)
        every = max(1, int(source.fps // save_fps) if save_fps else int(frequency or 1))
        root, ext = os.path.splitext(self.filename)
        writer = _FrameWriter(self.outdir, video_id or root, f"{root}_output{ext}", source.fps,
                              save_video, save_frames, self.tempfile)
        data, analysed = [], 0
        try:
            for frame in source:
                if frame.image is None or frame.index % every:
                    continue
                image = _crop(frame.image, detection_box)
                faces = _offset(detector.detect_emotions(image), detection_box)
                stop = writer.write(image, faces, annotate_frames, display)
                data += [faces] if faces else []
                analysed += 1
                if stop or (max_results and analysed >= max_results):
                    break
        finally:
            source.close()
            writer.close(zip_images)
        return self.to_pandas(data) if output == "pandas" else self.to_csv(data)

    @staticmethod
    def get_max_faces(data: list) -> int:
        return max((len(frame) for frame in data), default=0)

    @staticmethod
    def _to_dict(data: list) -> list[dict]:
        """Frames of faces -> one row per frame: box0, angry0, ..., box1, angry1, ... (rows pass through)."""
        if data and isinstance(data[0], dict):
            return data
        rows = []
        for frame in data:
            row = {}
            for i, face in enumerate(frame):
                row[f"box{i}"] = face["box"]
                row.update({f"{k}{i}": v for k, v in face["emotions"].items()})
            rows.append(row)
        return rows

    def to_csv(self, data: list, filename: str = "data.csv") -> list[dict]:
        """Rows to a CSV file (written under a temporary name, then renamed), and returned."""
        rows = self._to_dict(data)
        columns = sorted({k for r in rows for k in r}, key=_column_key)  # fer's order: angry0, angry1, box0, ...
        tmp = f"{filename}.partial"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, filename)
        return rows

    def to_pandas(self, data):
        """Rows (or fer's frames of faces) -> a DataFrame (first face only when `first_face_only`)."""
        pd = require("pandas", "compat")
        if isinstance(data, pd.DataFrame):
            return data
        if not len(data):
            return pd.DataFrame()
        df = pd.DataFrame(self._to_dict(data))
        return self.get_first_face(df) if self.first_face_only else df

    @staticmethod
    def get_first_face(df):
        """The first face's columns (box0, angry0, ... -> box, angry, ...)."""
        pd = require("pandas", "compat")
        if not isinstance(df, pd.DataFrame):
            raise InvalidOption(f"get_first_face takes a pandas DataFrame, found {type(df).__name__}")
        if not len(df.columns) or not str(df.columns[0])[-1].isdigit():
            return df  # already one face
        columns = [c for c in df.columns if str(c).endswith("0") and str(c)[:-1].isalpha()]
        single = df[columns].copy()
        single.columns = [c[:-1] for c in columns]
        return single

    @staticmethod
    def get_emotions(df):
        """The emotion columns (every column but the boxes)."""
        require("pandas", "compat")
        return df[[c for c in df.columns if "box" not in str(c)]]


def _column_key(name: str) -> tuple[str, int]:
    """box12 -> ("box", 12)."""
    stem = name.rstrip("0123456789")
    return stem, int(name[len(stem):] or 0)


def _crop(image: np.ndarray, box: dict | None) -> np.ndarray:
    if box is None:
        return image
    return image[box.get("y_min"):box.get("y_max"), box.get("x_min"):box.get("x_max")]


def _offset(faces: list[dict], box: dict | None) -> list[dict]:
    if box is None:
        return faces
    for face in faces:
        x, y, w, h = face["box"]
        face["box"] = [x + box.get("x_min", 0), y + box.get("y_min", 0), w, h]
    return faces


class _FrameWriter:
    """Video.analyze's outputs: the annotated video (temporary name, renamed when complete), one JPEG per frame
    (zipped at the end when asked), the window. Nothing is written unless asked."""

    def __init__(self, outdir: str, prefix: str, video_name: str, fps: float, save_video: bool,
                 save_frames: bool, tempfile: str | None):
        self.outdir, self.prefix, self.fps = Path(outdir), prefix, fps if 0 < fps <= 240 else 25.0
        self.video = self.outdir / video_name if save_video else None
        self.partial = Path(tempfile) if tempfile else self.outdir / f".{video_name}.partial{Path(video_name).suffix}"
        self.save_frames, self.frames, self.writer, self.shown = save_frames, [], None, False
        if save_video or save_frames:
            self.outdir.mkdir(parents=True, exist_ok=True)

    def write(self, image: np.ndarray, faces: list[dict], annotate: bool, display: bool) -> bool:
        """Writes one frame; True when the window asked to stop (q)."""
        if annotate and (self.video or self.save_frames or display):
            image = draw(image, FrameResult(0, 0.0, [FaceResult(tuple(f["box"]), max(f["emotions"],
                         key=f["emotions"].get), f["emotions"], n) for n, f in enumerate(faces)]))
        if self.video is not None:
            if self.writer is None:
                self.writer = cv2.VideoWriter(str(self.partial), cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                              image.shape[1::-1])
            self.writer.write(image)
        if self.save_frames:
            path = self.outdir / f"{self.prefix}{len(self.frames)}.jpg"
            cv2.imwrite(str(path), image)
            self.frames.append(path)
        if display:
            self.shown = True
            cv2.imshow("Video", image)
            return cv2.waitKey(1) & 0xFF == ord("q")
        return False

    def close(self, zip_images: bool) -> None:
        if self.writer is not None:
            self.writer.release()
            os.replace(self.partial, self.video)
        if self.frames and zip_images:
            with zipfile.ZipFile(self.outdir / "images.zip", "w") as z:
                for path in self.frames:
                    z.write(path, arcname=path.name)
                    path.unlink()
        if self.shown:
            cv2.destroyWindow("Video")
