"""fer-train: train a FER model on FER2013 (or FER+) and write a .keras file carrying its metadata.

Resumable: every epoch ends with DIR/checkpoint.keras (model and optimizer) and DIR/state.json written
atomically; `--resume` (or re-running the same command with --resume) continues from there. The best
epoch on the validation split (PublicTest) is kept in DIR/model.keras with labels and preprocessing.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from fer_edge.convert.cost import model_cost
from fer_edge.runtime.cli_args import fix_argv
from fer_edge.runtime.data.datasets import FaceDataset, load_dataset
from fer_edge.runtime.core import stop
from fer_edge.runtime.core.errors import FerEdgeError, Interrupted, cli_main
from fer_edge.runtime.core.fileio import atomic_output, check_out_folder, sha256_file
from fer_edge.runtime.model.metadata import ModelMetadata, write_metadata
from fer_edge.runtime.model.preprocess import PreprocessSpec, preprocess

STATE = "state.json"
CHECKPOINT = "checkpoint.keras"
BEST = "model.keras"
HISTORY = "history.jsonl"


@dataclass
class TrainConfig:
    data: str
    out: str
    arch: str = "edge"
    labels: str = "fer2013"
    soft: bool = False  # FER+ vote distributions as targets
    epochs: int = 60
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 2  # epochs of linear warm-up before the cosine decay
    patience: int = 15
    label_smoothing: float = 0.1
    class_weight: str = "sqrt"
    seed: int = 0
    input_size: int = 48
    value_range: tuple = (0.0, 1.0)
    equalize: bool = False
    crop_margin: float = 0.0
    augment: bool = True
    teacher: tuple = ()  # fer-edge .keras references to distil from (averaged); empty: no distillation
    temperature: float = 4.0  # distillation temperature T
    soft_weight: float = 0.8  # weight w of the teacher's soft targets; 1 - w goes to the hard labels
    teacher_views: int = 0  # K > 0: teacher targets on K fixed augmented views per face (consistent teaching)
    strong_augment: bool = False  # wider poses, framings, blur and low resolution (Augment.strong)
    init: str = ""  # start from this fer-edge .keras reference's weights (same architecture) instead of random ones
    soup: int = 0  # K > 0: greedy weight average of the K best epochs (and --init), kept if it validates higher
    ferplus_mix: float = 0.0  # weight of FER+'s ten-annotator vote distribution in each training face's label
    limit: int = 0  # keep only this many training faces (tiny runs, tests)
    strategy: str = "auto"  # auto | mirrored | none
    workers: int = 1
    force: bool = False
    resume: bool = False
    command: str = field(default="", repr=False)


def lr_at(epoch: int, cfg: TrainConfig) -> float:
    """Linear warm-up then cosine decay to 1% of the peak, as a function of the epoch (resume-safe)."""
    if epoch < cfg.warmup:
        return cfg.lr * (epoch + 1) / cfg.warmup
    t = (epoch - cfg.warmup) / max(1, cfg.epochs - cfg.warmup)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def _gpu_count() -> int:
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return len(tf.config.list_physical_devices("GPU"))
    if backend == "torch":
        import torch

        return torch.cuda.device_count()
    return 0


def split_validation(ds: FaceDataset, seed: int, log) -> tuple[FaceDataset, FaceDataset]:
    """(train, validation): PublicTest when present, else a seeded stratified 10% of Training."""
    train = ds.subset("Training")
    if ds.has_split("PublicTest"):
        return train, ds.subset("PublicTest")
    rng = np.random.default_rng(seed)
    val_idx = np.concatenate([rng.permutation(np.flatnonzero(train.labels == c))[: max(1, int(0.1 * (train.labels == c).sum()))]
                              for c in np.unique(train.labels)])
    mask = np.zeros(len(train), bool)
    mask[val_idx] = True
    log(f"note: {ds.source} has no PublicTest split: validating on a seeded 10% of Training ({mask.sum()} faces, seed {seed})")
    return train.take(np.flatnonzero(~mask)), train.take(np.flatnonzero(mask))


def _targets(ds: FaceDataset, cfg: TrainConfig) -> np.ndarray:
    k = len(ds.label_set)
    if cfg.soft:
        if ds.soft is None:
            raise FerEdgeError("--soft needs vote distributions: use --labels ferplus")
        return ds.soft.astype(np.float32)
    return np.eye(k, dtype=np.float32)[ds.labels]


def ferplus_mix(ds: FaceDataset, train: FaceDataset, y: np.ndarray, weight: float, log) -> tuple[np.ndarray, dict]:
    """--ferplus-mix W: each training face's FER2013 label becomes (1 - W) * its one-hot + W * the distribution
    of FER+'s ten votes over the same seven classes (contempt, unknown and not-a-face votes left out). Faces FER+
    dropped (majority unknown or not a face), or with no vote on the seven, keep their FER2013 label. Validation
    stays on FER2013's labels, so the run is still selected as every other one."""
    from fer_edge.runtime.data.datasets import ferplus_csv, read_ferplus

    folder = Path(ds.source).parent
    csv_path = ferplus_csv(folder)
    if train.rows is None:
        raise FerEdgeError(f"--ferplus-mix needs FER2013 in its original row order (fer2013.npz or .csv): "
                           f"found {ds.source}, whose rows are unknown")
    if not csv_path.is_file():
        raise FerEdgeError(f"--ferplus-mix needs the FER+ relabels beside the data: expected {csv_path}, found no such file")
    plus = read_ferplus(csv_path, ds)
    # FER+ names its classes as FER2013 does; its eighth, contempt, has no FER2013 column and is left out
    votes = plus.soft[:, [plus.label_set.labels.index(n) for n in ds.label_set.labels]]
    total = votes.sum(axis=1)
    row_of = {int(r): n for n, r in enumerate(plus.rows)}
    at = np.array([row_of.get(int(r), -1) for r in train.rows])
    has = at >= 0
    has[has] = total[at[has]] > 0
    mixed = y.copy()
    mixed[has] = (1 - weight) * y[has] + weight * votes[at[has]] / total[at[has], None]
    agree = float((votes[at[has]].argmax(1) == y[has].argmax(1)).mean()) if has.any() else 0.0
    log(f"--ferplus-mix {weight:g}: {int(has.sum())} of {len(train)} training faces carry FER+ votes "
        f"(their FER+ majority agrees with the FER2013 label on {100 * agree:.1f}%)")
    return mixed, {"weight": weight, "file": str(csv_path.relative_to(folder)), "faces": int(has.sum()),
                   "majority_agreement": round(agree, 4)}


