"""fer-train's model step: build the network (or resume its checkpoint, or start from --init's weights),
compile it, and the metadata every saved model carries; the float32 copy that is saved."""
from __future__ import annotations

import os
import platform
from pathlib import Path

from fer_edge.convert.cost import model_cost
from fer_edge.runtime.core.errors import FerEdgeError
from fer_edge.runtime.core.fileio import sha256_file
from fer_edge.runtime.model.metadata import ModelMetadata
from fer_edge.training.train_config import CHECKPOINT, TrainConfig
from fer_edge.training.train_data import Teaching, TrainData


def build_or_resume(cfg: TrainConfig, keras, teachers: list, k: int, strategy, state: dict, log):
    """The compiled model: the checkpoint of a resumed run, or a new one (from --init's weights when given)."""
    from fer_edge.training.architectures import build

    out = Path(cfg.out)
    with strategy.scope() if strategy else _nullcontext():
        if cfg.resume:
            if teachers:
                from fer_edge.training.distill import ensure_registered

                ensure_registered()  # the checkpoint's loss and metric
            model = keras.models.load_model(out / CHECKPOINT)
            log(f"resuming {out} at epoch {state['epoch'] + 1} (best val accuracy so far {state['best']:.4f})")
            return model
        try:
            model = build(cfg.arch, (cfg.input_size, cfg.input_size, 1), k)
        except ValueError as exc:  # e.g. an input too small for the architecture's pooling
            raise FerEdgeError(f"{cfg.arch} cannot take --input-size {cfg.input_size}: {str(exc).splitlines()[0][:200]}") from None
        if cfg.init:
            init_weights(model, cfg)
        smoothing = 0.0 if cfg.soft else cfg.label_smoothing
        if teachers:
            from fer_edge.training.distill import loss_and_metric

            loss, metric = loss_and_metric(k, cfg.temperature, cfg.soft_weight, smoothing)
        else:
            loss, metric = keras.losses.CategoricalCrossentropy(label_smoothing=smoothing), "accuracy"
        model.compile(optimizer=keras.optimizers.AdamW(cfg.lr, weight_decay=cfg.weight_decay), loss=loss,
                      metrics=[metric])
    return model


def init_weights(model, cfg: TrainConfig) -> None:
    """--init: copy a reference's weights into the freshly built model; the architectures must match exactly."""
    from fer_edge.convert.source import load_keras

    ref, _ = load_keras(cfg.init)
    weights = ref.get_weights()
    want = [tuple(w.shape) for w in model.get_weights()]
    have = [tuple(w.shape) for w in weights]
    if want != have:
        raise FerEdgeError(f"--init {cfg.init}: its weights ({len(have)} arrays, {ref.count_params():,} parameters) "
                           f"do not fit --arch {cfg.arch} ({len(want)} arrays, {model.count_params():,} parameters): "
                           f"expected a model of the same architecture")
    model.set_weights(weights)


def run_metadata(cfg: TrainConfig, keras, model, data: TrainData, gpus: int, teaching: Teaching | None, init) -> ModelMetadata:
    """The record every saved model.keras carries: labels, preprocessing and how it was made."""
    ds = data.ds
    return ModelMetadata(ds.label_set, data.spec, provenance={
        "arch": cfg.arch, **model_cost(model), "command": cfg.command,
        "data": str(ds.source), "data_sha256": sha256_file(ds.source) if Path(ds.source).is_file() else None,
        "labels": cfg.labels, "soft": cfg.soft, "seed": cfg.seed, "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "device": f"{gpus} GPU(s), mixed precision" if gpus > 0 else f"CPU ({os.cpu_count()} cores, {platform.machine()})",
        "validation": "PublicTest" if ds.has_split("PublicTest") else f"seeded 10% of Training (seed {cfg.seed})",
        **({"distillation": teaching.record} if teaching else {}),
        **({"ferplus_mix": data.mix} if data.mix else {}),
        **({"init": {"file": init.path.name, "sha256": init.sha256}} if init else {}),
    })


def float32_copier(cfg: TrainConfig, keras, k: int, mixed: bool):
    """A function giving a model's weights in a fresh, uncompiled float32 model: what conversion and the runtime
    expect, with no optimizer state and no training loss (a distillation loss would tie the file to fer-edge's code)."""
    from fer_edge.training.architectures import build

    def float32_copy(m):
        keras.mixed_precision.set_global_policy("float32")
        try:
            clone = build(cfg.arch, (cfg.input_size, cfg.input_size, 1), k)
        finally:
            if mixed:
                keras.mixed_precision.set_global_policy("mixed_float16")
        clone.set_weights(m.get_weights())
        return clone

    return float32_copy


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

