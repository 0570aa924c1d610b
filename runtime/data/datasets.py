"""FER2013 readers (numpy and OpenCV only, so a device can verify accuracy with them).

Every reader returns one `FaceDataset`: uint8 faces (N, 48, 48), integer labels, the official split
per face, the label set, and for FER+ the vote distributions for soft-label training.
"""
from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fer_edge.runtime.core.errors import DataError
from fer_edge.runtime.model.labels import FER2013, FERPLUS, LabelSet, canonical, known_elsewhere

SPLITS = ("Training", "PublicTest", "PrivateTest")  # split codes 0, 1, 2
SIDE = 48
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".webp", ".tif", ".tiff"}
DATA_ENV = "FER_EDGE_DATA"  # the one setting that points tools and tests at the data folder


@dataclass
class FaceDataset:
    images: np.ndarray  # uint8 (N, 48, 48)
    labels: np.ndarray  # int64 (N,)
    split: np.ndarray  # uint8 (N,): 0 Training, 1 PublicTest, 2 PrivateTest
    label_set: LabelSet
    source: str = ""
    names: np.ndarray | None = None  # per-face id in the source (file path, csv line)
    soft: np.ndarray | None = None  # float32 (N, K) vote distributions (FER+)
    rows: np.ndarray | None = None  # index of each face in the original FER2013 order, when known
    notes: list[str] = field(default_factory=list)
    scored: tuple[int, ...] | None = None  # the label set's classes the data can label (in_model_classes); None: all

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index) -> "FaceDataset":
        pick = lambda a: None if a is None else a[index]
        return FaceDataset(self.images[index], self.labels[index], self.split[index], self.label_set,
                           self.source, pick(self.names), pick(self.soft), pick(self.rows), list(self.notes),
                           self.scored)

    def subset(self, split: str | int) -> "FaceDataset":
        code = split if isinstance(split, int) else split_code(split)
        return self.take(np.flatnonzero(self.split == code))

    def has_split(self, split: str | int) -> bool:
        code = split if isinstance(split, int) else split_code(split)
        return bool(np.any(self.split == code))

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.label_set))
        return {name: int(c) for name, c in zip(self.label_set.labels, counts)}


def split_code(name: str) -> int:
    for i, s in enumerate(SPLITS):
        if name.lower() in (s.lower(), {"Training": "train", "PublicTest": "public", "PrivateTest": "private"}[s]):
            return i
    raise DataError(f"unknown split {name!r}: expected one of {', '.join(SPLITS)}")


def _check_labels(labels: np.ndarray, k: int, where: str) -> None:
    bad = np.flatnonzero((labels < 0) | (labels >= k))
    if len(bad):
        raise DataError(f"{where}: entry {bad[0]}: label {labels[bad[0]]} is outside 0..{k - 1}")


# --- npz (the layout in ../shared/data) -----------------------------------------------------------

def read_npz(path: str | os.PathLike) -> FaceDataset:
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    with z:
        for key in ("pixels", "emotion", "usage"):
            if key not in z.files:
                raise DataError(f"{path}: missing array {key!r}: expected pixels, emotion and usage, found {', '.join(z.files)}")
        try:
            pixels, emotion, usage = z["pixels"], z["emotion"], z["usage"]
            names = z["jpeg_relpath"] if "jpeg_relpath" in z.files else None
        except (OSError, ValueError) as exc:  # e.g. object arrays, which would need pickle
            raise DataError(f"{path}: unreadable array ({exc})") from None
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[1:] != (SIDE, SIDE):
        raise DataError(f"{path}: pixels must be uint8 (N, 48, 48), found {pixels.dtype} {pixels.shape}")
    if not len(pixels) == len(emotion) == len(usage):
        raise DataError(f"{path}: pixels, emotion and usage lengths differ: {len(pixels)}, {len(emotion)}, {len(usage)}")
    labels = emotion.astype(np.int64)
    _check_labels(labels, len(FER2013), str(path))
    if usage.max(initial=0) > 2:
        raise DataError(f"{path}: usage must be 0, 1 or 2, found {usage.max()}")
    return FaceDataset(pixels, labels, usage.astype(np.uint8), FER2013, str(path), names=names,
                       rows=np.arange(len(labels)))