def check_out(cfg: TrainConfig) -> Path:
    """Refuse an unusable --out before anything is read or written (it writes nothing itself)."""
    out = check_out_folder(cfg.out, force=cfg.force or cfg.resume,  # a resume continues what is there
                           remedy="pass --force to overwrite it, or --resume to continue its run")
    if cfg.resume:
        if not (out / STATE).is_file():
            raise FerEdgeError(f"--resume: {out} holds no {STATE} from an earlier run")
        if not (out / CHECKPOINT).is_file():
            raise FerEdgeError(f"--resume: {out} holds {STATE} but no {CHECKPOINT}")
    return out


def prepare_out(cfg: TrainConfig) -> Path:
    """The first write of a run: create --out, clearing an earlier run's files under --force."""
    out = check_out(cfg)
    if cfg.resume:
        return out
    out.mkdir(parents=True, exist_ok=True)
    from fer_edge.training.distill import CACHE
    from fer_edge.training.soup import EPOCHS

    for name in (STATE, CHECKPOINT, BEST, HISTORY, CACHE):
        (out / name).unlink(missing_ok=True)
    for name in ("eval", EPOCHS):  # stale reports (or another run's epochs) would mislead
        shutil.rmtree(out / name, ignore_errors=True)
    return out


def restore_config(cfg: TrainConfig, log) -> TrainConfig:
    """--resume: the configuration saved in state.json wins, so a resumed run is the same run. Only where the
    data lives, --out and --workers are taken from this invocation (folders move), and --soup when given (it
    changes nothing that trains); the command line is appended to the recorded one."""
    path = Path(cfg.out) / STATE
    try:
        saved = json.loads(path.read_text())["config"]
        known = {f.name for f in fields(TrainConfig)}
        saved = {k: v for k, v in saved.items() if k in known}
        first = saved.get("command") or ""  # keep the command that started the run, and each resume after it
        command = f"{first} [then: {cfg.command}]" if first and cfg.command and cfg.command not in first else first or cfg.command
        saved.update(data=cfg.data, out=cfg.out, resume=True, force=False, workers=cfg.workers, command=command)
        if cfg.soup:
            saved["soup"] = cfg.soup
        restored = TrainConfig(**{**saved, "value_range": tuple(saved["value_range"]),
                                  "teacher": tuple(saved.get("teacher", ()))})
    except (ValueError, KeyError, TypeError) as exc:
        raise FerEdgeError(f"--resume: {path} is not a fer-train state file ({type(exc).__name__}: {exc})") from None
    changed = [f.name for f in fields(TrainConfig) if f.name not in ("data", "out", "resume", "force", "workers", "command", "soup")
               and getattr(cfg, f.name) != getattr(restored, f.name) and getattr(cfg, f.name) != getattr(TrainConfig, f.name, None)]
    if changed:
        log(f"note: --resume keeps the saved {', '.join(changed)}: options given now for them are ignored")
    return restored


