"""The Keras side of fer-bench, run as a child process so that TensorFlow never loads into the benchmarking
process (its thread pools would share the cores with the interpreters being timed, and its thread count
can only be set before its first op: one child per thread count).

    python -m fer_edge.convert.bench_keras MODEL.keras --threads 1 [--faces F.npy --probs-out P.npy]
        [--latency --batches 1,8] [--tutorial VIDEO --repeats 3]

Prints one JSON line: `latency` (ms per face of `model.predict`, the tutorials' call), `tutorial` (the
tutorials' webcam loop: Haar at scale 1.3 on every frame, `model.predict` per face) and, with --faces, the
model's probabilities written to --probs-out (float32, plain .npy).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

from fer_edge.convert.bench import time_calls


def tutorial_loop(model, video: str, max_frames: int | None = None) -> dict:
    """One pass of the tutorials' loop over a video file (what most FER tutorials run on a webcam)."""
    import cv2

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    cap = cv2.VideoCapture(video)
    n = faces = 0
    det = pred = 0.0
    t0, c0 = time.perf_counter(), time.process_time()
    while max_frames is None or n < max_frames:
        ok, frame = cap.read()
        if not ok:
            break
        n += 1
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        a = time.perf_counter()
        rects = cascade.detectMultiScale(gray, 1.3, 5)
        det += time.perf_counter() - a
        for (x, y, w, h) in rects:
            roi = cv2.resize(gray[y:y + h, x:x + w], (48, 48)).astype("float32")[None, :, :, None] / 255.0
            a = time.perf_counter()
            model.predict(roi, verbose=0)
            pred += time.perf_counter() - a
            faces += 1
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    cap.release()
    if n == 0:
        raise SystemExit(f"{video}: no frames could be read")
    return {"fps": n / seconds, "frames": n, "faces": faces, "detect_ms": det * 1000 / n,
            "predict_ms_per_face": pred * 1000 / max(faces, 1), "frames_per_cpu_s": n / cpu if cpu > 0 else None}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fer_edge.convert.bench_keras", description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--faces", help="uint8 N x 48 x 48 faces (.npy): their probabilities go to --probs-out")
    p.add_argument("--probs-out")
    p.add_argument("--latency", action="store_true", help="time model.predict per face")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--tutorial", metavar="VIDEO", help="run the tutorials' webcam loop on this video")
    p.add_argument("--repeats", type=int, default=1, help="passes of the tutorial loop (median frames/s)")
    p.add_argument("--max-frames", type=int)
    a = p.parse_args(argv)

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import cv2

    cv2.setNumThreads(a.threads)
    from fer_edge.convert.source import load_source
    from fer_edge.runtime.model.preprocess import preprocess

    src = load_source(a.model)
    out = {"model": a.model, "threads": a.threads}
    if a.faces:
        faces = np.load(a.faces, allow_pickle=False)
        t0 = time.perf_counter()
        np.save(a.probs_out, src.predict(faces))
        out["predict_seconds"] = round(time.perf_counter() - t0, 3)
    if a.latency:
        rng = np.random.default_rng(0)
        batch = max(int(b) for b in a.batches.split(","))
        x = preprocess(rng.integers(0, 256, (batch, *src.input_shape[:2]), dtype=np.uint8), src.meta.preprocess)
        out["latency"] = {b: time_calls(lambda v: src.model.predict(v, verbose=0), x[:int(b)], a.warmup, a.rounds,
                                        a.iters)
                          for b in a.batches.split(",")}
    if a.tutorial:
        runs = [tutorial_loop(src.model, a.tutorial, a.max_frames) for _ in range(max(a.repeats, 1))]
        best = {k: round(statistics.median(r[k] for r in runs), 3)
                for k in ("fps", "detect_ms", "predict_ms_per_face", "frames_per_cpu_s")}
        out["tutorial"] = {**best, "fps_runs": [round(r["fps"], 2) for r in runs], "frames": runs[0]["frames"],
                           "faces": runs[0]["faces"]}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
