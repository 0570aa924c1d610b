"""How much a face's crop may change before its label can: the threshold under which the stream schedule keeps a
face's probabilities instead of classifying it again (runtime/faces/schedule.py, CROP_CHANGE).

    python benchmarks/crop_change.py --data ../shared/data --out benchmarks/crop_change.json

On every frame of the sample video (one face, moving, changing expression) the face is found by a full detection
(YuNet at 320 px), cut as the classifier sees it (runtime/faces/framing.py) and classified by the default model.
For every pair of frames up to --gap frames apart: the crop's change (`crop_change`: mean absolute difference,
in grey levels, of the two crops shrunk to 24x24) against the largest change of a probability and whether the
label changed (among pairs where both are sure). The table gives, per band of crop change, how often the
probabilities moved by more than the schedule's CHANGED and how often a sure label flipped.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from report import write_report  # noqa: E402  benchmarks/report.py, beside this script

BANDS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 1000.0)


def measure(video: Path, gap: int) -> dict:
    from fer_edge.runtime.faces.detectors import detect_at, make_detector
    from fer_edge.runtime.faces.framing import face_crops
    from fer_edge.runtime.faces.schedule import CHANGED, crop_change, crop_print
    from fer_edge.runtime.recognize.pipeline import Pipeline, PipelineOptions

    cap, prints, probs = cv2.VideoCapture(str(video)), [], []
    with Pipeline(PipelineOptions(threads=1)) as p:
        detector = make_detector("yunet", threads=1)
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            faces = detect_at(detector, frame, None, 320)
            if not faces:
                prints.append(None)
                probs.append(None)
                continue
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            crop = face_crops(gray, faces[:1], p.classifier.meta.preprocess, p.framing)
            prints.append(crop_print(crop[0]))
            probs.append(p.classifier.predict(crop)[0])
        threshold = p.threshold
        detector.close()
    cap.release()
    rows = []
    for i in range(len(prints)):
        for j in range(i + 1, min(len(prints), i + gap + 1)):
            if prints[i] is None or prints[j] is None:
                continue
            a, b = probs[i], probs[j]
            sure = a.max() >= threshold and b.max() >= threshold
            rows.append((crop_change(prints[i], prints[j]), float(np.abs(a - b).max()), sure, a.argmax() != b.argmax()))
    bands = []
    for lo, hi in zip(BANDS, BANDS[1:]):
        sel = [r for r in rows if lo <= r[0] < hi]
        sure = [r for r in sel if r[2]]
        bands.append({"from": lo, "to": hi, "pairs": len(sel),
                      "probs_moved": round(sum(r[1] > CHANGED for r in sel) / max(len(sel), 1), 4),
                      "sure_pairs": len(sure), "sure_label_flipped": round(sum(r[3] for r in sure) / max(len(sure), 1), 4)})
    return {"video": video.name, "frames": len(prints), "gap": gap, "changed": CHANGED, "bands": bands}


def markdown(doc: dict) -> list[str]:
    lines = ["# How much a face's crop may change before its label can", "",
             f"Written by `python benchmarks/crop_change.py` (see its docstring): {doc['video']}, {doc['frames']} frames, "
             f"every pair up to {doc['gap']} frames apart; crop change in grey levels (24x24 mean absolute difference).",
             "", f"| crop change | pairs | a probability moved > {doc['changed']} | sure pairs | sure label flipped |",
             "|---|---|---|---|---|"]
    for b in doc["bands"]:
        lines.append(f"| {b['from']:g}-{b['to']:g} | {b['pairs']} | {b['probs_moved']:.1%} | {b['sure_pairs']} | "
                     f"{b['sure_label_flipped']:.1%} |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("FER_EDGE_DATA", "../shared/data"))
    p.add_argument("--gap", type=int, default=30)
    p.add_argument("--out", default=str(Path(__file__).with_name("crop_change.json")))
    a = p.parse_args(argv)
    doc = measure(Path(a.data) / "samples" / "fer_test.mp4", a.gap)
    write_report(a.out, doc, markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
