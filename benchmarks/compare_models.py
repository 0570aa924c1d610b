"""Classifiers side by side on the same faces, paired: is a difference in accuracy more than noise?

    python benchmarks/compare_models.py --data ../shared/data --out benchmarks/compare_models.json \
        models/fer-vgg_int8.tflite models/fer-lite_int8.tflite [--photos DIR ...]

The first model is the reference (for instance today's default), the others are candidates. Sets:
- FER2013 PublicTest and PrivateTest against FER2013's labels, and the same faces against the FER+ majority
  vote where the data folder holds ferplus/ (faces whose majority is contempt, unknown or not a face left out);
- each labelled photo folder given with --photos (default: DATA/tfeid-dev): a labels.csv with `file` and
  `label` columns beside the photos, or one folder per class as other datasets come (anger/, happiness/, ...;
  a class the model lacks, such as contempt, is left out). Each photo goes through the runtime's own Pipeline (YuNet, FER2013
  framing) and the highest-scoring face is classified; a photo where no face is found counts as wrong.
Per set and model: accuracy with its 95% Wilson interval. Per set and candidate: how many faces only the
reference got right and how many only the candidate did, and the exact two-sided McNemar p-value of that
split, the chance of a split at least that uneven if both models were equally accurate. A small p says the
difference is real; a large one says these faces cannot tell the two apart. The runtime alone runs the files
(.tflite, .onnx; no TensorFlow).
"""
from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import cv2
import numpy as np

from fer_edge.runtime.model.backends import Classifier
from fer_edge.runtime.data.datasets import (FaceDataset, ferplus_csv, ferplus_majority_as, load_dataset,
                                            read_ferplus, read_photo_labels)
from fer_edge.runtime.core.errors import DataError, FerEdgeError, cli_main
from fer_edge.runtime.data.metrics import mcnemar_exact, wilson_interval
from fer_edge.runtime.recognize.pipeline import Pipeline, PipelineOptions
from fer_edge.runtime.model.shipped import missing_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_report  # noqa: E402  benchmarks/report.py, beside this script

SPLITS = ("PublicTest", "PrivateTest")


