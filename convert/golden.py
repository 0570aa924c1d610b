"""Golden outputs: the fp32 reference's probabilities on one split, stored beside the shipped model.

They stand in for the Keras model wherever TensorFlow is absent: `fer-convert verify FILE --reference
GOLDEN.npz --data DATA` measures exported files against them with the runtime alone (the CI gate).

    python -m fer_edge.convert.golden models/fer-vgg.keras --data ../shared/data --out models/fer-vgg_golden.npz

The file is a plain .npz (no pickle): `rows` (index of each face in FER2013's original order), `labels`
(their true classes, to catch a different dataset), `probs` (float16, N x K), and the model's sha256,
file name, label set and split.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from fer_edge.convert.parity import EvalSet, reference_entry
from fer_edge.convert.report import Reference
from fer_edge.runtime.data.datasets import FaceDataset, load_dataset, split_code
from fer_edge.runtime.core.errors import cli_main, DataError, ModelError
from fer_edge.runtime.core.fileio import atomic_output
from fer_edge.runtime.data.golden import match_rows

KEYS = ("rows", "labels", "probs", "model_sha256", "model", "label_set", "split")


def make_golden(model: str, data: str, out: str, split: str = "PrivateTest", force: bool = False, log=print) -> Path:
    from fer_edge.convert.source import load_source

    src = load_source(model)
    ds = load_dataset(data, label_set=src.meta.label_set.name)
    if ds.rows is None:
        raise DataError(f"{data}: golden outputs are keyed by FER2013 row: use the .npz or .csv, not image folders")
    part = ds.subset(split)
    if not len(part):
        raise DataError(f"{data}: no {split} faces")
    log(f"{Path(model).name}: Keras fp32 on {len(part)} {split} faces")
    probs = src.predict(part.images)
    with atomic_output(out, force=force) as tmp:
        with open(tmp, "wb") as f:  # np.savez on a path would append .npz to the temporary name
            np.savez_compressed(f, rows=part.rows.astype(np.int32), labels=part.labels.astype(np.int8),
                                probs=probs.astype(np.float16), model_sha256=np.array(src.sha256),
                                model=np.array(Path(model).name), label_set=np.array(src.meta.label_set.name),
                                split=np.array(split))
    acc = float((probs.argmax(1) == part.labels).mean())
    log(f"golden outputs -> {out} (accuracy {100 * acc:.2f}% on {split})")
    return Path(out)


def load_golden(path: str | Path, ds: FaceDataset) -> tuple[Reference, np.ndarray, EvalSet]:
    """(reference entry, reference probabilities, the faces they belong to) from a golden file and FER2013."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in KEYS if k not in z.files]
            if missing:
                raise ModelError(f"{path}: not a golden-outputs file: missing {', '.join(missing)}")
            g = {k: z[k] for k in KEYS}
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable golden-outputs .npz ({exc})") from None
    if str(g["label_set"]) != ds.label_set.name:
        raise DataError(f"{path}: golden outputs are for label set {g['label_set']}, the data has {ds.label_set.name}")
    if ds.rows is None:
        raise DataError(f"{ds.source}: golden outputs are keyed by FER2013 row: use the .npz or .csv")
    pos, ok = match_rows(ds.rows, g["rows"])
    if not ok.all() or not np.array_equal(ds.labels[pos], g["labels"].astype(np.int64)) \
            or not np.all(ds.split[pos] == split_code(str(g["split"]))):
        raise DataError(f"{ds.source}: does not hold the {len(g['rows'])} {g['split']} faces of {path} "
                        "with the same labels: a different FER2013?")
    ev = EvalSet(ds.images[pos], ds.labels[pos], str(g["split"]), str(ds.source))
    probs = g["probs"].astype(np.float32)
    ref = reference_entry(f"{g['model']} (golden outputs {path.name})", str(g["model_sha256"]), probs, ev,
                          ds.label_set.labels)
    ref.runtime = "golden"
    return ref, probs, ev


@cli_main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fer_edge.convert.golden", description=__doc__.splitlines()[0])
    ap.add_argument("model", help="the fp32 Keras reference (.keras)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True, help="golden .npz to write")
    ap.add_argument("--split", default="PrivateTest", choices=("PublicTest", "PrivateTest"))
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args(argv)
    make_golden(a.model, a.data, a.out, a.split, a.force, log=lambda m: print(m, file=sys.stderr))


if __name__ == "__main__":  # as its console script runs: stops, exit codes (fer_edge/launch.py)
    from fer_edge.launch import main_module

    main_module(main)
