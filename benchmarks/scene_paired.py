"""Earlier code against this checkout on the same scenes, runs interleaved so both see the same load: CPU ms per
frame (the slope of benchmarks/scene_cost.py) of the default schedule, median of --repeats pairs.

    python benchmarks/scene_paired.py --against 20ba4bc --repeats 5 --out benchmarks/scene_paired.json

The earlier code is the stream schedule's files (FILES: the schedule, the pipeline, the motion gate, tracking) as
they were at --against, written over this checkout's for its runs and put back after (also on a failure or a
stop): run it on a clean checkout. benchmarks/scene_cost.py --paired lists the result in scene_cost.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report import write_report  # noqa: E402
from scene_cost import LOOPED, SHORT, fer_edge, make_scenes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FILES = ("runtime/faces/schedule.py", "runtime/recognize/pipeline.py", "runtime/faces/motion.py",
         "runtime/faces/tracking.py")


def use(rev: str | None) -> None:
    """The schedule's files as at `rev` (None: as committed here)."""
    if rev is None:
        subprocess.run(["git", "checkout", "-q", "--", *FILES], cwd=ROOT, check=True)
        return
    for f in FILES:
        text = subprocess.run(["git", "show", f"{rev}:{f}"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        (ROOT / f).write_text(text)


def slope(video: Path, loop: int, tmp: Path) -> float:
    """The whole process's CPU (wait4's rusage), the one measure both commits have."""
    short, full = fer_edge(video, [], tmp, SHORT), fer_edge(video, [], tmp, loop=loop)
    return (full["cpu_s"] - short["cpu_s"]) * 1000 / (len(full["lines"]) - SHORT)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--against", required=True, help="the earlier commit")
    p.add_argument("--data", default=os.environ.get("FER_EDGE_DATA", "../shared/data"))
    p.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "fer-edge-scenes"))
    p.add_argument("--scenes", default="empty,one_face,group")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=str(Path(__file__).with_name("scene_paired.json")))
    a = p.parse_args(argv)
    if subprocess.run(["git", "diff", "--quiet", "--", *FILES], cwd=ROOT).returncode:
        raise SystemExit(f"scene_paired: {', '.join(FILES)} have uncommitted changes: commit or stash them first")
    paths, runs = make_scenes(Path(a.data), Path(a.work)), {}
    names = {a.against: a.against, None: "this commit"}
    load = [round(os.getloadavg()[0], 2)]
    try:
        with tempfile.TemporaryDirectory(prefix="scene-paired-") as d:
            for i in range(a.repeats):
                for scene in a.scenes.split(","):
                    for rev in (a.against, None) if i % 2 == 0 else (None, a.against):  # each first in turn
                        use(rev)
                        runs.setdefault(f"{scene}/{names[rev]}", []).append(
                            round(slope(paths[scene], 3 if scene in LOOPED else 1, Path(d)), 3))
                print(f"pair {i + 1}: load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
    finally:
        use(None)
    load.append(round(os.getloadavg()[0], 2))
    doc = {"against": a.against, "load": load, "cpu_ms": {k: {"median": statistics.median(v), "runs": v}
                                                          for k, v in runs.items()}}
    write_report(a.out, doc)
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