# --- Kaggle fer2013.csv, read streaming --------------------------------------------------------

def read_csv(path: str | os.PathLike) -> FaceDataset:
    path = Path(path)
    images, labels, split = [], [], []
    try:
        # utf-8-sig: spreadsheet tools often save the CSV with a byte-order mark before "emotion"
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            _read_csv_rows(path, reader, images, labels, split)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: line {reader.line_num + 1}: not a text CSV file ({exc})") from None
    if not labels:
        raise DataError(f"{path}: no data rows after the header")
    return FaceDataset(np.stack(images), np.array(labels, dtype=np.int64), np.array(split, dtype=np.uint8),
                       FER2013, str(path), rows=np.arange(len(labels)))


def _read_csv_rows(path: Path, reader, images: list, labels: list, split: list) -> None:
    """Parse and check the rows one at a time, appending to the lists (the file is never held whole)."""
    header = next(reader, None)
    if header is None:
        raise DataError(f"{path}: empty file: expected a header line 'emotion,pixels,Usage'")
    cols = [h.strip() for h in header]
    missing = [c for c in ("emotion", "pixels", "Usage") if c not in cols]
    if missing:
        raise DataError(f"{path}: line 1: missing column {', '.join(missing)}: expected emotion,pixels,Usage, found {','.join(cols)}")
    ie, ip, iu = cols.index("emotion"), cols.index("pixels"), cols.index("Usage")
    for row in reader:
        line = reader.line_num
        if not row:
            continue
        if len(row) != len(cols):
            raise DataError(f"{path}: line {line}: expected {len(cols)} fields, found {len(row)}")
        where = f"{path}: line {line}"
        try:
            label = int(row[ie])
        except ValueError:
            raise DataError(f"{where}: emotion must be an integer 0..6, found {row[ie]!r}") from None
        if not 0 <= label < len(FER2013):
            raise DataError(f"{where}: emotion must be 0..6, found {label}")
        parts = row[ip].split()
        if len(parts) != SIDE * SIDE:
            raise DataError(f"{where}: expected {SIDE * SIDE} pixels, found {len(parts)}")
        try:
            px = np.array(parts, dtype=np.int32)
        except (ValueError, OverflowError):
            bad = next((p for p in parts if not p.isdigit() or int(p) > 255), parts[0])
            raise DataError(f"{where}: pixels must be integers 0..255, found {bad!r}") from None
        if px.min() < 0 or px.max() > 255:
            raise DataError(f"{where}: pixels must be integers 0..255, found {px.min() if px.min() < 0 else px.max()}")
        try:
            split.append(split_code(row[iu].strip()))
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None
        images.append(px.astype(np.uint8).reshape(SIDE, SIDE))
        labels.append(label)


# --- Kaggle image folders: train/<class>/*.jpg, test/<class>/*.jpg --------------------------------

_PREFIX = re.compile(r"^(Training|PublicTest|PrivateTest)_", re.IGNORECASE)


def class_folders(folder: Path, labels: tuple[str, ...]) -> tuple[list[tuple[Path, int]], list[str]]:
    """(class folder, class index) for each sub-folder of `folder`, read by canonical name (anger = angry), and
    notes: a folder of a class other label sets have but `labels` lack (contempt) is left out with a note;
    any other name is refused."""
    found, notes = [], []
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        if canonical(d.name) in labels:
            found.append((d, labels.index(canonical(d.name))))
        elif known_elsewhere(d.name, labels):
            notes.append(f"{d}: left out: {d.name} is not one of the classes ({', '.join(labels)})")
        else:
            raise DataError(f"{d}: unknown class folder {d.name!r}: expected one of {', '.join(labels)}")
    return found, notes


