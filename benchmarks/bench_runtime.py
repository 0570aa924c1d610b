"""End-to-end benchmark of the fer-edge runtime on the sample video.

    python benchmarks/bench_runtime.py --video ../shared/data/samples/fer_test.mp4 \
        --model models/fer-vgg_int8.tflite --model models/fer-vgg_int8.onnx \
        --blazeface ../shared/models/face_detection_short_range.tflite \
        --keras models/fer-vgg.keras --out benchmarks/fer-vgg_runtime.json --markdown BENCHMARKS.md

Every configuration runs as its own `fer-edge` process at --threads 1 (so the peak RSS is that of the
whole process: interpreter, OpenCV, Python); frames/s and per-stage ms come from its --summary. A second
run per backend passes over the video 20 times (--loop 20) while this script samples the child's RSS,
and reports how much it grew after the first pass. `--keras` adds the tutorials' loop for reference
(Haar at scale 1.3 on every frame, then Keras `model.predict` per face; needs TensorFlow, which only
this reference row imports). The runs themselves are `fer_edge.convert.bench_e2e`, shared with fer-bench
(which measures every format's accuracy, latency and frames/s; this script adds memory and detection
scheduling). Run it after fer-bench: --markdown replaces this script's section of that file (from its
heading to the end) and leaves fer-bench's part alone.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

from fer_edge.convert.bench_e2e import keras_tutorial, run_fer_edge
from fer_edge.runtime.core.errors import FerEdgeError
from fer_edge.runtime.core.fileio import atomic_output

DETECT_EVERY = (1, 3)


SECTION = "## fer-edge runtime: detection scheduling and memory"


def markdown(results: list[dict], command: str) -> str:
    tutorial = next((r["fps"] for r in results if r["kernels"] == "keras"), None)
    tutorial_cpu = next((r.get("frames_per_cpu_s") for r in results if r["kernels"] == "keras"), None)
    rows = ["| model | detector | every K | frames/s | vs tutorial loop | frames per CPU s | vs tutorial loop (CPU) "
            "| read | detect | track | classify | output | peak RSS MB | RSS growth after pass 1 (loop 20) MB |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        st = r["stage_ms"]
        ratio = f"{r['fps'] / tutorial:.1f}x" if tutorial else ""
        cpu = r.get("frames_per_cpu_s")
        cpu_ratio = f"{cpu / tutorial_cpu:.1f}x" if cpu and tutorial_cpu else ""
        loop = f" (--loop {r['loop']})" if r.get("loop", 1) > 1 else ""
        rows.append(f"| {r['model']} | {r['detector']} | {r['detect_every']}{loop} | {r['fps']} | {ratio} | "
                    f"{cpu or ''} | {cpu_ratio} | "
                    + " | ".join(str(st.get(k, "")) for k in ("read", "detect", "track", "classify", "output"))
                    + f" | {r.get('peak_rss_mb', '')} | {r.get('rss_growth_after_pass1_mb', '')} |")
    return (f"{SECTION}\n\n{platform.platform()}, {platform.processor() or platform.machine()}, "
            f"Python {platform.python_version()}, 1 thread. One `fer-edge` process per row (stages in ms per frame, "
            "peak RSS of the whole process); `every K` runs the detector on every K-th frame and follows the "
            "tracked boxes in between. Frames per CPU second count the whole fer-edge process (start-up included) "
            "and the tutorial loop's own pass: on a machine shared with other work they hold where wall-clock "
            "frames/s do not.\n\n```\n" + command + "\n```\n\n" + "\n".join(rows) + "\n")


def write_section(path: Path, text: str) -> None:
    """Put this script's section at the end of `path`, replacing an earlier one; the rest stays as it was."""
    old = path.read_text() if path.is_file() else ""
    keep = old[: old.index(SECTION)] if SECTION in old else old
    with atomic_output(path, force=True) as tmp:
        tmp.write_text((keep.rstrip("\n") + "\n\n" if keep.strip() else "") + text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--video", required=True)
    p.add_argument("--frames", type=int, default=115, help="frames in one pass of the video")
    p.add_argument("--model", action="append", required=True, help=".tflite or .onnx (repeat)")
    p.add_argument("--detector", action="append", choices=("yunet", "haar", "blazeface"),
                   help="detectors to run (repeat; default: yunet, the runtime's default, and haar, plus blazeface "
                   "with --blazeface)")
    p.add_argument("--blazeface", help="face_detection_short_range.tflite (adds the blazeface rows)")
    p.add_argument("--keras", help="a .keras model: adds the tutorials' Keras loop as the reference row")
    p.add_argument("--loop", type=int, default=20, help="passes for the RSS-growth run (0 = skip)")
    p.add_argument("--out", default="benchmarks/results.json")
    p.add_argument("--markdown", help="also write the table as the last section of this Markdown file")
    a = p.parse_args(argv)
    detectors = a.detector or ["yunet", "haar"] + (["blazeface"] if a.blazeface else [])
    results = []
    try:
        for model in a.model:
            for det in detectors:
                for every in DETECT_EVERY:
                    results.append(run_fer_edge(a.video, model, det, every, blazeface=a.blazeface))
                    print(json.dumps(results[-1]), file=sys.stderr)
            for det in detectors if a.loop > 1 else ():
                results.append(run_fer_edge(a.video, model, det, 1, loop=a.loop, blazeface=a.blazeface,
                                            frames_per_pass=a.frames))
                print(json.dumps(results[-1]), file=sys.stderr)
        if a.keras:
            results.append(keras_tutorial(a.video, a.keras))
    except FerEdgeError as exc:
        raise SystemExit(str(exc)) from None
    command = "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    Path(a.out).write_text(json.dumps({"command": command, "platform": platform.platform(), "results": results},
                                      indent=1) + "\n")
    table = markdown(results, command)
    if a.markdown:
        write_section(Path(a.markdown), table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