def validate(cfg: TrainConfig) -> None:
    from fer_edge.training.architectures import ARCHITECTURES

    if cfg.arch not in ARCHITECTURES:
        raise FerEdgeError(f"unknown architecture {cfg.arch!r}: expected one of {', '.join(ARCHITECTURES)}")
    if cfg.strategy not in ("auto", "mirrored", "none"):
        raise FerEdgeError(f"unknown --strategy {cfg.strategy!r}: expected auto, mirrored or none")
    for name in ("epochs", "batch_size", "workers"):
        if getattr(cfg, name) < 1:
            raise FerEdgeError(f"--{name.replace('_', '-')} must be at least 1, found {getattr(cfg, name)}")
    if cfg.limit < 0:
        raise FerEdgeError(f"--limit must be 0 (all faces) or a positive count, found {cfg.limit}")
    if cfg.lr <= 0:
        raise FerEdgeError(f"--lr must be positive, found {cfg.lr}")
    if cfg.soft and cfg.labels != "ferplus":
        raise FerEdgeError("--soft needs vote distributions: use it with --labels ferplus")
    if cfg.temperature <= 0:
        raise FerEdgeError(f"--temperature must be positive, found {cfg.temperature}")
    if not 0 <= cfg.soft_weight <= 1:
        raise FerEdgeError(f"--soft-weight must be between 0 and 1, found {cfg.soft_weight}")
    if cfg.soup < 0:
        raise FerEdgeError(f"--soup must be 0 (off) or the number of best epochs to try averaging, found {cfg.soup}")
    if not 0 <= cfg.ferplus_mix <= 1:
        raise FerEdgeError(f"--ferplus-mix must be between 0 and 1, found {cfg.ferplus_mix}")
    if cfg.ferplus_mix and (cfg.labels != "fer2013" or cfg.soft):
        raise FerEdgeError("--ferplus-mix mixes FER+ votes into FER2013 labels: it needs --labels fer2013, without --soft")
    if cfg.teacher_views < 0:
        raise FerEdgeError(f"--teacher-views must be 0 (targets on the plain faces) or a count, found {cfg.teacher_views}")
    if cfg.teacher_views and not cfg.teacher:
        raise FerEdgeError("--teacher-views sets how a teacher labels the faces: it needs --teacher")
    if cfg.strong_augment and not cfg.augment:
        raise FerEdgeError("--strong-augment and --no-augment contradict each other: give one of them")
    if cfg.teacher_views and not cfg.augment:
        raise FerEdgeError("--teacher-views labels augmented views of the faces: it cannot be used with --no-augment")


