"""Accuracy against FER2013's own labels and against the FER+ relabels of the same faces (10 annotators each,
majority vote), per shipped model: a second opinion on the faces every model here is chosen and reported on.

    python benchmarks/label_noise.py --data ../shared/data --out benchmarks/label_noise.json [MODEL ...]

FER2013's labels are one annotator's and noisy (human agreement is about 65%); FER+ relabelled the same
images by ten. A model that scores higher on FER2013's labels but lower on FER+'s has learnt some of the
label noise rather than the expression, and can be expected to do worse on other expression datasets.
Faces whose FER+ majority is contempt, unknown or not a face are left out (FER2013 has no such class).
The runtime's own Classifier runs each file (no TensorFlow needed); default: every shipped INT8 .tflite.
"""
from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

from fer_edge.runtime.model.backends import Classifier
from fer_edge.runtime.data.datasets import ferplus_csv, ferplus_majority_as, load_dataset, read_ferplus
from fer_edge.runtime.model.shipped import shipped_models
from compare_models import SPLITS, fer2013_sets  # benchmarks/compare_models.py
from report import write_report  # benchmarks/report.py, beside this script


def accuracies(path: Path, fer2013, ferplus) -> dict:
    clf = Classifier(path, threads=1)
    sets = fer2013_sets(fer2013, ferplus_majority_as(ferplus, clf.labels), clf, None)  # one pass per split
    out = {}
    for split in SPLITS:
        (ya, pa), (yb, pb) = sets[f"FER2013 {split}"], sets[f"FER+ majority {split}"]
        out[split] = {"fer2013": float((pa == ya).mean()), "n_fer2013": len(ya),
                      "ferplus": float((pb == yb).mean()), "n_ferplus": len(yb)}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="*", help=".tflite / .onnx files (default: every shipped INT8 .tflite)")
    p.add_argument("--data", required=True, help="folder holding fer2013.npz and ferplus/fer2013new.csv")
    p.add_argument("--out", default="benchmarks/label_noise.json")
    a = p.parse_args(argv)
    models = [Path(m) for m in a.models] or sorted(shipped_models().values())
    fer2013 = load_dataset(a.data)
    ferplus = read_ferplus(ferplus_csv(a.data), fer2013)  # joined to the faces already read
    results = {m.name: accuracies(m, fer2013, ferplus) for m in models}
    command = "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    doc = {"command": command, "platform": platform.platform(), "results": results}
    lines = ["# FER2013 labels against the FER+ relabels of the same faces", "", f"`{command}`", "",
             "| model | PublicTest, FER2013 labels | PublicTest, FER+ majority | PrivateTest, FER2013 labels | "
             "PrivateTest, FER+ majority |", "|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| `{name}` | " + " | ".join(f"{r[s]['fer2013']:.2%} | {r[s]['ferplus']:.2%}" for s in SPLITS) + " |")
    n = next(iter(results.values()))
    lines += ["", f"Faces: FER2013 labels {n['PrivateTest']['n_fer2013']:,} per split; FER+ majority "
              f"{n['PublicTest']['n_ferplus']:,} (PublicTest) and {n['PrivateTest']['n_ferplus']:,} (PrivateTest), "
              "without the faces whose majority is contempt, unknown or not a face."]
    write_report(a.out, doc, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
