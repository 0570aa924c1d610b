"""Where FER2013 puts a face in its 48x48 crop, measured with YuNet's landmarks: the runtime's framing constants.

    python benchmarks/fer2013_framing.py --data ../shared/data --out benchmarks/fer2013_framing.json

YuNet does not find faces of 48 pixels that fill the whole image, so each sampled Training face is given
a border (replicated edge pixels, `--pad` pixels on every side) and upscaled `--upscale` times; the
landmarks of the best-scoring face are mapped back to the 48x48 crop. The medians over all faces found
(eye midpoint, eye distance, eye-midpoint-to-mouth-midpoint distance, as fractions of the crop side) are
`fer_edge.runtime.faces.framing.Framing`'s defaults; the quartiles say how loosely FER2013 is registered. Two
settings are measured so that the figures do not hang on one choice of padding.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import cv2
import numpy as np

from fer_edge.runtime.faces.detectors import YuNetDetector
from fer_edge.runtime.model.shipped import shipped_file
from report import write_report  # benchmarks/report.py, beside this script

SETTINGS = ((4, 16), (4, 0))  # (upscale, pad): with a border first; the bare crop as a check


def measure(pixels: np.ndarray, upscale: int, pad: int) -> dict:
    side = (48 + 2 * pad) * upscale
    det = cv2.FaceDetectorYN.create(str(shipped_file(YuNetDetector.FILE)), "", (side, side), 0.5, 0.3, 10)
    rows = []
    for g in pixels:
        if pad:
            g = cv2.copyMakeBorder(g, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        im = cv2.cvtColor(cv2.resize(g, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC),
                          cv2.COLOR_GRAY2BGR)
        _, faces = det.detect(im)
        if faces is None:
            continue
        lm = faces[np.argmax(faces[:, 14]), 4:14].reshape(5, 2) / upscale - pad  # in 48x48 crop pixels
        eyes = (lm[0] + lm[1]) / 2
        mouth = (lm[3] + lm[4]) / 2
        rows.append([eyes[0], eyes[1], np.linalg.norm(lm[1] - lm[0]), np.linalg.norm(mouth - eyes),
                     np.degrees(np.arctan2(lm[1, 1] - lm[0, 1], lm[1, 0] - lm[0, 0]))])
    r = np.array(rows) / np.array([48, 48, 48, 48, 1])  # fractions of the crop side; the angle in degrees
    names = ("eye_x", "eye_y", "eye_dist", "eye_mouth", "eye_angle_deg")
    q = np.percentile(r, [25, 50, 75], axis=0)
    return {"upscale": upscale, "pad": pad, "faces": len(pixels), "found": len(r),
            **{n: {"median": round(float(q[1, i]), 4), "q25": round(float(q[0, i]), 4), "q75": round(float(q[2, i]), 4)}
               for i, n in enumerate(names)}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="the folder holding fer2013.npz")
    p.add_argument("--sample", type=int, default=3000, help="Training faces, drawn with a fixed seed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/fer2013_framing.json")
    a = p.parse_args(argv)
    cv2.setNumThreads(1)
    with np.load(Path(a.data) / "fer2013.npz", allow_pickle=False) as d:
        training = np.flatnonzero(d["usage"] == 0)
        pick = np.random.default_rng(a.seed).choice(training, min(a.sample, len(training)), replace=False)
        pixels = d["pixels"][np.sort(pick)]
    results = [measure(pixels, up, pad) for up, pad in SETTINGS]
    command = "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    doc = {"command": command, "platform": platform.platform(), "cv2": cv2.__version__, "results": results}
    write_report(a.out, doc)
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