def train(cfg: TrainConfig, log=print) -> Path:
    """Train as `cfg` says; every check on the user's input happens before the first write to --out."""
    from fer_edge.training.backend import import_keras

    with stop.raising():  # Keras's import: seconds without a checkpoint of ours
        keras = import_keras()
    if cfg.resume:
        check_out(cfg)
        cfg = restore_config(cfg, log)
    validate(cfg)
    check_out(cfg)
    teachers, init = [], None
    if cfg.teacher or cfg.init:
        from fer_edge.runtime.model.labels import get_label_set
        from fer_edge.training.distill import check_teachers

        with stop.raising():
            teachers = check_teachers(list(cfg.teacher), get_label_set(cfg.labels), cfg.input_size)
            # a resumed run starts from its checkpoint: --init is only read again for the provenance, when still there
            if cfg.init and (not cfg.resume or Path(cfg.init).is_file()):
                init = check_teachers([cfg.init], get_label_set(cfg.labels), cfg.input_size, option="--init")[0]
    policy = keras.mixed_precision.global_policy()
    try:
        return _train(cfg, log, keras, teachers, init)
    finally:  # the policy is process-wide: leave it as found, so later models in this process are float32
        keras.mixed_precision.set_global_policy(policy)


@dataclass
class _Data:
    """What the data step prepares: the splits, the preprocessing and the targets the model trains on."""
    ds: FaceDataset
    train: FaceDataset
    val: FaceDataset
    spec: PreprocessSpec
    k: int
    weights: np.ndarray
    y_train: np.ndarray
    y_val: np.ndarray
    mix: dict | None
    faces: np.ndarray  # the training faces as the student sees them (fixed views under --teacher-views)
    augment: object


@dataclass
class _Teaching:
    """The teachers' soft targets (--teacher) and their record for the provenance."""
    soft: np.ndarray
    fresh: bool  # computed now, not found in the run folder's cache
    record: dict


def _train(cfg: TrainConfig, log, keras, teachers: list, init=None) -> Path:
    """The steps of a run: prepare data, teach, build or resume, fit, select (--soup), record (fer-eval)."""
    from fer_edge.training.data import make_sequence

    with stop.raising():  # data, teachers and the model: library calls without checkpoints of ours
        data = _prepare_data(cfg, keras, log)
        teaching = _teach(cfg, teachers, data, log) if teachers else None
        seq = make_sequence(data.faces, data.y_train, data.weights, data.spec, cfg.batch_size, cfg.seed,
                            data.augment if cfg.augment else None, workers=cfg.workers)
        x_val = preprocess(data.val.images, data.spec)
        gpus, strategy = _devices(cfg, keras, log)
        out = Path(cfg.out)
        state = json.loads((out / STATE).read_text()) if cfg.resume else {"epoch": 0, "best": -1.0, "best_epoch": -1}
        model = _build_or_resume(cfg, keras, teachers, data.k, strategy, state, log)
    out = prepare_out(cfg)  # the first write: every check on the user's input has passed
    if teaching and (teaching.fresh or not cfg.resume):  # prepare_out cleared an earlier run's copy
        from fer_edge.training.distill import save_targets

        save_targets(out, teachers, data.faces, teaching.soft)
    if cfg.resume:
        _truncate_history(out / HISTORY, state["epoch"])
    seq.epoch = state["epoch"]
    log(f"{cfg.arch}: {model.count_params():,} parameters; {len(data.train)} training faces, {len(data.val)} validation faces; "
        f"backend {keras.backend.backend()}")
    meta = _metadata(cfg, keras, model, data, gpus, teaching, init)
    float32_copy = _float32_copier(cfg, keras, data.k, mixed=gpus > 0)
    with stop.raising():  # Keras traces and compiles its steps in Python for seconds: a stop raises at once
        _fit(cfg, keras, model, seq, (x_val, data.y_val),
             _epoch_callback(cfg, keras, out, state, meta, float32_copy, log), state, out, log)
    if cfg.soup:
        _soup(cfg, out, state, float32_copy(model), data.train, data.spec, x_val, data.val.labels, meta, log)
    from fer_edge.training.evaluate import evaluate_to

    evaluate_to(out / BEST, data.ds, out / "eval", history=out / HISTORY, log=log, update_metadata=True)
    return out / BEST


