"""Calibration sets: stratified, seeded, saved with a manifest, refused when too small or missing a class."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fer_edge.calibration import (CalibrationSet, build_calibration, load_calibration, manifest_path,
                                  save_calibration, stratified_indices)
from fer_edge.runtime.data.datasets import FaceDataset
from fer_edge.runtime.core.errors import DataError, FerEdgeError
from fer_edge.runtime.model.labels import FER2013
from fer_edge.runtime.model.preprocess import PreprocessSpec, preprocess


def synthetic(per_class=(60, 5, 60, 60, 60, 60, 60), seed=1) -> FaceDataset:
    """Random 'faces' (no FER2013 needed); every class present in Training, a few in PublicTest."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(per_class)]).astype(np.int64)
    n = len(labels)
    split = np.zeros(n, np.uint8)
    split[::10] = 1
    return FaceDataset(rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), labels, split, FER2013, "synthetic")


def test_stratified_equal_shares_and_small_classes_filled_by_others():
    labels = np.array([0] * 100 + [1] * 3 + [2] * 100)
    idx = stratified_indices(labels, 3, 60, seed=0)
    counts = np.bincount(labels[idx], minlength=3)
    assert counts[1] == 3 and sorted(counts.tolist()) == [3, 28, 29]  # the small class is taken whole
    assert len(set(idx.tolist())) == 60
    assert np.array_equal(idx, stratified_indices(labels, 3, 60, seed=0))  # seeded
    assert not np.array_equal(idx, stratified_indices(labels, 3, 60, seed=1))


def test_build_uses_training_split_and_the_preprocessing_contract():
    ds = synthetic()
    spec = PreprocessSpec(size=(64, 64), value_range=(-1.0, 1.0))
    cs = build_calibration(ds, spec, size=140, seed=3)
    assert cs.inputs.shape == (140, 64, 64, 1) and cs.inputs.dtype == np.float32
    assert np.all(ds.split[cs.rows] == 0)  # Training only
    np.testing.assert_array_equal(cs.inputs, preprocess(ds.images[cs.rows], spec))
    m = cs.manifest
    assert m["seed"] == 3 and m["split"] == "Training" and m["size"] == 140
    assert sum(m["counts"].values()) == 140 and m["counts"]["disgust"] == int((ds.labels[ds.split == 0] == 1).sum())
    assert m["preprocess"] == spec.to_dict()


def test_save_load_roundtrip_with_manifest(tmp_path):
    cs = build_calibration(synthetic(), PreprocessSpec(), size=120)
    path = tmp_path / "cal.npz"
    mpath = save_calibration(cs, path)
    assert mpath == manifest_path(path) and mpath.is_file()
    manifest = json.loads(mpath.read_text())
    assert manifest["npz_sha256"] and manifest["counts"] == cs.manifest["counts"]
    back = load_calibration(path)
    np.testing.assert_array_equal(back.inputs, cs.inputs)
    assert back.manifest_sha256 == cs.manifest_sha256
    with np.load(path, allow_pickle=False) as z:  # plain arrays, no pickles
        assert set(z.files) == {"inputs", "labels", "rows"}
    with pytest.raises(FerEdgeError, match="already exists"):
        save_calibration(cs, path)


def test_too_few_or_missing_class_refused_unless_forced():
    ds = synthetic()
    with pytest.raises(DataError, match="too few"):
        build_calibration(ds, PreprocessSpec(), size=50)
    assert len(build_calibration(ds, PreprocessSpec(), size=50, force=True)) == 50
    no_disgust = synthetic(per_class=(60, 0, 60, 60, 60, 60, 60))
    with pytest.raises(DataError, match="no faces of class disgust"):
        build_calibration(no_disgust, PreprocessSpec(), size=200)
    assert build_calibration(no_disgust, PreprocessSpec(), size=200, force=True).manifest["forced"]


def test_wrong_shape_and_changed_file_refused(tmp_path):
    cs = build_calibration(synthetic(), PreprocessSpec(), size=120)
    with pytest.raises(DataError, match="shape"):
        cs.check_spec(PreprocessSpec(size=(64, 64)))
    with pytest.raises(DataError, match="values"):
        cs.check_spec(PreprocessSpec(value_range=(-1.0, 1.0)))
    path = tmp_path / "cal.npz"
    save_calibration(cs, path)
    np.savez(path, inputs=cs.inputs[:, :40], labels=cs.labels, rows=cs.rows)  # tampered after saving
    with pytest.raises(DataError, match="sha256"):
        load_calibration(path)
    manifest_path(path).unlink()
    with pytest.raises(DataError, match="manifest"):
        load_calibration(path)


def test_reader_protocol():
    cs = CalibrationSet(np.zeros((5, 48, 48, 1), np.float32), np.zeros(5, np.int64), np.arange(5))
    r = cs.reader("face", batch_size=2)
    feeds = [r.get_next() for _ in range(4)]
    assert [f["face"].shape[0] for f in feeds[:3]] == [2, 2, 1] and feeds[3] is None
    r.rewind()
    assert r.get_next()["face"].shape == (2, 48, 48, 1)
    assert len(list(cs.representative_dataset()())) == 5


@pytest.mark.data
def test_fer2013_training_set_is_balanced(fer2013):
    cs = build_calibration(fer2013, PreprocessSpec(), size=500, seed=0)
    counts = cs.manifest["counts"]
    assert sum(counts.values()) == 500 and min(counts.values()) >= 71
    assert cs.manifest["source_sha256"] and np.all(fer2013.split[cs.rows] == 0)