def fer2013_sets(fer2013: FaceDataset, plus: FaceDataset | None, clf: Classifier,
                 limit: int | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (labels, predicted classes) on FER2013's test splits, FER2013's and (`plus`) FER+'s labels."""
    sets = {}
    for split in SPLITS:
        a = fer2013.subset(split)
        a = a.take(slice(0, limit)) if limit else a
        pred = np.full(len(fer2013), -1)
        pred[a.rows] = clf.predict_batched(a.images).argmax(1)
        sets[f"FER2013 {split}"] = (a.labels, pred[a.rows])
        if plus is not None:  # FER+ relabels the same faces: no second pass
            b = plus.subset(split)
            b = b.take(np.flatnonzero(pred[b.rows] >= 0))
            sets[f"FER+ majority {split}"] = (b.labels, pred[b.rows])
    return sets


def photo_predictions(pipe: Pipeline, photos: list[tuple[Path, int]], transform=None) -> np.ndarray:
    """The class of the highest-scoring face in each photo, as `pipe` finds and frames it; -1: no face.
    `transform(i, image)`, when given, changes photo i before it is processed."""
    pred = np.full(len(photos), -1)
    for i, (path, _) in enumerate(photos):
        image = cv2.imread(str(path))
        if image is None:
            raise DataError(f"{path}: not a readable image")
        faces = pipe.process_image(transform(i, image) if transform else image).faces
        if faces:
            pred[i] = pipe.labels.index(max(faces, key=lambda f: f.score).label)
    return pred


def compare(models: list[Path], data: Path, photo_dirs: list[Path], limit: int | None = None) -> dict:
    """{set: {"n": faces, "models": {name: accuracy row}, "against_reference": {candidate: McNemar row}}}."""
    clfs = [Classifier(m, threads=1) for m in models]
    labels = clfs[0].labels
    for c in clfs[1:]:
        if c.labels != labels:
            raise FerEdgeError(f"{c.path.name} predicts {', '.join(c.labels)} but {clfs[0].path.name} predicts "
                               f"{', '.join(labels)}: expected models of one label set")
    photo_sets = {folder: read_photo_labels(folder, labels, limit) for folder in photo_dirs}  # checked first
    fer2013, csv_path = load_dataset(data), ferplus_csv(data)  # read once, scored by every model
    plus = ferplus_majority_as(read_ferplus(csv_path, fer2013), labels) if csv_path.is_file() else None
    per_model = [fer2013_sets(fer2013, plus, c, limit) for c in clfs]
    for folder, photos in photo_sets.items():
        truth = np.array([y for _, y in photos])
        for m, sets in zip(models, per_model):
            with Pipeline(PipelineOptions(model=str(m), detector="yunet", threads=1)) as pipe:
                sets[f"photos {folder.name}"] = (truth, photo_predictions(pipe, photos))
    results = {}
    for name in per_model[0]:
        y = per_model[0][name][0]
        right = [sets[name][1] == y for sets in per_model]
        row = {"n": len(y), "models": {}, "against_reference": {}}
        for m, r in zip(models, right):
            lo, hi = wilson_interval(int(r.sum()), len(r))
            row["models"][str(m)] = {"accuracy": float(r.mean()), "ci95": [lo, hi]}
        for m, r in zip(models[1:], right[1:]):
            only_ref, only_cand = int((right[0] & ~r).sum()), int((r & ~right[0]).sum())
            row["against_reference"][str(m)] = {"only_reference_right": only_ref, "only_candidate_right": only_cand,
                                                "mcnemar_p": mcnemar_exact(only_ref, only_cand)}
        results[name] = row
    return results


def markdown(doc: dict) -> list[str]:
    names = doc["models"]
    lines = ["# Models compared on the same faces (paired)", "", f"`{doc['command']}`", "",
             f"Reference: `{names[0]}`. Accuracy with its 95% Wilson interval; for each candidate, the faces only "
             "the reference got right / only the candidate got right, and the exact McNemar p-value of that split.",
             "", "| set | faces | " + " | ".join(f"`{n}`" for n in names) + " | " +
             " | ".join(f"`{n}`: only ref / only it, p" for n in names[1:]) + " |",
             "|---|---|" + "---|" * (2 * len(names) - 1)]
    for name, row in doc["results"].items():
        acc = [f"{r['accuracy']:.2%} ({r['ci95'][0]:.1%}-{r['ci95'][1]:.1%})" for r in row["models"].values()]
        pairs = [f"{r['only_reference_right']} / {r['only_candidate_right']}, p = {r['mcnemar_p']:.2f}"
                 for r in row["against_reference"].values()]
        lines.append(f"| {name} | {row['n']:,} | " + " | ".join(acc + pairs) + " |")
    return lines


@cli_main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="the reference, then the candidates (.tflite / .onnx)")
    p.add_argument("--data", required=True, help="folder holding fer2013.npz (and ferplus/, tfeid-dev/)")
    p.add_argument("--photos", action="append", metavar="DIR",
                   help="a labelled photo folder (labels.csv of file,label); default DATA/tfeid-dev where it exists")
    p.add_argument("--limit", type=int, help="only the first N faces of each split and photos of each folder")
    p.add_argument("--out", default="benchmarks/compare_models.json")
    a = p.parse_args(argv)
    data, models = Path(a.data), [Path(m) for m in a.models]
    for m in models:
        if not m.is_file():
            raise FerEdgeError(missing_model(m))
    if len(set(models)) < len(models):
        raise FerEdgeError(f"expected each model once, found {', '.join(map(str, models))}")
    photos = [Path(d) for d in a.photos] if a.photos else [d for d in [data / "tfeid-dev"] if d.is_dir()]
    command = "python " + " ".join([sys.argv[0] if argv is None else "benchmarks/compare_models.py",
                                    *(argv if argv is not None else sys.argv[1:])])
    doc = {"command": command, "platform": platform.platform(), "models": [str(m) for m in models],
           "results": compare(models, data, photos, a.limit)}
    write_report(a.out, doc, markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
