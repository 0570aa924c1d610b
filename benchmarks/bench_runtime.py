"""End-to-end benchmark of the fer-edge runtime on the sample video (issue 5).

    python benchmarks/bench_runtime.py --video ../shared/data/samples/fer_test.mp4 \
        --model models/fer-vgg_int8.tflite --model models/fer-vgg_int8.onnx \
        --blazeface ../shared/models/face_detection_short_range.tflite \
        [--keras runs/vgg-ref/model.keras] --out benchmarks/results.json --markdown BENCHMARKS.md

Every configuration runs as its own `fer-edge` process at --threads 1 (so the peak RSS is that of the
whole process: interpreter, OpenCV, Python); frames/s and per-stage ms come from its --summary. A second
run per backend passes over the video 20 times (--loop 20) while this script samples the child's RSS,
and reports how much it grew after the first pass. `--keras` adds the tutorials' loop for reference
(Haar at scale 1.3 on every frame, then Keras `model.predict` per face; needs TensorFlow, which only
this reference row imports).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DETECT_EVERY = (1, 3)


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_child(argv: list[str], frames_per_pass: int | None = None, json_path: Path | None = None) -> dict:
    """Run one fer-edge process; peak RSS from wait4, RSS samples per pass when json_path is given."""
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: a chatty child cannot block on it
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, text=True)
        samples = []  # (frames written, rss MB)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # reaps the child and keeps its rusage
            if pid:
                break
            time.sleep(0.05)
            r = rss_mb(proc.pid)
            if r is not None and json_path is not None and json_path.exists():
                with open(json_path, "rb") as f:
                    samples.append((f.read().count(b"\n"), r))
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(argv)} failed:\n{err.read()[-3000:]}")
    out = {"peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}  # ru_maxrss is in KiB on Linux
    if samples and frames_per_pass:
        after_first = [r for n, r in samples if n >= frames_per_pass]
        if after_first:
            out["rss_after_pass1_mb"] = round(after_first[0], 1)
            out["rss_end_mb"] = round(after_first[-1], 1)
            out["rss_growth_after_pass1_mb"] = round(max(after_first) - after_first[0], 1)
    return out


def fer_edge(args, model: str, detector: str, every: int, tmp: Path, loop: int = 1) -> dict:
    summary, js = tmp / "summary.json", tmp / "out.jsonl"
    for p in (summary, js):
        p.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "fer_edge.runtime.cli", "--source", args.video, "--model", model, "--threads", "1",
            "--detector", detector, "--detect-every", str(every), "--window", "off", "--quiet",
            "--summary", str(summary), "--json", str(js), "--loop", str(loop)]
    if detector == "blazeface":
        argv += ["--detector-model", args.blazeface]
    mem = run_child(argv, args.frames if loop > 1 else None, js if loop > 1 else None)
    s = json.loads(summary.read_text())
    return {"model": Path(model).name, "detector": detector, "detect_every": every, "loop": loop,
            "fps": s["fps"], "stage_ms": s["stage_ms"], "frames": s["frames"],
            "frames_with_face": s["frames_with_face"], "emotion_share": s["emotion_share"], **mem}


def keras_tutorial(args) -> dict:
    """The tutorials' webcam loop on the same frames, at one thread (reference only)."""
    code = r'''
import json, sys, time, cv2, numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1); tf.config.threading.set_inter_op_parallelism_threads(1)
cv2.setNumThreads(1)
import keras
model = keras.models.load_model(sys.argv[2], compile=False)
cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
cap = cv2.VideoCapture(sys.argv[1]); n = faces = 0; det = pred = 0.0; t0 = time.perf_counter()
while True:
    ok, frame = cap.read()
    if not ok: break
    n += 1; gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    a = time.perf_counter(); rects = cascade.detectMultiScale(gray, 1.3, 5); det += time.perf_counter() - a
    for (x, y, w, h) in rects:
        roi = cv2.resize(gray[y:y + h, x:x + w], (48, 48)).astype("float32")[None, :, :, None] / 255.0
        a = time.perf_counter(); model.predict(roi, verbose=0); pred += time.perf_counter() - a; faces += 1
s = time.perf_counter() - t0
print(json.dumps({"fps": n / s, "frames": n, "faces": faces, "detect_ms": det * 1000 / n,
                  "predict_ms_per_face": pred * 1000 / max(faces, 1)}))
'''
    out = subprocess.run([sys.executable, "-c", code, args.video, args.keras], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"keras tutorial loop failed:\n{out.stderr[-2000:]}")
    d = json.loads(out.stdout.strip().splitlines()[-1])
    return {"model": Path(args.keras).name + " (tutorial loop)", "detector": "haar 1.3", "detect_every": 1,
            "fps": round(d["fps"], 2), "stage_ms": {"detect": round(d["detect_ms"], 2),
                                                   "classify": round(d["predict_ms_per_face"], 2)},
            "frames": d["frames"]}


def markdown(results: list[dict], command: str) -> str:
    rows = ["| model | detector | every K | fps | read | detect | track | classify | output | peak RSS MB | RSS growth after pass 1 (loop 20) MB |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        st = r["stage_ms"]
        rows.append(f"| {r['model']} | {r['detector']} | {r['detect_every']} | {r['fps']} | "
                    + " | ".join(str(st.get(k, "")) for k in ("read", "detect", "track", "classify", "output"))
                    + f" | {r.get('peak_rss_mb', '')} | {r.get('rss_growth_after_pass1_mb', '')} |")
    return (f"## fer-edge runtime benchmark\n\n{platform.platform()}, {platform.processor() or platform.machine()}, "
            f"Python {platform.python_version()}, 1 thread\n\n```\n{command}\n```\n\n" + "\n".join(rows) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--video", required=True)
    p.add_argument("--frames", type=int, default=115, help="frames in one pass of the video")
    p.add_argument("--model", action="append", required=True, help=".tflite or .onnx (repeat)")
    p.add_argument("--blazeface", help="face_detection_short_range.tflite (adds the blazeface rows)")
    p.add_argument("--keras", help="a .keras model: adds the tutorials' Keras loop as the reference row")
    p.add_argument("--loop", type=int, default=20, help="passes for the RSS-growth run (0 = skip)")
    p.add_argument("--out", default="benchmarks/results.json")
    p.add_argument("--markdown", help="also write a Markdown table here")
    a = p.parse_args(argv)
    detectors = ["haar"] + (["blazeface"] if a.blazeface else [])
    results = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for model in a.model:
            for det in detectors:
                for every in DETECT_EVERY:
                    results.append(fer_edge(a, model, det, every, tmp))
                    print(json.dumps(results[-1]), file=sys.stderr)
            if a.loop > 1:
                results.append(fer_edge(a, model, detectors[-1], 1, tmp, loop=a.loop))
                print(json.dumps(results[-1]), file=sys.stderr)
    if a.keras:
        results.append(keras_tutorial(a))
    command = "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    Path(a.out).write_text(json.dumps({"command": command, "platform": platform.platform(), "results": results},
                                      indent=1) + "\n")
    if a.markdown:
        Path(a.markdown).write_text(markdown(results, command))
    print(markdown(results, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
