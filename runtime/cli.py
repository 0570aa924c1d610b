"""fer-edge: faces and emotions from a camera, stream, video, image or folder; `verify` checks accuracy.

    fer-edge --camera 0                                   # window if OpenCV has a GUI, summary on Ctrl-C
    fer-edge --source video.mp4 --json out.jsonl --record out.mp4
    fer-edge --source rtsp://cam/stream --detect-every 3 --timeline emotions.png
    fer-edge --image photo.jpg [--record annotated.jpg]
    fer-edge verify --model models/fer-vgg_int8.tflite --data ../shared/data
    fer-edge --config /etc/fer-edge/config.toml --mqtt mqtt://broker:1883/fer/door --serve 0.0.0.0:8080
    fer-edge serve-api --port 8000                        # HTTP API: POST /predict, GET /health

Thin: parses, builds a Pipeline, wires sinks and signals, prints `ErrorType: message` for user errors.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from fer_edge.runtime.core.errors import FerEdgeError, cli_main
import fer_edge.runtime.core.stop as stop
from fer_edge.runtime.core.stop import check as check_stop
from fer_edge.runtime.cli_args import (add_mqtt_arguments, add_preview_arguments, classifier_options,
                                      detector_arguments, detector_options, min_confidence_argument,
                                      model_arguments, mqtt_options, preview_options)
from fer_edge.runtime.config import ConfigurableParser, add_config_argument, with_config
from fer_edge.runtime.serve.service import add_service_arguments, check_service_arguments, json_rotation, start_mqtt

log = logging.getLogger("fer_edge.runtime")


def run_parser() -> ConfigurableParser:
    from fer_edge.runtime.faces.schedule import DEFAULT_RECHECK, STILL_RECHECKS
    from fer_edge.runtime.faces.occupancy import DEFAULT_HOLD
    from fer_edge.runtime.faces.visits import DEFAULT_MIN_VISIT

    p = ConfigurableParser(prog="fer-edge", description="Facial expressions from a camera, stream or file. "
                                "`fer-edge verify --help` for on-device accuracy checks.")
    src = p.add_argument_group("source (one of)").add_mutually_exclusive_group(required=True)
    src.add_argument("--camera", type=int, metavar="N", help="OpenCV camera index")
    src.add_argument("--picamera", action="store_true", help="Raspberry Pi camera through picamera2")
    src.add_argument("--source", metavar="SPEC", help="video file, image, folder of images, rtsp/http URL or "
                     "GStreamer pipeline")
    src.add_argument("--image", metavar="PATH", help="one photo (or a folder): print its faces and emotions")
    model_arguments(p)
    d = p.add_argument_group("detection and tracking")
    detector_arguments(d)
    d.add_argument("--detect-every", type=int, default=1, metavar="K", help="run the detector every K frames, "
                   "follow faces in between (default 1)")
    d.add_argument("--full-rate", action="store_true", help="detect and classify every face on every frame "
                   "(the reference for measurements; default: look again only where the picture changed)")
    d.add_argument("--recheck", type=float, default=DEFAULT_RECHECK, metavar="S", help="seconds between full "
                   f"detections of a stream whose picture changed (default {DEFAULT_RECHECK:g}): a face that "
                   "appears without motion is found within S seconds; an unchanged picture is searched every "
                   f"{STILL_RECHECKS} S")
    d.add_argument("--smooth", type=float, default=0.0, metavar="A", help="per-track EMA of probabilities: "
                   "A * previous + (1 - A) * new, A in [0, 1) (default 0 = off)")
    v = p.add_argument_group("sure faces and visits")
    min_confidence_argument(v)
    v.add_argument("--visits", metavar="FILE.jsonl", help="visit events as JSON Lines: start, update, end (a track "
                   "from the frame it appears to the frame it is dropped); rotated like --json ('-' = stdout)")
    v.add_argument("--min-visit", type=float, default=DEFAULT_MIN_VISIT, metavar="S", help="a track shorter than S "
                   f"seconds is no visit (default {DEFAULT_MIN_VISIT:g}: a false detection is no event)")
    v.add_argument("--visit-update", type=float, metavar="S", help="an update event every S seconds while a visit "
                   "lasts (default: none)")
    v.add_argument("--in-view-hold", type=float, default=DEFAULT_HOLD, metavar="S", help="'in view' (Home "
                   "Assistant's occupancy, the preview, the summary) stays on S seconds after the last face the model "
                   f"was sure of is gone (default {DEFAULT_HOLD:g}): an unsure frame or a face lost for a moment "
                   "changes nothing")
    o = p.add_argument_group("outputs")
    o.add_argument("--json", metavar="FILE", help="JSON Lines, one object per frame ('-' = stdout)")
    o.add_argument("--record", metavar="FILE", help="annotated video (.mp4/.avi/.mkv) or image (.jpg/.png)")
    o.add_argument("--window", choices=("auto", "on", "off"), default="auto",
                   help="show annotated frames (auto: when OpenCV has a GUI and a display)")
    o.add_argument("--summary", metavar="FILE", help="also write the end-of-run summary as JSON")
    o.add_argument("--timeline", metavar="FILE.png", help="draw each track's emotion probabilities over time "
                   "into this image when the run ends")
    o.add_argument("--report", metavar="FILE.html", help="write one self-contained page about the run when it ends "
                   "(summary, each track's timeline, share of each emotion, tracks or photos, model, command)")
    o.add_argument("--force", action="store_true", help="overwrite existing output files")
    o.add_argument("--quiet", action="store_true", help="no summary and no progress bar on stderr")
    r = p.add_argument_group("run")
    r.add_argument("--loop", type=int, default=1, metavar="N", help="pass over a file source N times")
    r.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    r.add_argument("--stall-timeout", type=float, default=5.0, metavar="S",
                   help="reopen a live source that gave no frame for S seconds (default 5)")
    add_mqtt_arguments(p)
    add_preview_arguments(p)
    add_service_arguments(p)
    add_config_argument(p)
    return p


def verify_parser() -> ConfigurableParser:
    p = ConfigurableParser(prog="fer-edge verify", description="Accuracy of a model on this device, "
                                "with the runtime alone (no TensorFlow).")
    model_arguments(p)
    p.add_argument("--data", required=True, help="fer2013.npz, fer2013.csv, an image-folder root or a data folder")
    p.add_argument("--split", default="PrivateTest", help="Training, PublicTest or PrivateTest (default PrivateTest)")
    p.add_argument("--limit", type=int, help="use the first N faces of the split")
    p.add_argument("--json", metavar="FILE", help="write the full report as JSON ('-' = stdout)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    add_config_argument(p)
    return p


def verify(argv: list[str]) -> int:
    p = verify_parser()
    a = p.parse_args(with_config(p, argv))
    from fer_edge.runtime.model.backends import Classifier
    from fer_edge.runtime.data.datasets import restrict
    from fer_edge.runtime.recognize.photos import load_for_model
    from fer_edge.runtime.core.fileio import OutputFile
    from fer_edge.runtime.core.progress import Progress
    from fer_edge.runtime.data.metrics import classification_report
    from fer_edge.runtime.recognize.pipeline import resolve_model

    if a.limit is not None and a.limit < 1:
        raise FerEdgeError(f"--limit must be 1 or more, found {a.limit}")
    with OutputFile(a.json, a.force, "--json") if a.json else contextlib.nullcontext() as out:
        with stop.raising():  # the model and the faces: library calls without checkpoints of ours
            clf = Classifier(resolve_model(a.model), **classifier_options(a))
            data = load_for_model(a.data, clf.meta)
        for note in data.notes:
            print(f"note: {note}", file=sys.stderr)
        if not data.has_split(a.split):
            raise FerEdgeError(f"{a.data}: no faces in split {a.split}")
        data = data.subset(a.split)
        if a.limit:
            data = data.take(slice(0, a.limit))
        t0 = time.perf_counter()
        with Progress(len(data), "faces") as bar:
            probs = clf.predict_batched(data.images, progress=bar)
        seconds = time.perf_counter() - t0
        stop.check()  # the faces are scored: a stop that came with the last batch ends here, before the report
        true_classes, class_names = data.labels, clf.labels  # per face (ints), and the model's label names
        report = classification_report(true_classes, restrict(probs, data.scored), class_names)
        report.update(model=str(clf.path), split=a.split, backend=clf.backend.interpreter_module, seconds=round(seconds, 3),
                      ms_per_face=round(seconds * 1000 / max(len(data), 1), 4))
        claimed = clf.meta.figures
        print(f"{clf.path.name} on {a.split} ({report['n']} faces, {clf.backend.interpreter_module}): accuracy "
              f"{report['accuracy']:.4f}, macro-F1 {report['macro_f1']:.4f}, {report['ms_per_face']:.3f} ms/face",
              file=sys.stderr)
        if claimed:
            print(f"figures stored in the model: {json.dumps(claimed, sort_keys=True)[:300]}", file=sys.stderr)
        _golden_line(clf.path, data, probs, report)
        if out is not None:
            _write_json(out, report)
    return 0


def _golden_line(model: Path, data, probs, report: dict) -> None:
    """A shipped model's golden outputs (NAME_golden.npz beside it): how often this device's top-1 class is the
    fp32 reference's, on the faces both cover; recorded in the report as golden_agreement."""
    from fer_edge.runtime.data.golden import golden_agreement, golden_beside

    golden = golden_beside(Path(model))
    found = golden_agreement(golden, data.rows, data.labels, probs) if golden is not None else None
    if found is not None:
        report["golden_agreement"] = {"file": golden.name, "agreement": round(found[0], 6), "faces": found[1]}
        print(f"agreement with the fp32 reference's golden outputs ({golden.name}): {100 * found[0]:.2f}% of "
              f"{found[1]} faces", file=sys.stderr)


