"""Benchmark runs in child processes: one `fer-edge` process per configuration, and everything Keras.

Shared by `fer-bench` (frames/s per format and detector) and `benchmarks/bench_runtime.py` (per-stage ms,
peak RSS and RSS growth over a looped video). Every run is its own process so that its frames/s and
memory are those of a real deployment (interpreter, OpenCV and Python), not of this benchmarking process.
Everything Keras (latency of `model.predict`, the reference's probabilities, the tutorials' loop) imports
TensorFlow, so it runs in a child too (`fer_edge.convert.bench_keras`), one per thread count.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from dataclasses import dataclass

import fer_edge.runtime.core.stop as stop
from fer_edge.runtime.core.errors import FerEdgeError


@dataclass(frozen=True)
class Settings:
    """How hard to measure. FULL fits the shipped model in < 10 min on a 2-core x86 machine."""
    warmup: int = 10  # calls before timing (XNNPACK packs weights and sizes buffers on the first calls)
    rounds: int = 5  # latency rounds; p50/p95 reported are medians over rounds
    iters: int = 30  # timed calls per round
    keras_iters: int = 20  # model.predict is ~50x slower per call: fewer calls, same number of rounds
    e2e_repeats: int = 3  # fer-edge processes per (file, detector); frames/s is their median
    max_faces: int | None = None  # evaluate on the first N faces of the split (None = all)
    max_frames: int | None = None  # frames of the video per end-to-end run (None = all)


FULL = Settings()
QUICK = Settings(warmup=2, rounds=2, iters=5, keras_iters=3, e2e_repeats=1, max_faces=256, max_frames=15)


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
            _end_on_stop(proc)
            time.sleep(0.05)
            r = rss_mb(proc.pid)
            if r is not None and json_path is not None and json_path.exists():
                with open(json_path, "rb") as f:
                    samples.append((f.read().count(b"\n"), r))
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise FerEdgeError(f"{' '.join(argv)} failed:\n{err.read()[-3000:]}")
    # ru_maxrss is in KiB on Linux; CPU seconds (start-up included) stay meaningful on a machine shared with
    # other work, where wall-clock frames/s measure the load as much as the program
    out = {"peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3)}
    if samples and frames_per_pass:
        after_first = [r for n, r in samples if n >= frames_per_pass]
        if after_first:
            out["rss_after_pass1_mb"] = round(after_first[0], 1)
            out["rss_end_mb"] = round(after_first[-1], 1)
            out["rss_growth_after_pass1_mb"] = round(max(after_first) - after_first[0], 1)
    return out


def run_fer_edge(video: str | os.PathLike, model: str | os.PathLike, detector: str = "haar", every: int = 1,
                 loop: int = 1, threads: int = 1, kernels: str = "default", blazeface: str | None = None,
                 max_frames: int | None = None, frames_per_pass: int | None = None) -> dict:
    """One `fer-edge --source VIDEO` process; frames/s and per-stage ms from its --summary.

    With loop > 1 and frames_per_pass, the child's RSS is sampled and its growth after pass 1 reported.
    """
    with tempfile.TemporaryDirectory(prefix="fer-bench-") as d:
        summary, js = Path(d) / "summary.json", Path(d) / "out.jsonl"
        argv = [sys.executable, "-m", "fer_edge.runtime.cli", "--source", str(video), "--model", str(model),
                "--threads", str(threads), "--detector", detector, "--detect-every", str(every), "--window", "off",
                "--quiet", "--summary", str(summary), "--json", str(js), "--loop", str(loop)]
        if kernels != "default":  # the default path needs no flag (and --kernels is for .tflite files only)
            argv += ["--kernels", kernels]
        if detector == "blazeface":
            if not blazeface:
                raise FerEdgeError("the blazeface detector needs its model file (face_detection_short_range.tflite)")
            argv += ["--detector-model", str(blazeface)]
        if max_frames:
            argv += ["--max-frames", str(max_frames)]
        track = loop > 1 and frames_per_pass
        mem = run_child(argv, frames_per_pass if track else None, js if track else None)
        s = json.loads(summary.read_text())
    return {"model": Path(model).name, "kernels": kernels, "detector": detector, "detect_every": every, "loop": loop,
            "threads": threads, "fps": s["fps"], "stage_ms": s["stage_ms"], "frames": s["frames"],
            "frames_with_face": s["frames_with_face"], "emotion_share": s["emotion_share"],
            "frames_per_cpu_s": round(s["frames"] / mem["cpu_s"], 2) if mem["cpu_s"] else None, **mem}


def e2e_median(video, model, detector: str, kernels: str, repeats: int, blazeface: str | None = None,
               max_frames: int | None = None) -> dict:
    """`repeats` fer-edge runs at one thread; frames/s is their median, stages are those of the median run."""
    runs = [run_fer_edge(video, model, detector, kernels=kernels, blazeface=blazeface, max_frames=max_frames)
            for _ in range(max(repeats, 1))]
    med = sorted(runs, key=lambda r: r["fps"])[len(runs) // 2]
    return {"fps": round(statistics.median(r["fps"] for r in runs), 2), "fps_runs": [r["fps"] for r in runs],
            "stage_ms": med["stage_ms"], "frames": med["frames"], "frames_with_face": med["frames_with_face"]}


def _end_on_stop(proc: subprocess.Popen) -> None:
    """A stop (SIGTERM, SIGINT) reached fer-bench while a child measures: the child is ended too, then we stop."""
    if stop.requested():
        proc.terminate()
        proc.communicate()
        stop.check()


def keras_worker(args: list[str]) -> dict:
    """Run `python -m fer_edge.convert.bench_keras ARGS` (TensorFlow stays out of this process)."""
    proc = subprocess.Popen([sys.executable, "-m", "fer_edge.convert.bench_keras", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    while True:
        try:
            out, err = proc.communicate(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            _end_on_stop(proc)
    if proc.returncode:
        raise FerEdgeError(f"the Keras worker failed ({' '.join(args)}):\n{err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def keras_tutorial(video: str | os.PathLike, keras_model: str | os.PathLike, repeats: int = 1,
                   max_frames: int | None = None) -> dict:
    """The tutorials' webcam loop on the same frames at one thread: Haar (scale 1.3) on every frame, then
    Keras `model.predict` per face. Frames/s is the median over `repeats` passes in one process."""
    args = [str(keras_model), "--threads", "1", "--tutorial", str(video), "--repeats", str(repeats)]
    if max_frames:
        args += ["--max-frames", str(max_frames)]
    return tutorial_row(keras_worker(args)["tutorial"], keras_model)


def tutorial_row(d: dict, keras_model: str | os.PathLike) -> dict:
    """The worker's `tutorial` answer as a row of end-to-end results."""
    return {"model": Path(keras_model).name + " (tutorial loop)", "kernels": "keras", "detector": "haar 1.3",
            "detect_every": 1, "threads": 1, "fps": d["fps"], "fps_runs": d["fps_runs"],
            "stage_ms": {"detect": d["detect_ms"], "classify": d["predict_ms_per_face"]}, "frames": d["frames"],
            "faces": d["faces"], "frames_per_cpu_s": d.get("frames_per_cpu_s")}


