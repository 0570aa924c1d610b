"""The JAX path (issue 30): fer-train, fer-eval's reports and fer-explain on Keras' JAX backend in an
environment without TensorFlow, and the full environment's fer-convert on the model that comes out.

A GPU machine may have JAX and no TensorFlow: this is what keeps training there possible. The JAX
environment is a separate venv (base install + keras + CPU jax + matplotlib, no TensorFlow; `.ci/run` builds
it as .venv-jax and points FER_EDGE_JAX_PYTHON at its python). Outside CI the tests skip, with the reason,
when no such venv is found; when FER_EDGE_JAX_PYTHON is set, a broken venv is a failure, never a skip.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fer_edge.runtime.model.metadata import read_metadata

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.data, pytest.mark.slow]
SPLITS = {0: 192, 1: 64, 2: 64}  # faces kept from Training, PublicTest, PrivateTest


def _jax_python() -> Path:
    named = os.environ.get("FER_EDGE_JAX_PYTHON")
    python = Path(named) if named else ROOT / ".venv-jax" / "bin" / "python"
    probe = "import importlib.util as u, sys; sys.exit(0 if u.find_spec('jax') and u.find_spec('keras') else 1)"
    ok = python.is_file() and subprocess.run([str(python), "-c", probe]).returncode == 0
    if not ok:
        if named:
            pytest.fail(f"FER_EDGE_JAX_PYTHON={named}: expected a python with keras and jax, found none")
        pytest.skip(f"no JAX environment: {python} with keras and jax (bash .ci/run builds it; or set FER_EDGE_JAX_PYTHON)")
    return python


@pytest.fixture(scope="module")
def jax_python() -> Path:
    return _jax_python()


def _run(python: Path, module: str, *args: str, backend: str | None = "jax", cwd=None):
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "PYTHONPATH")}
    env.update(JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2", **({"KERAS_BACKEND": backend} if backend else {}))
    return subprocess.run([str(python), "-m", module, *args], env=env, capture_output=True, text=True, cwd=cwd,
                          timeout=600)


@pytest.fixture(scope="module")
def small_data(fer2013, tmp_path_factory) -> Path:
    keep = np.sort(np.concatenate([np.flatnonzero(fer2013.split == s)[:n] for s, n in SPLITS.items()]))
    path = tmp_path_factory.mktemp("data") / "fer2013.npz"
    np.savez(path, pixels=fer2013.images[keep], emotion=fer2013.labels[keep].astype(np.uint8),
             usage=fer2013.split[keep].astype(np.uint8))
    return path


@pytest.fixture(scope="module")
def jax_run(jax_python, small_data, tmp_path_factory) -> Path:
    """fer-train on the JAX backend, 2 epochs of a tiny vgg-lite run, in the venv without TensorFlow."""
    out = tmp_path_factory.mktemp("jax") / "run"
    r = _run(jax_python, "fer_edge.training.train", "--data", str(small_data), "--arch", "vgg-lite", "--out", str(out),
             "--epochs", "2", "--limit", "128", "--batch-size", "64")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "backend jax" in r.stdout
    return out


def test_the_jax_environment_has_no_tensorflow(jax_python):
    probe = "import importlib.util as u, sys; sys.exit(1 if u.find_spec('tensorflow') else 0)"
    assert subprocess.run([str(jax_python), "-c", probe]).returncode == 0, f"{jax_python} can import tensorflow"


def test_fer_train_on_jax_writes_a_model_with_its_records(jax_run):
    meta = read_metadata(jax_run / "model.keras")
    assert meta.provenance["backend"] == "jax"
    rows = [json.loads(line) for line in (jax_run / "history.jsonl").read_text().splitlines() if line.strip()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert json.loads((jax_run / "state.json").read_text())["epoch"] == 2
    report = json.loads((jax_run / "eval" / "report.json").read_text())
    assert set(report["splits"]) == {"PublicTest", "PrivateTest"}
    assert meta.figures["PrivateTest"]["n"] == SPLITS[2]  # fer-eval's figures went into the model file


def test_fer_convert_converts_the_jax_trained_model(jax_run, small_data, tmp_path):
    pytest.importorskip("tensorflow")
    from fer_edge.convert.cli import main as convert_main
    from fer_edge.runtime.model.backends import Classifier

    out = tmp_path / "export"
    # the gate is not what this checks (a 2-epoch model's classes are near ties): the budget is opened wide
    code = convert_main([str(jax_run / "model.keras"), "--formats", "tflite-int8,onnx-int8", "--data", str(small_data),
                         "--out", str(out), "--max-drop", "100", "--min-agreement", "0", "--force-calibration"])
    assert code == 0
    tflite = out / "model_int8.tflite"
    assert tflite.is_file() and (out / "model_int8.onnx").is_file()
    for exported in (tflite, out / "model_int8.onnx"):  # the runtime reads each, with the run's labels
        clf = Classifier(exported)
        probs = clf.predict(np.random.default_rng(0).integers(0, 256, (3, 48, 48), np.uint8))
        assert probs.shape == (3, 7) and np.allclose(probs.sum(axis=1), 1, atol=0.02)
        assert clf.labels == read_metadata(jax_run / "model.keras").labels


def test_fer_explain_on_jax(jax_python, jax_run, samples_dir, tmp_path):
    photo = samples_dir / "fer_justin.jpg"
    png = tmp_path / "why.png"
    r = _run(jax_python, "fer_edge.training.explain", str(jax_run / "model.keras"), str(photo), "--out", str(png),
             "--steps", "16")
    assert r.returncode == 0, r.stderr[-3000:]
    assert png.is_file() and png.stat().st_size > 1000
    assert "integrated gradients" in r.stdout and "face at" in r.stdout


def test_a_missing_backend_is_one_line(jax_python, jax_run, tmp_path):
    """Keras defaults to TensorFlow: in this venv, without KERAS_BACKEND, each command says what to set."""
    for module, args in [("fer_edge.training.train", ["--data", "x.npz", "--out", str(tmp_path / "o")]),
                         ("fer_edge.training.explain", [str(jax_run / "model.keras"), "x.jpg", "--out", str(tmp_path / "a.png")]),
                         ("fer_edge.training.evaluate", [str(jax_run / "model.keras"), "--data", "x.npz", "--out", str(tmp_path / "e")])]:
        r = _run(jax_python, module, *args, backend=None)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, (module, r.stderr[-2000:])
        assert "KERAS_BACKEND" in lines[0] and "tensorflow is not installed" in lines[0], lines[0]
    assert not (tmp_path / "o").exists() and not (tmp_path / "a.png").exists()