def _write_json(out, doc: dict) -> None:
    from fer_edge.runtime.core.redact import redact_doc

    f = out.open("w", encoding="utf-8")
    try:
        f.write(json.dumps(redact_doc(doc), indent=1) + "\n")
        f.flush()
    finally:
        if not out.stdout:
            f.close()


OUTPUTS = ("json", "visits", "record", "summary", "timeline", "report")  # the output file options, checked alike


def _pipeline_options(a):
    """The pipeline's options from the command line (or a config file): checked as they are made, the way a
    Python caller's are, before any output file or the model."""
    from fer_edge.runtime.recognize.pipeline import PipelineOptions

    return PipelineOptions(model=a.model, detect_every=a.detect_every, smooth=a.smooth, full_rate=a.full_rate,
                           recheck=a.recheck, min_confidence=a.min_confidence, min_visit=a.min_visit,
                           visit_update=a.visit_update, in_view_hold=a.in_view_hold, **detector_options(a),
                           **classifier_options(a))


def run(argv: list[str]) -> int:
    p = run_parser()
    a = p.parse_args(with_config(p, argv))
    from fer_edge.runtime.core.fileio import OutputFile, check_distinct

    if a.loop < 1:
        raise FerEdgeError(f"--loop must be 1 or more, found {a.loop}")
    if a.max_frames is not None and a.max_frames < 1:
        raise FerEdgeError(f"--max-frames must be 1 or more, found {a.max_frames}")
    if a.stall_timeout <= 0:
        raise FerEdgeError(f"--stall-timeout must be above 0 seconds, found {a.stall_timeout}")
    check_service_arguments(a)
    opts = _pipeline_options(a)
    if a.mqtt:
        mqtt_options(a)  # its files and numbers checked now, before any work
    given = [opt for opt, v in (("--serve-token", a.serve_token), ("--serve-token-file", a.serve_token_file),
                                ("--no-token", a.no_token or None)) if v is not None]
    if given and not a.serve:
        raise FerEdgeError(f"{given[0]} is for the browser preview: give --serve [HOST:]PORT too, or leave it out")
    preview = preview_options(a) if a.serve else None  # an empty token fails here, before any work
    outputs = {}
    try:  # every output file is checked before the model loads, and none is left behind if the run fails
        check_distinct({"--" + opt: getattr(a, opt) for opt in OUTPUTS})
        on_stdout = [f"--{opt} -" for opt in OUTPUTS if getattr(a, opt) == "-"]
        if len(on_stdout) > 1:
            raise FerEdgeError(f"{' and '.join(on_stdout)}: only one output can go to standard output")
        if a.report and a.report != "-" and Path(a.report).suffix.lower() not in (".html", ".htm"):
            raise FerEdgeError(f"--report {a.report}: expected a .html file name")
        for opt in OUTPUTS:
            value = getattr(a, opt)
            outputs["--" + opt] = OutputFile(value, a.force, "--" + opt) if value else None
        summary = _run(a, opts, outputs, preview, argv)
        if outputs["--summary"] is not None:
            _write_json(outputs["--summary"], summary)
            outputs["--summary"].commit()
    except BaseException:
        for out in outputs.values():
            if out is not None:
                out.discard()
        raise
    return 0


