"""Representative calibration sets: real faces, class-stratified, seeded, preprocessed by the one contract.

A set is saved as two files that travel together: `NAME.npz` (arrays only, read with allow_pickle=False)
and `NAME.json` (the manifest: data source and its sha256, split, seed, counts per class, the
preprocessing spec, and the sha256 of the .npz). The manifest's own sha256 is what converted models
record, so a conversion can be repeated exactly with `--calibration NAME.npz`.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_edge.runtime.data.datasets import FaceDataset, split_code
import fer_edge.runtime.core.stop as stop
from fer_edge.runtime.core.errors import DataError, FerEdgeError
from fer_edge.runtime.core.fileio import atomic_output, check_writable, sha256_file
from fer_edge.runtime.core.progress import Progress
from fer_edge.runtime.model.preprocess import PreprocessSpec, preprocess

DEFAULT_SIZE = 500
MIN_SIZE = 100  # below this the activation ranges of a FER net are mostly noise
MANIFEST_FORMAT = "fer-edge-calibration/1"


@dataclass
class CalibrationSet:
    inputs: np.ndarray  # float32 N x H x W x C, the output of `preprocess`
    labels: np.ndarray  # int64 (N,)
    rows: np.ndarray  # int64 (N,): index of each face in the source dataset
    manifest: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def spec(self) -> PreprocessSpec:
        return PreprocessSpec.from_dict(self.manifest["preprocess"])

    @property
    def manifest_sha256(self) -> str:
        """sha256 of the manifest as written to disk (canonical JSON)."""
        return hashlib.sha256(manifest_text(self.manifest).encode()).hexdigest()

    def check_spec(self, spec: PreprocessSpec, where: str = "calibration set") -> None:
        """Refuse a set made for another input shape or another preprocessing."""
        want = (len(self), *spec.size, spec.channels)
        if self.inputs.shape != want:
            raise DataError(f"{where}: calibration inputs have shape {self.inputs.shape} but the model needs "
                            f"N x {spec.size[0]} x {spec.size[1]} x {spec.channels}")
        mine = self.spec
        if (mine.scaling(), mine.align) != (spec.scaling(), spec.align):
            raise DataError(f"{where}: calibration faces were preprocessed as {mine.describe()}, but the model "
                            f"expects {spec.describe()}: build a new set with --data")

    def batches(self, batch_size: int = 1):
        for i in range(0, len(self), batch_size):
            stop.check()  # TFLite's and ONNX Runtime's calibration call back here: a stop ends them within a step
            yield self.inputs[i:i + batch_size]

    def representative_dataset(self):
        """A callable for TFLiteConverter.representative_dataset (one face per step); a pass shows a progress bar
        on a terminal."""
        def gen():
            with Progress(len(self), "calibration faces") as bar:
                for x in self.batches(1):
                    yield [x]
                    bar.update()
        return gen

    def reader(self, input_name: str, batch_size: int = 1) -> "CalibrationReader":
        return CalibrationReader(self, input_name, batch_size)


class CalibrationReader:
    """onnxruntime's CalibrationDataReader protocol: get_next() returns a feed dict, or None when done."""

    def __init__(self, cs: CalibrationSet, input_name: str, batch_size: int = 1):
        self.cs, self.input_name, self.batch_size = cs, input_name, batch_size
        self.rewind()

    def get_next(self) -> dict | None:
        x = next(self._it, None)
        if x is None:
            return None
        if self._bar is None:  # a pass has started: its bar (drawn on a terminal only) ends with its last face
            self._bar = Progress(len(self.cs), "calibration faces")
        self._bar.update(len(x))
        return {self.input_name: x}

    def rewind(self) -> None:
        self._it = self.cs.batches(self.batch_size)
        if getattr(self, "_bar", None) is not None:
            self._bar.close()
        self._bar = None

    def __iter__(self):  # onnxruntime >= 1.16 also accepts an iterable reader
        self.rewind()
        return self

    def __next__(self) -> dict:
        feed = self.get_next()
        if feed is None:
            raise StopIteration
        return feed

    def __len__(self) -> int:
        return -(-len(self.cs) // self.batch_size)


def stratified_indices(labels: np.ndarray, k: int, n: int, seed: int) -> np.ndarray:
    """n indices spread over the k classes as evenly as the class sizes allow (seeded, sorted).

    Equal shares, not proportional ones: disgust is 1.5% of FER2013, and a proportional 500-face set
    would give it 7 faces, too few for the activation ranges its features produce.
    """
    rng = np.random.default_rng(seed)
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in range(k)]
    take = np.zeros(k, dtype=np.int64)
    left = min(n, len(labels))
    while left > 0:  # water-filling: give each unfilled class an equal share of what is left
        open_ = [c for c in range(k) if take[c] < len(pools[c])]
        if not open_:
            break
        share = max(1, left // len(open_))
        for c in open_:
            add = min(share, len(pools[c]) - take[c], left)
            take[c] += add
            left -= add
            if left == 0:
                break
    return np.sort(np.concatenate([p[:t] for p, t in zip(pools, take)]).astype(np.int64))


def _source_hash(ds: FaceDataset) -> str | None:
    src = Path(ds.source) if ds.source else None
    return sha256_file(src) if src is not None and src.is_file() else None


def build_calibration(ds: FaceDataset, spec: PreprocessSpec, size: int = DEFAULT_SIZE, seed: int = 0,
                      split: str = "Training", force: bool = False) -> CalibrationSet:
    """Pick `size` faces of `split`, class-stratified and seeded, and preprocess them with `spec`."""
    if size < 1:
        raise FerEdgeError(f"calibration size must be positive, found {size}")
    part_idx = np.flatnonzero(ds.split == split_code(split))
    if not len(part_idx):
        raise DataError(f"{ds.source}: no {split} faces to calibrate on")
    k = len(ds.label_set)
    pick = part_idx[stratified_indices(ds.labels[part_idx], k, size, seed)]
    cs = CalibrationSet(preprocess(ds.images[pick], spec), ds.labels[pick].astype(np.int64),
                        (ds.rows[pick] if ds.rows is not None else pick).astype(np.int64))
    counts = np.bincount(cs.labels, minlength=k)
    cs.manifest = {
        "format": MANIFEST_FORMAT,
        "source": str(ds.source),
        "source_sha256": _source_hash(ds),
        "faces_sha256": hashlib.sha256(np.ascontiguousarray(ds.images[pick]).tobytes()).hexdigest(),
        "split": split,
        "seed": int(seed),
        "size": int(len(pick)),
        "label_set": ds.label_set.name,
        # the classes the data can label (a model's contempt is absent from FER2013: not a missing class)
        "counts": {ds.label_set.labels[i]: int(counts[i]) for i in (ds.scored or range(k))},
        "preprocess": spec.to_dict(),
        "forced": bool(force),
    }
    check_calibration(cs, force)
    return cs


def check_calibration(cs: CalibrationSet, force: bool = False, where: str = "calibration set") -> None:
    """Refuse a set too small or missing a class (unless forced)."""
    if force:
        return
    if len(cs) < MIN_SIZE:
        raise DataError(f"{where}: {len(cs)} faces is too few to calibrate on (at least {MIN_SIZE}): "
                        "use more faces, or pass --force-calibration")
    missing = [name for name, c in cs.manifest.get("counts", {}).items() if c == 0]
    if missing:
        raise DataError(f"{where}: no faces of class {', '.join(missing)}: the quantized model would never see "
                        "their activations; pass --force-calibration to use it anyway")


def manifest_text(manifest: dict) -> str:
    return json.dumps(manifest, indent=1, sort_keys=True) + "\n"


def manifest_path(npz_path: str | os.PathLike) -> Path:
    return Path(npz_path).with_suffix(".json")


def save_calibration(cs: CalibrationSet, path: str | os.PathLike, force: bool = False) -> Path:
    """Write NAME.npz and its manifest NAME.json; returns the manifest path."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise FerEdgeError(f"{path}: a calibration set is saved as .npz")
    mpath = manifest_path(path)
    check_writable(mpath, force)
    with atomic_output(path, force=force) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, inputs=cs.inputs, labels=cs.labels, rows=cs.rows)
        cs.manifest["npz_sha256"] = sha256_file(tmp)
        with atomic_output(mpath, force=force) as mtmp:
            mtmp.write_text(manifest_text(cs.manifest))
    return mpath


def load_calibration(path: str | os.PathLike, force: bool = False) -> CalibrationSet:
    """Read a set written by save_calibration; checks the manifest, the hash and the array shapes."""
    path = Path(path)
    mpath = manifest_path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such calibration file")
    if not mpath.is_file():
        raise DataError(f"{path}: its manifest {mpath.name} is missing: a calibration set is NAME.npz + NAME.json")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{mpath}: not a readable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise DataError(f"{mpath}: not a fer-edge calibration manifest (format {MANIFEST_FORMAT!r})")
    if manifest.get("npz_sha256") and manifest["npz_sha256"] != sha256_file(path):
        raise DataError(f"{path}: its sha256 differs from the one in {mpath.name}: the file was changed")
    try:
        with np.load(path, allow_pickle=False) as z:
            inputs, labels, rows = z["inputs"], z["labels"], z["rows"]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: not a calibration .npz with arrays inputs, labels, rows ({exc})") from None
    if inputs.dtype != np.float32 or inputs.ndim != 4 or inputs.shape[3] not in (1, 3):
        raise DataError(f"{path}: inputs must be float32 N x H x W x C (C 1 or 3), found {inputs.dtype} {inputs.shape}")
    if not len(inputs) == len(labels) == len(rows):
        raise DataError(f"{path}: inputs, labels and rows lengths differ")
    try:
        spec = PreprocessSpec.from_dict(manifest["preprocess"])
    except (KeyError, TypeError, FerEdgeError) as exc:
        raise DataError(f"{mpath}: invalid preprocessing entry ({exc})") from None
    if inputs.shape[1:] != (*spec.size, spec.channels):
        raise DataError(f"{path}: inputs have shape {inputs.shape[1:]} but the manifest says {(*spec.size, spec.channels)}")
    cs = CalibrationSet(inputs, labels.astype(np.int64), rows.astype(np.int64), manifest)
    check_calibration(cs, force, where=str(path))
    return cs
