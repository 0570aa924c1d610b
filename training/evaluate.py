"""fer-eval: accuracy, macro-F1, per-class table, confusion matrix and ROC AUC as JSON, Markdown and PNG."""
from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np

from fer_edge.runtime.cli_args import fix_argv, model_flag_arguments, model_flags
from fer_edge.runtime.data.datasets import SPLITS, FaceDataset, restrict
from fer_edge.runtime.core.errors import cli_main, FerEdgeError
import fer_edge.runtime.core.stop as stop
from fer_edge.runtime.core.fileio import OutputFile, atomic_output, check_out_folder, commit_all
from fer_edge.runtime.model.metadata import write_metadata
from fer_edge.runtime.data.metrics import classification_report
from fer_edge.runtime.core.progress import Progress, printing
from fer_edge.runtime.recognize.photos import load_for_model

EVAL_SPLITS = ("PublicTest", "PrivateTest")
CHUNK = 2048  # faces per model.predict call: a progress step, and few enough calls that their overhead is nil


def predict_with_progress(src, faces: np.ndarray, bar: Progress) -> np.ndarray:
    """The Keras model's probabilities in chunks, advancing a progress bar (drawn on a terminal only)."""
    parts = []
    for i in range(0, len(faces), CHUNK):
        stop.check()
        parts.append(src.predict(faces[i:i + CHUNK], batch_size=512))
        bar.update(len(parts[-1]))
    return np.concatenate(parts) if parts else src.predict(faces[:0])