def _run(a, opts, outputs: dict, preview, argv: list[str]) -> dict:
    from fer_edge.runtime.recognize.pipeline import Pipeline
    from fer_edge.runtime.media.sinks import format_summary
    from fer_edge.runtime.media.sources import open_source

    if a.threads:
        import cv2

        cv2.setNumThreads(a.threads)  # Haar and resizing too, so --threads 1 means one core
    stop = threading.Event()
    with Pipeline(opts) as pipe:  # the model first: a wrong model path fails before a camera opens
        source = open_source(a.source or a.image, camera=a.camera, picamera=a.picamera, loop=a.loop,
                             stall_timeout=a.stall_timeout)
        # a service takes its stops as its normal end from the moment its source is open: its sinks announce it
        # (MQTT's online status, Home Assistant's discovery) as they open, and a stop after that is no interruption
        with _stop_on_signals(stop) if _is_service(a, source, preview) else contextlib.nullcontext():
            sinks = _open_sinks(a, outputs, pipe, source, preview)
            bar = _progress_bar(a, source, sinks)
            notifier = _notify_ready(sinks)
            try:
                stats = pipe.run(source, sinks, stop, a.max_frames, keep_on_failure=_is_service(a, source, preview))
            except BaseException:
                bar.close()
                raise
            bar.close(complete=stats.stopped_by == "end of source")  # 100% even where the frame count was an estimate
        if notifier.sent:
            log.info("systemd: sent %d notifications", len(notifier.sent))
        summary = stats.summary()
        if a.report:
            _write_report(a, outputs["--report"], sinks, summary, pipe, argv)
    if not a.quiet and not a.image:
        print(format_summary(summary), file=sys.stderr)
    return summary


