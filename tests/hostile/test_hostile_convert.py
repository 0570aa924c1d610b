"""Hostile inputs to fer-convert (needs TensorFlow, the [convert] extra): SIGTERM in the middle of a conversion,
empty model files, and the Lambda refusal said in full."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from faults import error_line, leftovers, wait_for_stderr_file

keras = pytest.importorskip("keras", reason="fer-convert needs the [convert] extra")

from fer_edge.convert.cli import main  # noqa: E402


def _tiny(path):
    ins = keras.Input((48, 48, 1))
    x = keras.layers.Conv2D(4, 3, strides=4, activation="relu")(ins)
    out = keras.layers.Dense(7, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(ins, out).save(path)
    return path


def test_sigterm_during_a_conversion_leaves_no_temporary_files(tmp_path, data_dir):
    model = _tiny(tmp_path / "tiny.h5")
    out, scratch, err = tmp_path / "out", tmp_path / "tmpdir", tmp_path / "err.txt"
    scratch.mkdir()
    with open(err, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "fer_edge.convert.cli", "--int8", str(model), "--labels", "fer2013",
                                 "--normalize", "0,1", "--data", str(data_dir), "--out", str(out)],
                                stdout=subprocess.DEVNULL, stderr=f,
                                env={**os.environ, "TMPDIR": str(scratch), "PYTHONUNBUFFERED": "1"})
    try:
        wait_for_stderr_file(err, "exporting the Keras model as a SavedModel", timeout=300)
        time.sleep(1.0)  # the SavedModel is being written to TMPDIR
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = err.read_text()
    assert rc == 130 and "Traceback" not in text and text.strip().endswith("interrupted (SIGTERM)"), text
    assert not [p.name for p in scratch.iterdir() if p.name.startswith("fer-convert-")]
    assert not out.exists() or leftovers(out) == []


@pytest.mark.parametrize("argv, words", [
    (["verify", "{empty}.tflite", "--reference", "{empty}.npz", "--data", "{data}"], "empty.tflite is empty (0 bytes)"),
    (["{empty}.keras", "--data", "{data}"], "empty.keras is empty (0 bytes)"),
])
def test_empty_model_files_are_said_to_be_empty(capfd, tmp_path, data_dir, argv, words):
    for suffix in (".tflite", ".npz", ".keras"):
        (tmp_path / f"empty{suffix}").write_bytes(b"")
    assert main([a.format(empty=tmp_path / "empty", data=data_dir) for a in argv]) == 2
    error_line(capfd.readouterr().err, words)


def test_the_lambda_refusal_is_said_in_full(capfd, tmp_path, data_dir):
    ins = keras.Input((48, 48, 1))
    out = keras.layers.Dense(7, activation="softmax")(keras.layers.Flatten()(keras.layers.Lambda(lambda t: t * 2)(ins)))
    path = tmp_path / "lambda.keras"
    keras.Model(ins, out).save(path)
    assert main([str(path), "--data", str(data_dir), "--out", str(tmp_path / "o")]) == 2
    line = error_line(capfd.readouterr().err, "Lambda", "safe mode", "--unsafe-deserialization")
    assert line.endswith("if you trust this file"), line  # the remedy, whole