def markdown(reports: dict, title: str) -> str:
    lines = [f"# {title}", ""]
    lines += ["| split | faces | accuracy | macro-F1 |", "|---|---|---|---|"]
    for split, r in reports.items():
        lines.append(f"| {split} | {r['n']} | {100 * r['accuracy']:.2f}% | {100 * r['macro_f1']:.2f}% |")
    for split, r in reports.items():
        lines += ["", f"## {split}: per class", "", "| class | precision | recall | F1 | ROC AUC | support |",
                  "|---|---|---|---|---|---|"]
        for name, c in r["per_class"].items():
            auc = "-" if c["roc_auc"] is None else f"{c['roc_auc']:.3f}"
            lines.append(f"| {name} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {auc} | {c['support']} |")
        lines += ["", f"Confusion matrix ({split}, rows true, columns predicted):", "",
                  "| | " + " | ".join(r["labels"]) + " |", "|---" * (len(r["labels"]) + 1) + "|"]
        for name, row in zip(r["labels"], r["confusion"]):
            lines.append(f"| **{name}** | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def plot_confusion(report: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.array(report["confusion"], dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    labels = report["labels"]
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{norm[i, j]:.2f}\n{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}: accuracy {100 * report['accuracy']:.1f}%")
    fig.tight_layout()
    with atomic_output(path, force=True) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def plot_curves(history: Path, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(l) for l in history.read_text().splitlines() if l.strip()]
    if not rows:
        return
    ep = [r["epoch"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(ep, [r.get("loss") for r in rows], label="train")
    a.plot(ep, [r.get("val_loss") for r in rows], label="validation")
    a.set_title("loss")
    b.plot(ep, [r.get("accuracy") for r in rows], label="train")
    b.plot(ep, [r.get("val_accuracy") for r in rows], label="validation")
    b.set_title("accuracy")
    for ax in (a, b):
        ax.set_xlabel("epoch")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_output(path, force=True) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _evaluate_splits(src, ds: FaceDataset, splits, log, staged, model_path) -> dict:
    """Each split's classification report (and its confusion figure, staged, when `staged` is given)."""
    reports = {}
    for split in splits:
        stop.check()
        part = ds.subset(split) if ds.has_split(split) else None
        if part is None or not len(part):
            log(f"note: no {split} faces in {ds.source}: skipped")
            continue
        with Progress(len(part), f"{split} faces") as bar:
            probs = predict_with_progress(src, part.images, bar)
        reports[split] = classification_report(part.labels, restrict(probs, part.scored), src.meta.labels)
        log(f"{split}: accuracy {100 * reports[split]['accuracy']:.2f}%  macro-F1 {100 * reports[split]['macro_f1']:.2f}%  ({len(part)} faces)")
        if staged:
            plot_confusion(reports[split], staged(f"confusion_{split}.png"), f"{Path(model_path).name} on {split}")
    return reports


def evaluate_to(model_path, ds: FaceDataset, out_dir, history=None, log=print, update_metadata=False,
                splits=EVAL_SPLITS, src=None) -> dict:
    """Evaluate a Keras model (loaded here, or `src` as convert.source.load_source gave it, e.g. with the user's
    --labels/--normalize) on the given splits and write report.json/.md and PNG figures to out_dir."""
    from fer_edge.convert.source import load_source

    src = src or load_source(model_path)  # a model without metadata is refused here, with the flags to give
    meta = src.meta
    if tuple(ds.label_set.labels) != meta.labels:
        raise FerEdgeError(f"the data has label set {ds.label_set.name} but the model predicts {meta.label_set.name}")
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = importlib.util.find_spec("matplotlib") is not None  # the figures are extras (the [train] extra has it)
    if not plots:
        log("note: matplotlib is not installed: report.json and report.md only, no PNG figures "
            "(pip install matplotlib, or pip install 'fer-edge[train]')")
    outputs: list[OutputFile] = []

    def staged(name: str) -> Path:  # written under a temporary name, committed with the others at the end
        outputs.append(OutputFile(out_dir / name, force=True))
        return outputs[-1].target

    try:
        with stop.raising():  # Keras's predict over a whole split, matplotlib: no checkpoint of ours inside
            reports = _evaluate_splits(src, ds, splits, log, plots and staged, model_path)
            doc = {"model": str(model_path), "data": ds.source, "splits": reports}
            staged("report.json").write_text(json.dumps(doc, indent=1))
            staged("report.md").write_text(markdown(reports, f"Evaluation of {Path(model_path).name}"))
            if plots and history and Path(history).is_file():
                plot_curves(Path(history), staged("curves.png"))
            commit_all(outputs)  # all or none, whenever the stop comes
    except BaseException:
        for out in outputs:
            out.discard()
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    if update_metadata and reports:
        figures = dict(meta.figures)
        for split, r in reports.items():
            figures[split] = {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"], "n": r["n"]}
        write_metadata(model_path, meta.replace(figures=figures))
    return doc


@cli_main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="fer-eval", description=__doc__)
    p.add_argument("model", help=".keras / .h5 model")
    p.add_argument("--data", required=True)
    p.add_argument("--out", default=None, help="report folder (default: <model>_eval/)")
    p.add_argument("--splits", default=",".join(EVAL_SPLITS))
    model_flag_arguments(p)
    p.add_argument("--force", action="store_true", help="overwrite the reports of an earlier evaluation in --out")
    args = p.parse_args(fix_argv(argv))
    out = check_out_folder(args.out or str(Path(args.model).with_suffix("")) + "_eval", args.force,
                           remedy="pass --force to overwrite its reports")
    splits = tuple(args.splits.split(","))
    unknown = [s for s in splits if s not in SPLITS]  # the report's keys: exact names, checked before any read
    if unknown:
        raise FerEdgeError(f"--splits: unknown split {unknown[0]!r}: expected one of {', '.join(SPLITS)}")
    from fer_edge.convert.source import load_source, read_source_metadata
    from fer_edge.training.backend import import_keras

    with stop.raising():  # Keras's import and the model: library calls without checkpoints of ours
        import_keras()  # a missing backend is one line here, not a traceback from the model loader
        own = read_source_metadata(args.model) is not None  # a model's own metadata wins over the flags
        src = load_source(args.model, None if own else model_flags(args))
        ds = load_for_model(args.data, src.meta)  # after the model: a bad model fails at once
    for note in ds.notes:
        _print(f"note: {note}")
    evaluate_to(args.model, ds, out, splits=splits, log=_print, src=src)


def _print(message: str) -> None:
    with printing():  # a progress bar on the terminal is redrawn below the line
        print(message, flush=True)


if __name__ == "__main__":  # as its console script runs: stops, exit codes (fer_edge/launch.py)
    from fer_edge.launch import main_module

    main_module(main)
