"""FER2013 readers: the CSV, the image-folder layout and the npz agree; FER+ counts; malformed input.

The CSV and folder layouts are generated here from the npz (never stored in the repository). The whole
dataset is written once per session (session-scoped fixtures, `slow`); the malformed-input tests build
tiny synthetic files and need no data.
"""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_edge.runtime.data.datasets import (
    SPLITS, FaceDataset, load_dataset, read_csv, read_ferplus, read_folder, read_npz,
)
from fer_edge.runtime.core.errors import DataError
from fer_edge.runtime.model.labels import FER2013, FERPLUS

# From ../shared/data/README.md (the official split), classes in FER2013 id order 0..6.
SPLIT_SIZES = {"Training": 28_709, "PublicTest": 3_589, "PrivateTest": 3_589}
CLASS_COUNTS = {
    "Training": (3_995, 436, 4_097, 7_215, 4_830, 3_171, 4_965),
    "PublicTest": (467, 56, 496, 895, 653, 415, 607),
    "PrivateTest": (491, 55, 528, 879, 594, 416, 626),
}
# FER+ majority labels after dropping unknown/NF majorities and unnamed rows, as observed on
# ../shared/data/ferplus/fer2013new.csv (label order: neutral happy surprise sad angry disgust fear contempt).
# Recomputed independently from the csv in test_ferplus_counts_per_split.
# 35,488 faces kept of 35,887: 173 rows FER+ left unnamed, 226 with an unknown/NF majority.
FERPLUS_COUNTS = {
    "Training": (10_309, 7_528, 3_562, 3_515, 2_467, 191, 652, 165),  # 28,389
    "PublicTest": (1_335, 899, 456, 412, 319, 34, 74, 24),  # 3,553
    "PrivateTest": (1_262, 928, 444, 444, 325, 23, 93, 27),  # 3,546
}
# JPEG (OpenCV default quality 95) changes grey levels a little: mean absolute error per face stays small.
JPEG_MEAN_ABS_TOL = 3.0


# --- writers for the user-facing layouts -----------------------------------------------------------

_PIXEL_TEXT = np.array([f"{i} ".encode() for i in range(256)], dtype="S4")