def read_folder(root: str | os.PathLike, label_set: LabelSet = FER2013) -> FaceDataset:
    """Kaggle's layout (train/<class>/, test/<class>/), or one folder of class folders (another dataset: every
    image is a test image). Class folders may use other datasets' names (anger, happiness, ...); a class the
    label set lacks but another has (contempt, for fer2013) is left out with a note."""
    root = Path(root)
    parts = {p.name.lower(): p for p in root.iterdir() if p.is_dir()} if root.is_dir() else {}
    if "train" not in parts and "test" not in parts:
        try:  # another dataset's folder of class folders: every image a test image
            flat = bool(parts) and bool(class_folders(root, label_set.labels)[0])
        except DataError:
            flat = False
        if not flat:
            raise DataError(f"{root}: expected sub-folders train/ and test/ with one folder per class, or one "
                            f"folder per class ({', '.join(label_set.labels)})")
        parts = {"test": root}
    images, labels, split, names = [], [], [], []
    notes = []
    for part in ("train", "test"):
        if part not in parts:
            continue
        unprefixed = 0
        found, left_out = class_folders(parts[part], label_set.labels)
        notes += left_out
        for class_dir, label in found:
            for f in sorted(class_dir.iterdir()):
                if f.name.startswith("."):
                    continue
                img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) if f.suffix.lower() in IMAGE_SUFFIXES else None
                if img is None:
                    raise DataError(f"{f}: not a readable image: expected {', '.join(sorted(IMAGE_SUFFIXES))}")
                if img.shape != (SIDE, SIDE):
                    img = cv2.resize(img, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
                m = _PREFIX.match(f.name)
                if m:
                    code = split_code(m.group(1))
                else:
                    code = 0 if part == "train" else 2
                    unprefixed += part == "test"
                images.append(img)
                labels.append(label)
                split.append(code)
                names.append(str(f.relative_to(root)))
        if unprefixed:
            notes.append(f"{unprefixed} test images carry no PublicTest_/PrivateTest_ prefix: counted as PrivateTest")
    if not labels:
        raise DataError(f"{root}: no images found under train/<class>/ or test/<class>/")
    return FaceDataset(np.stack(images), np.array(labels, dtype=np.int64), np.array(split, dtype=np.uint8),
                       label_set, str(root), names=np.array(names), notes=notes)


# --- FER+ relabels joined to FER2013 rows ---------------------------------------------------------

FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")


def read_ferplus(ferplus_csv: str | os.PathLike, fer2013: FaceDataset) -> FaceDataset:
    """FER+ majority labels (8 classes) for the FER2013 rows of `fer2013` (which must be in original order).

    Protocol: the label is the class with most votes (first on ties); rows whose majority is `unknown`
    or `NF` (not a face), and rows FER+ left unnamed, are dropped. `soft` holds the 8-class vote
    distribution of each kept row.
    """
    path = Path(ferplus_csv)
    if fer2013.rows is None:
        raise DataError(f"{fer2013.source}: FER+ needs FER2013 in its original row order (csv or npz), not image folders")
    votes, keep_rows, names = [], [], []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file: expected the fer2013new.csv header")
        cols = [h.strip() for h in header]
        missing = [c for c in ("Usage", "Image name", *FERPLUS_COLUMNS) if c not in cols]
        if missing:
            raise DataError(f"{path}: line 1: missing column {', '.join(missing)}")
        idx = [cols.index(c) for c in FERPLUS_COLUMNS]
        iname = cols.index("Image name")
        for i, row in enumerate(reader):
            if len(row) != len(cols):
                raise DataError(f"{path}: line {reader.line_num}: expected {len(cols)} fields, found {len(row)}")
            if not row[iname].strip():
                continue
            try:
                v = [int(row[j]) for j in idx]
            except ValueError:
                raise DataError(f"{path}: line {reader.line_num}: vote counts must be integers") from None
            votes.append(v)
            keep_rows.append(i)
            names.append(row[iname].strip())
    if not votes:
        raise DataError(f"{path}: no labelled rows")
    votes = np.array(votes, dtype=np.float32)
    rows = np.array(keep_rows)
    majority = votes.argmax(axis=1)
    ok = majority < len(FERPLUS)  # drop unknown (8) and NF (9) majorities
    votes8 = votes[ok, :len(FERPLUS)]
    total = votes8.sum(axis=1, keepdims=True)
    # Join on the original row index; fer2013 may be in any order, but must hold every row FER+ labels.
    order = np.argsort(fer2013.rows, kind="stable")
    at = np.minimum(np.searchsorted(fer2013.rows, rows[ok], sorter=order), len(order) - 1)
    pos = order[at]
    missing = np.flatnonzero(fer2013.rows[pos] != rows[ok])
    if len(missing):
        raise DataError(f"{path}: line {rows[ok][missing[0]] + 2} labels FER2013 row {rows[ok][missing[0]]}, "
                        f"which {fer2013.source} ({len(fer2013)} faces) does not hold: join FER+ to the whole FER2013")
    return FaceDataset(fer2013.images[pos], majority[ok].astype(np.int64), fer2013.split[pos], FERPLUS,
                       f"{path} + {fer2013.source}", names=np.array(names)[ok],
                       soft=(votes8 / np.maximum(total, 1)).astype(np.float32), rows=rows[ok])


def ferplus_csv(folder: str | os.PathLike) -> Path:
    """Where a data folder keeps the FER+ relabels: ferplus/fer2013new.csv beside fer2013.npz (or .csv)."""
    return Path(folder) / "ferplus" / "fer2013new.csv"


def ferplus_majority_as(ferplus: FaceDataset, labels) -> FaceDataset:
    """The FER+ faces whose majority is one of `labels` (a model's classes, e.g. FER2013's seven: contempt
    has no FER2013 id), labelled by their index in `labels`: FER+'s second opinion in a model's own terms."""
    to_model = np.array([list(labels).index(n) if n in labels else -1 for n in ferplus.label_set.labels])
    keep = ferplus.take(np.flatnonzero(to_model[ferplus.labels] >= 0))
    keep.labels, keep.label_set = to_model[keep.labels], LabelSet("ferplus-majority", tuple(labels))
    return keep


# --- one entry point -------------------------------------------------------------------------------

def load_dataset(path: str | os.PathLike, label_set: str = "fer2013") -> FaceDataset:
    """Read FER2013 from a .npz, a .csv, an image-folder root, or a data folder holding fer2013.npz
    (and ferplus/fer2013new.csv when label_set='ferplus')."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder: expected fer2013.csv, fer2013.npz or an image-folder root")
    if path.is_dir():
        for name in ("fer2013.npz", "fer2013.csv"):
            if (path / name).is_file():
                base = load_dataset(path / name)
                break
        else:
            base = read_folder(path)
        if label_set == "ferplus":
            return read_ferplus(ferplus_csv(path) if (path / "ferplus").is_dir() else path / "fer2013new.csv", base)
    elif path.suffix.lower() == ".npz":
        base = read_npz(path)
    elif path.suffix.lower() == ".csv":
        base = read_csv(path)
    else:
        raise DataError(f"{path}: unknown dataset format {path.suffix!r}: expected .csv, .npz or an image-folder root")
    if label_set == "ferplus":
        raise DataError(f"{path}: FER+ labels need a data folder holding fer2013.npz (or .csv) and ferplus/fer2013new.csv")
    if label_set != "fer2013":
        raise DataError(f"unknown label set {label_set!r}: expected fer2013 or ferplus")
    return base


def default_data_dir() -> Path | None:
    """The data folder named by $FER_EDGE_DATA, if set."""
    value = os.environ.get(DATA_ENV)
    return Path(value) if value else None


def read_photo_labels(folder: Path, labels: tuple[str, ...], limit: int | None) -> list[tuple[Path, int]]:
    """(photo, class) from labels.csv (file,label rows), or from class folders (folder/<class>/*.jpg) when
    there is none; other datasets' class names are understood, a class the model lacks is left out."""
    path = folder / "labels.csv"
    if not path.is_file():
        return _class_folder_photos(folder, labels, limit)
    out = []
    for i, photo, label in labels_csv(folder, limit):
        if label not in labels:
            raise DataError(f"{path} line {i}: label {label!r} is not one of the model's ({', '.join(labels)})")
        out.append((photo, labels.index(label)))
    return out


def labels_csv(folder: Path, limit: int | None = None) -> list[tuple[int, Path, str]]:
    """(line, photo, canonical class name) of the first `limit` rows of folder/labels.csv (file,label columns);
    a path outside the folder is refused."""
    path = folder / "labels.csv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"file", "label"} <= set(rows[0]):
        raise DataError(f"{path}: expected columns file and label, found {', '.join(rows[0]) if rows else 'no rows'}")
    out = []
    for i, row in enumerate(rows[:limit] if limit else rows, start=2):
        name = os.path.normpath(row["file"] or ".")
        if os.path.isabs(name) or name == "." or name.split(os.sep)[0] == "..":  # a photo of this folder, no other
            raise DataError(f"{path} line {i}: expected a photo's path inside {folder}, found {row['file']!r}")
        out.append((i, folder / name, canonical(row["label"])))
    return out


def _class_folder_photos(folder: Path, labels: tuple[str, ...], limit: int | None) -> list[tuple[Path, int]]:
    found = class_folders(folder, labels)[0] if folder.is_dir() else []
    if not found:
        raise DataError(f"{folder}: expected a labels.csv of file,label rows or one folder per class "
                        f"({', '.join(labels)}), found neither")
    out = [(f, label) for d, label in found for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    return out[:limit] if limit else out


# --- any labelled faces in a model's own classes -----------------------------------------------------

def in_model_classes(ds: FaceDataset, labels: tuple[str, ...]) -> FaceDataset:
    """The faces relabelled by the model's class indices, compared by canonical name: faces of a class the model
    lacks are left out, and a note says which classes are scored when the two lists differ. `scored` (the
    model's indices the data has) is where `restrict` looks for a face's predicted class."""
    own = tuple(canonical(n) for n in ds.label_set.labels)
    if own == tuple(labels):
        return ds
    to_model = np.array([labels.index(n) if n in labels else -1 for n in own], dtype=np.int64)
    keep = ds.take(np.flatnonzero(to_model[ds.labels] >= 0))
    keep.labels = to_model[keep.labels]
    keep.label_set = LabelSet(f"{ds.label_set.name} as the model's", tuple(labels))
    keep.soft = None
    shared = [n for n in labels if n in own]
    if not shared:
        raise DataError(f"{ds.source}: the data's classes ({', '.join(own)}) and the model's ({', '.join(labels)}) "
                        "share none: nothing to score")
    if len(shared) == len(labels) == len(own):  # the same classes in another order: relabelled, nothing to say
        return keep
    keep.scored = tuple(labels.index(n) for n in shared)
    dropped = [f"{n} ({int(np.sum(ds.labels == i))} faces)" for i, n in enumerate(own) if n not in labels]
    missing = [n for n in labels if n not in own]
    keep.notes = list(ds.notes) + [
        f"scored on the {len(shared)} classes the model and the data share ({', '.join(shared)})"
        + (f"; the data's {', '.join(dropped)} left out" if dropped else "")
        + (f"; the model's {', '.join(missing)} never predicted in scoring" if missing else "")]
    return keep


def restrict(probs: np.ndarray, scored: tuple[int, ...] | None) -> np.ndarray:
    """Probabilities with the classes outside `scored` zeroed, so a face's top class is one the data can label."""
    if scored is None or len(scored) == probs.shape[1]:
        return probs
    out = np.zeros_like(probs)
    out[:, scored] = probs[:, scored]
    return out


def list_photos(folder: Path) -> list[tuple[Path, str]]:
    """(photo, class name) from a folder of photos: its labels.csv (file,label rows; a file outside the folder is
    refused) or one sub-folder per class, any names."""
    if (folder / "labels.csv").is_file():
        return [(photo, label) for _, photo, label in labels_csv(folder)]
    classes = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    out = [(f, canonical(d.name)) for d in classes for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not out:
        raise DataError(f"{folder}: expected a labels.csv of file,label rows or one folder of photos per class, "
                        "found neither")
    return out