def keras_row(model: Path, accuracy: bool, threads: list[int], batches: list[int], s: Settings, tmp: str,
              tutorial: str | None = None) -> dict:
    """Latency of `model.predict` (one child per thread count), probabilities of the faces in TMP/faces.npy
    (to TMP/keras.npy, with `accuracy`) and the tutorials' loop at 1 thread (with `tutorial`, a video)."""
    row, lat = {}, {}
    for i, t in enumerate(threads):
        args = [str(model), "--threads", str(t), "--latency", "--batches", ",".join(map(str, batches)),
                "--warmup", str(min(s.warmup, 5)), "--rounds", str(s.rounds), "--iters", str(s.keras_iters)]
        if accuracy and i == len(threads) - 1:  # accuracy once, in the child with the most threads
            args += ["--faces", str(Path(tmp) / "faces.npy"), "--probs-out", str(Path(tmp) / "keras.npy")]
        if tutorial and t == 1:
            args += ["--tutorial", str(tutorial), "--repeats", str(s.e2e_repeats)]
            args += ["--max-frames", str(s.max_frames)] if s.max_frames else []
        d = keras_worker(args)
        lat.update({f"t{t}_b{b}": v for b, v in d["latency"].items()})
        if "tutorial" in d:
            row["tutorial"] = d["tutorial"]
    row["latency"] = {f"t{t}_b{b}": lat[f"t{t}_b{b}"] for t in threads for b in batches}
    row["timed_call"] = "model.predict(x, verbose=0)"
    return row
