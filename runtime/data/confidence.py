"""How sure a model is of a face: the threshold that marks a face "sure", and risk-coverage figures.

The rule (one for every model, so a converted third-party model gets a threshold chosen the same way): on FER2013
PublicTest, faces the model was not trained on, the threshold is the top-class probability above which
COVERAGE (70%) of the faces lie. A coverage target, not an accuracy target: it does not depend on how accurate
the model is (an accuracy target marks nearly every face of a weak model unsure and none of a strong one), and
the share of faces kept is what a user plans with. 70% is where the shipped models gain most accuracy on
posed photos they never saw while keeping most faces (their cards show the table)."""
from __future__ import annotations

import math

import numpy as np

from fer_edge.runtime.core.errors import FerEdgeError

SPLIT = "PublicTest"  # the faces the threshold is chosen on
COVERAGE = 0.70  # the share of those faces that stay sure
KEEPS = (1.0, 0.9, 0.7, 0.5)  # the risk-coverage table's rows: the share of faces kept, surest first


def choose_threshold(probs: np.ndarray, labels: np.ndarray | None = None, coverage: float = COVERAGE) -> dict:
    """The threshold for faces' probabilities (N x classes), with what it keeps on these faces: written into the
    model's metadata as its `confidence` entry."""
    conf = np.asarray(probs, np.float64).max(axis=1)
    if conf.size == 0:
        raise ValueError("no faces to choose a confidence threshold on")
    # stored to 4 decimals, rounded down: the faces at the quantile stay sure
    threshold = math.floor(float(np.quantile(conf, 1.0 - coverage, method="lower")) * 1e4) / 1e4
    sure = conf >= threshold
    doc = {"threshold": threshold, "rule": f"keep {coverage:.0%} of {SPLIT} faces by confidence",
           "split": SPLIT, "n": int(conf.size), "coverage": round(float(sure.mean()), 4)}
    if labels is not None:
        right = np.asarray(probs).argmax(axis=1) == np.asarray(labels)
        doc.update(accuracy_all=round(float(right.mean()), 4), accuracy_sure=round(float(right[sure].mean()), 4))
    return doc


def check_min_confidence(value) -> float:
    """--min-confidence: a probability from 0 to 1 (0: every face sure)."""
    try:
        p = float(value)
    except (TypeError, ValueError):
        p = math.nan
    if not (math.isfinite(p) and 0.0 <= p <= 1.0):
        raise FerEdgeError(f"--min-confidence must be a probability from 0 to 1 (0: every face sure), found {value}")
    return p


def risk_coverage(conf: np.ndarray, right: np.ndarray, keeps=KEEPS) -> list[dict]:
    """Accuracy of the faces kept when keeping each share of them, surest first (no faces: None for the figures,
    never NaN, which JSON cannot carry)."""
    conf, right = np.asarray(conf, np.float64), np.asarray(right, bool)
    if not conf.size:
        return [{"keep": keep, "faces": 0, "accuracy": None, "min_confidence": None} for keep in keeps]
    order = np.argsort(-conf, kind="stable")
    rows = []
    for keep in keeps:
        n = max(1, int(round(keep * len(conf))))
        rows.append({"keep": keep, "faces": n, "accuracy": round(float(right[order[:n]].mean()), 4),
                     "min_confidence": round(float(conf[order[n - 1]]), 4)})
    return rows


def at_threshold(conf: np.ndarray, right: np.ndarray, threshold: float) -> dict:
    """Coverage and accuracy of the sure faces at a threshold, beside the accuracy of all faces."""
    conf, right = np.asarray(conf, np.float64), np.asarray(right, bool)
    sure = conf >= threshold
    if not conf.size:  # no faces: no figure (None), never NaN
        return {"threshold": threshold, "faces": 0, "sure": 0, "coverage": None, "accuracy_all": None,
                "accuracy_sure": None}
    return {"threshold": threshold, "faces": int(conf.size), "sure": int(sure.sum()),
            "coverage": round(float(sure.mean()), 4), "accuracy_all": round(float(right.mean()), 4),
            "accuracy_sure": round(float(right[sure].mean()), 4) if sure.any() else None}
