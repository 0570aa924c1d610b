"""Accuracy on posed photos (tfeid-dev) and the label share on the sample video, per detector and framing.

    python benchmarks/framing_accuracy.py --data ../shared/data --out benchmarks/framing_accuracy.json

Every configuration runs the runtime's own Pipeline on each tfeid-dev photo (process_image, the shipped
model unless --model is given) and takes the highest-scoring face; a photo where no face is found counts
as wrong. Configurations: the old defaults (Haar, the detector's box), YuNet with its box, and YuNet with
the FER2013 framing (runtime/faces/framing.py) in the variants of the method that were compared: how the face's
size is judged (eye-mouth distance, eye distance, their mean or their larger) and how the eyes are levelled
(beyond FER2013's own tilt, always, never). On the sample video (a smiling woman, one face) it reports the share of frames labelled happy.
tfeid-dev is a development set: the choice is made on the method, and the project is also judged on
performers and datasets that are not here.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from fer_edge.runtime.faces.framing import FER2013
from fer_edge.runtime.recognize.pipeline import Pipeline, PipelineOptions
from compare_models import photo_predictions, read_photo_labels  # benchmarks/compare_models.py
from report import write_report  # benchmarks/report.py, beside this script

CONFIGS = {  # name -> (detector, framing)
    "haar, box (before)": ("haar", None),
    "yunet, box": ("yunet", None),
    "yunet, fer2013 (default: sized by eye-mouth distance, tilt beyond 4 degrees levelled)": ("yunet", FER2013),
    "yunet, fer2013, never turned": ("yunet", replace(FER2013, level_beyond=None)),
    "yunet, fer2013, always levelled": ("yunet", replace(FER2013, level_beyond=0.0)),
    "yunet, fer2013, sized by eye distance": ("yunet", replace(FER2013, size_from="eyes")),
    "yunet, fer2013, sized by the mean of both": ("yunet", replace(FER2013, size_from="mean")),
    "yunet, fer2013, sized by the larger of both": ("yunet", replace(FER2013, size_from="max")),
}


def rolled(image: np.ndarray, degrees: float) -> np.ndarray:
    """The photo turned about its centre (a head tilted sideways), edges replicated."""
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def tfeid(pipe: Pipeline, data: Path, roll: float = 0.0) -> dict:
    labels = list(pipe.labels)
    photos = read_photo_labels(data / "tfeid-dev", pipe.labels, None)
    turn = (lambda i, image: rolled(image, roll if i % 2 else -roll)) if roll else None
    pred = photo_predictions(pipe, photos, turn)
    confusion = np.zeros((len(labels), len(labels) + 1), int)  # last column (-1): no face found
    np.add.at(confusion, (np.array([y for _, y in photos]), pred), 1)
    per_class = {k: round(float(confusion[i, i] / max(confusion[i].sum(), 1)), 4) for i, k in enumerate(labels)
                 if confusion[i].sum()}
    return {"n": len(photos), "accuracy": round(float(np.trace(confusion[:, :-1]) / len(photos)), 4),
            "per_class": per_class, "no_face": int(confusion[:, -1].sum()), "confusion": confusion.tolist()}


def video(pipe: Pipeline, data: Path) -> dict:
    cap = cv2.VideoCapture(str(data / "samples" / "fer_test.mp4"))
    pipe.tracker.reset()
    labels, i = [], 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        labels += [f.label for f in pipe.process(frame, i).faces]
        i += 1
    return {"frames": i, "faces": len(labels), "happy_share": round(labels.count("happy") / max(len(labels), 1), 4)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="the data folder (tfeid-dev/, samples/)")
    p.add_argument("--model", help="classifier (default: the shipped model)")
    p.add_argument("--roll", type=float, default=0.0, metavar="DEG", help="turn the photos by +-DEG degrees "
                   "(alternately) first: heads tilted sideways, which tfeid-dev's upright poses do not show")
    p.add_argument("--config", action="append", choices=list(CONFIGS), help="run only these (repeat)")
    p.add_argument("--out", default="benchmarks/framing_accuracy.json")
    a = p.parse_args(argv)
    data = Path(a.data)
    results = {}
    for name, (detector, framing) in CONFIGS.items():
        if a.config and name not in a.config:
            continue
        if detector == "haar" and not hasattr(cv2, "CascadeClassifier"):
            continue
        with Pipeline(PipelineOptions(model=a.model, detector=detector, threads=1)) as pipe:
            pipe.framing = framing
            results[name] = {"tfeid": tfeid(pipe, data, a.roll), "video": video(pipe, data)}
        print(name, json.dumps({k: v for k, v in results[name]["tfeid"].items() if k != "confusion"}),
              json.dumps(results[name]["video"]), file=sys.stderr)
    command = "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    doc = {"command": command, "platform": platform.platform(), "cv2": cv2.__version__, "roll_degrees": a.roll,
           "model": a.model or "shipped default", "labels": list(pipe.labels), "results": results}
    rolled_by = f", photos turned by +-{a.roll:g} degrees" if a.roll else ""
    lines = [f"# Framing: tfeid-dev accuracy{rolled_by}, and the sample video\n\n`{command}`\n",
             "| configuration | tfeid-dev accuracy | " + " | ".join(doc["labels"]) + " | no face | video: happy share |",
             "|---|---|" + "---|" * len(doc["labels"]) + "---|---|"]
    for name, r in results.items():
        t = r["tfeid"]
        lines.append(f"| {name} | {t['accuracy']:.1%} | " + " | ".join(f"{t['per_class'].get(k, 0):.0%}" for k in
                                                                         doc["labels"])
                     + f" | {t['no_face']} | {r['video']['happy_share']:.0%} |")
    write_report(a.out, doc, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
