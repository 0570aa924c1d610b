"""device_train (issue 30): the pack that carries FER2013 to a GPU machine, and the schedule sized to minutes.

The end-to-end run (wheels, JAX, the alarm) was dry-run on the CPU and is recorded in
docs/training-on-a-gpu.md; these check the parts a wrong edit would break silently.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from fer_edge.training import device_train

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def small_npz(fer2013, tmp_path_factory):
    keep = np.sort(np.concatenate([np.flatnonzero(fer2013.split == s)[:n] for s, n in {0: 300, 1: 80, 2: 50}.items()]))
    path = tmp_path_factory.mktemp("data") / "fer2013.npz"
    np.savez(path, pixels=fer2013.images[keep], emotion=fer2013.labels[keep].astype(np.uint8),
             usage=fer2013.split[keep].astype(np.uint8))
    return path, fer2013.images[keep], fer2013.split[keep], fer2013.labels[keep]


@pytest.mark.parametrize("quality", [100, 85])
def test_pack_keeps_training_and_public_test_faces(small_npz, tmp_path, quality):
    path, images, split, labels = small_npz
    packed = device_train.pack(str(path), tmp_path / "faces.npz", quality=quality, log=lambda m: None)
    back = np.load(device_train.unpack(packed, tmp_path / "work" / "fer2013.npz"))
    kept = split != 2  # PrivateTest stays home
    assert back["pixels"].shape == (kept.sum(), 48, 48) and back["pixels"].dtype == np.uint8
    assert np.array_equal(back["usage"], split[kept]) and np.array_equal(back["emotion"], labels[kept])
    err = np.abs(back["pixels"].astype(int) - images[kept]).mean()
    if quality == 100:
        assert err == 0  # lossless WebP
    else:
        assert 0 < err < 4  # about 2 grey levels at quality 85
        assert packed.stat().st_size < 0.5 * images[kept].nbytes


def test_pack_refuses_to_overwrite(small_npz, tmp_path):
    (tmp_path / "faces.npz").write_text("keep me")
    with pytest.raises(Exception, match="--force"):
        device_train.pack(str(small_npz[0]), tmp_path / "faces.npz", log=lambda m: None)
    assert (tmp_path / "faces.npz").read_text() == "keep me"


def test_schedule_fits_the_minutes_left():
    assert device_train.epochs_for(seconds_left=600, epoch_seconds=7, done=2, most=400) == 2 + 85
    assert device_train.epochs_for(seconds_left=600, epoch_seconds=1, done=2, most=400) == 400
    assert device_train.epochs_for(seconds_left=-5, epoch_seconds=7, done=2, most=400) == 2


def test_extend_sets_epochs_and_patience_only(tmp_path):
    state = {"epoch": 2, "best": 0.3, "best_epoch": 1, "config": {"epochs": 2, "patience": 2, "lr": 0.002}}
    (tmp_path / "state.json").write_text(json.dumps(state))
    device_train._extend(tmp_path, 50)
    saved = json.loads((tmp_path / "state.json").read_text())
    assert saved["config"] == {"epochs": 50, "patience": 50, "lr": 0.002}
    assert {k: saved[k] for k in ("epoch", "best", "best_epoch")} == {"epoch": 2, "best": 0.3, "best_epoch": 1}