def _is_service(a, source, preview) -> bool:
    """A service (a live source, or a stream for others: --mqtt, --serve) ends when it is stopped: summary,
    exit 0, its events followable from the first frame; a file's or a folder's run writing files is finite
    work: a stop is an interruption (130) and commits nothing."""
    return source.live or bool(a.mqtt) or preview is not None


def _open_sinks(a, outputs: dict, pipe, source, preview) -> list:
    """The run's outputs, in the order they are written each frame; none is left open if one fails."""
    from fer_edge.runtime.media.sinks import (JsonLinesSink, PrintSink, RecordSink, TimelineSink, VisitsSink,
                                              WindowSink, finish_all, gui_available)

    sinks = []
    try:
        if a.image:  # readable lines; on stderr when stdout carries JSON (--json - | jq must parse)
            sinks.append(PrintSink(sys.stderr if "-" in (a.json, a.summary, a.visits, a.report) else None))
        if a.json:
            sinks.append(JsonLinesSink(outputs["--json"], stream=_is_service(a, source, preview), **json_rotation(a)))
        if a.visits:
            sinks.append(VisitsSink(outputs["--visits"], stream=_is_service(a, source, preview),
                                    **json_rotation(a, "visits")))
        if a.record:
            sinks.append(RecordSink(outputs["--record"], getattr(source, "fps", 0.0), a.force))
        if a.timeline:
            sinks.append(TimelineSink(outputs["--timeline"], pipe.labels, a.force))
        if a.report:
            from fer_edge.runtime.media.report import ReportSink

            sinks.append(ReportSink(pipe.labels))
        if a.mqtt:
            sinks.append(start_mqtt(a, mqtt_options(a), pipe.labels, pipe.classifier.path.name))
        if preview is not None:
            from fer_edge.runtime.serve.preview import PreviewServer

            sinks.append(PreviewServer(preview))
        show, why = (False, "") if a.window == "off" else gui_available()
        if show:
            sinks.append(WindowSink())
        elif a.window == "on":
            raise FerEdgeError(f"--window on: cannot open a window: {why}")
        elif why and not a.image and (a.camera is not None or a.picamera):
            log.info("no window: %s; use --json or --record for output", why)
    except BaseException:
        try:
            finish_all(sinks, commit=False)
        finally:
            source.close()
        raise
    return sinks


