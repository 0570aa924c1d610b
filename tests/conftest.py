"""Shared test fixtures. Tests that need FER2013 find it through $FER_EDGE_DATA (CI: ../shared/data)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _data_dir() -> Path | None:
    value = os.environ.get("FER_EDGE_DATA")
    return Path(value).resolve() if value else None  # absolute: tests run commands from other folders


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = _data_dir()
    if d is None:
        pytest.skip("FER_EDGE_DATA is not set: point it at the folder holding fer2013.npz (CI uses ../shared/data)")
    if not (d / "fer2013.npz").is_file():
        pytest.skip(f"FER_EDGE_DATA={d} holds no fer2013.npz")
    return d


@pytest.fixture(scope="session")
def kernel_paths() -> tuple[str, ...]:
    """LiteRT kernel paths this machine runs: both, or what FER_EDGE_KERNELS names (comma-separated);
    CI's emulated aarch64 leg sets 'builtin' because XNNPACK cannot start under qemu-user."""
    from fer_edge.convert.cli import parse_kernel_paths
    from fer_edge.convert.parity import KERNEL_PATHS

    value = os.environ.get("FER_EDGE_KERNELS")
    return parse_kernel_paths(value) if value else KERNEL_PATHS


@pytest.fixture(scope="session")
def fer2013(data_dir):
    from fer_edge.runtime.data.datasets import read_npz

    return read_npz(data_dir / "fer2013.npz")


@pytest.fixture(scope="session")
def small_npz(fer2013, tmp_path_factory):
    """A factory: {split code: n} -> a FER2013 .npz of the first n faces of each split, in row order."""
    import numpy as np

    def make(splits: dict) -> Path:
        keep = np.sort(np.concatenate([np.flatnonzero(fer2013.split == s)[:n] for s, n in splits.items()]))
        path = tmp_path_factory.mktemp("data") / "fer2013.npz"
        np.savez(path, pixels=fer2013.images[keep], emotion=fer2013.labels[keep].astype(np.uint8),
                 usage=fer2013.split[keep].astype(np.uint8))
        return path
    return make


@pytest.fixture(scope="session")
def samples_dir(data_dir) -> Path:
    d = data_dir / "samples"
    if not d.is_dir():
        pytest.skip(f"{d} is missing: the sample photos and video are needed")
    return d


@pytest.fixture(scope="session")
def tfeid_dev(data_dir) -> Path:
    """The labelled colour photos (labels.csv: file,label) of the data folder's tfeid-dev/."""
    p = data_dir / "tfeid-dev"
    if not (p / "labels.csv").is_file():
        pytest.skip(f"{p}/labels.csv is missing: the tfeid-dev photos are needed")
    return p


@pytest.fixture(scope="session")
def blazeface_model(data_dir) -> Path:
    p = data_dir.parent / "models" / "face_detection_short_range.tflite"
    if not p.is_file():
        pytest.skip(f"no BlazeFace model at {p}")
    return p


@pytest.fixture
def broker(tmp_path):
    """A Mosquitto broker on a free loopback port (tests/mqtt_broker.py), not yet started: `broker.start()`;
    stopped after the test. Skips with the reason when mosquitto or paho-mqtt is missing (.ci/run installs both)."""
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (pip install 'fer-edge[mqtt]')")
    from mqtt_broker import MOSQUITTO, Broker, free_port

    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (Debian: apt install mosquitto; .ci/run installs it)")
    b = Broker(tmp_path, free_port())
    try:
        yield b
    finally:
        b.stop()
