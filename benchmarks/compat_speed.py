"""fer_edge.compat.FER().detect_emotions against the `fer` package's FER().detect_emotions, on the same photos
and the same video frames, in one run; writes benchmarks/compat_speed.md (and .json).

    python3 -m venv .venv-fer && .venv-fer/bin/pip install fer          # fer only here, never a dependency
    .venv/bin/python benchmarks/compat_speed.py --fer-python .venv-fer/bin/python \\
        --samples ../shared/data/samples --out benchmarks/compat_speed.md

Each package runs in its own interpreter (this script with --worker), rounds alternating so that a busy machine
slows both alike. Per call, both CPU time (process time, every thread) and wall time are measured; frames are
decoded once before timing, so the figures are detection + classification only. Also measured: import and
construction time, faces found, and how often the two agree on each face's top emotion (video frames).
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

PHOTOS = ("fer_justin.jpg", "fer_no-faces.jpg", "deepface_selfie-many-people.jpg")
VIDEO = "fer_test.mp4"


# -- worker: runs inside one package's interpreter ----------------------------------------------------------

def _make_fer(package: str):
    t0, c0 = time.perf_counter(), time.process_time()
    if package == "fer":
        from fer.fer import FER  # fer 25.10's `from fer import FER` fails: its __init__ no longer imports it
        import tensorflow as tf

        versions = {"fer": _version("fer"), "tensorflow": tf.__version__}
    else:
        from fer_edge.compat import FER

        versions = {"fer-edge": _version("fer-edge"), "ai-edge-litert": _version("ai-edge-litert")}
    detector = FER()
    import cv2
    import numpy

    versions.update(opencv=cv2.__version__, numpy=numpy.__version__, python=platform.python_version())
    return detector, versions, {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def _timed(fn, arg) -> tuple[object, float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(arg)
    return out, time.perf_counter() - t0, time.process_time() - c0


def _video_frames(path: Path) -> list:
    import cv2

    cap, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def worker(package: str, samples: Path, rounds: int) -> dict:
    """One package: photos (each `rounds` times) and every video frame, through detect_emotions."""
    import cv2

    detector, versions, startup = _make_fer(package)
    photos = {name: cv2.imread(str(samples / name)) for name in PHOTOS}
    frames = _video_frames(samples / VIDEO)
    for image in list(photos.values())[:1] + frames[:3]:
        detector.detect_emotions(image)  # warm-up: first-call allocations are not the steady state
    photo_runs = {name: [] for name in photos}
    for _ in range(rounds):
        for name, image in photos.items():
            faces, wall, cpu = _timed(detector.detect_emotions, image)
            photo_runs[name].append({"wall_s": wall, "cpu_s": cpu, "faces": len(faces)})
    video_wall = video_cpu = 0.0
    labels = []
    for frame in frames:
        faces, wall, cpu = _timed(detector.detect_emotions, frame)
        video_wall, video_cpu = video_wall + wall, video_cpu + cpu
        labels.append([max(f["emotions"], key=f["emotions"].get) for f in faces])
    return {"package": package, "versions": versions, "startup": startup, "photos": photo_runs,
            "video": {"frames": len(frames), "wall_s": video_wall, "cpu_s": video_cpu, "labels": labels}}


# -- parent: runs both, alternating, and writes the report --------------------------------------------------

def run_worker(python: str, package: str, samples: Path, rounds: int) -> dict:
    proc = subprocess.run([python, __file__, "--worker", package, "--samples", str(samples), "--rounds", str(rounds)],
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        sys.exit(f"{package} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cpu_info() -> dict:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.*)", text)
    flags = sorted(set(re.findall(r"\b(avx512_vnni|avx512f|avx2|fma|neon|asimddp)\b", text)))
    return {"model": model.group(1) if model else platform.processor(), "simd": flags,
            "logical_cpus": text.count("processor\t:") or None}


def summarise(runs: list[dict]) -> dict:
    """Medians over the runs of one package (each run: one worker process)."""
    out = {"startup_wall_s": statistics.median(r["startup"]["wall_s"] for r in runs),
           "startup_cpu_s": statistics.median(r["startup"]["cpu_s"] for r in runs), "photos": {}}
    for name in PHOTOS:
        calls = [c for r in runs for c in r["photos"][name]]
        out["photos"][name] = {"cpu_ms": 1000 * statistics.median(c["cpu_s"] for c in calls),
                               "wall_ms": 1000 * statistics.median(c["wall_s"] for c in calls),
                               "faces": calls[0]["faces"]}
    frames = runs[0]["video"]["frames"]
    out["video"] = {"frames": frames,
                    "cpu_ms_per_frame": 1000 * statistics.median(r["video"]["cpu_s"] for r in runs) / frames,
                    "wall_ms_per_frame": 1000 * statistics.median(r["video"]["wall_s"] for r in runs) / frames,
                    "frames_with_face": sum(bool(x) for x in runs[0]["video"]["labels"])}
    return out


def agreement(a: list[list[str]], b: list[list[str]]) -> dict:
    """On frames where both found exactly one face: how often its top emotion is the same."""
    both = [(x[0], y[0]) for x, y in zip(a, b) if len(x) == 1 and len(y) == 1]
    return {"frames": len(both), "same_top_emotion": sum(x == y for x, y in both)}


def markdown(doc: dict) -> str:
    e, f = doc["fer-edge"], doc["fer"]
    ve, vf = doc["versions"]["fer-edge"], doc["versions"]["fer"]
    rows = [f"| startup (import + FER()) | {f['startup_cpu_s']:.2f} s | {e['startup_cpu_s']:.2f} s | "
            f"{f['startup_wall_s']:.2f} s | {e['startup_wall_s']:.2f} s | - |"]
    for name in PHOTOS:
        pf, pe = f["photos"][name], e["photos"][name]
        rows.append(f"| {name} ({pf['faces']} / {pe['faces']} faces) | {pf['cpu_ms']:.1f} ms | {pe['cpu_ms']:.1f} ms | "
                    f"{pf['wall_ms']:.1f} ms | {pe['wall_ms']:.1f} ms | {pf['cpu_ms'] / pe['cpu_ms']:.1f}x |")
    vf_, ve_ = f["video"], e["video"]
    rows.append(f"| {VIDEO}, per frame ({vf_['frames']} frames; a face on {vf_['frames_with_face']} / "
                f"{ve_['frames_with_face']}) | {vf_['cpu_ms_per_frame']:.1f} ms | {ve_['cpu_ms_per_frame']:.1f} ms | "
                f"{vf_['wall_ms_per_frame']:.1f} ms | {ve_['wall_ms_per_frame']:.1f} ms | "
                f"{vf_['cpu_ms_per_frame'] / ve_['cpu_ms_per_frame']:.1f}x |")
    agree = doc["agreement"]
    cpu = doc["cpu"]
    return "\n".join([
        "# fer_edge.compat against the fer package: speed of FER().detect_emotions",
        "",
        f"Written by `{doc['command']}` on {doc['date']}.",
        "",
        f"CPU: {cpu['model']} ({cpu['logical_cpus']} logical CPUs; SIMD: {', '.join(cpu['simd']) or 'none found'}); "
        "the machine was shared with other jobs, so CPU time (process time of all threads) is the figure to "
        "read; wall time is shown beside it. Medians over "
        f"{doc['runs']} alternating runs per package ({doc['rounds']} calls per photo per run; every video frame "
        "once per run), after a warm-up; frames decoded before timing.",
        "",
        f"- fer: {', '.join(f'{k} {v}' for k, v in vf.items())} (its default: Haar cascade + its quantized .tflite)",
        f"- fer-edge: {', '.join(f'{k} {v}' for k, v in ve.items())} (defaults: YuNet + fer-vgg INT8 .tflite)",
        "",
        "| input (faces found: fer / fer-edge) | fer CPU | fer-edge CPU | fer wall | fer-edge wall | fer / fer-edge (CPU) |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Top emotion on the {agree['frames']} video frames where both found one face: the same on "
        f"{agree['same_top_emotion']} ({100 * agree['same_top_emotion'] / max(agree['frames'], 1):.0f}%).",
        "",
    ])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fer-python", help="the interpreter of a venv where `fer` is installed")
    p.add_argument("--samples", default="../shared/data/samples", help="folder with the sample photos and video")
    p.add_argument("--runs", type=int, default=3, help="worker runs per package, alternating (default 3)")
    p.add_argument("--rounds", type=int, default=5, help="calls per photo in each run (default 5)")
    p.add_argument("--out", default="benchmarks/compat_speed.md")
    p.add_argument("--worker", choices=("fer", "fer-edge"), help=argparse.SUPPRESS)
    a = p.parse_args()
    samples = Path(a.samples)
    if a.worker:
        print(json.dumps(worker(a.worker, samples, a.rounds)))
        return 0
    if not a.fer_python:
        p.error("--fer-python is required")
    runs = {"fer-edge": [], "fer": []}
    for i in range(a.runs):
        for package in (("fer-edge", "fer") if i % 2 == 0 else ("fer", "fer-edge")):
            python = a.fer_python if package == "fer" else sys.executable
            runs[package].append(run_worker(python, package, samples, a.rounds))
            print(f"run {i + 1}/{a.runs}: {package} done", file=sys.stderr)
    doc = {"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "cpu": cpu_info(), "runs": a.runs, "rounds": a.rounds,
           "versions": {k: v[0]["versions"] for k, v in runs.items()},
           **{k: summarise(v) for k, v in runs.items()},
           "agreement": agreement(runs["fer"][0]["video"]["labels"], runs["fer-edge"][0]["video"]["labels"])}
    out = Path(a.out)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    out.write_text(markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
