"""What the converters share: quiet converter calls, and for the INT8 recipe searches (tflite_int8, onnx_int8)
held-out scores and the mixed-precision steps."""
from __future__ import annotations

import contextlib
import io

import numpy as np

from fer_edge.runtime.core.errors import ModelError

FLOAT_STEPS = (1, 2, 4, 8, 16)  # mixed-precision candidates: this many most sensitive layers kept in float
MAX_FLOAT_SHARE = 0.5  # never keep more than this share of the quantized layers in float
DEBUG_FACES = 100  # held-out faces the per-layer error measurements run on
TABLE_ROWS = 10  # layers listed in the report


def heldout_scores(probs: np.ndarray, ref: np.ndarray, labels: np.ndarray | None) -> dict:
    """Agreement with the reference's top-1 and, with labels, the accuracy drop in pp."""
    row = {"agreement": float((probs.argmax(1) == ref.argmax(1)).mean()),
           "max_prob_diff": float(np.abs(probs - ref).max())}
    if labels is not None:
        row["accuracy_drop"] = 100.0 * float((ref.argmax(1) == labels).mean() - (probs.argmax(1) == labels).mean())
    return row


def diagnosis(what: str, measure, log) -> list[dict]:
    """Per-layer errors (what breaks) are a diagnosis, not a step: when a backend's debugger cannot run on a
    model, one line says so and the search goes on without the steps that rank layers by them."""
    try:
        return measure()
    except Exception as exc:  # the debuggers raise assorted types on graphs they do not know
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        log(f"  {what}: per-layer errors not measured ({type(exc).__name__}: {first}); searching on without them")
        return []


def meets(row: dict, target: dict) -> bool:
    return (row.get("agreement", 0.0) >= target["min_agreement"]
            and row.get("accuracy_drop", 0.0) <= target["max_drop"])


def latency_ms(path, face: np.ndarray, runs: int = 100) -> float:
    """Median milliseconds of one face through the runtime's backend (default kernels) at 1 thread, on this machine."""
    import time

    from fer_edge.runtime.model.backends import open_backend

    backend = open_backend(path, threads=1)
    backend.infer(face)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        backend.infer(face)
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def recipe_cost(plain, chosen, face: np.ndarray) -> dict:
    """What a recipe other than the plain one costs: bytes and measured milliseconds per face, both files."""
    return {"bytes": [plain.stat().st_size, chosen.stat().st_size],
            "ms_per_face": [latency_ms(plain, face), latency_ms(chosen, face)],
            "measured": "median of 100 single faces, default kernels, 1 thread, on the converting machine"}


@contextlib.contextmanager
def quiet():
    """Silence the converters' chatter on stdout (their warnings on stderr stay)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def quiet_converter(conv, what: str) -> bytes:
    """conv.convert() without its chatter; a failure is one line."""
    with quiet():
        try:
            return conv.convert()
        except Exception as exc:  # the converter raises ConverterError and friends, one line is enough
            raise ModelError(f"{what} failed: {str(exc).strip().splitlines()[0][:300]}") from None
