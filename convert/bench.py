"""fer-bench: every format of one model measured the same way on this machine, with the tutorials' baseline.

    fer-bench models/fer-vgg.keras models/fer-vgg_fp32.tflite models/fer-vgg_int8.tflite models/fer-vgg_int8.onnx \\
        --export-missing --golden models/fer-vgg_golden.npz --data ../shared/data \\
        --video ../shared/data/samples/fer_test.mp4 --blazeface ../shared/models/face_detection_short_range.tflite \\
        --json benchmarks/fer-vgg_bench.json --markdown BENCHMARKS.md --force

Per file (.tflite fp32/fp16/dynamic/int8, .onnx fp32/int8, the .keras reference): size; accuracy on
PrivateTest and agreement (top-1) with the golden outputs (--golden) or else with the Keras reference;
per-face latency p50/p95 at each thread count and batch size (ms per face = time of one interpreter call /
batch, including int8 (de)quantization of inputs and outputs; median over rounds, warm-up calls
excluded); end-to-end frames/s of a `fer-edge` process on the video with each detector (one thread). INT8
.tflite files run on both LiteRT kernel paths. The Keras reference is timed with `model.predict`, the
tutorials' call, and its webcam loop (Haar every frame, `model.predict` per face) is the baseline row.

Files made from different references (fer-vgg's and fer-lite's, say) are refused: one run, one model.
With --markdown on an existing file, the sections other tools added after fer-bench's own (e.g.
benchmarks/bench_runtime.py's) are kept. Runs in a runtime-only install too (no TensorFlow) when no .keras
file is given.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_edge.convert.bench_e2e import FULL, QUICK, Settings
import fer_edge.runtime.core.stop as stop
from fer_edge.convert.formats import FORMATS
from fer_edge.runtime.core.errors import FerEdgeError, ModelError, cli_main
from fer_edge.runtime.model.shipped import missing_model

# Display order of the formats: the Keras reference, then the export formats in their table's order.
FORMAT_ORDER = ("keras", *FORMATS)
SUFFIXES = (".tflite", ".onnx", ".keras")


@dataclass(frozen=True)
class ModelFile:
    path: Path
    format: str  # one of FORMAT_ORDER
    exported_from: str | None = None  # set for files --export-missing made (in a temporary folder)

    @property
    def runtime(self) -> str:
        return "keras" if self.format == "keras" else self.path.suffix.lower().lstrip(".")


def format_of(path: Path) -> str:
    """The export format: from the file's fer-edge metadata, else from its tensors or its name."""
    if path.suffix.lower() == ".keras":
        return "keras"
    from fer_edge.runtime.model.metadata import read_metadata

    try:
        meta = read_metadata(path)
    except ModelError:
        meta = None
    fmt = (meta.provenance.get("format") if meta else None) or ""
    if fmt in FORMAT_ORDER:
        return fmt
    stem = path.stem.lower()
    if path.suffix.lower() == ".onnx":
        return "onnx-int8" if "int8" in stem or "quant" in stem else "onnx-fp32"
    from fer_edge.runtime.model.backends import LiteRTBackend

    b = LiteRTBackend(path)
    if b.input_dtype == np.int8 or b.input_dtype == np.uint8:
        return "tflite-int8"
    types = {np.dtype(t["dtype"]) for t in b.interpreter.get_tensor_details()}
    if np.dtype(np.float16) in types:
        return "tflite-fp16"
    return "tflite-dynamic" if np.dtype(np.int8) in types else "tflite-fp32"