def write_fer2013_csv(path: Path, ds: FaceDataset, index=None) -> Path:
    """Kaggle fer2013.csv: `emotion,pixels,Usage`, pixels as 2,304 space-separated integers."""
    index = np.arange(len(ds)) if index is None else np.asarray(index)
    with open(path, "wb") as f:
        f.write(b"emotion,pixels,Usage\n")
        for chunk in np.array_split(index, max(1, len(index) // 2048)):
            text = _PIXEL_TEXT[ds.images[chunk].reshape(len(chunk), -1)]  # (n, 2304) padded with NUL
            for i, row in zip(chunk, text):
                pixels = row.tobytes().replace(b"\0", b"")[:-1]
                f.write(b"%d,%s,%s\n" % (ds.labels[i], pixels, SPLITS[ds.split[i]].encode()))
    return path


def write_fer2013_folder(root: Path, ds: FaceDataset, index=None, relpath=None) -> Path:
    """Kaggle image folders: train/<class>/Training_*.jpg, test/<class>/{PublicTest,PrivateTest}_*.jpg."""
    index = np.arange(len(ds)) if index is None else np.asarray(index)
    made = set()
    for i in index:
        rel = ds.names[i] if relpath is None else relpath(i)
        p = root / rel
        if p.parent not in made:
            p.parent.mkdir(parents=True, exist_ok=True)
            made.add(p.parent)
        assert cv2.imwrite(str(p), ds.images[i]), p
    return root


@pytest.fixture(scope="session")
def full_csv(fer2013, tmp_path_factory):
    path = write_fer2013_csv(tmp_path_factory.mktemp("csv") / "fer2013.csv", fer2013)
    return read_csv(path)


@pytest.fixture(scope="session")
def full_folder(fer2013, tmp_path_factory):
    root = write_fer2013_folder(tmp_path_factory.mktemp("folders"), fer2013)
    return read_folder(root)


def _counts(ds: FaceDataset) -> dict[str, tuple[int, ...]]:
    out = {}
    for code, name in enumerate(SPLITS):
        labels = ds.labels[ds.split == code]
        out[name] = tuple(int(c) for c in np.bincount(labels, minlength=len(ds.label_set)))
    return out


# --- the npz itself ---------------------------------------------------------------------------------

@pytest.mark.data
def test_npz_split_and_class_counts(fer2013):
    assert fer2013.images.shape == (35_887, 48, 48) and fer2013.images.dtype == np.uint8
    assert fer2013.labels.dtype == np.int64 and fer2013.label_set is FER2013
    assert {s: int(np.sum(fer2013.split == c)) for c, s in enumerate(SPLITS)} == SPLIT_SIZES
    assert _counts(fer2013) == CLASS_COUNTS
    assert fer2013.subset("PublicTest").class_counts() == dict(zip(FER2013.labels, CLASS_COUNTS["PublicTest"]))


# --- the whole dataset through the CSV and the folder layout -----------------------------------------

@pytest.mark.data
@pytest.mark.slow
def test_full_csv_matches_npz(fer2013, full_csv):
    assert len(full_csv) == len(fer2013)
    assert full_csv.images.dtype == np.uint8
    assert np.array_equal(full_csv.images, fer2013.images)  # identical pixels, same row order
    assert np.array_equal(full_csv.labels, fer2013.labels)
    assert np.array_equal(full_csv.split, fer2013.split)
    assert np.array_equal(full_csv.rows, np.arange(len(fer2013)))
    assert _counts(full_csv) == CLASS_COUNTS


@pytest.mark.data
@pytest.mark.slow
def test_full_folder_matches_npz(fer2013, full_folder):
    assert len(full_folder) == len(fer2013)
    assert full_folder.notes == []  # every test image carries its PublicTest_/PrivateTest_ prefix
    where = {name: i for i, name in enumerate(fer2013.names.tolist())}
    order = np.array([where[n] for n in full_folder.names.tolist()])  # the folder is read in sorted order
    assert len(set(order.tolist())) == len(fer2013)
    assert np.array_equal(full_folder.labels, fer2013.labels[order])
    assert np.array_equal(full_folder.split, fer2013.split[order])
    assert _counts(full_folder) == CLASS_COUNTS
    err = np.abs(full_folder.images.astype(np.int16) - fer2013.images[order]).mean(axis=(1, 2))
    assert err.max() < JPEG_MEAN_ABS_TOL, f"face {full_folder.names[err.argmax()]} differs by {err.max():.2f}"


@pytest.mark.data
@pytest.mark.slow
def test_full_csv_via_load_dataset_and_ferplus_join(fer2013, full_csv, data_dir):
    """FER+ joined to the CSV reader gives the same faces as FER+ joined to the npz."""
    plus_csv = read_ferplus(data_dir / "ferplus" / "fer2013new.csv", full_csv)
    plus_npz = read_ferplus(data_dir / "ferplus" / "fer2013new.csv", fer2013)
    assert np.array_equal(plus_csv.images, plus_npz.images)
    assert np.array_equal(plus_csv.labels, plus_npz.labels)


# --- fast versions on a subset (run without -m 'not slow' too) ---------------------------------------

def _sample(ds: FaceDataset, per_split: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(ds.split == c), per_split, replace=False)
                                   for c in range(3)]))


@pytest.mark.data
def test_csv_subset_matches_npz(fer2013, tmp_path):
    idx = _sample(fer2013)
    ds = load_dataset(write_fer2013_csv(tmp_path / "fer2013.csv", fer2013, idx))
    assert np.array_equal(ds.images, fer2013.images[idx])
    assert np.array_equal(ds.labels, fer2013.labels[idx])
    assert np.array_equal(ds.split, fer2013.split[idx])


@pytest.mark.data
def test_folder_subset_case_insensitive_classes(fer2013, tmp_path):
    idx = _sample(fer2013)
    # Upper-case split and class folders ("TRAIN/Happy") are accepted.
    def rel(i):
        part, cls, name = fer2013.names[i].split("/")
        return f"{part.upper()}/{cls.capitalize()}/{name}"

    ds = load_dataset(write_fer2013_folder(tmp_path, fer2013, idx, rel))
    truth = {fer2013.names[i].split("/")[-1]: i for i in idx}
    order = np.array([truth[n.split("/")[-1]] for n in ds.names.tolist()])
    assert sorted(order.tolist()) == idx.tolist()
    assert np.array_equal(ds.labels, fer2013.labels[order])
    assert np.array_equal(ds.split, fer2013.split[order])


