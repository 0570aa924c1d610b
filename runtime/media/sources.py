"""Frame sources: files give every frame; live sources hand over the newest frame and reconnect.

`open_source` picks the class from what it is given: a camera index, `picamera`, a video file, an image,
a folder of images, an RTSP/HTTP/RTMP/UDP URL, or a GStreamer pipeline string (anything holding `!`,
e.g. a Jetson CSI camera's `nvarguscamerasrc ! ... ! appsink`).

Every source yields `Frame`s; a frame that could not be decoded comes as `Frame(image=None)` so the
pipeline counts it and carries on. A live source's grabber thread reads continuously and keeps only
the newest frame (a slow consumer never sees stale ones); when the device or stream fails or stalls it
logs one line and reopens it with exponential backoff, for ever, until the source is closed.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from fer_edge.runtime.data.datasets import IMAGE_SUFFIXES
from fer_edge.runtime.core.errors import FerEdgeError
from fer_edge.runtime.core.redact import redact
from fer_edge.runtime.media.images import ImageError, read_image

log = logging.getLogger("fer_edge.runtime")

URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
PICAMERA_MISSING = ("--picamera needs picamera2, which comes with Raspberry Pi OS, not from pip: "
                    "sudo apt install python3-picamera2, then create the venv with --system-site-packages")
MAX_BAD_READS = 25  # consecutive failed reads of a video file before it is treated as ended


class SourceError(FerEdgeError):
    """A frame source cannot be opened (wrong path, no such camera, unsupported kind)."""


@dataclass
class Frame:
    image: np.ndarray | None  # None: a frame that could not be decoded (counted as corrupt)
    index: int  # position in the stream, from 0, counting corrupt frames and every --loop pass
    time: float  # seconds: the media timestamp for files, seconds since opening for live sources
    name: str = ""  # file name for image sources
    drawing: object = None  # the annotated picture, set by the pipeline and shared by the sinks (drawing.Drawing)


class VideoFileSource:
    """Every frame of a video file, `loop` times over."""

    live = False
    stills = False

    def __init__(self, path: str | os.PathLike, loop: int = 1):
        self.path, self.loop = Path(path), max(1, int(loop))
        self.corrupt = 0
        self.reconnects = 0
        cap = cv2.VideoCapture(str(self.path))
        ok = cap.isOpened()
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) if ok else 0.0
        # frames in all passes, from the container (an estimate for some formats; 0: unknown): the progress bar's
        self.length = int(max(0.0, cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)) * self.loop if ok else 0
        cap.release()
        if not ok:
            raise SourceError(f"{self.path}: OpenCV cannot open this video file")
        self._cap = None

    def __iter__(self) -> Iterator[Frame]:
        index, offset = 0, 0.0
        for _ in range(self.loop):
            self._cap = cap = cv2.VideoCapture(str(self.path))
            count = cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0
            last_t, bad = 0.0, 0
            try:
                while True:
                    ok, image = cap.read()
                    pos = cap.get(cv2.CAP_PROP_POS_FRAMES)
                    if ok and image is not None and image.size:
                        # failed reads followed by a good frame were damaged frames; trailing ones, the end
                        for _ in range(bad):
                            self.corrupt += 1
                            yield Frame(None, index, offset + last_t)
                            index += 1
                        bad = 0
                        last_t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                        yield Frame(image, index, offset + last_t)
                        index += 1
                    else:
                        bad += 1  # a read fails at the end and on an undecodable frame: tell them apart
                        if bad >= MAX_BAD_READS or not count or pos >= count:
                            break
            finally:
                cap.release()
                self._cap = None
            offset += last_t + (1.0 / self.fps if self.fps else 0.0)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()


class ImageSource:
    """Image files (one, a list, or a folder's images in name order), `loop` times over."""

    live = False
    stills = True
    fps = 0.0

    def __init__(self, paths: list[Path], loop: int = 1):
        if not paths:
            raise SourceError("no images to read")
        self.paths, self.loop = paths, max(1, int(loop))
        self.length = len(paths) * self.loop  # images in all passes (the progress bar's total)
        self.corrupt = 0
        self.reconnects = 0

    @classmethod
    def from_path(cls, path: Path, loop: int = 1) -> "ImageSource":
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not files:
                raise SourceError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
            return cls(files, loop)
        read_image(path)  # one photo: an unreadable one is the user's error now, not a skipped frame
        return cls([path], loop)

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        for _ in range(self.loop):
            for p in self.paths:
                try:
                    image = read_image(p)  # grey, BGR and BGRA as they are; the size checked before decoding
                except ImageError as exc:
                    self.corrupt += 1
                    log.warning("%s, skipped", exc)
                    image = None
                yield Frame(image, index, 0.0, name=str(p))
                index += 1

    def close(self) -> None:
        pass


class LiveSource:
    """A camera or stream read by a grabber thread that keeps only the newest frame.

    `opener()` returns a VideoCapture-like object (`read() -> (ok, image)`, `release()`, optional
    `isOpened()`) or raises; it is called again after a failure, with backoff from `backoff` doubling
    up to `max_backoff` seconds. A stream with no new frame for `stall_timeout` seconds is reopened.
    """

    live = True
    stills = False
    fps = 0.0
    length = 0  # no known end: a live source shows no progress bar

    def __init__(self, opener: Callable[[], object], name: str, backoff: float = 0.5, max_backoff: float = 10.0,
                 stall_timeout: float = 5.0, fail_reads: int = 10):
        self.opener, self.name = opener, name
        self.backoff, self.max_backoff, self.stall_timeout, self.fail_reads = backoff, max_backoff, stall_timeout, fail_reads
        self.corrupt = 0
        self.reconnects = 0
        self._cond = threading.Condition()
        self._latest: np.ndarray | None = None
        self._seq = 0  # frames handed over by the grabber
        self._stop = threading.Event()
        self._generation = 0  # bumped to abandon a grabber stuck inside a blocking read
        self._reading_since: float | None = None  # when the current capture opened; None while (re)opening
        self._t0 = time.monotonic()
        self._thread: threading.Thread | None = None

    def stop_with(self, event: threading.Event) -> None:
        """End iteration, retries and reconnects when `event` is set (the run's stop: a signal, a closed window)."""
        self._stop = event

    def _open(self, generation: int):
        """A capture, retried with backoff; the failure is logged once, then at most once per max_backoff."""
        delay, attempts, logged = self.backoff, 0, None
        while not self._stop.is_set() and generation == self._generation:
            attempts += 1
            try:
                cap = self.opener()
                if cap is not None and getattr(cap, "isOpened", lambda: True)():
                    if logged is not None:
                        log.info("%s: opened after %d attempts", self.name, attempts)
                    return cap
                if cap is not None:
                    cap.release()
                why = "it did not open"
            except (OSError, RuntimeError, cv2.error, FerEdgeError) as exc:
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if logged is None:
                log.warning("%s: cannot open (%s); retrying with backoff up to %.0f s", self.name, why,
                            self.max_backoff)
                logged = time.monotonic()
            elif time.monotonic() - logged >= self.max_backoff:
                log.warning("%s: still cannot open after %d attempts (%s)", self.name, attempts, why)
                logged = time.monotonic()
            self._stop.wait(delay)
            delay = min(delay * 2, self.max_backoff)
        return None

    def _grab(self, generation: int) -> None:
        cap, fails = None, 0
        try:
            while not self._stop.is_set() and generation == self._generation:
                if cap is None:
                    self._reading_since = None
                    cap = self._open(generation)
                    if cap is None:
                        return
                    fails = 0
                    self._reading_since = time.monotonic()
                ok, image = cap.read()
                if generation != self._generation:
                    return  # a newer grabber took over while this read was blocked
                if ok and image is not None and getattr(image, "size", 0):
                    fails = 0
                    with self._cond:
                        self._latest, self._seq = image, self._seq + 1
                        self._cond.notify_all()
                    continue
                fails += 1
                if fails >= self.fail_reads:
                    log.warning("%s: lost the stream after %d failed reads; reconnecting", self.name, fails)
                    cap.release()
                    cap = None
                    with self._cond:
                        self.reconnects += 1
                    self._stop.wait(self.backoff)
        finally:
            if cap is not None:
                cap.release()

    def _start(self) -> None:
        self._generation += 1
        self._thread = threading.Thread(target=self._grab, args=(self._generation,), daemon=True,
                                        name=f"fer-edge-grabber-{self._generation}")
        self._thread.start()

    def __iter__(self) -> Iterator[Frame]:
        self._t0 = time.monotonic()
        self._start()
        seen, index, waited_since = 0, 0, time.monotonic()
        while not self._stop.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self._seq != seen or self._stop.is_set(), timeout=0.1)
                image, seq = self._latest, self._seq
            if self._stop.is_set():
                return
            if seq == seen:
                opened = self._reading_since  # a stall is an open stream that gives nothing, not a retry
                if opened is not None and time.monotonic() - max(waited_since, opened) > self.stall_timeout:
                    log.warning("%s: no frame for %.1f s; reopening", self.name, self.stall_timeout)
                    self.reconnects += 1
                    self._start()  # the old grabber exits when its read returns
                    waited_since = time.monotonic()
                continue
            seen, waited_since = seq, time.monotonic()
            yield Frame(image, index, time.monotonic() - self._t0)
            index += 1

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            # a grabber inside a blocking open or read (an RTSP timeout) is a daemon: it cannot delay the exit
            self._thread.join(timeout=0.5)


