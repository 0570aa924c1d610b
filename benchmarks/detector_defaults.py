"""How YuNet's defaults were chosen: detect width, score threshold and NMS, measured on the data at hand.

    python benchmarks/detector_defaults.py --data ../shared/data --out benchmarks/detector_defaults.json

For each detect width (the width of the copy the detector sees; 0 = the whole frame) it measures, at one
OpenCV thread, YuNet's ms per frame on the sample video (widths interleaved over --rounds passes, the
fastest pass kept, so that a machine shared with other work slows every width alike and the ranking
holds), and for each score threshold and NMS IoU: frames
of the video with exactly one face (it shows one woman throughout), faces found in the group selfie (7
people), false faces in the cartoon (0 expected), and tfeid-dev photos (one person each) with exactly one
face. The detection goes through the runtime's own Pipeline.detect (grey once, shrink, map back), so what
is measured is what fer-edge runs. Writes JSON and a Markdown table beside it; timing figures depend on
the machine and its load, which the JSON records.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import cv2

from fer_edge.runtime.recognize.pipeline import Pipeline, PipelineOptions
from report import write_report  # benchmarks/report.py, beside this script

WIDTHS = (160, 240, 320, 480, 640, 0)
SCORES = (0.5, 0.6, 0.7, 0.8, 0.9)
GRID = [(0.3, score) for score in SCORES] + [(0.45, 0.6)]  # (NMS IoU, score): NMS checked at one score


def load(data: Path) -> dict:
    samples = data / "samples"
    cap = cv2.VideoCapture(str(samples / "fer_test.mp4"))
    video = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        video.append(frame)
    tfeid = sorted((data / "tfeid-dev" / "images").glob("*.jpg"))
    return {"video": video, "selfie": cv2.imread(str(samples / "deepface_selfie-many-people.jpg")),
            "cartoon": cv2.imread(str(samples / "fer_no-faces.jpg")),
            "tfeid": [cv2.imread(str(p)) for p in tfeid]}


def counts(pipe: Pipeline, images, width: int, still: bool) -> tuple[list[int], float]:
    """Faces per image and ms per image (grey conversion, shrinking and detection) at this detect width."""
    pipe.options.detect_size = width or 100_000
    n, t0 = [], time.perf_counter()
    for im in images:
        n.append(len(pipe.detect(im, cv2.cvtColor(im, cv2.COLOR_BGR2GRAY), still)))
    return n, (time.perf_counter() - t0) * 1000 / max(len(images), 1)


def timings(video, rounds: int) -> dict:
    """Fastest ms per video frame for each width over `rounds` interleaved passes (default score and NMS)."""
    best = {}
    with Pipeline(PipelineOptions(detector="yunet", threads=1)) as pipe:
        for _ in range(rounds):
            for width in WIDTHS:
                ms = counts(pipe, video, width, still=False)[1]
                best[width] = min(best.get(width, ms), ms)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="the data folder (samples/, tfeid-dev/)")
    p.add_argument("--rounds", type=int, default=5, help="timing passes over the video per width")
    p.add_argument("--out", default="benchmarks/detector_defaults.json")
    a = p.parse_args(argv)
    cv2.setNumThreads(1)
    d = load(Path(a.data))
    ms = timings(d["video"], a.rounds)
    rows = []
    for nms, score in GRID:
        with Pipeline(PipelineOptions(model=None, detector="yunet", threads=1,
                                      detect_options={"score": score, "nms": nms})) as pipe:
            for width in WIDTHS:
                video, _ = counts(pipe, d["video"], width, still=False)
                selfie, _ = counts(pipe, [d["selfie"]], width, still=True)
                cartoon, _ = counts(pipe, [d["cartoon"]], width, still=True)
                tfeid, _ = counts(pipe, d["tfeid"], width, still=True)
                rows.append({"nms": nms, "score": score, "width": width or "full", "video_ms_per_frame": round(ms[width], 2),
                             "video_frames_one_face": sum(c == 1 for c in video), "video_frames": len(video),
                             "selfie_faces": selfie[0], "cartoon_faces": cartoon[0],
                             "tfeid_one_face": sum(c == 1 for c in tfeid), "tfeid_images": len(tfeid)})
                print(json.dumps(rows[-1]), file=sys.stderr)
    command = "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    doc = {"command": command, "platform": platform.platform(), "cv2": cv2.__version__,
           "load_average": os.getloadavg(), "rows": rows}
    lines = [f"# YuNet defaults\n\n`{command}` (OpenCV {cv2.__version__}, 1 thread, load average "
             f"{os.getloadavg()[0]:.1f} when it ended)\n",
             "| nms | score | width | video ms/frame | video frames with 1 face | selfie faces (of 7) | cartoon faces "
             "| tfeid-dev photos with 1 face |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['nms']} | {r['score']} | {r['width']} | {r['video_ms_per_frame']} | "
                     f"{r['video_frames_one_face']}/{r['video_frames']} | {r['selfie_faces']} | {r['cartoon_faces']} "
                     f"| {r['tfeid_one_face']}/{r['tfeid_images']} |")
    write_report(a.out, doc, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