@pytest.mark.data
def test_folder_without_prefixes_counts_as_private_test(fer2013, tmp_path):
    idx = _sample(fer2013, per_split=10)
    def rel(i):  # drop the Training_/PublicTest_/PrivateTest_ prefix
        part, cls, name = fer2013.names[i].split("/")
        return f"{part}/{cls}/{name.split('_', 1)[1]}"

    ds = read_folder(write_fer2013_folder(tmp_path, fer2013, idx, rel))
    assert np.bincount(ds.split, minlength=3).tolist() == [10, 0, 20]  # test/ -> PrivateTest
    assert len(ds.notes) == 1 and "20 test images" in ds.notes[0] and "PrivateTest" in ds.notes[0]
    assert sorted(ds.labels.tolist()) == sorted(fer2013.labels[idx].tolist())


# --- FER+ -------------------------------------------------------------------------------------------

def _ferplus_counts_by_hand(path: Path) -> dict[str, tuple[int, ...]]:
    """Independent re-count: majority (first on ties) over the 10 vote columns; drop unknown/NF and unnamed."""
    classes = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
    counts = {s: [0] * 8 for s in SPLITS}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if not row["Image name"].strip():
                continue
            votes = [int(row[c]) for c in classes + ["unknown", "NF"]]
            best = 0
            for j in range(1, len(votes)):
                if votes[j] > votes[best]:
                    best = j
            if best < 8:
                counts[row["Usage"]][best] += 1
    return {s: tuple(c) for s, c in counts.items()}


@pytest.mark.data
def test_ferplus_counts_per_split(fer2013, data_dir):
    path = data_dir / "ferplus" / "fer2013new.csv"
    plus = read_ferplus(path, fer2013)
    assert plus.label_set is FERPLUS
    by_hand = _ferplus_counts_by_hand(path)
    assert _counts(plus) == by_hand  # by_hand splits by FER+'s own Usage column, plus by the npz's split
    for split, pinned in FERPLUS_COUNTS.items():
        assert by_hand[split] == pinned, (split, by_hand[split])
    # The join keeps each face's official split and its pixels.
    assert np.array_equal(plus.split, fer2013.split[plus.rows])
    assert np.array_equal(plus.images, fer2013.images[plus.rows])
    # Soft labels: 8-class vote distributions whose argmax is the hard label.
    assert plus.soft.shape == (len(plus), 8)
    assert np.allclose(plus.soft.sum(axis=1), 1.0)
    assert np.array_equal(plus.soft.argmax(axis=1), plus.labels)
    assert len(plus) == 35_488
    assert len(load_dataset(data_dir, label_set="ferplus")) == len(plus)


@pytest.mark.data
def test_ferplus_join_uses_row_index_not_position(fer2013, data_dir):
    """FER2013 in another order still joins row by row; a subset lacking labelled rows is refused."""
    path = data_dir / "ferplus" / "fer2013new.csv"
    plus = read_ferplus(path, fer2013)
    flipped = read_ferplus(path, fer2013.take(np.arange(len(fer2013))[::-1]))
    assert np.array_equal(flipped.rows, plus.rows)
    assert np.array_equal(flipped.images, plus.images) and np.array_equal(flipped.split, plus.split)
    with pytest.raises(DataError, match=r"fer2013new.csv: line \d+ labels FER2013 row \d+"):
        read_ferplus(path, fer2013.take(np.arange(100, len(fer2013))))


@pytest.mark.data
def test_ferplus_majority_in_a_models_own_classes(fer2013, data_dir):
    """FER+'s majority relabelled into a model's class order; contempt (no FER2013 id) left out."""
    from fer_edge.runtime.data.datasets import ferplus_majority_as
    from fer_edge.runtime.model.labels import FER2013

    plus = read_ferplus(data_dir / "ferplus" / "fer2013new.csv", fer2013)
    mine = ferplus_majority_as(plus, FER2013.labels)
    named = np.array(plus.label_set.labels)[plus.labels]
    assert len(mine) == int((named != "contempt").sum()) < len(plus)
    assert list(np.array(FER2013.labels)[mine.labels]) == list(named[named != "contempt"])
    assert mine.label_set.labels == FER2013.labels and np.array_equal(mine.rows, plus.rows[named != "contempt"])


# --- malformed input: one clear DataError naming the file and the line / entry ---------------------

GOOD_PIXELS = " ".join(["128"] * 2304)


def _csv(tmp_path, *lines: str, name="fer2013.csv") -> Path:
    p = tmp_path / name
    p.write_text("".join(line + "\n" for line in lines))
    return p