def discover(paths: list[str]) -> list[ModelFile]:
    """Files and folders -> model files (folders: their .tflite, .onnx and .keras), in FORMAT_ORDER."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in SUFFIXES)
            if not found:
                raise ModelError(f"{p}: holds no .tflite, .onnx or .keras file")
            files += found
        elif p.is_file():
            if p.suffix.lower() not in SUFFIXES:
                raise ModelError(f"{p}: fer-bench measures {', '.join(SUFFIXES)} files, found {p.suffix or 'no suffix'!r}")
            files.append(p)
        else:
            raise ModelError(missing_model(p, "file or folder"))
    seen, out = set(), []
    for f in files:
        if f.resolve() not in seen:
            seen.add(f.resolve())
            out.append(ModelFile(f, format_of(f)))
    rank = {name: i for i, name in enumerate(FORMAT_ORDER)}
    return sorted(out, key=lambda m: (rank.get(m.format, len(rank)), str(m.path)))


def time_calls(fn, x: np.ndarray, warmup: int, rounds: int, iters: int) -> dict:
    """Per-face ms of fn(x): p50 and p95 of `iters` timed calls per round, median over `rounds` rounds."""
    for _ in range(warmup):
        fn(x)
    p50, p95 = [], []
    for _ in range(rounds):
        stop.check()  # a step boundary: a stop ends the timing here
        t = np.empty(iters)
        for i in range(iters):
            t0 = time.perf_counter()
            fn(x)
            t[i] = time.perf_counter() - t0
        p50.append(float(np.percentile(t, 50)))
        p95.append(float(np.percentile(t, 95)))
    n = len(x)
    return {"p50_ms": round(statistics.median(p50) * 1000 / n, 4), "p95_ms": round(statistics.median(p95) * 1000 / n, 4),
            "rounds": rounds, "iters": iters}


def latency_inputs(spec, n: int) -> np.ndarray:
    """Seeded random faces through the model's own preprocessing (latency does not depend on content)."""
    from fer_edge.runtime.model.preprocess import preprocess

    faces = np.random.default_rng(0).integers(0, 256, (n, *spec.size), dtype=np.uint8)
    return preprocess(faces, spec)


def _litert_kernels(kernels: str) -> str | None:
    """A row's kernels as the backend option: LiteRT's kernel paths, None for the others' rows ('cpu')."""
    from fer_edge.runtime.model.backends import LiteRTBackend

    return kernels if kernels in LiteRTBackend.KERNELS else None


def measure_latency(path: Path, kernels: str, threads: list[int], batches: list[int], s: Settings) -> dict:
    """{"t1_b1": {...}, ...}: the interpreter call alone (`backend.infer`), built once per thread count."""
    from fer_edge.runtime.model.backends import Classifier

    out = {}
    for t in threads:
        clf = Classifier(path, threads=t, kernels=_litert_kernels(kernels))
        x = latency_inputs(clf.meta.preprocess, max(batches))
        for b in batches:  # all calls of one batch size together: LiteRT reallocates on every size change
            out[f"t{t}_b{b}"] = time_calls(clf.backend.infer, x[:b], s.warmup, s.rounds, s.iters)
    return out


@dataclass
class BenchEval:
    """The labelled faces the rows are scored on. `faces`/`labels`/`ref` are the reference's (FER2013 in the
    first model's classes; none for a photo folder); a model with other classes, or any model on photos, reads
    the data again in its own terms (its classes, its crops) and is scored on the classes it shares with it."""
    data: str
    split: str
    max_faces: int | None
    faces: np.ndarray | None = None
    labels: np.ndarray | None = None
    ref: np.ndarray | None = None
    names: tuple[str, ...] = ()  # the classes `labels` index
    read: dict = field(default_factory=dict)  # (classes, preprocessing) -> the data read in those terms

    def for_model(self, clf) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple | None, list[str]]:
        """(faces, labels, reference probabilities or None, scored classes or None, notes) for this model."""
        from fer_edge.runtime.data.datasets import in_model_classes, load_dataset
        from fer_edge.runtime.recognize.photos import is_photo_set, load_for_model

        if self.faces is not None and tuple(clf.labels) == self.names:
            return self.faces, self.labels, self.ref, None, []
        key = (tuple(clf.labels), clf.meta.preprocess)  # a file's kernel rows and its twin formats read it once
        if key not in self.read:
            self.read[key] = (load_for_model(self.data, clf.meta) if is_photo_set(Path(self.data))
                              else in_model_classes(load_dataset(self.data), tuple(clf.labels)))
        ds = self.read[key]
        part = ds.subset(self.split)
        part = part.take(slice(0, self.max_faces)) if self.max_faces else part
        return part.images, part.labels, None, ds.scored, [n for n in ds.notes if n.startswith("scored on")]