def _progress_bar(a, source, sinks: list):
    """A bar on stderr for a video file or a folder (a source of known length) on a terminal, unless --quiet;
    none for a live source, nor for --image, whose lines per photo are its progress."""
    from fer_edge.runtime.core.progress import Progress
    from fer_edge.runtime.media.sinks import ProgressSink

    total = getattr(source, "length", 0)
    if a.max_frames and total:
        total = min(total, a.max_frames)
    bar = Progress(total, "photos" if getattr(source, "stills", False) else "frames", quiet=a.quiet or bool(a.image))
    if bar.on:
        sinks.append(ProgressSink(bar))
    return bar


def _write_report(a, out, sinks: list, summary: dict, pipe, argv: list[str]) -> None:
    import shlex

    from fer_edge.runtime.core.redact import redact, redact_argv
    from fer_edge.runtime.media.report import ReportSink, write_report

    sink = next(s for s in sinks if isinstance(s, ReportSink))
    clf = pipe.classifier
    model = {"path": str(clf.path), "label_set": f"{clf.meta.label_set.name}: {', '.join(clf.labels)}",
             "input": clf.meta.preprocess.describe(), "figures": clf.meta.figures,
             "command": clf.meta.provenance.get("command", "")}
    source = a.source or a.image or (f"camera {a.camera}" if a.camera is not None else "picamera")
    write_report(out, sink, summary, model, shlex.join(["fer-edge", *redact_argv(argv)]), redact(source))


def _notify_ready(sinks: list):
    """Under systemd (Type=notify): READY=1 now that model, source and outputs are open; the watchdog sink goes
    first, so STOPPING=1 is said before the others flush."""
    from fer_edge.runtime.serve.watchdog import Notifier, WatchdogSink

    notifier = Notifier()
    if notifier.active:
        sinks.insert(0, WatchdogSink(notifier))
        notifier.ready("processing frames")
    return notifier


class _stop_on_signals:
    """A live run: SIGINT/SIGTERM set `stop` (the run finishes its frame, flushes outputs, prints the summary
    and exits 0: for a camera or a stream under systemd, a stop is the normal end)."""

    def __init__(self, stop: threading.Event):
        self.stop, self.old = stop, {}

    def _handler(self, signum, _frame):
        log.info("%s: stopping", signal.Signals(signum).name)
        self.stop.set()

    def __enter__(self):
        check_stop()  # a stop before the live run started is an interruption (exit 130)
        self.service = stop.service()  # its outputs close however long that takes: no last resort
        self.service.__enter__()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, old in self.old.items():
            signal.signal(sig, old)
        self.service.__exit__(*exc)


def _quiet_libraries() -> None:
    """OpenCV's and FFmpeg's own warnings (a camera index that does not open, a refused RTSP connection)
    would bury the one line fer-edge prints about the same problem."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "8")  # AV_LOG_FATAL; read when FFmpeg is first used
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # read when OpenCV first logs
    from fer_edge.runtime.faces.detectors import quiet_opencv_log

    quiet_opencv_log()  # and for an OpenCV that has already logged


@cli_main  # exit codes (0, 2 user error, 130 interrupted) and the one-line error
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _quiet_libraries()
    from fer_edge.runtime.core.progress import LineHandler
    from fer_edge.runtime.core.redact import RedactFilter

    handler = LineHandler(sys.stderr)  # a warning during a run clears the progress bar, which is redrawn below it
    handler.setFormatter(logging.Formatter("fer-edge: %(message)s"))
    handler.addFilter(RedactFilter())  # a URL with a password or a token never reaches the log
    logger = logging.getLogger("fer_edge")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        if argv[:1] == ["verify"]:
            return verify(argv[1:])
        if argv[:1] == ["serve-api"]:
            from fer_edge.runtime.cli_serve import serve_api

            return serve_api(argv[1:])
        return run(argv)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


if __name__ == "__main__":  # as its console script runs: stops, exit codes (fer_edge/launch.py)
    from fer_edge.launch import main_module

    main_module(main)