def test_csv_good_rows_read(tmp_path):
    p = _csv(tmp_path, "emotion,pixels,Usage", f"3,{GOOD_PIXELS},Training", f"6,{GOOD_PIXELS},PrivateTest")
    ds = read_csv(p)
    assert ds.labels.tolist() == [3, 6] and ds.split.tolist() == [0, 2]
    assert ds.images.shape == (2, 48, 48) and int(ds.images.max()) == 128


@pytest.mark.parametrize("row, what", [
    (f"3,{' '.join(['7'] * 2303)},Training", "2304 pixels, found 2303"),
    (f"3,{GOOD_PIXELS[:-3]}1.5,Training", "'1.5'"),
    (f"3,{GOOD_PIXELS[:-3]}abc,Training", "'abc'"),
    (f"3,{GOOD_PIXELS[:-3]}256,Training", "256"),
    (f"9,{GOOD_PIXELS},Training", "found 9"),
    (f"x,{GOOD_PIXELS},Training", "'x'"),
    (f"3,{GOOD_PIXELS},Validation", "Validation"),
    (f"3,{GOOD_PIXELS}", "expected 3 fields, found 2"),
], ids=["2303-pixels", "float-pixel", "text-pixel", "pixel-256", "label-9", "label-text", "bad-usage", "short-row"])
def test_csv_bad_row_names_file_and_line(tmp_path, row, what):
    p = _csv(tmp_path, "emotion,pixels,Usage", f"0,{GOOD_PIXELS},Training", row)
    with pytest.raises(DataError) as exc:
        read_csv(p)
    msg = str(exc.value)
    assert str(p) in msg and "line 3" in msg and what in msg, msg
    assert "\n" not in msg


def test_csv_missing_column(tmp_path):
    p = _csv(tmp_path, "emotion,pixels", f"0,{GOOD_PIXELS}")
    with pytest.raises(DataError, match=r"line 1: missing column Usage") as exc:
        read_csv(p)
    assert str(p) in str(exc.value)


def test_csv_empty_file(tmp_path):
    p = tmp_path / "fer2013.csv"
    p.write_text("")
    with pytest.raises(DataError, match="empty file") as exc:
        read_csv(p)
    assert str(p) in str(exc.value)


def test_csv_header_only(tmp_path):
    p = _csv(tmp_path, "emotion,pixels,Usage")
    with pytest.raises(DataError, match="no data rows"):
        read_csv(p)


def test_csv_with_byte_order_mark(tmp_path):
    """Spreadsheet tools save CSV with a UTF-8 BOM; the header must still be recognised."""
    p = tmp_path / "fer2013.csv"
    p.write_bytes(b"\xef\xbb\xbfemotion,pixels,Usage\n" + f"2,{GOOD_PIXELS},PublicTest\n".encode())
    assert read_csv(p).split.tolist() == [1]


def test_csv_binary_garbage(tmp_path):
    p = tmp_path / "fer2013.csv"
    p.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataError) as exc:
        read_csv(p)
    assert str(p) in str(exc.value)


def _folder(tmp_path, files: dict[str, np.ndarray | bytes]) -> Path:
    for rel, content in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            assert cv2.imwrite(str(p), content)
    return tmp_path


FACE = np.full((48, 48), 100, np.uint8)


def test_folder_unknown_class_name(tmp_path):
    root = _folder(tmp_path, {"train/happy/Training_1.jpg": FACE, "train/joyful/Training_2.jpg": FACE})
    with pytest.raises(DataError, match="unknown class folder 'joyful'") as exc:
        read_folder(root)
    assert str(root / "train" / "joyful") in str(exc.value)


def test_folder_non_image_file(tmp_path):
    root = _folder(tmp_path, {"train/happy/Training_1.jpg": FACE, "train/happy/notes.txt": b"hello"})
    with pytest.raises(DataError, match="not a readable image") as exc:
        read_folder(root)
    assert str(root / "train" / "happy" / "notes.txt") in str(exc.value)


def test_folder_corrupt_jpeg(tmp_path):
    root = _folder(tmp_path, {"train/sad/Training_1.jpg": b"\xff\xd8\xff\xe0 this is no jpeg"})
    with pytest.raises(DataError, match="not a readable image") as exc:
        read_folder(root)
    assert "Training_1.jpg" in str(exc.value)