def measure_accuracy(path: Path, kernels: str, ev: BenchEval) -> dict:
    from fer_edge.runtime.model.backends import Classifier

    clf = Classifier(path, threads=os.cpu_count(), kernels=_litert_kernels(kernels))
    faces, labels, ref, scored, notes = ev.for_model(clf)
    out = scores(clf.predict_batched(faces), labels, ref, scored)
    return {**out, "faces": int(len(labels)), **({"classes": notes[0]} if notes else {})}


def scores(probs: np.ndarray, labels: np.ndarray, ref: np.ndarray | None, scored: tuple | None = None) -> dict:
    from fer_edge.runtime.data.datasets import restrict
    from fer_edge.runtime.data.metrics import agreement

    out = {"accuracy": float((restrict(probs, scored).argmax(1) == labels).mean())}
    if ref is not None:
        out["agreement"] = agreement(probs, ref)
        out["max_prob_diff"] = float(np.abs(probs - ref).max())
    return out


def load_eval(data: str, split: str, golden: str | None, label_set: str, max_faces: int | None):
    """(faces, labels, reference probabilities or None, description of the reference and the data)."""
    from fer_edge.runtime.data.datasets import load_dataset

    ds = load_dataset(data, label_set)
    if golden:
        from fer_edge.convert.golden import load_golden

        ref_entry, ref, ev = load_golden(golden, ds)
        faces, labels = ev.faces, ev.labels
        with np.load(golden, allow_pickle=False) as z:
            made_by = str(z["model"])
        desc = {"kind": "golden", "path": str(golden), "model": made_by, "sha256": ref_entry.sha256, "split": ev.split}
    else:
        part = ds.subset(split)
        if not len(part):
            raise FerEdgeError(f"{data}: no faces in split {split}")
        faces, labels, ref, desc = part.images, part.labels, None, {"kind": None, "split": split}
    if max_faces:
        faces, labels = faces[:max_faces], labels[:max_faces]
        ref = None if ref is None else ref[:max_faces]
    desc.update(data=str(data), n=int(len(labels)))
    return faces, np.asarray(labels, dtype=np.int64), ref, desc


def file_cost(path: Path) -> dict:
    """Multiply-adds and parameters per face, as fer-convert or fer-train recorded them in the file's metadata
    (empty for files that carry none: third-party exports)."""
    from fer_edge.runtime.model.metadata import read_metadata

    try:
        prov = read_metadata(path).provenance
    except (ModelError, AttributeError):  # unreadable metadata, or none
        return {}
    cost = prov.get("cost") or {k: prov[k] for k in ("macs", "parameters") if k in prov}
    out = {k: cost[k] for k in ("macs", "parameters") if cost.get(k)}
    return {**out, "source_sha256": prov["source_sha256"]} if prov.get("source_sha256") else out


def fill_costs(rows: list[dict]) -> None:
    """Files converted before fer-convert recorded costs carry none: give them the figures of a file made from
    the same reference in this run (the reference itself, or another of its exports). The cost is the model's,
    whatever the format."""
    known = {}
    for r in rows:
        if r.get("macs"):
            known.setdefault(r.get("source_sha256") or r["sha256"], {k: r[k] for k in ("macs", "parameters") if k in r})
    for r in rows:
        if not r.get("macs"):
            r.update(known.get(r.get("source_sha256") or r["sha256"], {}))


def check_one_model(models: list[ModelFile]) -> None:
    """Every file comes from the same reference: its own sha256 for a .keras, the recorded source_sha256 for
    an export (files without fer-edge provenance are not checked)."""
    from fer_edge.runtime.core.fileio import sha256_file

    refs: dict[str, list[str]] = {}
    for m in models:
        ref = sha256_file(m.path) if m.format == "keras" else file_cost(m.path).get("source_sha256")
        if ref:
            refs.setdefault(ref, []).append(m.path.name)
    if len(refs) > 1:
        groups = "; ".join(", ".join(names) for names in refs.values())
        raise ModelError(f"fer-bench measures the formats of one model, found files of {len(refs)} references "
                         f"({groups}): give one model's files, and run fer-bench once per model")