def _prepare_data(cfg: TrainConfig, keras, log) -> _Data:
    """Read the data, split off validation, apply --limit, and make the targets (labels, FER+ votes)."""
    from fer_edge.training.data import Augment, class_weights

    ds = load_dataset(cfg.data, label_set=cfg.labels)
    for note in ds.notes:
        log(f"note: {note}")
    keras.utils.set_random_seed(cfg.seed)

    train_ds, val_ds = split_validation(ds, cfg.seed, log)
    if cfg.limit:
        pick = np.random.default_rng(cfg.seed).permutation(len(train_ds))[: cfg.limit]
        train_ds = train_ds.take(np.sort(pick))
        val_ds = val_ds.take(np.arange(min(len(val_ds), max(64, cfg.limit // 4))))
    if not len(train_ds) or not len(val_ds):
        raise FerEdgeError(f"{ds.source}: {len(train_ds)} training and {len(val_ds)} validation faces: need some of both")
    spec = PreprocessSpec(size=(cfg.input_size, cfg.input_size), channels=1, value_range=cfg.value_range,
                          equalize=cfg.equalize, crop_margin=cfg.crop_margin)
    k = len(ds.label_set)
    weights = class_weights(train_ds.labels, k, cfg.class_weight)[train_ds.labels]
    y_train, y_val = _targets(train_ds, cfg), _targets(val_ds, cfg)
    mix = None
    if cfg.ferplus_mix:
        y_train, mix = ferplus_mix(ds, train_ds, y_train, cfg.ferplus_mix, log)
    return _Data(ds, train_ds, val_ds, spec, k, weights, y_train, y_val, mix, train_ds.images,
                 Augment.strong() if cfg.strong_augment else Augment())


def _teach(cfg: TrainConfig, teachers: list, data: _Data, log) -> _Teaching:
    """--teacher: the teachers' soft targets (cached in the run folder), appended to the hard targets in `data`."""
    from fer_edge.training import distill
    from fer_edge.training.data import fixed_views

    if cfg.teacher_views:  # consistent teaching: the teacher labels exactly the views the student will see
        data.faces = fixed_views(data.train.images, cfg.teacher_views, cfg.seed, data.augment)
    # a resumed run, or a --force rerun with the same teachers and faces, finds the targets already computed
    soft = distill.cached_targets(Path(cfg.out), teachers, data.faces, log)
    fresh = soft is None
    if fresh:
        soft = distill.teacher_probs(teachers, data.faces, log)[1]
    val_soft, signal = distill.teacher_signal(teachers, data.val.images, data.val.labels, log)
    targets = (f"teachers' average, flip-averaged, on {cfg.teacher_views} fixed {'strongly ' * cfg.strong_augment}"
               f"augmented views of each training "
               f"face; the student sees one of them, or its mirror image, each epoch" if cfg.teacher_views else
               "teachers' average, flip-averaged, on the un-augmented training faces")
    record = {"teachers": [{"file": t.path.name, "sha256": t.sha256} for t in teachers],
              "temperature": cfg.temperature, "soft_weight": cfg.soft_weight, "targets": targets,
              "teacher_val_accuracy": signal}
    y_train = data.y_train
    if cfg.teacher_views:
        y_train = np.broadcast_to(y_train, (cfg.teacher_views, *y_train.shape))
    data.y_train = np.concatenate([y_train, soft.astype(np.float32)], axis=-1)
    data.y_val = np.concatenate([data.y_val, val_soft.astype(np.float32)], axis=1)  # val_loss: the training loss
    return _Teaching(soft, fresh, record)


def _devices(cfg: TrainConfig, keras, log):
    """(GPU count, tf.distribute strategy or None); mixed precision on where there is a GPU."""
    gpus = _gpu_count()
    strategy = None
    if cfg.strategy == "mirrored":
        if keras.backend.backend() != "tensorflow":
            raise FerEdgeError("--strategy mirrored needs the TensorFlow backend (KERAS_BACKEND=tensorflow)")
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy()
        log(f"MirroredStrategy over {strategy.num_replicas_in_sync} device(s)")
    elif gpus > 1:
        log(f"{gpus} GPUs found: training on one; --strategy mirrored uses all of them")
    if gpus > 0:
        keras.mixed_precision.set_global_policy("mixed_float16")
        log(f"{gpus} GPU(s) found: mixed precision on (the saved model.keras is float32)")
    return gpus, strategy


def _build_or_resume(cfg: TrainConfig, keras, teachers: list, k: int, strategy, state: dict, log):
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
            _init_weights(model, cfg)
        smoothing = 0.0 if cfg.soft else cfg.label_smoothing
        if teachers:
            from fer_edge.training.distill import loss_and_metric

            loss, metric = loss_and_metric(k, cfg.temperature, cfg.soft_weight, smoothing)
        else:
            loss, metric = keras.losses.CategoricalCrossentropy(label_smoothing=smoothing), "accuracy"
        model.compile(optimizer=keras.optimizers.AdamW(cfg.lr, weight_decay=cfg.weight_decay), loss=loss,
                      metrics=[metric])
    return model


def _metadata(cfg: TrainConfig, keras, model, data: _Data, gpus: int, teaching: _Teaching | None, init) -> ModelMetadata:
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


def _float32_copier(cfg: TrainConfig, keras, k: int, mixed: bool):
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


def _epoch_callback(cfg: TrainConfig, keras, out: Path, state: dict, meta: ModelMetadata, float32_copy, log):
    """One line per epoch, best-model keeping, early stopping and the resume checkpoint."""

    class Epochs(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.model.optimizer.learning_rate = lr_at(epoch, cfg)
            self.t0 = time.time()

        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            val = float(logs.get("val_accuracy", 0.0))
            improved = val > state["best"]
            if improved:
                state.update(best=val, best_epoch=epoch)
                save_model(float32_copy(self.model), out / BEST, meta.replace(figures={"val_accuracy": val, "epoch": epoch + 1}))
            row = {"epoch": epoch + 1, "lr": lr_at(epoch, cfg), "seconds": round(time.time() - self.t0, 1),
                   **{k: round(float(v), 5) for k, v in logs.items() if k != "learning_rate"}}
            # history before state: a crash in between leaves a row that resume drops, never a missing one
            with open(out / HISTORY, "a") as f:
                f.write(json.dumps(row) + "\n")
            state["epoch"] = epoch + 1
            if cfg.soup:  # before the checkpoint: a resumed run never lacks the weights of an epoch it has done
                from fer_edge.training.soup import save_epoch

                save_epoch(out, epoch + 1, [np.asarray(w, np.float32) for w in self.model.get_weights()])
            with atomic_output(out / CHECKPOINT, force=True) as tmp:
                self.model.save(tmp)
            with atomic_output(out / STATE, force=True) as tmp:
                tmp.write_text(json.dumps({**state, "config": asdict(cfg)}, indent=1))
            log(f"epoch {epoch + 1}/{cfg.epochs}  loss {row.get('loss', 0):.4f}  acc {row.get('accuracy', 0):.4f}  "
                f"val_loss {row.get('val_loss', 0):.4f}  val_acc {val:.4f}{'  *best' if improved else ''}  "
                f"lr {row['lr']:.2e}  {row['seconds']:.0f}s")
            if epoch - state["best_epoch"] >= cfg.patience:
                log(f"early stop: no better validation accuracy for {cfg.patience} epochs")
                self.model.stop_training = True

    return Epochs()


def _stop_check(keras):
    """A Keras callback that checks for a stop at every batch boundary (training and validation)."""
    class StopCheck(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            stop.check()

        def on_test_batch_end(self, batch, logs=None):
            stop.check()

    return StopCheck()


def _fit(cfg: TrainConfig, keras, model, seq, validation, epochs_callback, state: dict, out: Path, log) -> None:
    """Train the epochs left (none when the run has finished or stopped early)."""
    if state["epoch"] < cfg.epochs and state["epoch"] - state["best_epoch"] <= cfg.patience:
        # shuffle=False: the sequence orders each epoch itself from (seed, epoch), so a resumed run is repeatable;
        # Keras's own batch shuffling draws from Python's global random state, which a resume does not restore
        # a TTY gets Keras's progress bar, listed first so that it ends its line before ours is printed
        tty = sys.stdout.isatty()
        callbacks = [_stop_check(keras), epochs_callback]  # a stop takes effect within a batch
        model.fit(seq, validation_data=validation, epochs=cfg.epochs, initial_epoch=state["epoch"],
                  callbacks=[keras.callbacks.ProgbarLogger(), *callbacks] if tty else callbacks,
                  shuffle=False, verbose=1 if tty else 0)
    else:
        log(f"{out} has finished its run ({state['epoch']} of {cfg.epochs} epochs): nothing to train")
    log(f"best validation accuracy {state['best']:.4f} at epoch {state['best_epoch'] + 1}; model in {out / BEST}")


def _soup(cfg: TrainConfig, out: Path, state: dict, model, train_ds: FaceDataset, spec: PreprocessSpec,
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


def _init_weights(model, cfg: TrainConfig) -> None:
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


def _truncate_history(path: Path, epochs: int) -> None:
    """Keep the rows of the epochs the checkpoint holds (a crash may have logged one more)."""
    if not path.is_file():
        return
    rows = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["epoch"] <= epochs]
    with atomic_output(path, force=True) as tmp:
        tmp.write_text("".join(r + "\n" for r in rows))


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def save_model(model, path: Path, meta: ModelMetadata) -> None:
    with atomic_output(path, force=True) as tmp:
        model.save(tmp)
        write_metadata(tmp, meta)


def build_parser() -> argparse.ArgumentParser:
    from fer_edge.training.architectures import ARCHITECTURES

    p = argparse.ArgumentParser(prog="fer-train", description=__doc__.splitlines()[0],
                                epilog="Research-only steps (soup, WiSE-FT, FER+ mixing, teacher views): docs/training.md")
    run = p.add_argument_group("run", "every run: where the data is and where the run goes")
    run.add_argument("--data", required=True, help="fer2013.csv, fer2013.npz, an image-folder root, or a data folder")
    run.add_argument("--out", required=True, help="output folder (model.keras, checkpoint, history, eval/)")
    run.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    run.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    data = p.add_argument_group("data", "which labels and faces to train on, and how they are prepared; the "
                                "defaults train on FER2013's labels with augmentation")
    data.add_argument("--labels", default="fer2013", choices=["fer2013", "ferplus"])
    data.add_argument("--soft", action="store_true", help="FER+ only: train on vote distributions")
    data.add_argument("--class-weight", default="sqrt", choices=["none", "sqrt", "balanced"])
    data.add_argument("--normalize", default="0,1", choices=["0,1", "-1,1"], help="model input value range")
    data.add_argument("--equalize", action="store_true", help="histogram-equalise faces (recorded in the model)")
    data.add_argument("--crop-margin", type=float, default=0.0, help="runtime crop margin recorded in the model")
    data.add_argument("--no-augment", action="store_true")
    data.add_argument("--strong-augment", action="store_true",
                      help="wider rotations, shifts and zooms, stronger light changes, blur and low-resolution copies "
                           "(faces further from FER2013's tight, sharp crops); best with --teacher-views, where the "
                           "teacher labels each such view")
    data.add_argument("--limit", type=int, default=0, help="use only this many training faces (quick runs)")
    data.add_argument("--workers", type=int, default=1, help="threads preparing batches")
    arch = p.add_argument_group("architecture", "which network: pick one for the device's budget of multiply-adds "
                                "(docs/training.md compares them)")
    arch.add_argument("--arch", default="edge", help=f"architecture: {', '.join(ARCHITECTURES)} (default edge)")
    arch.add_argument("--input-size", type=int, default=48)
    arch.add_argument("--init", default="", metavar="MODEL",
                      help="start from this fer-edge .keras reference's weights (same --arch), e.g. to train a "
                           "finished run further on a new schedule")
    sched = p.add_argument_group("schedule", "how long and how fast: the defaults suit a run from scratch; change "
                                 "them for a fine-tune (--init) or a different time budget")
    sched.add_argument("--epochs", type=int, default=60)
    sched.add_argument("--batch-size", type=int, default=128)
    sched.add_argument("--lr", type=float, default=2e-3)
    sched.add_argument("--patience", type=int, default=15)
    sched.add_argument("--label-smoothing", type=float, default=0.1)
    sched.add_argument("--seed", type=int, default=0)
    sched.add_argument("--strategy", default="auto", choices=["auto", "mirrored", "none"])
    kd = p.add_argument_group("distillation", "when a small student learns from a bigger trained model (--teacher): "
                              "how fer-lite learnt from fer-vgg")
    kd.add_argument("--teacher", action="append", metavar="MODEL",
                    help="distil from this fer-edge .keras reference (repeat for an ensemble, averaged)")
    kd.add_argument("--temperature", type=float, default=4.0, help="distillation temperature (default 4)")
    kd.add_argument("--soft-weight", type=float, default=0.8,
                    help="weight of the teacher's soft targets against the hard labels (default 0.8)")
    kd.add_argument("--teacher-views", type=int, default=0, metavar="K",
                    help="label K fixed augmented views of every face with the teacher, and train the student on "
                         "those views (consistent teaching; costs K teacher passes once). Default 0: the teacher "
                         "labels the plain faces and the student sees fresh augmentations")
    mix = p.add_argument_group("label mixing", "research: when FER2013's single-annotator labels should be softened "
                               "with FER+'s ten votes (needs ferplus/fer2013new.csv beside the data)")
    mix.add_argument("--ferplus-mix", type=float, default=0.0, metavar="W",
                     help="blend each training face's FER2013 label with FER+'s ten-annotator vote distribution of the "
                          "same face, at weight W (needs a data folder with ferplus/fer2013new.csv; validation stays "
                          "on FER2013's labels). Default 0: FER2013's labels alone")
    avg = p.add_argument_group("averaging", "research: when the last point of accuracy is worth keeping every epoch's "
                               "weights (model soup; WiSE-FT is python -m fer_edge.training.wise)")
    avg.add_argument("--soup", type=int, default=0, metavar="K",
                     help="after training, average the weights of the K best epochs (and of --init) greedily, and keep "
                          "the average if it scores higher on the validation split (model soup; keeps each epoch's "
                          "weights in DIR/epochs). With --resume it starts keeping them from the next epoch. Default 0: off")
    return p


@cli_main
def main(argv=None) -> int:
    args = build_parser().parse_args(fix_argv(argv))
    cfg = TrainConfig(
        data=args.data, out=args.out, arch=args.arch, labels=args.labels, soft=args.soft, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, patience=args.patience, label_smoothing=args.label_smoothing,
        class_weight=args.class_weight, seed=args.seed, input_size=args.input_size,
        value_range=PreprocessSpec.parse_range(args.normalize), equalize=args.equalize, crop_margin=args.crop_margin,
        augment=not args.no_augment, teacher=tuple(args.teacher or ()), temperature=args.temperature,
        soft_weight=args.soft_weight, teacher_views=args.teacher_views, strong_augment=args.strong_augment,
        init=args.init, soup=args.soup,
        ferplus_mix=args.ferplus_mix,
        limit=args.limit, strategy=args.strategy, workers=args.workers, force=args.force, resume=args.resume,
        command="fer-train " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
    )
    try:
        train(cfg, log=lambda m: print(m, flush=True))
    except (KeyboardInterrupt, Interrupted):
        if (Path(cfg.out) / STATE).is_file():  # the epochs finished before the stop are kept
            print(f"fer-train: resume with --resume (the finished epochs are in {cfg.out})", file=sys.stderr)
        raise  # cli_main: exit 130 with its one line
    return 0


if __name__ == "__main__":
    sys.exit(main())
