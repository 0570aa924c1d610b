"""The fp32 reference's golden outputs beside a shipped model (NAME_golden.npz next to NAME_int8.tflite), read
by `fer-edge verify` with the runtime alone: the agreement of this device's answers with the reference's.
(fer-convert verify --reference NAME_golden.npz is the full gate: convert/golden.py.)"""
from __future__ import annotations

from pathlib import Path

import numpy as np

GOLDEN_SUFFIX = "_golden.npz"
RUNTIME_SUFFIXES = ("_int8.tflite", "_int8.onnx")


def golden_beside(model: Path) -> Path | None:
    """NAME_golden.npz beside NAME_int8.tflite / NAME_int8.onnx, or None."""
    for suffix in RUNTIME_SUFFIXES:
        if model.name.endswith(suffix):
            golden = model.with_name(model.name.removesuffix(suffix) + GOLDEN_SUFFIX)
            return golden if golden.is_file() else None
    return None


def match_rows(have: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of `wanted` (FER2013 row numbers) sits in `have` (row numbers, each once, in any order):
    (its index in `have`, found or not), one each per wanted row. A row not found has index 0: mask it."""
    if not len(have):
        return np.zeros(len(wanted), np.int64), np.zeros(len(wanted), bool)
    order = np.argsort(have, kind="stable")
    pos = np.minimum(np.searchsorted(have[order], wanted), len(have) - 1)
    return order[pos], have[order][pos] == wanted


def golden_agreement(golden: Path, rows: np.ndarray | None, labels: np.ndarray, probs: np.ndarray):
    """(share of faces whose top-1 class is the golden outputs' top-1, faces compared), on the faces measured
    that the golden outputs cover (matched by FER2013 row, their labels checked); None when none match (image
    folders carry no rows, another dataset has other labels)."""
    if rows is None:
        return None
    with np.load(golden, allow_pickle=False) as z:
        g_rows, g_labels, g_top = z["rows"], z["labels"].astype(np.int64), z["probs"].argmax(1)
    where, hit = match_rows(g_rows, rows)
    mine, theirs = np.flatnonzero(hit), where[hit]
    if not len(mine) or not np.array_equal(labels[mine], g_labels[theirs]):
        return None
    return float((probs[mine].argmax(1) == g_top[theirs]).mean()), int(len(mine))
