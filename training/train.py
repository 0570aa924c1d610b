"""fer-train: train a FER model on FER2013 (or FER+) and write a .keras file carrying its metadata.

Resumable: every epoch ends with DIR/checkpoint.keras (model and optimizer) and DIR/state.json written
atomically; `--resume` (or re-running the same command with --resume) continues from there. The best
epoch on the validation split (PublicTest) is kept in DIR/model.keras with labels and preprocessing.

A run's steps, each in its module: settings, checks and the run folder (train_config.py), data and targets
(train_data.py), the model (train_model.py), the fit loop and its per-epoch callback (here), and what is
written after it (train_outputs.py).
"""
from __future__ import annotations

import json
import math
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from fer_edge.runtime.cli_args import fix_argv
import fer_edge.runtime.core.stop as stop
from fer_edge.runtime.core.errors import FerEdgeError, Interrupted, cli_main
from fer_edge.runtime.core.fileio import atomic_output
from fer_edge.runtime.model.metadata import ModelMetadata
from fer_edge.runtime.model.preprocess import PreprocessSpec, preprocess
# the run's names, where users and fer-train's own tools have always imported them from
from fer_edge.training.train_config import (BEST, CHECKPOINT, HISTORY, STATE, TrainConfig, build_parser,  # noqa: F401
                                            check_out, prepare_out, restore_config, validate)
from fer_edge.training.train_data import ferplus_mix, prepare_data, split_validation, teach  # noqa: F401
from fer_edge.training.train_model import build_or_resume, float32_copier, run_metadata
from fer_edge.training.train_outputs import save_model, soup_step, truncate_history


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


def _train(cfg: TrainConfig, log, keras, teachers: list, init=None) -> Path:
    """The steps of a run: prepare data, teach, build or resume, fit, select (--soup), record (fer-eval)."""
    from fer_edge.training.data import make_sequence

    with stop.raising():  # data, teachers and the model: library calls without checkpoints of ours
        data = prepare_data(cfg, keras, log)
        teaching = teach(cfg, teachers, data, log) if teachers else None
        seq = make_sequence(data.faces, data.y_train, data.weights, data.spec, cfg.batch_size, cfg.seed,
                            data.augment if cfg.augment else None, workers=cfg.workers)
        x_val = preprocess(data.val.images, data.spec)
        gpus, strategy = _devices(cfg, keras, log)
        out = Path(cfg.out)
        state = json.loads((out / STATE).read_text()) if cfg.resume else {"epoch": 0, "best": -1.0, "best_epoch": -1}
        model = build_or_resume(cfg, keras, teachers, data.k, strategy, state, log)
    out = prepare_out(cfg)  # the first write: every check on the user's input has passed
    if teaching and (teaching.fresh or not cfg.resume):  # prepare_out cleared an earlier run's copy
        from fer_edge.training.distill import save_targets

        save_targets(out, teachers, data.faces, teaching.soft)
    if cfg.resume:
        truncate_history(out / HISTORY, state["epoch"])
    seq.epoch = state["epoch"]
    log(f"{cfg.arch}: {model.count_params():,} parameters; {len(data.train)} training faces, {len(data.val)} validation faces; "
        f"backend {keras.backend.backend()}")
    meta = run_metadata(cfg, keras, model, data, gpus, teaching, init)
    float32_copy = float32_copier(cfg, keras, data.k, mixed=gpus > 0)
    with stop.raising():  # Keras traces and compiles its steps in Python for seconds: a stop raises at once
        _fit(cfg, keras, model, seq, (x_val, data.y_val),
             _epoch_callback(cfg, keras, out, state, meta, float32_copy, log), state, out, log)
    if cfg.soup:
        soup_step(cfg, out, state, float32_copy(model), data.train, data.spec, x_val, data.val.labels, meta, log)
    from fer_edge.training.evaluate import evaluate_to

    evaluate_to(out / BEST, data.ds, out / "eval", history=out / HISTORY, log=log, update_metadata=True)
    return out / BEST


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
        # otherwise a bar of epochs on stderr where that is a terminal (runtime.core.progress draws none elsewhere)
        tty = sys.stdout.isatty()
        callbacks = [_stop_check(keras), epochs_callback]  # a stop takes effect within a batch
        model.fit(seq, validation_data=validation, epochs=cfg.epochs, initial_epoch=state["epoch"],
                  callbacks=[keras.callbacks.ProgbarLogger(), *callbacks] if tty
                  else [*callbacks, _epoch_bar(keras, cfg.epochs - state["epoch"])],
                  shuffle=False, verbose=1 if tty else 0)
    else:
        log(f"{out} has finished its run ({state['epoch']} of {cfg.epochs} epochs): nothing to train")
    log(f"best validation accuracy {state['best']:.4f} at epoch {state['best_epoch'] + 1}; model in {out / BEST}")


def _epoch_bar(keras, epochs: int):
    """A Keras callback that advances a progress bar of `epochs` epochs on stderr (drawn on a terminal only)."""
    from fer_edge.runtime.core.progress import Progress

    class EpochBar(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.bar = Progress(epochs, "epochs")

        def on_epoch_end(self, epoch, logs=None):
            self.bar.update()

        def on_train_end(self, logs=None):
            self.bar.close()

    return EpochBar()


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



if __name__ == "__main__":  # as its console script runs: stops, exit codes (fer_edge/launch.py)
    from fer_edge.launch import main_module

    main_module(main)
