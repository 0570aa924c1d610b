"""Parity of exported files against the Keras reference, measured with the runtime's own Classifier.

Every file is evaluated through `fer_edge.runtime.model.backends.Classifier`, the code a device runs, so the
preprocessing and the (de)quantization of int8 inputs and outputs are exactly the deployed ones. INT8
.tflite files are evaluated on both LiteRT kernel paths (the XNNPACK delegate and the built-in kernels),
which can disagree with each other; the gate applies to each path and the report gives their spread.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_edge.convert.cost import fmt_macs
from fer_edge.convert.formats import FORMATS
from fer_edge.convert.report import (Budget, Evaluated, FormatEntry, KernelFigures, ParityReport, RecipeSearch,
                                     Reference, Spread)
from fer_edge.runtime.core.progress import Progress
from fer_edge.runtime.model.backends import Classifier
from fer_edge.runtime.data.datasets import restrict
from fer_edge.runtime.data.metrics import agreement, classification_report

DEFAULT_MAX_DROP = 1.0  # percentage points of accuracy a file may lose against the reference
DEFAULT_MIN_AGREEMENT = 0.97  # share of faces on which a file must give the reference's top-1 class
GATE_EXIT = 3  # exit code when a file breaks the budget
# LiteRT kernel paths an INT8 .tflite is measured on: the XNNPACK delegate ('default') and the built-in
# kernels. Under qemu-user emulation only 'builtin' runs (XNNPACK's cpuinfo needs a real /sys).
KERNEL_PATHS = ("default", "builtin")


@dataclass(frozen=True)
class EvalSet:
    faces: np.ndarray  # uint8 N x H x W (x C): crops at the model's input size
    labels: np.ndarray  # int64 (N,), the model's class indices
    split: str
    source: str
    scored: tuple[int, ...] | None = None  # the model's classes the data can label (None: all): accuracy's top class


def _scored_report(ev: EvalSet, probs: np.ndarray, labels) -> dict:
    """Accuracy and recalls on the classes the data shares with the model (datasets.restrict)."""
    return classification_report(ev.labels, restrict(probs, ev.scored), tuple(labels))


def reference_entry(path, sha256: str, ref_probs: np.ndarray, ev: EvalSet, labels, runtime: str = "keras") -> Reference:
    r = _scored_report(ev, ref_probs, labels)
    return Reference(path=str(path), sha256=sha256, runtime=runtime, n=r["n"], accuracy=r["accuracy"],
                     macro_f1=r["macro_f1"], recall={k: v["recall"] for k, v in r["per_class"].items()})


def _compare(probs: np.ndarray, ref_probs: np.ndarray, ev: EvalSet, labels, reference: Reference) -> dict:
    r = _scored_report(ev, probs, labels)
    return {
        "accuracy": r["accuracy"],
        "macro_f1": r["macro_f1"],
        "accuracy_drop": 100.0 * (reference.accuracy - r["accuracy"]),
        "agreement": agreement(probs, ref_probs),
        "recall_delta": {k: 100.0 * (v["recall"] - reference.recall[k]) for k, v in r["per_class"].items()},
        "max_prob_diff": float(np.abs(probs - ref_probs).max()) if len(probs) else 0.0,
    }


def evaluate_file(path: Path, ev: EvalSet, ref_probs: np.ndarray, reference: Reference, int8: bool,
                  display_path: str | None = None, kernel_paths: tuple[str, ...] = KERNEL_PATHS,
                  **classifier_options) -> FormatEntry:
    """One `formats` entry: size, accuracy, drop, agreement, recall deltas, largest probability difference.

    A .tflite file runs on kernel_paths[0]; an INT8 one on every path of kernel_paths, each gated."""
    path = Path(path)
    classifier_options.setdefault("threads", os.cpu_count())  # LiteRT would otherwise run one thread
    tflite = path.suffix.lower() == ".tflite"
    paths = (kernel_paths if int8 else kernel_paths[:1]) if tflite else (None,)
    probs = {}
    with Progress(len(ev.faces) * len(paths), f"{path.name} parity faces") as bar:  # drawn on a terminal only
        for k in paths:
            clf = Classifier(path, **classifier_options, **({"kernels": k} if k else {}))
            probs[k] = clf.predict_batched(ev.faces, progress=bar)
    first = probs[paths[0]]
    entry = FormatEntry(path=display_path or str(path), bytes=path.stat().st_size,
                        runtime=clf.backend.interpreter_module, **_compare(first, ref_probs, ev, clf.labels, reference))
    if int8 and tflite:
        keep = ("accuracy", "accuracy_drop", "agreement", "max_prob_diff")
        entry.kernels = {k: KernelFigures(**{f: v for f, v in _compare(p, ref_probs, ev, clf.labels, reference).items()
                                             if f in keep})
                         for k, p in probs.items()}
        if len(probs) == 2:
            a, b = probs.values()
            entry.spread = Spread(agreement=agreement(a, b), max_prob_diff=float(np.abs(a - b).max()))
    return entry


def gate(entry: FormatEntry, max_drop: float, min_agreement: float) -> list[str]:
    """The reasons an entry breaks the budget (empty when it passes), on every kernel path measured."""
    paths = entry.kernels or {"default": entry}
    out = []
    for kernels, m in paths.items():
        where = f" ({kernels} kernels)" if entry.kernels is not None else ""
        if m.accuracy_drop > max_drop:
            out.append(f"{entry.path}{where}: accuracy drop {m.accuracy_drop:.2f} pp > {max_drop:g} pp")
        if m.agreement < min_agreement:
            out.append(f"{entry.path}{where}: agreement {100 * m.agreement:.2f}% < {100 * min_agreement:g}%")
    return out


def build_report(reference: Reference, ev: EvalSet | None, formats: dict[str, FormatEntry], max_drop: float,
                 min_agreement: float, extra: dict | None = None,
                 recipes: dict[str, RecipeSearch] | None = None) -> ParityReport:
    failures = []
    for entry in formats.values():
        if entry.error:  # not made: a failure of that format alone, the others still ship
            entry.failures, entry.passed = [f"{entry.path}: not made ({entry.error})"], False
            failures += entry.failures
        elif entry.measured:
            entry.failures = gate(entry, max_drop, min_agreement)
            entry.passed = not entry.failures
            failures += entry.failures
    return ParityReport(reference=reference,
                        eval=None if ev is None else Evaluated(data=ev.source, split=ev.split, n=int(len(ev.labels))),
                        thresholds=Budget(max_drop_pp=max_drop, min_agreement=min_agreement),
                        formats=formats, failures=failures, recipes=dict(recipes or {}),
                        extra=dict(extra or {}))


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def markdown(doc: ParityReport) -> str:
    ref, ev = doc.reference, doc.eval
    lines = ["# fer-convert parity report", ""]
    if doc.extra.get("machine"):
        m = doc.extra["machine"]
        lines += [f"Measured on {m['arch']} ({m['cpu']}), {m['platform']}; LiteRT kernels: "
                  f"{', '.join(doc.extra.get('kernel_paths', KERNEL_PATHS))}.", ""]
    if ev is None:
        lines += ["No evaluation data was given (--data): files were converted but not measured.", ""]
    else:
        lines += [f"Reference `{ref.path}` (Keras fp32) on {ev.split} ({ev.n} faces of `{ev.data}`): "
                  f"accuracy {_pct(ref.accuracy)}, macro-F1 {_pct(ref.macro_f1)}.", "",
                  *([f"Cost: {fmt_macs(ref.cost.get('macs'))} multiply-adds per face, "
                     f"{ref.cost['parameters']:,} parameters (every exported file computes the same network)."]
                    if ref.cost else []), "",
                  f"Budget: accuracy drop <= {doc.thresholds.max_drop_pp:g} pp and agreement >= "
                  f"{100 * doc.thresholds.min_agreement:g}% on every kernel path.", ""]
    lines += [f"Note: {n}" for n in doc.extra.get("notes", [])] + ([""] if doc.extra.get("notes") else [])
    lines += ["| format | file | bytes | accuracy | macro-F1 | drop (pp) | agreement | max prob diff | verdict |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, e in doc.formats.items():
        if e.error or not e.measured:
            verdict = "FAIL: not made (see below)" if e.error else "not measured"
            lines.append(f"| {name} | `{Path(e.path).name}` | {e.bytes} | - | - | - | - | - | {verdict} |")
            continue
        verdict = "pass" if e.passed else "**FAIL**"
        lines.append(f"| {name} | `{Path(e.path).name}` | {e.bytes} | {_pct(e.accuracy)} | {_pct(e.macro_f1)} "
                     f"| {e.accuracy_drop:+.2f} | {_pct(e.agreement)} | {e.max_prob_diff:.4f} | {verdict} |")
    kern = {n: e for n, e in doc.formats.items() if e.kernels is not None}
    if kern:
        lines += ["", "## INT8 kernel paths (LiteRT XNNPACK delegate 'default', built-in kernels 'builtin')", "",
                  "| format | kernels | accuracy | drop (pp) | agreement | max prob diff |", "|---|---|---|---|---|---|"]
        for n, e in kern.items():
            for path, m in e.kernels.items():
                lines.append(f"| {n} | {path} | {_pct(m.accuracy)} | {m.accuracy_drop:+.2f} | "
                             f"{_pct(m.agreement)} | {m.max_prob_diff:.4f} |")
        for n, e in kern.items():
            if e.spread is not None:
                lines += ["", f"{n}: default and builtin agree on {_pct(e.spread.agreement)} of faces "
                          f"(max prob diff {e.spread.max_prob_diff:.4f})."]
    measured = {n: e for n, e in doc.formats.items() if e.recall_delta is not None}
    if measured:
        labels = list(next(iter(measured.values())).recall_delta)
        lines += ["", "## Per-class recall change (pp, file minus reference)", "",
                  "| format | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
        for n, e in measured.items():
            lines.append(f"| {n} | " + " | ".join(f"{e.recall_delta[c]:+.2f}" for c in labels) + " |")
    lines += _recipe_sections(doc)
    lines += ["", "## Verdict", ""]
    if doc.failures:
        lines += ["FAIL: these files break the budget:", ""] + [f"- {f}" for f in doc.failures]
    else:
        lines.append("pass" if ev is not None else "not measured")
    return "\n".join(lines) + "\n"


def _recipe_sections(doc: ParityReport) -> list[str]:
    """The INT8 recipe searches: candidates tried, the winner, layers kept in float, the layers losing most."""
    lines = []
    for fmt in FORMATS.values():
        search = doc.recipes.get(fmt.recipe_search)
        if search is None:
            continue
        chosen = search.recipe["name"]
        lines += ["", f"## {fmt.name} recipe search", "", search.selection, "",
                  "| recipe | activations | float layers | agreement | accuracy drop (pp) | max prob diff | bytes |",
                  "|---|---|---|---|---|---|---|"]
        for c in search.candidates:
            mark = " (chosen)" if c.recipe == chosen else ""
            drop = "-" if c.accuracy_drop is None else f"{c.accuracy_drop:+.2f}"
            diff = "-" if c.max_prob_diff is None else f"{c.max_prob_diff:.4f}"
            lines.append(f"| {c.recipe}{mark} | {c.activations or '-'} | {c.float_layers or 0} | "
                         f"{_pct(c.agreement)} | {drop} | {diff} | {c.error or c.bytes} |")
        if search.quantization:
            lines += ["", f"Chosen: {chosen}, {search.quantization}."]
        floats = search.recipe.get("float_layers") or search.recipe.get("float_nodes") or []
        if floats:
            lines += ["", f"Kept in float ({len(floats)}): " + ", ".join(f"`{n[:90]}`" for n in floats)]
        cost = search.cost
        if cost:
            lines += ["", f"Cost against the plain INT8 recipe: {cost.bytes[0]} -> {cost.bytes[1]} bytes, "
                      f"{cost.ms_per_face[0]:.3f} -> {cost.ms_per_face[1]:.3f} ms per face ({cost.measured})."]
        if search.layer_errors:
            lines += ["", f"Layers losing most in the plain INT8 recipe ({search.layer_errors_method}):", "",
                      "| layer | op | relative RMSE |", "|---|---|---|"]
            lines += [f"| `{e.layer[:90]}` | {e.op} | {e.relative_rmse:.4f} |" for e in search.layer_errors]
    return lines


def report_texts(doc: ParityReport) -> tuple[str, str]:
    return json.dumps(doc.to_dict(), indent=1, sort_keys=False) + "\n", markdown(doc)