def e2e_detectors(blazeface: str | None) -> list[str]:
    """The detectors an end-to-end run uses: the default (YuNet), Haar where this OpenCV still has it (4.x),
    BlazeFace when its model file is given."""
    import cv2

    return ["yunet"] + (["haar"] if hasattr(cv2, "CascadeClassifier") else []) + (["blazeface"] if blazeface else [])


def _rows(models: list[ModelFile]) -> list[tuple[ModelFile, str]]:
    """(file, kernels) rows: INT8 .tflite on both LiteRT kernel paths."""
    rows = []
    for m in models:
        if m.format == "keras":
            rows.append((m, "keras"))
        elif m.runtime == "tflite":
            rows += [(m, "default")] + ([(m, "builtin")] if m.format == "tflite-int8" else [])
        else:
            rows.append((m, "cpu"))
    return rows


def _eval_faces(data: str, split: str, golden: str | None, label_set: str, settings: Settings, ref_keras,
                keras: list[ModelFile], tmp: Path, log):
    """(faces, labels, reference probabilities, the reference's description): the reference is the golden
    outputs, or else the Keras reference run once here (its probabilities saved beside the faces in `tmp`)."""
    from fer_edge.convert.bench_e2e import keras_worker
    from fer_edge.runtime.core.fileio import sha256_file

    faces, labels, ref, desc = load_eval(data, split, golden, label_set, settings.max_faces)
    faces_npy = tmp / "faces.npy"
    np.save(faces_npy, faces)
    if ref is None and ref_keras is not None:  # agreement with the Keras reference itself
        log(f"reference probabilities from {ref_keras.name} ({len(faces)} faces)")
        probs_npy = tmp / "ref.npy"
        keras_worker([str(ref_keras), "--threads", str(os.cpu_count()), "--faces", str(faces_npy),
                      "--probs-out", str(probs_npy)])
        ref = np.load(probs_npy)
        desc.update(kind="keras", path=str(ref_keras), sha256=sha256_file(ref_keras))
    shas = {sha256_file(m.path) for m in keras}
    if desc["kind"] == "golden" and shas and desc["sha256"] not in shas:
        raise FerEdgeError(f"{golden} was made by a model with sha256 {desc['sha256'][:16]}..., not by the "
                           f".keras given ({', '.join(m.path.name for m in keras)}): regenerate the golden outputs")
    return faces, labels, ref, desc


def run_bench(models: list[ModelFile], data: str | None = None, golden: str | None = None, reference: str | None = None,
              video: str | None = None, blazeface: str | None = None, threads=(1, 2), batches=(1, 8),
              split: str = "PrivateTest", settings: Settings = FULL, log=print) -> dict:
    from fer_edge.convert.bench_e2e import keras_tutorial
    from fer_edge.convert.bench_report import int8_findings, machine, versions
    from fer_edge.runtime.model.labels import get_label_set
    from fer_edge.runtime.model.metadata import read_metadata
    from fer_edge.runtime.recognize.photos import is_photo_set

    started = time.perf_counter()
    threads, batches = list(threads), list(batches)
    keras = [m for m in models if m.format == "keras"]
    ref_keras = Path(reference) if reference else (keras[0].path if keras else None)
    first = next((md for m in models if (md := read_metadata(m.path))), None)
    label_set = "ferplus" if first is not None and first.label_set.name == "ferplus" else "fer2013"
    doc = {"machine": machine(), "versions": versions(),
           "settings": {**settings.__dict__, "threads": threads, "batches": batches, "video": video,
                        "blazeface": blazeface, "e2e_threads": 1},
           "reference": None, "rows": [], "baseline": None}
    import cv2

    haar = hasattr(cv2, "CascadeClassifier")  # the tutorials' detector; OpenCV 5 dropped the Haar cascades
    if video and not haar:
        doc["baseline_note"] = (f"no tutorials' baseline: OpenCV {cv2.__version__} has no Haar cascades, the "
                                "tutorials' face detector (opencv-python-headless 4.x has them)")
        log(f"note: {doc['baseline_note']}")
    tmp = tempfile.TemporaryDirectory(prefix="fer-bench-")
    try:
        ev = BenchEval(data, split, settings.max_faces) if data else None
        if data and is_photo_set(Path(data)):
            if golden:
                raise FerEdgeError("--golden outputs are FER2013's: give --data the FER2013 folder, not photos")
            doc["reference"] = {"kind": None, "split": split, "data": str(data), "n": None}
        elif data:
            ev.faces, ev.labels, ev.ref, doc["reference"] = _eval_faces(data, split, golden, label_set, settings,
                                                                        ref_keras, keras, Path(tmp.name), log)
            ev.names = get_label_set(label_set).labels
        elif golden:
            raise FerEdgeError("--golden needs --data: the golden outputs are compared on FER2013 faces")
        for m, kernels in _rows(models):
            stop.check()
            doc["rows"].append(_measure_row(m, kernels, doc, Path(tmp.name), ev, ref_keras, haar,
                                            threads, batches, video, blazeface, settings, log))
        if video and haar and ref_keras is not None and doc["baseline"] is None:
            log(f"tutorials' loop: {ref_keras.name}, Haar every frame, model.predict per face")
            doc["baseline"] = keras_tutorial(video, ref_keras, settings.e2e_repeats, settings.max_frames)
    finally:
        tmp.cleanup()
    fill_costs(doc["rows"])
    doc["findings"] = int8_findings(doc)
    doc["seconds"] = round(time.perf_counter() - started, 1)
    return doc