def test_folder_without_split_folders_or_classes(tmp_path):
    (tmp_path / "holiday").mkdir()
    with pytest.raises(DataError, match="train/ and test/ with one folder per class, or one folder per class"):
        read_folder(tmp_path)


def test_another_datasets_class_folders(tmp_path):
    """A kept-aside dataset as one folder of class folders named its own way (CK+: anger, sadness, contempt):
    every image is a test image, the names map to FER2013's classes, contempt is left out with a note."""
    root = _folder(tmp_path, {"anger/S010_004.png": FACE, "Sadness/S011_002.png": FACE, "happy/a.jpg": FACE,
                              "contempt/S138_008.png": FACE})
    ds = load_dataset(root)
    assert sorted(ds.labels.tolist()) == [0, 3, 4] and set(ds.split.tolist()) == {2}
    assert sorted(ds.names.tolist()) == ["Sadness/S011_002.png", "anger/S010_004.png", "happy/a.jpg"]
    assert any("contempt" in n and "left out" in n for n in ds.notes)


def test_folder_resizes_and_greys_other_images(tmp_path):
    big = np.zeros((96, 96, 3), np.uint8)
    big[:, :, 2] = 255  # red in BGR
    root = _folder(tmp_path, {"test/angry/PublicTest_1.png": big})
    ds = read_folder(root)
    assert ds.images.shape == (1, 48, 48) and ds.split.tolist() == [1] and ds.labels.tolist() == [0]
    assert abs(int(ds.images[0, 24, 24]) - 76) <= 1  # BT.601 grey of pure red


def _npz(tmp_path, **arrays) -> Path:
    p = tmp_path / "fer2013.npz"
    np.savez(p, **arrays)
    return p


GOOD_NPZ = dict(pixels=np.zeros((3, 48, 48), np.uint8), emotion=np.array([0, 3, 6], np.uint8),
                usage=np.array([0, 1, 2], np.uint8))


def test_npz_without_pixels(tmp_path):
    p = _npz(tmp_path, emotion=GOOD_NPZ["emotion"], usage=GOOD_NPZ["usage"])
    with pytest.raises(DataError, match="missing array 'pixels'") as exc:
        read_npz(p)
    assert str(p) in str(exc.value)


def test_npz_good_and_bad_entries(tmp_path):
    assert read_npz(_npz(tmp_path, **GOOD_NPZ)).split.tolist() == [0, 1, 2]
    bad = dict(GOOD_NPZ, emotion=np.array([0, 9, 6], np.uint8))
    with pytest.raises(DataError, match=r"entry 1: label 9"):
        read_npz(_npz(tmp_path, **bad))
    bad = dict(GOOD_NPZ, pixels=np.zeros((3, 48, 47), np.uint8))
    with pytest.raises(DataError, match=r"\(N, 48, 48\)"):
        read_npz(_npz(tmp_path, **bad))


def test_npz_with_object_array_is_refused_without_unpickling(tmp_path):
    bad = dict(GOOD_NPZ, pixels=np.array([FACE, "x", None], dtype=object))
    p = _npz(tmp_path, **bad)
    with pytest.raises(DataError) as exc:
        read_npz(p)
    assert str(p) in str(exc.value)


def test_npz_not_an_npz(tmp_path):
    p = tmp_path / "fer2013.npz"
    p.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        read_npz(p)


def test_load_dataset_unknown_inputs(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_dataset(tmp_path / "missing.csv")
    (tmp_path / "faces.parquet").write_bytes(b"")
    with pytest.raises(DataError, match="unknown dataset format"):
        load_dataset(tmp_path / "faces.parquet")


@pytest.mark.parametrize("name", ["../x.jpg", "a/../../x.jpg", "/etc/passwd", ""])
def test_labels_csv_rows_outside_their_folder_are_refused(tmp_path, name):
    from fer_edge.runtime.data.datasets import read_photo_labels

    (tmp_path / "labels.csv").write_text(f"file,label\nin/a.jpg,happy\n{name},happy\n")
    with pytest.raises(DataError, match=r"labels.csv line 3: expected a photo's path inside"):
        read_photo_labels(tmp_path, FER2013.labels, None)
    (tmp_path / "labels.csv").write_text("file,label\nin/a.jpg,happy\n./b.jpg,sad\n")
    assert read_photo_labels(tmp_path, FER2013.labels, None) == [(tmp_path / "in" / "a.jpg", 3),
                                                                (tmp_path / "b.jpg", 4)]
