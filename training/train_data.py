"""fer-train's data step: read the data, split off validation, make the targets (labels, FER+ votes, a
teacher's soft targets) the model trains on."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_edge.runtime.core.errors import FerEdgeError
from fer_edge.runtime.data.datasets import FaceDataset, load_dataset
from fer_edge.runtime.model.preprocess import PreprocessSpec
from fer_edge.training.train_config import TrainConfig


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


@dataclass
class TrainData:
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
class Teaching:
    """The teachers' soft targets (--teacher) and their record for the provenance."""
    soft: np.ndarray
    fresh: bool  # computed now, not found in the run folder's cache
    record: dict


def prepare_data(cfg: TrainConfig, keras, log) -> TrainData:
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
    return TrainData(ds, train_ds, val_ds, spec, k, weights, y_train, y_val, mix, train_ds.images,
                 Augment.strong() if cfg.strong_augment else Augment())


def teach(cfg: TrainConfig, teachers: list, data: TrainData, log) -> Teaching:
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
    return Teaching(soft, fresh, record)

