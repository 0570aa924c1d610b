"""Classification metrics in numpy, shared by fer-eval, fer-convert parity reports and fer-edge verify."""
from __future__ import annotations

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """k x k counts, rows = true class, columns = predicted class."""
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)


def roc_auc_ovr(y_true: np.ndarray, probs: np.ndarray) -> list[float | None]:
    """One-vs-rest ROC AUC per class (Mann-Whitney U with tied ranks averaged); None without both classes."""
    out = []
    for c in range(probs.shape[1]):
        pos = y_true == c
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        if n_pos == 0 or n_neg == 0:
            out.append(None)
            continue
        s = probs[:, c]
        order = np.argsort(s, kind="mergesort")
        ranks = np.empty(len(s), dtype=np.float64)
        sorted_s = s[order]
        # average ranks over ties
        _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
        avg = first + (counts + 1) / 2.0
        ranks[order] = np.repeat(avg, counts)
        out.append(float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)))
    return out


def classification_report(y_true: np.ndarray, probs: np.ndarray, labels: tuple[str, ...]) -> dict:
    """accuracy, macro-F1, per-class precision/recall/F1/support, confusion matrix and ROC AUC."""
    k = len(labels)
    if probs.ndim != 2 or probs.shape[1] != k:
        raise ValueError(f"probabilities must be N x {k}, found {probs.shape}")
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = probs.argmax(axis=1)
    cm = confusion(y_true, y_pred, k)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0)
    auc = roc_auc_ovr(y_true, probs)
    present = support > 0
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_pred == y_true).mean()) if len(y_true) else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i]), "roc_auc": auc[i]}
            for i, name in enumerate(labels)
        },
        "confusion": cm.tolist(),
        "labels": list(labels),
    }


def agreement(probs_a: np.ndarray, probs_b: np.ndarray) -> float:
    """Share of faces on which two models give the same top-1 class."""
    return float((probs_a.argmax(axis=1) == probs_b.argmax(axis=1)).mean())


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% (z = 1.96) Wilson score interval of an accuracy measured as correct / n faces; (0, 1) for n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    centre, half = p + z * z / (2 * n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(max(0.0, (centre - half) / (1 + z * z / n))), float(min(1.0, (centre + half) / (1 + z * z / n)))


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value for two models scored on the same faces: `only_a` faces only model A got
    right, `only_b` only model B. The chance, were both equally accurate, of a split at least this uneven."""
    from math import comb

    n, k = only_a + only_b, min(only_a, only_b)
    return 1.0 if n == 0 else min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2 ** n)
