"""What reading a video frame costs, and what the decoder could save: CPU ms per frame on one core for OpenCV's
FFmpeg backend (a BGR frame as fer-edge reads it; the decode alone, `grab`; the luma plane only,
CAP_PROP_CONVERT_RGB off) and, where PyAV is installed, FFmpeg's own options that OpenCV cannot pass (it opens the
decoder without options): the loop filter skipped, and the planes without a colour conversion.

    python benchmarks/decode_cost.py --data ../shared/data --out benchmarks/decode_cost.json

The scenes are benchmarks/scene_cost.py's (the one-face sample video is H.264; the scenes it writes, MPEG-4).
Issue 45 asked for decoding at the size the pipeline needs: this is the record of what that could give.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from report import write_report  # noqa: E402
from scene_cost import machine_line, make_scenes  # noqa: E402


def opencv_ms(path: Path, mode: str) -> float:
    """CPU ms a frame of one pass through the file with OpenCV: 'read' (BGR), 'grab' (decode only) or 'luma'."""
    params = [cv2.CAP_PROP_CONVERT_RGB, 0] if mode == "luma" else []
    cap, n = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params), 0
    t = time.process_time()
    while cap.grab() if mode == "grab" else cap.read()[0]:
        n += 1
    cap.release()
    return (time.process_time() - t) * 1000 / max(n, 1)


def pyav_ms(path: Path, options: dict, out: str) -> float:
    """CPU ms a frame with PyAV, one decoder thread, codec `options`; `out` 'bgr24' or 'planes' (no conversion)."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_count, s.thread_type = 1, "NONE"
        s.codec_context.options = dict(options)
        n, t = 0, time.process_time()
        for f in c.decode(s):
            _ = f.to_ndarray(format="bgr24") if out == "bgr24" else np.frombuffer(f.planes[0], np.uint8)
            n += 1
    return (time.process_time() - t) * 1000 / max(n, 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("FER_EDGE_DATA", "../shared/data"))
    p.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "fer-edge-scenes"))
    p.add_argument("--scenes", default="one_face,empty,group")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(Path(__file__).with_name("decode_cost.json")))
    a = p.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as scene_cost.py measures
    cv2.setNumThreads(1)
    scenes = a.scenes.split(",")
    paths = make_scenes(Path(a.data), Path(a.work), scenes=scenes)
    ways = {f"opencv {m}": (opencv_ms, m) for m in ("read", "grab", "luma")}
    if importlib.util.find_spec("av"):
        ways.update({"pyav bgr24": (pyav_ms, {}, "bgr24"), "pyav planes": (pyav_ms, {}, "planes"),
                     "pyav bgr24, no loop filter": (pyav_ms, {"skip_loop_filter": "all"}, "bgr24"),
                     "pyav planes, no loop filter": (pyav_ms, {"skip_loop_filter": "all"}, "planes")})
    else:
        print("PyAV is not installed: its rows are left out", file=sys.stderr)
    rows = {}
    for scene in scenes:
        for name, (fn, *args) in ways.items():
            runs = sorted(round(fn(paths[scene], *args), 3) for _ in range(a.repeats))
            rows[f"{scene}/{name}"] = {"ms": runs[len(runs) // 2], "runs": runs}
            print(f"{scene:9s} {name:28s} {rows[f'{scene}/{name}']['ms']:.3f} ms", file=sys.stderr)
    doc = {"machine": machine_line(), "load": round(os.getloadavg()[0], 2), "rows": rows}
    lines = ["# What reading a frame costs", "",
             "Written by `python benchmarks/decode_cost.py` (see its docstring) on "
             f"{doc['machine']}, load average {doc['load']}: CPU ms per frame on one core, median of "
             f"{a.repeats} passes.", "", "| scene | way | ms/frame | passes |", "|---|---|---|---|"]
    lines += [f"| {k.split('/')[0]} | {k.split('/')[1]} | {v['ms']:.3f} | {v['runs']} |" for k, v in rows.items()]
    write_report(a.out, doc, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