def _measure_row(m: ModelFile, kernels: str, doc: dict, tmp: Path, ev: BenchEval | None, ref_keras, haar: bool,
                 threads: list, batches: list, video, blazeface, settings: Settings, log) -> dict:
    """One file's row: size, cost, accuracy on the faces (when given), latency and end-to-end time; the Keras
    reference also times the tutorials' loop (doc["baseline"]) in the same TensorFlow start."""
    from fer_edge.convert.bench_e2e import e2e_median, keras_row, tutorial_row
    from fer_edge.runtime.core.fileio import sha256_file

    row = {"file": m.path.name if m.exported_from else str(m.path), "name": m.path.name, "format": m.format, "kernels": kernels,
           "bytes": m.path.stat().st_size, "sha256": sha256_file(m.path)}
    if m.exported_from:
        row["exported_from"] = m.exported_from
    row.update(file_cost(m.path))
    log(f"{m.path.name} ({m.format}, {kernels})")
    if m.format == "keras":
        tutorial = video if haar and m.path == ref_keras and 1 in threads else None  # one TensorFlow start less
        scored = ev is not None and ev.faces is not None  # the Keras worker reads the reference's FER2013 faces
        row.update(keras_row(m.path, scored, threads, batches, settings, str(tmp), tutorial))
        if scored:
            row.update(scores(np.load(tmp / "keras.npy"), ev.labels, ev.ref))
        if "tutorial" in row:
            doc["baseline"] = tutorial_row(row.pop("tutorial"), m.path)
    else:
        if ev is not None:
            row.update(measure_accuracy(m.path, kernels, ev))
        row["latency"] = measure_latency(m.path, kernels, threads, batches, settings)
        if video:
            row["e2e"] = {det: e2e_median(video, m.path, det, kernels if m.runtime == "tflite" else "default",
                                          settings.e2e_repeats, blazeface, settings.max_frames)
                          for det in e2e_detectors(blazeface)}
    return row


def export_missing(models: list[ModelFile], data: str | None, out: Path, log=print) -> list[ModelFile]:
    """Export the formats the given files lack from the .keras among them (fer-convert, in a child process)."""
    import subprocess

    keras = [m for m in models if m.format == "keras"]
    missing = [f for f in FORMAT_ORDER[1:] if f not in {m.format for m in models}]
    if not missing:
        return []
    if not keras or not data:
        raise FerEdgeError("--export-missing needs a .keras model among MODELS and --data (INT8 calibrates on faces)")
    argv = [sys.executable, "-m", "fer_edge.convert.cli", str(keras[0].path), "--formats", ",".join(missing),
            "--data", str(data), "--out", str(out)]
    log(f"exporting {', '.join(missing)} from {keras[0].path.name} (fer-convert)")
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        raise FerEdgeError(f"fer-convert failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return [ModelFile(f, format_of(f), keras[0].path.name) for f in sorted(out.iterdir())
            if f.suffix.lower() in (".tflite", ".onnx")]