class _PiCamera:
    """picamera2 behind the VideoCapture surface LiveSource uses."""

    def __init__(self, size: tuple[int, int] = (640, 480)):
        try:
            from picamera2 import Picamera2  # noqa: PLC0415 (only on a Raspberry Pi)
        except ImportError:
            raise SourceError(PICAMERA_MISSING) from None
        self.cam = Picamera2()
        # RGB888 is B, G, R in memory: what OpenCV expects
        self.cam.configure(self.cam.create_video_configuration(main={"size": size, "format": "RGB888"}))
        self.cam.start()

    def read(self):
        return True, self.cam.capture_array("main")

    def release(self) -> None:
        self.cam.stop()
        self.cam.close()


def _capture(target, api: int = cv2.CAP_ANY, params: list[int] | None = None):
    def open_():
        return cv2.VideoCapture(target, api, params or [])
    return open_


def open_source(spec: str | int | None = None, camera: int | None = None, picamera: bool = False, loop: int = 1,
                **live_options):
    """A source from the command line's --camera N, --picamera or --source SPEC."""
    if picamera:
        try:
            import picamera2  # noqa: F401,PLC0415 (checked here so a missing package is an error, not a retry loop)
        except ImportError:
            raise SourceError(PICAMERA_MISSING) from None
        return LiveSource(_PiCamera, "picamera", **live_options)
    if camera is not None or (isinstance(spec, int)) or (isinstance(spec, str) and spec.isdigit()):
        index = int(camera if camera is not None else spec)
        return LiveSource(_capture(index), f"camera {index}", **live_options)
    if spec is None:
        raise SourceError("no source: pass --camera N, --picamera, --source FILE|FOLDER|URL|PIPELINE or --image PATH")
    text = str(spec)
    if text.lower().startswith(URL_SCHEMES):
        # timeouts so a dead server or a stalled stream returns from open/read instead of blocking for ever
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 10000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000]
        return LiveSource(_capture(text, cv2.CAP_FFMPEG, params), redact(text), **live_options)
    if "!" in text:
        if not cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER):
            raise SourceError("this OpenCV build cannot read GStreamer pipelines (pip wheels have no GStreamer): "
                              "use the system OpenCV (e.g. JetPack's python3-opencv, venv with --system-site-packages)")
        return LiveSource(_capture(text, cv2.CAP_GSTREAMER), "gstreamer pipeline", **live_options)
    path = Path(text)
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder (sources: a video file, an image, a folder of images, "
                          "an rtsp:// or http:// URL, a GStreamer pipeline, or --camera N)")
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource.from_path(path, loop)
    return VideoFileSource(path, loop)

