"""`fer-train --soup K`: a greedy weight average ("model soup") of a run's best epochs, kept only when it
scores higher on the validation split than the best single epoch.

Wortsman et al. 2022 ("Model soups", greedy soup): the run's best epoch seeds the soup, the other candidates
are taken best first by validation accuracy, and each joins the average only if the average does not score
lower with it. Epochs of one run (and the --init model it was fine-tuned from) lie in one basin, so their
average is a model of the same architecture and cost.
The batch-norm statistics of an average are not the average of the statistics: they are measured again on
un-augmented training faces before each candidate is scored. The soup is chosen on the validation split only
(PublicTest for FER2013), as the best epoch is.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import fer_edge.runtime.core.stop as stop
from fer_edge.runtime.core.fileio import atomic_output

EPOCHS = "epochs"  # DIR/epochs/NNN.npz: each epoch's float32 weights, kept when --soup is on
BN_FACES = 8192  # training faces the batch-norm statistics of a candidate are measured on


def epoch_file(out: Path, epoch: int) -> Path:
    return out / EPOCHS / f"{epoch:03d}.npz"


def save_epoch(out: Path, epoch: int, weights: list[np.ndarray]) -> None:
    path = epoch_file(out, epoch)
    path.parent.mkdir(exist_ok=True)
    with atomic_output(path, force=True) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, *weights)


def load_epoch(path: Path) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return [z[f"arr_{i}"] for i in range(len(z.files))]


def recalibrate_bn(model, x: np.ndarray, batch: int = 512) -> None:
    """Set every BatchNormalization layer's moving mean and variance to the exact statistics of its input on
    `x`, layer after layer (each measured with the layers before it already recalibrated)."""
    import keras

    for bn in (l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)):
        sub = keras.Model(model.inputs, bn.input)
        s1 = s2 = 0.0
        n = 0
        for i in range(0, len(x), batch):
            stop.check()  # a step boundary: a stop ends the soup here
            a = keras.ops.convert_to_numpy(sub([x[i:i + batch]], training=False)).astype(np.float64)
            a = np.moveaxis(a, bn.axis, -1).reshape(-1, a.shape[bn.axis])
            s1, s2, n = s1 + a.sum(0), s2 + (a * a).sum(0), n + len(a)
        mean = s1 / n
        bn.moving_mean.assign(mean.astype(np.float32))
        bn.moving_variance.assign(np.maximum(s2 / n - mean * mean, 0).astype(np.float32))


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    return float((model.predict(x, batch_size=512, verbose=0).argmax(1) == y).mean())


def worth_keeping(members: list[str], acc: float, best_epoch_acc: float) -> bool:
    """A soup replaces the best epoch only when it averages two or more models and validates higher. One model
    alone with its batch norm measured again is no soup; when that model is --init, keeping it would hand the
    run's starting point back as its result (seen with a fine-tune on other labels that scored lower on
    PublicTest than the model it started from)."""
    return len(members) > 1 and acc > best_epoch_acc


def greedy_soup(model, candidates: list[tuple[str, float, list[np.ndarray]]], x_bn: np.ndarray, x_val: np.ndarray,
                y_val: np.ndarray, log=print) -> tuple[list[str], float]:
    """`candidates`: (name, validation accuracy, weights); the first seeds the soup (the run's best epoch), the
    others are tried best first. Leaves the best soup's weights (with recalibrated batch norm) in `model`;
    returns the names in it and its validation accuracy.

    The seed is not simply the best-validating candidate: an --init model that validates above every epoch
    (a fine-tune towards other labels, e.g. --ferplus-mix, scores lower on FER2013's) would seed the soup, no
    epoch would join it, and the run would never get a soup of its own epochs."""
    def score(members) -> float:
        model.set_weights([np.mean([m[2][i] for m in members], axis=0) for i in range(len(members[0][2]))])
        recalibrate_bn(model, x_bn)
        return accuracy(model, x_val, y_val)

    ranked = [candidates[0], *sorted(candidates[1:], key=lambda c: -c[1])]
    chosen, acc = [ranked[0]], score(ranked[:1])
    best = model.get_weights()
    log(f"soup: {ranked[0][0]} alone, batch norm measured again: validation accuracy {100 * acc:.2f}% "
        f"(as trained {100 * ranked[0][1]:.2f}%)")
    for cand in ranked[1:]:
        stop.check()
        trial = score(chosen + [cand])
        joined = trial >= acc
        log(f"soup: + {cand[0]} ({100 * cand[1]:.2f}% alone): {100 * trial:.2f}%{'  joins' if joined else ''}")
        if joined:
            chosen, acc, best = chosen + [cand], trial, model.get_weights()
    model.set_weights(best)  # the chosen soup, its batch norm as measured when it was scored
    return [c[0] for c in chosen], acc