def _ints(text: str) -> list[int]:
    try:
        v = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        v = []
    if not v or min(v) < 1:
        raise FerEdgeError(f"expected comma-separated positive integers, found {text!r}")
    return v


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fer-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="model files (.tflite, .onnx, .keras) or folders holding them")
    p.add_argument("--data", default=os.environ.get("FER_EDGE_DATA"),
                   help="FER2013 (.npz, .csv, image folders or a folder holding fer2013.npz); default $FER_EDGE_DATA; "
                        "without it accuracy is not measured")
    p.add_argument("--split", default="PrivateTest", choices=("PublicTest", "PrivateTest"))
    p.add_argument("--golden", help="golden outputs (.npz from fer_edge.convert.golden): agreement is measured "
                   "against them (and then the split is theirs)")
    p.add_argument("--reference", help="the .keras reference for agreement when no --golden is given "
                   "(default: the .keras among MODELS)")
    p.add_argument("--video", help="video for end-to-end frames/s (e.g. samples/fer_test.mp4)")
    p.add_argument("--blazeface", help="face_detection_short_range.tflite: adds the blazeface end-to-end column")
    p.add_argument("--export-missing", action="store_true",
                   help="export the formats MODELS lack from the .keras among them (fer-convert, into a temporary "
                        "folder) so that every format is measured")
    p.add_argument("--threads", default="1,2", help="interpreter threads for latency (default 1,2)")
    p.add_argument("--batches", default="1,8", help="batch sizes for latency (default 1,8)")
    p.add_argument("--quick", action="store_true", help="few repeats, 256 faces, 15 frames: for tests, not for numbers")
    p.add_argument("--json", metavar="FILE", help="write the full results as JSON (- for standard output: the report then goes to stderr)")
    p.add_argument("--markdown", metavar="FILE", help="write the Markdown report (e.g. BENCHMARKS.md)")
    p.add_argument("--note", help="a paragraph put at the top of the Markdown (e.g. why the figures are provisional)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    return p


@cli_main  # a FerEdgeError: one line `ErrorType: message`, exit code 2
def main(argv=None) -> int:
    from fer_edge.convert.bench_report import markdown, with_other_sections, write_text
    from fer_edge.runtime.core.fileio import check_writable

    argv = list(sys.argv[1:] if argv is None else argv)
    a = parser().parse_args(argv)
    log = lambda msg: print(f"fer-bench: {msg}", file=sys.stderr, flush=True)  # noqa: E731
    json_stdout = a.json == "-"  # --json -: only the JSON on stdout, the Markdown report on stderr
    try:
        for out in (a.json, a.markdown):
            if out and out != "-":
                check_writable(out, a.force)  # before minutes of measuring, not after
        models = discover(a.models)
        check_one_model(models)
        with tempfile.TemporaryDirectory(prefix="fer-bench-export-") as exported:
            t0 = time.perf_counter()
            if a.export_missing:
                rank = {name: i for i, name in enumerate(FORMAT_ORDER)}
                models = sorted(models + export_missing(models, a.data, Path(exported) / "exported", log),
                                key=lambda m: rank.get(m.format, len(rank)))
            export_seconds = round(time.perf_counter() - t0, 1)
            doc = run_bench(models, a.data, a.golden, a.reference, a.video, a.blazeface, _ints(a.threads),
                            _ints(a.batches), a.split, QUICK if a.quick else FULL, log)
        doc["export_seconds"] = export_seconds if a.export_missing else None
        doc["command"] = shlex.join(["fer-bench", *argv])
        doc["note"] = a.note
        text = markdown(doc)
        if a.json and not json_stdout:
            write_text(a.json, json.dumps(doc, indent=1) + "\n")
        if a.markdown:
            write_text(a.markdown, with_other_sections(text, a.markdown))
        print(text, file=sys.stderr if json_stdout else sys.stdout)
        if json_stdout:
            print(json.dumps(doc, indent=1), flush=True)
        log(f"done in {doc['seconds'] + export_seconds:.0f} s")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # as its console script runs: stops, exit codes (fer_edge/launch.py)
    from fer_edge.launch import main_module

    main_module(main)
