"""fer-train's outputs: saving a model with its metadata, trimming the history on --resume, and the --soup
step after training."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fer_edge.runtime.core.fileio import atomic_output
from fer_edge.runtime.data.datasets import FaceDataset
from fer_edge.runtime.model.metadata import ModelMetadata, write_metadata
from fer_edge.runtime.model.preprocess import PreprocessSpec, preprocess
from fer_edge.training.train_config import BEST, HISTORY, TrainConfig


def save_model(model, path: Path, meta: ModelMetadata) -> None:
    with atomic_output(path, force=True) as tmp:
        model.save(tmp)
        write_metadata(tmp, meta)


def truncate_history(path: Path, epochs: int) -> None:
    """Keep the rows of the epochs the checkpoint holds (a crash may have logged one more)."""
    if not path.is_file():
        return
    rows = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["epoch"] <= epochs]
    with atomic_output(path, force=True) as tmp:
        tmp.write_text("".join(r + "\n" for r in rows))


def soup_step(cfg: TrainConfig, out: Path, state: dict, model, train_ds: FaceDataset, spec: PreprocessSpec,
          x_val: np.ndarray, y_val: np.ndarray, meta: ModelMetadata, log) -> None:
    """--soup K: try the greedy weight average of the K best saved epochs (and the --init model), seeded with
    the best epoch; it replaces DIR/model.keras only when it scores higher on the validation split. The attempt
    is recorded either way."""
    from fer_edge.runtime.model.metadata import read_metadata
    from fer_edge.training.soup import BN_FACES, accuracy, epoch_file, greedy_soup, load_epoch, worth_keeping

    rows = [json.loads(line) for line in (out / HISTORY).read_text().splitlines() if line.strip()]
    rows = sorted((r for r in rows if epoch_file(out, r["epoch"]).is_file()), key=lambda r: -r["val_accuracy"])
    candidates = [(f"epoch {r['epoch']}", r["val_accuracy"], load_epoch(epoch_file(out, r["epoch"])))
                  for r in rows[: cfg.soup]]
    if cfg.init and Path(cfg.init).is_file():
        from fer_edge.convert.source import load_keras

        weights = load_keras(cfg.init)[0].get_weights()
        model.set_weights(weights)
        candidates.append((f"--init {Path(cfg.init).name}", accuracy(model, x_val, y_val), weights))
    if len(candidates) < 2:
        log(f"soup: {len(candidates)} saved epoch(s) to average: nothing to do")
        return
    pick = np.sort(np.random.default_rng(cfg.seed).permutation(len(train_ds))[:BN_FACES])
    members, acc = greedy_soup(model, candidates, preprocess(train_ds.images[pick], spec), x_val, y_val, log)
    record = {"candidates": [c[0] for c in candidates], "members": members, "val_accuracy": acc,
              "best_epoch_val_accuracy": state["best"], "bn_faces": len(pick), "kept": worth_keeping(members, acc, state["best"])}
    best_meta = read_metadata(out / BEST)
    provenance = {**best_meta.provenance, "soup": record}
    if record["kept"]:
        log(f"soup of {', '.join(members)}: validation accuracy {100 * acc:.2f}% (best epoch "
            f"{100 * state['best']:.2f}%) -> {out / BEST}")
        save_model(model, out / BEST, meta.replace(provenance=provenance, figures={"val_accuracy": acc, "soup": members}))
    else:
        why = (f"{members[0]} alone is no soup" if len(members) == 1 else
               f"{100 * acc:.2f}%, not above the best epoch's {100 * state['best']:.2f}%")
        log(f"soup: {why}: {out / BEST} stays")
        write_metadata(out / BEST, best_meta.replace(provenance=provenance))

