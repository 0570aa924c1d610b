"""Knowledge distillation for fer-train: a teacher's soft targets mixed with the hard labels.

The teacher (one or more fer-edge .keras references, averaged) is run once per training face, on the face
and on its mirror image, and the two outputs are averaged (horizontal-flip averaging: a steadier signal,
measured on PublicTest at the start of every run). The result is cached in the run folder, keyed by the
teachers' sha256 and the training faces, so epochs, resumed runs and --force reruns with the same teachers
never pay for the teacher again.
The student sees augmented faces (small rotations, shifts, zooms, flips, light changes, erasing: all
label-preserving) against the teacher's targets for the un-augmented face.

Loss, per face (Hinton et al., 2015), with p the student's and q the teacher's probabilities:

    (1 - w) * CE(label-smoothed hard label, p) + w * T^2 * KL(q_T || p_T),   x_T = softmax(log(x) / T)

The models end in a softmax, so log(p) stands in for the logits: softmax(log(p) / T) is exactly the
tempered softmax of the logits. Targets reach the loss as one array, [hard one-hot | teacher probs].
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_edge.runtime.core.errors import ModelError, require
from fer_edge.runtime.core.fileio import atomic_output, sha256_file
from fer_edge.runtime.model.metadata import ModelMetadata, read_metadata
from fer_edge.runtime.data.metrics import classification_report

CACHE = "teacher.npz"


@dataclass(frozen=True)
class Teacher:
    path: Path
    meta: ModelMetadata
    sha256: str


def check_teachers(paths: list[str], label_set, input_size: int, option: str = "--teacher") -> list[Teacher]:
    """Every --teacher (or --init, named by `option`) is a readable fer-edge Keras reference with the student's
    labels and input size. Reads metadata only (no TensorFlow): run before anything is written."""
    from fer_edge.convert.source import KERAS_SUFFIXES

    teachers = []
    for text in paths:
        path = Path(text)
        if not path.is_file():
            raise ModelError(f"{option} {path}: no such model file" + (" (a folder)" if path.is_dir() else ""))
        if path.suffix.lower() not in KERAS_SUFFIXES:
            raise ModelError(f"{option} {path}: expected a Keras reference (.keras or .h5) with fer-edge metadata, "
                             f"found {path.suffix or 'no suffix'!r}")
        meta = read_metadata(path)
        if meta is None:
            raise ModelError(f"{option} {path} carries no fer-edge metadata: expected a model written by fer-train "
                             f"(or shipped in models/), whose labels and preprocessing are known")
        if meta.labels != tuple(label_set.labels):
            raise ModelError(f"{option} {path} predicts label set {meta.label_set.name} ({', '.join(meta.labels)}) "
                             f"but this run trains {label_set.name} ({', '.join(label_set.labels)})")
        if tuple(meta.preprocess.size) != (input_size, input_size) or meta.preprocess.channels != 1:
            raise ModelError(f"{option} {path} takes {meta.preprocess.size[0]}x{meta.preprocess.size[1]}x"
                             f"{meta.preprocess.channels} faces but the student takes {input_size}x{input_size}x1: "
                             f"expected the same input size")
        teachers.append(Teacher(path, meta, sha256_file(path)))
    return teachers


def teacher_probs(teachers: list[Teacher], faces: np.ndarray, log=print) -> tuple[np.ndarray, np.ndarray]:
    """(plain, flip-averaged) probabilities of the teachers' average on uint8 faces (N, H, W), or on fixed
    views (K, N, H, W): (K, N, C) each. Each teacher is loaded once, whatever the number of views."""
    from fer_edge.convert.source import load_source
    from fer_edge.runtime.model.preprocess import preprocess

    views = faces if faces.ndim == 4 else faces[None]
    plain = np.zeros((*views.shape[:2], len(teachers[0].meta.labels)), np.float32)
    flipped = np.zeros_like(plain)
    for t in teachers:
        src = load_source(t.path)
        for v, view in enumerate(views):
            x = preprocess(view, t.meta.preprocess)
            plain[v] += src.predict_inputs(x, batch_size=512) / len(teachers)
            flipped[v] += src.predict_inputs(x[:, :, ::-1], batch_size=512) / len(teachers)
        log(f"teacher {t.path.name}: {views.shape[1]} faces" + (f" in {len(views)} fixed augmented views"
                                                                if faces.ndim == 4 else "") + ", and their mirror images")
    avg = (plain + flipped) / 2
    return (plain, avg) if faces.ndim == 4 else (plain[0], avg[0])


def faces_key(teachers: list[Teacher], faces: np.ndarray) -> str:
    h = hashlib.sha256()
    for t in teachers:
        h.update(t.sha256.encode())
    h.update(np.ascontiguousarray(faces).tobytes())
    return h.hexdigest()


def cached_targets(out: Path, teachers: list[Teacher], faces: np.ndarray, log=print) -> np.ndarray | None:
    path = out / CACHE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        if str(z["key"]) != faces_key(teachers, faces):
            log(f"note: {path} was made by other teachers or faces: computing the targets again")
            return None
        return z["probs"]


def save_targets(out: Path, teachers: list[Teacher], faces: np.ndarray, probs: np.ndarray) -> None:
    with atomic_output(out / CACHE, force=True) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, key=np.array(faces_key(teachers, faces)), probs=probs)


def teacher_signal(teachers: list[Teacher], val_faces: np.ndarray, val_labels: np.ndarray,
                   log=print) -> tuple[np.ndarray, dict]:
    """The teachers' flip-averaged validation targets, and their validation accuracy with and without flip
    averaging (recorded in provenance)."""
    plain, avg = teacher_probs(teachers, val_faces, log=lambda m: None)
    acc = {name: classification_report(val_labels, p, teachers[0].meta.labels)["accuracy"]
           for name, p in (("plain", plain), ("flip_averaged", avg))}
    log(f"teacher on validation: {100 * acc['plain']:.2f}% plain, {100 * acc['flip_averaged']:.2f}% flip-averaged")
    return avg, acc


@functools.cache
def _register():
    """Define and register the loss and metric once per process (Keras refuses a second registration)."""
    keras = require("keras", "train")
    ops = keras.ops

    @keras.saving.register_keras_serializable(package="fer_edge", name="Distillation")
    class Distillation(keras.losses.Loss):
        def __init__(self, num_classes, temperature=4.0, soft_weight=0.8, label_smoothing=0.1, name="distillation",
                     **kwargs):
            super().__init__(name=name, **kwargs)
            self.num_classes, self.temperature = int(num_classes), float(temperature)
            self.soft_weight, self.label_smoothing = float(soft_weight), float(label_smoothing)

        def call(self, y_true, y_pred):
            k, t = self.num_classes, self.temperature
            y_true = ops.cast(y_true, "float32")
            log_p = ops.log(ops.clip(ops.cast(y_pred, "float32"), 1e-7, 1.0))
            hard = y_true[:, :k] * (1 - self.label_smoothing) + self.label_smoothing / k
            ce = -ops.sum(hard * log_p, axis=-1)
            log_pt = ops.log_softmax(log_p / t, axis=-1)
            log_qt = ops.log_softmax(ops.log(ops.clip(y_true[:, k:], 1e-7, 1.0)) / t, axis=-1)
            kl = ops.sum(ops.exp(log_qt) * (log_qt - log_pt), axis=-1)
            return (1 - self.soft_weight) * ce + self.soft_weight * t * t * kl

        def get_config(self):
            return {**super().get_config(), "num_classes": self.num_classes, "temperature": self.temperature,
                    "soft_weight": self.soft_weight, "label_smoothing": self.label_smoothing}

    @keras.saving.register_keras_serializable(package="fer_edge", name="hard_label_accuracy")
    def hard_label_accuracy(y_true, y_pred):
        """Top-1 accuracy against the hard label (the first num_classes columns of the targets)."""
        k = ops.shape(y_pred)[-1]
        return ops.cast(ops.equal(ops.argmax(y_true[:, :k], axis=-1), ops.argmax(y_pred, axis=-1)), "float32")

    return Distillation, hard_label_accuracy


def loss_and_metric(num_classes: int, temperature: float, soft_weight: float, label_smoothing: float):
    """The distillation loss and an `accuracy` metric on the hard labels (the name the run's logs use).
    Registering the classes also lets a checkpoint of a distillation run be loaded for --resume."""
    keras = require("keras", "train")
    loss_cls, acc = _register()
    return (loss_cls(num_classes, temperature, soft_weight, label_smoothing),
            keras.metrics.MeanMetricWrapper(acc, name="accuracy"))


def ensure_registered() -> None:
    _register()
