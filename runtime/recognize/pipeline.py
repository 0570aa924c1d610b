"""The frame pipeline: frame -> faces -> crops -> classifier -> tracks and smoothing -> results.

    opts = PipelineOptions(model="models/fer-vgg_int8.tflite", detector="yunet", detect_size=320)
    with Pipeline(opts) as pipe:
        result = pipe.process(frame)            # one frame of a stream (tracks carry over)
        result = pipe.process_image(photo)      # one unrelated photo
        stats = pipe.run(source, sinks, stop)   # a whole source, until it ends or `stop` is set

Results are typed and never None: a frame without a face has `faces == []`.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from fer_edge.runtime.model.backends import Classifier
from fer_edge.runtime.model.metadata import ModelFlags
from fer_edge.runtime.core.boxes import FaceBox
from fer_edge.runtime.faces.detectors import DEFAULT_DETECTOR, DETECTORS, detect_at, make_detector
from fer_edge.runtime.media.drawing import Drawing
from fer_edge.runtime.core.errors import FerEdgeError, ModelError
from fer_edge.runtime.core.stop import check as check_stop
from fer_edge.runtime.faces.framing import FRAMINGS, crop_source, face_crops
from fer_edge.runtime.media.images import MIN_SIDE
from fer_edge.runtime.model.preprocess import FrameError, as_bgr
from fer_edge.runtime.core.results import FaceResult, FrameResult
from fer_edge.runtime.faces.schedule import DEFAULT_RECHECK, Schedule
from fer_edge.runtime.media.sinks import Sink, finish_all
from fer_edge.runtime.media.sources import Frame
from fer_edge.runtime.model.shipped import shipped_file, shipped_models
from fer_edge.runtime.faces.tracking import Tracker
from fer_edge.runtime.faces.facestats import FaceStats
from fer_edge.runtime.faces.occupancy import DEFAULT_HOLD, Occupancy, check_hold
from fer_edge.runtime.faces.visits import DEFAULT_MIN_VISIT, Visits, check_visit_options
from fer_edge.runtime.data.confidence import check_min_confidence

log = logging.getLogger("fer_edge.runtime")

DEFAULT_MODEL = "fer-vgg_int8.tflite"
STAGES = ("read", "detect", "track", "classify", "output")


def default_model() -> Path:
    """The model shipped in the fer_edge.models package data."""
    path = shipped_file(DEFAULT_MODEL)
    if path is None:
        raise ModelError(f"this install ships no default model ({DEFAULT_MODEL} in fer_edge.models): "
                         "pass --model FILE (.tflite or .onnx, made by fer-convert)")
    return path


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
    flags: ModelFlags | None = None  # what the user states about a model without metadata (--labels, --colour ...)
    threads: int | None = None
    providers: list[str] | None = None  # onnxruntime execution providers
    kernels: str | None = None  # LiteRT: default (XNNPACK, when None) | builtin
    detector: str = DEFAULT_DETECTOR
    detector_model: str | os.PathLike | None = None
    detect_options: dict = field(default_factory=dict)  # the detector's own options: score, nms (see OPTIONS)
    detect_size: int | None = None  # width of the copy detection runs on; None: the detector's default
    framing: str = "fer2013"  # how faces are cut for the classifier: see framing.FRAMINGS
    detect_every: int = 1  # run the detector every K frames, follow the boxes in between
    smooth: float = 0.0  # EMA weight of the past per track, in [0, 1); 0 = off
    max_missed: int = 3  # detector runs a track survives without a matching box
    iou_threshold: float = 0.3
    full_rate: bool = False  # streams: detect and classify every face on every frame (else: runtime/faces/schedule.py)
    recheck: float = DEFAULT_RECHECK  # seconds between full detections of a changed picture (the schedule's)
    min_confidence: float | None = None  # a face is sure from this top probability; None: the model's threshold
    min_visit: float = DEFAULT_MIN_VISIT  # seconds a track must last to be a visit
    visit_update: float | None = None  # seconds between a visit's update events; None: none
    in_view_hold: float = DEFAULT_HOLD  # seconds without a sure track before "in view" turns off

    def __post_init__(self):
        if self.min_confidence is not None:
            self.min_confidence = check_min_confidence(self.min_confidence)
        check_visit_options(self.min_visit, self.visit_update)
        self.in_view_hold = check_hold(self.in_view_hold)
        if not (isinstance(self.recheck, (int, float)) and math.isfinite(self.recheck) and self.recheck > 0):
            raise FerEdgeError(f"--recheck must be a number of seconds above 0, found {self.recheck}")
        if int(self.detect_every) < 1:
            raise FerEdgeError(f"--detect-every must be 1 or more, found {self.detect_every}")
        if not 0.0 <= float(self.smooth) < 1.0:
            raise FerEdgeError(f"--smooth must be in [0, 1), found {self.smooth}")
        if self.threads is not None and int(self.threads) < 1:
            raise FerEdgeError(f"--threads must be 1 or more, found {self.threads}")
        if self.detect_size is not None and not 32 <= int(self.detect_size) <= 8192:
            raise FerEdgeError(f"--detect-size must be between 32 and 8192 pixels, found {self.detect_size}")
        if self.framing not in FRAMINGS:
            raise FerEdgeError(f"unknown framing {self.framing!r}: expected one of {', '.join(FRAMINGS)}")


def stream_widths(detect_size: int | None, sizes: tuple) -> tuple[int | None, int | None]:
    """The schedule's detect widths: (whole frame, small faces), from --detect-size and the detector's sizes;
    the small-face width is never below the whole-frame one (None: the whole frame, unshrunk)."""
    stream, fine = detect_size or sizes[0], sizes[1]
    if stream is None or fine is None:
        return stream, None
    return stream, max(stream, fine)


class RunStats:
    """Counts and timings of one run, turned into the end-of-run summary."""

    def __init__(self, labels: tuple[str, ...]):
        self.labels = labels
        self.frames = self.corrupt = self.frames_with_face = self.reconnects = 0
        self.face_stats = FaceStats()  # every face of the run (runtime/faces/facestats.py)
        self.track_stats: dict[int, tuple] = {}  # id(Track) -> (the track, its FaceStats)
        self.stage_s = dict.fromkeys(STAGES, 0.0)
        self.schedule: Counter = Counter()  # what ran: full / region detections, classifications, skipped frames
        self.full_rate = False
        self.started, self.cpu_started = time.perf_counter(), time.process_time()
        self.seconds = self.cpu_seconds = 0.0  # wall-clock and CPU (every thread of the process) seconds of the run
        self.unreadable: list[str] = []  # names of image files that could not be decoded
        self.stopped_by = "end of source"
        self.visits = 0  # visits reported (ended)
        self.in_view = {"periods": 0, "seconds": 0.0}  # runtime/faces/occupancy.py's figures

    @property
    def faces(self) -> int:
        return self.face_stats.faces

    def add(self, result: FrameResult) -> None:
        self.frames += 1
        self.frames_with_face += bool(result.faces)
        self.face_stats.add_all(result.faces)

    def of_track(self, track) -> FaceStats:
        """The statistics of one track (a Track object: a folder's photos each number theirs from 1)."""
        return self.track_stats.setdefault(id(track), (track, FaceStats()))[1]

    def track_rows(self) -> list[dict]:
        rows = []
        for t, s in sorted(self.track_stats.values(), key=lambda ts: ts[0].id):
            label = s.dominant()
            rows.append({"track": t.id, "frames": s.faces, "dominant": label,
                         "share": round(s.counts[label] / s.sure, 4) if label else 0.0, "unsure_frames": s.unsure})
        return rows

    def summary(self) -> dict:
        n = max(self.frames, 1)
        return {
            "frames": self.frames, "corrupt_frames": self.corrupt, "reconnects": self.reconnects,
            "stopped_by": self.stopped_by, "seconds": round(self.seconds, 3),
            "fps": round(self.frames / self.seconds, 2) if self.seconds > 0 else 0.0,
            "cpu_seconds": round(self.cpu_seconds, 3),
            "stage_ms": {k: round(v * 1000 / n, 3) for k, v in self.stage_s.items()},
            "faces": self.faces, "frames_with_face": self.frames_with_face,
            "unsure_faces": self.face_stats.unsure, "visits": self.visits, "in_view": self.in_view,
            "emotion_share": self.face_stats.shares(self.labels),
            "tracks": self.track_rows(), "unreadable": self.unreadable, "schedule": self.schedule_summary(),
        }

    def schedule_summary(self) -> dict:
        n, c = max(self.frames, 1), self.schedule
        return {"mode": "full rate" if self.full_rate else "scheduled", "full_detections": c["full_detections"],
                "fine_detections": c["fine_detections"], "region_detections": c["region_detections"],
                "region_pixels": c["region_pixels"],
                "motion_searches": c["motion_searches"], "frames_skipped": c["frames_skipped"],
                "classifications_per_frame": round(c["classifications"] / n, 3)}


class Pipeline:
    def __init__(self, options: PipelineOptions | None = None, **overrides):
        self.options = opts = options or PipelineOptions(**overrides)
        self.classifier = Classifier(resolve_model(opts.model), opts.flags, threads=opts.threads, providers=opts.providers,
                                     kernels=opts.kernels)
        landmarks = getattr(DETECTORS.get(opts.detector), "LANDMARKS", True)
        if self.classifier.meta.preprocess.align == "5point" and not landmarks:
            raise ModelError(f"{self.classifier.path.name} aligns faces on five landmarks (--align 5point) but detector "
                             f"{opts.detector} gives none: use --detector yunet or blazeface")
        self.detector = make_detector(opts.detector, opts.detector_model, threads=opts.threads, **opts.detect_options)
        self.framing = FRAMINGS[opts.framing]
        self.labels = self.classifier.labels
        self.tracker = Tracker(opts.iou_threshold, opts.max_missed, opts.smooth)
        self.stats = RunStats(self.labels)
        self.threshold = self._threshold()
        self.visits, self.final_visits = Visits(opts.min_visit, opts.visit_update), []
        self.occupancy = Occupancy(opts.in_view_hold)
        self._since_detect = 0
        self.schedule = None if opts.full_rate else Schedule(
            self.detector,
            make_detector(opts.detector, opts.detector_model, threads=opts.threads, **opts.detect_options),
            stream_widths(opts.detect_size, self.detector.SIZES), opts.recheck)

    def _threshold(self) -> float:
        """--min-confidence, else the model's own threshold, else 0 (every face sure) and one line saying so."""
        if self.options.min_confidence is not None:
            return self.options.min_confidence
        if self.classifier.meta.threshold is None:
            log.info("%s carries no confidence threshold (a file made before fer-edge chose one): every face counts "
                     "as sure; --min-confidence P sets one", self.classifier.path.name)
            return 0.0
        return self.classifier.meta.threshold

    # -- one frame ------------------------------------------------------------------------------

    def process(self, image, index: int = 0, t: float = 0.0, source: str = "", still: bool = False) -> FrameResult:
        """One frame of a stream: the schedule (runtime/faces/schedule.py) decides what to detect and classify;
        with --full-rate or --detect-every K, and for still images, every face is detected (every K frames)
        and classified."""
        frame = as_bgr(image)
        t0 = time.perf_counter()
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)  # once per frame: detector, tracker and crops share it
        if self.schedule is None or still or self.options.detect_every > 1:
            tracks, todo, t1, t2 = self._every_frame(frame, gray, still, t0)
            crops = self._crops(frame, gray, [tr.box for tr in todo])
        else:
            tracks, todo, crops, t1, t2 = self._scheduled(frame, gray, t, t0)
        raw = self.classifier.predict(crops) if todo else []
        t3 = time.perf_counter()
        faces = self._report(tracks, dict(zip((tr.id for tr in todo), raw)))
        s = self.stats.stage_s
        s["detect"] += t1 - t0
        s["track"] += (t2 - t1) + (time.perf_counter() - t3)
        s["classify"] += t3 - t2
        self.stats.schedule["classifications"] += len(todo)
        return FrameResult(index, t, faces, source)

    def _every_frame(self, frame, gray, still: bool, t0: float):
        """Today's schedule: the detector on every K-th frame (every frame by default), every face classified."""
        detect = self._since_detect % self.options.detect_every == 0 or not self.tracker.tracks
        # a sliver (2000x1) holds no face, and detectors that downscale it would make it 0 pixels high
        boxes = (self.detect(frame, gray, still) if min(frame.shape[:2]) >= MIN_SIDE else []) if detect else None
        t1 = time.perf_counter()
        tracks = self.tracker.update(boxes, gray) if detect else self.tracker.follow(gray)
        self._since_detect = 1 if detect else self._since_detect + 1
        self.stats.schedule["full_detections"] += detect
        self.stats.schedule["frames_skipped"] += not detect
        return tracks, tracks, t1, time.perf_counter()

    def _scheduled(self, frame, gray, t: float, t0: float):
        """The stream schedule: what moved is looked at, what is still is held (runtime/faces/schedule.py)."""
        if min(frame.shape[:2]) < MIN_SIDE:
            boxes, step = [], None
        else:
            if self.schedule.detector is not self.detector:  # a detector swapped in after construction
                self.schedule.detector = self.schedule.region_detector = self.detector
                self.schedule.stream_width, self.schedule.fine_width = stream_widths(self.options.detect_size,
                                                                                     self.detector.SIZES)
            boxes, step = self.schedule.detect(frame, gray, self.tracker.tracks, t)
            self.stats.schedule.update(step.counts())
        t1 = time.perf_counter()
        tracks = self.tracker.update(boxes, gray, None if step is None else step.checked)
        # the crops of the faces that may be due: the schedule compares each with the one it was last classified on
        todo, crops = self.schedule.to_classify(tracks, lambda due: self._crops(frame, gray, [tr.box for tr in due]))
        return tracks, todo, crops, t1, time.perf_counter()

    def _crops(self, frame, gray, boxes: list[FaceBox]) -> list[np.ndarray]:
        """The faces as the classifier takes them: cut from the grey frame (a grey model) or the colour one."""
        spec = self.classifier.meta.preprocess
        return face_crops(crop_source(frame, gray, spec), boxes, spec, self.framing)

    def _report(self, tracks, raw: dict) -> list[FaceResult]:
        """Every tracked face, with its new probabilities where it was classified, else the ones it holds."""
        faces = []
        for tr in tracks:
            if tr.id in raw:
                p = self.tracker.smooth_probs(tr, raw[tr.id])
                if self.schedule is not None:
                    self.schedule.classified(tr, raw[tr.id])
            else:
                p = tr.probs
            label, sure = self.labels[int(np.argmax(p))], float(np.max(p)) >= self.threshold
            faces.append(FaceResult(tr.box.box, label, {k: float(v) for k, v in zip(self.labels, p)}, tr.id,
                                    tr.box.score, tr.box.landmarks, sure))
            self.stats.of_track(tr).add(faces[-1])
        return faces

    def detect(self, frame: np.ndarray, gray: np.ndarray, still: bool = False) -> list[FaceBox]:
        """Faces found on a copy shrunk to the detect size (photos and streams have their own defaults)."""
        return detect_at(self.detector, frame, gray, self.options.detect_size or self.detector.SIZES[1 if still else 0])

    def process_image(self, image, index: int = 0, t: float = 0.0, source: str = "") -> FrameResult:
        """One photo unrelated to the previous one: fresh tracks, the detector always runs."""
        self.tracker.reset()
        if self.schedule is not None:
            self.schedule.reset()
        self._since_detect = 0
        return self.process(image, index, t, source, still=True)

    def process_photo(self, image, source: str = "") -> FrameResult:
        """One photo on its own (the HTTP API, fer_edge.Recognizer.analyze): fresh tracks numbered from 1 and
        none kept from earlier photos, so a long-lived pipeline does not grow with every request."""
        opts = self.options
        self.tracker = Tracker(opts.iou_threshold, opts.max_missed, opts.smooth)
        return self.process_image(image, source=source)

    def classify_boxes(self, image, boxes: list[FaceBox], gray: np.ndarray | None = None) -> np.ndarray:
        """Probabilities for given faces (no detection, no tracking), framed like the pipeline's own, cut from
        the grey frame for a grey model and from the colour one for a colour model."""
        frame = as_bgr(image)
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if gray is None else gray
        return self.classifier.predict(self._crops(frame, gray, boxes))

    # -- a whole source -------------------------------------------------------------------------

    def run(self, source, sinks: Sequence[Sink] = (), stop: threading.Event | None = None,
            max_frames: int | None = None, keep_on_failure: bool | None = None) -> RunStats:
        """Process a source until it ends, `stop` is set or a sink asks to stop; then every sink is finished
        (runtime/media/sinks.py), committing its output. A run that fails commits nothing, unless
        `keep_on_failure` (default: a live source): a service keeps what it recorded."""
        stop = stop or threading.Event()
        keep = getattr(source, "live", False) if keep_on_failure is None else keep_on_failure
        results = self.results(source, stop, max_frames)
        try:
            for frame, result in results:
                t0 = time.perf_counter()
                for sink in sinks:
                    if sink.write(frame, result) is False:
                        self.stats.stopped_by = f"{type(sink).__name__} (window closed)"
                        stop.set()
                self.stats.stage_s["output"] += time.perf_counter() - t0
            if self.final_visits:  # a live source's visits still open when it stopped
                for sink in sinks:
                    sink.write_visits(self.final_visits)
        except BaseException:  # a stop of a finite run, a failure
            results.close()
            try:
                finish_all(sinks, commit=keep)
            except Exception as exc:  # the run's own failure is the one to report
                log.warning("an output could not be finished after the run failed: %s", exc)
            raise
        results.close()  # the source closes and the stats are complete before the sinks finish
        finish_all(sinks, commit=True)
        return self.stats

    def results(self, source, stop: threading.Event | None = None,
                max_frames: int | None = None) -> Iterator[tuple[Frame, FrameResult]]:
        """Each frame of a source with its result, until the source ends, `stop` is set or `max_frames`;
        the source is closed however the iteration ends (a `break` included). `run` and
        `fer_edge.Recognizer.stream` are both this loop; `self.stats` counts it. Each result carries its visit
        events (runtime.faces.visits). From a file, a frame is handed on once the next one is read, so the last
        frame's result carries the end of every visit still open when the file ends; a live source's frames go
        on at once (no added latency), and the visits open when it stops end in `self.final_visits`."""
        self.visits, self.final_visits = Visits(self.options.min_visit, self.options.visit_update), []
        self.occupancy = Occupancy(self.options.in_view_hold)
        frames, live = self._results(source, stop, max_frames), getattr(source, "live", False)
        held = None
        try:
            for item in frames:
                if held is not None:
                    yield held
                held = None if live else item
                if live:
                    yield item
            ends = self.visits.close()
            self.stats.visits = self.visits.reported
            if held is not None:
                held[1].visits.extend(ends)
                yield held
            else:
                self.final_visits = ends
        finally:
            frames.close()

    def _results(self, source, stop: threading.Event | None, max_frames: int | None):
        stop = stop or threading.Event()
        stats = self.stats = RunStats(self.labels)
        stats.full_rate = self.schedule is None or getattr(source, "stills", False) or self.options.detect_every > 1
        if hasattr(source, "stop_with"):
            source.stop_with(stop)  # a live source retrying a dead camera must end when the run is stopped
        frames = iter(source)
        try:
            while not stop.is_set():
                check_stop()  # SIGTERM/SIGINT on a finite source (a live one sets `stop` instead)
                t0 = time.perf_counter()
                frame = next(frames, None)
                stats.stage_s["read"] += time.perf_counter() - t0
                if frame is None or stop.is_set():
                    break
                result = self._frame_result(source, frame)
                if result is None:
                    continue
                stats.add(result)
                yield frame, result
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
            stats.cpu_seconds = time.process_time() - stats.cpu_started
            stats.reconnects = getattr(source, "reconnects", 0)
            stats.in_view = self.occupancy.figures()

    def _frame_result(self, source, frame: Frame) -> FrameResult | None:
        """One frame of a source processed (unrelated photos without tracking), or None for a frame that could
        not be decoded or processed (counted as corrupt, named in the summary)."""
        stats = self.stats
        name = Path(frame.name).name if frame.name else ""
        if frame.image is not None:
            try:
                image = as_bgr(frame.image)
                result = (self.process_image(image, frame.index, frame.time, name) if getattr(source, "stills", False)
                          else self.process(image, frame.index, frame.time, name))
            except FrameError as exc:
                log.warning("frame %d skipped: %s", frame.index, exc)
            else:
                frame.drawing = Drawing(image, result)  # drawn once, on first use, for every sink that shows it
                if not getattr(source, "stills", False):  # unrelated photos make no visits, nor presence
                    result.visits.extend(self.visits.update(result))
                    stats.visits = self.visits.reported
                    self.occupancy.update(result)
                    result = replace(result, in_view=self.occupancy.in_view)
                return result
        stats.corrupt += 1  # an undecodable frame: the source counted and logged it too; here it is skipped
        if name:
            stats.unreadable.append(name)
        return None

    # -- cleanup ---------------------------------------------------------------------------------

    def close(self) -> None:
        self.detector.close()
        if self.schedule is not None:
            self.schedule.region_detector.close()
        self.classifier = None

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
