"""fer-convert end to end, in-process: six formats with a report, a legacy .h5, and every bad input.

Models are built here, tiny and trained for a few steps on a small FER2013 subset, so each test is
seconds on a 2-core CPU. Tests that need FER2013 skip when FER_EDGE_DATA is unset.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from fer_edge.convert.cli import main
from fer_edge.runtime.model.labels import FER2013
from fer_edge.runtime.model.metadata import ModelMetadata, read_metadata, write_metadata
from fer_edge.runtime.model.preprocess import PreprocessSpec, preprocess

ALL = "tflite-fp32,tflite-fp16,tflite-dynamic,tflite-int8,onnx-fp32,onnx-int8"
FAST = ["--calibration-size", "100", "--force-calibration"]


def _tiny(keras, shape=(48, 48, 1), classes=7, inputs=1):
    ins = [keras.Input(shape, name=f"face{i}" if i else "face") for i in range(inputs)]
    x = ins[0] if inputs == 1 else keras.layers.Add()(ins)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(classes, activation="softmax")(x)
    return keras.Model(ins if inputs > 1 else ins[0], out)


def _trained(keras, fer2013, spec: PreprocessSpec):
    """A tiny net fitted for a few steps on 1,024 Training faces: not good, but not constant either."""
    keras.utils.set_random_seed(0)
    model = _tiny(keras, (*spec.size, spec.channels))
    idx = np.flatnonzero(fer2013.split == 0)[:1024]
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(preprocess(fer2013.images[idx], spec), fer2013.labels[idx], epochs=2, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


@pytest.fixture(scope="module")
def tiny_keras(tmp_path_factory, keras, fer2013):
    """A .keras model carrying fer-edge metadata (48x48x1, [0, 1])."""
    spec = PreprocessSpec()
    path = tmp_path_factory.mktemp("tiny") / "tiny.keras"
    _trained(keras, fer2013, spec).save(path)
    write_metadata(path, ModelMetadata(FER2013, spec, {"source": "tests/test_convert.py"}))
    return path


@pytest.fixture(scope="module")
def legacy_h5(tmp_path_factory, keras, fer2013):
    """A Keras-2-style .h5: 64x64x1 input, [-1, 1] scaling, no fer-edge metadata."""
    path = tmp_path_factory.mktemp("legacy") / "legacy.h5"
    _trained(keras, fer2013, PreprocessSpec(size=(64, 64), value_range=(-1.0, 1.0))).save(path)
    assert read_metadata(path) is None
    return path


def _run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.data
@pytest.mark.slow
def test_six_formats_with_report(tiny_keras, data_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = _run([tiny_keras, "--formats", ALL, "--data", data_dir, "--out", out, *FAST,
                         "--max-drop", "100", "--min-agreement", "0"], capsys)
    assert code == 0, err
    doc = json.loads((out / "report.json").read_text())
    assert (out / "report.md").read_text().startswith("# fer-convert parity report")
    assert doc["eval"]["split"] == "PrivateTest" and doc["eval"]["n"] == 3589
    assert set(doc["formats"]) == set(ALL.split(","))
    for name, e in doc["formats"].items():
        for key in ("path", "bytes", "accuracy", "macro_f1", "accuracy_drop", "agreement", "recall_delta",
                    "max_prob_diff"):
            assert key in e, (name, key)
        meta = read_metadata(e["path"])  # metadata inside every file, readable by the runtime
        assert meta.labels == FER2013.labels and meta.provenance["source_sha256"] == doc["reference"]["sha256"]
        assert meta.figures["PrivateTest"]["agreement"] == e["agreement"]
        # issue 38: every file carries the threshold chosen on the reference's PublicTest probabilities
        assert meta.confidence["split"] == "PublicTest" and meta.confidence["n"] == 3589, meta.confidence
        assert 0.69 <= meta.confidence["coverage"] <= 0.71 and 0 < meta.threshold < 1
    assert len({read_metadata(e["path"]).threshold for e in doc["formats"].values()}) == 1
    assert "confidence threshold" in err
    assert doc["formats"]["tflite-fp32"]["agreement"] >= 0.999 and doc["formats"]["onnx-fp32"]["agreement"] >= 0.999
    spread = doc["formats"]["tflite-int8"]["kernels"]["spread"]
    assert 0 <= spread["agreement"] <= 1  # both LiteRT kernel paths measured
    int8 = read_metadata(out / "tiny_int8.onnx").provenance
    assert int8["recipe"]["recipe"]["name"] and len(int8["recipe"]["candidates"]) >= 2
    assert int8["calibration_manifest_sha256"] == doc["calibration"]["manifest_sha256"]
    # the same run again: refused without --force, the existing files untouched
    before = (out / "report.json").read_bytes()
    code, _, err = _run([tiny_keras, "--formats", "tflite-fp32", "--data", data_dir, "--out", out], capsys)
    assert code == 2 and "already exists" in err and (out / "report.json").read_bytes() == before
    # verify: the same checks on existing files, and the gate bites (exit 3 naming the file)
    code, out_text, err = _run(["verify", out / "tiny_int8.tflite", "--reference", tiny_keras, "--data", data_dir,
                                "--min-agreement", "1.01"], capsys)
    assert code == 3 and "tiny_int8.tflite" in out_text and "Traceback" not in err


@pytest.mark.data
@pytest.mark.slow
def test_legacy_h5_64px_minus1_1_matches_keras(legacy_h5, keras, data_dir, fer2013, tmp_path, capsys):
    out = tmp_path / "out"
    args = [legacy_h5, "--int8", "--data", data_dir, "--out", out, *FAST, "--max-drop", "100", "--min-agreement", "0"]
    code, _, err = _run(args, capsys)
    assert code == 2 and "--labels" in err and "--normalize" in err and not out.exists()
    code, _, err = _run([*args, "--labels", "fer2013", "--normalize", "-1,1"], capsys)
    assert code == 0, err
    doc = json.loads((out / "report.json").read_text())
    private = fer2013.subset("PrivateTest")
    model = keras.models.load_model(legacy_h5, compile=False)
    x = preprocess(private.images, PreprocessSpec(size=(64, 64), value_range=(-1.0, 1.0)))
    direct = float((model.predict(x, verbose=0).argmax(1) == private.labels).mean())
    assert doc["reference"]["accuracy"] == pytest.approx(direct, abs=1e-9)
    meta = read_metadata(out / "legacy_int8.tflite")
    assert meta.preprocess.size == (64, 64) and meta.preprocess.value_range == (-1.0, 1.0)


# --- bad input: one clear error each, exit code 2, no output left behind --------------------------

def _refused(args, capsys, out, match):
    code, _, err = _run(args, capsys)
    assert code == 2, err
    errors = [line for line in err.splitlines() if not line.startswith("[")]  # "[ 0.1s] ..." is progress
    assert len(errors) == 1 and match in errors[0] and "Traceback" not in err, err
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


def test_not_a_model_file(tmp_path, capsys):
    bad = tmp_path / "model.keras"
    bad.write_text("this is not a model\n")
    _refused([bad, "--formats", "tflite-fp32", "--out", tmp_path / "out"], capsys, tmp_path / "out", "ModelError")
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    _refused([txt, "--formats", "tflite-fp32", "--out", tmp_path / "out"], capsys, tmp_path / "out", "expected .keras")


@pytest.mark.data
def test_truncated_h5(legacy_h5, tmp_path, capsys):
    cut = tmp_path / "cut.h5"
    cut.write_bytes(legacy_h5.read_bytes()[: legacy_h5.stat().st_size // 2])
    _refused([cut, "--formats", "tflite-fp32", "--labels", "fer2013", "--normalize", "0,1", "--out", tmp_path / "out"],
             capsys, tmp_path / "out", "not a loadable Keras model")


def test_two_input_model(keras, tmp_path, capsys):
    path = tmp_path / "two.keras"
    _tiny(keras, inputs=2).save(path)
    _refused([path, "--formats", "tflite-fp32", "--labels", "fer2013", "--normalize", "0,1", "--out", tmp_path / "out"],
             capsys, tmp_path / "out", "2 inputs")


def test_sequential_model_converts_to_onnx(keras, tmp_path, capsys):
    """tf2onnx's from_keras fails on Keras 3 Sequential models (KeyError 'keras_tensor_N'): the export falls
    back to tracing the model's call, and the ONNX file computes what the Keras model does."""
    ort = pytest.importorskip("onnxruntime")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(7, activation="softmax")])
    path = tmp_path / "seq.keras"
    model.save(path)
    code, _, err = _run([path, "--formats", "onnx-fp32", "--labels", "fer2013", "--normalize", "0,1",
                         "--out", tmp_path / "out"], capsys)
    assert code == 0, err
    onnx_path = tmp_path / "out" / "seq_fp32.onnx"
    assert read_metadata(onnx_path).provenance["recipe"]["converter"] == "tf2onnx.convert.from_function"
    x = np.random.default_rng(0).random((5, 48, 48, 1), dtype=np.float32)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, model.predict(x, verbose=0), atol=1e-5)


def test_a_model_that_outputs_logits_gets_a_softmax(keras, tmp_path, capsys):
    """A stranger's model trained with from_logits=True ends in a plain Dense layer: the exported file ends
    in a softmax (probabilities, as the runtime reports them), with every face's class ranking unchanged."""
    from fer_edge.runtime.model.backends import Classifier

    keras.utils.set_random_seed(0)
    inp = keras.Input((48, 48, 1))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inp))
    model = keras.Model(inp, keras.layers.Dense(7, kernel_initializer=keras.initializers.RandomNormal(0, 5))(x))
    path = tmp_path / "logits.keras"
    model.save(path)
    code, out, err = _run([path, "--formats", "tflite-fp32", "--labels", "fer2013", "--normalize", "0,1",
                           "--out", tmp_path / "out"], capsys)
    assert code == 0, err
    assert "outputs scores, not probabilities" in out + err
    exported = tmp_path / "out" / "logits_fp32.tflite"
    assert read_metadata(exported).provenance["appended_softmax"] is True
    faces = np.random.default_rng(0).integers(0, 256, (16, 48, 48), dtype=np.uint8)
    probs = Classifier(exported).predict(faces)
    logits = model.predict(preprocess(faces, PreprocessSpec()), verbose=0)
    assert logits.min() < 0  # the model's own outputs are not probabilities
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probs.argmax(1), logits.argmax(1))


def test_a_model_without_a_channel_axis_converts(keras, tmp_path, capsys):
    """N x 48 x 48 input (grey faces with no channel axis): exported for N x 48 x 48 x 1, answering as Keras."""
    from fer_edge.runtime.model.backends import Classifier

    keras.utils.set_random_seed(0)
    inp = keras.Input((48, 48))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(keras.layers.Reshape((48, 48, 1))(inp))
    model = keras.Model(inp, keras.layers.Dense(7, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x)))
    path = tmp_path / "nochan.keras"
    model.save(path)
    code, _, err = _run([path, "--formats", "tflite-fp32", "--labels", "fer2013", "--normalize", "0,1",
                         "--out", tmp_path / "out"], capsys)
    assert code == 0, err
    faces = np.random.default_rng(0).integers(0, 256, (4, 48, 48), dtype=np.uint8)
    got = Classifier(tmp_path / "out" / "nochan_fp32.tflite").predict(faces)
    np.testing.assert_allclose(got, model.predict(faces.astype(np.float32) / 255.0, verbose=0), atol=1e-5)


def test_lambda_layer_needs_the_users_word(keras, tmp_path, capsys):
    """Keras safe mode stays on: a model holding Python code is refused with the flag that allows it, and
    converts when the user gives that flag."""
    inp = keras.Input((48, 48, 1))
    x = keras.layers.Lambda(lambda t: t * 2.0 - 1.0)(inp)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, strides=4)(x))
    path = tmp_path / "lambda.keras"
    keras.Model(inp, keras.layers.Dense(7, activation="softmax")(x)).save(path)
    args = [path, "--formats", "tflite-fp32", "--labels", "fer2013", "--normalize", "0,1", "--out", tmp_path / "out"]
    _refused(args, capsys, tmp_path / "out", "--unsafe-deserialization if you trust this file")
    code, _, err = _run(args + ["--unsafe-deserialization"], capsys)
    assert code == 0, err
    assert (tmp_path / "out" / "lambda_fp32.tflite").stat().st_size > 0


def test_output_size_not_matching_labels(keras, tmp_path, capsys):
    path = tmp_path / "five.keras"
    _tiny(keras, classes=5).save(path)
    _refused([path, "--formats", "tflite-fp32", "--labels", "fer2013", "--normalize", "0,1", "--out", tmp_path / "out"],
             capsys, tmp_path / "out", "5 outputs but its labels name 7 classes")


def test_calibration_of_wrong_shape(keras, tmp_path, capsys):
    from test_calibration import synthetic

    from fer_edge.calibration import build_calibration, save_calibration

    cal = tmp_path / "cal64.npz"
    save_calibration(build_calibration(synthetic(), PreprocessSpec(size=(64, 64)), size=120), cal)
    path = tmp_path / "tiny.keras"
    _tiny(keras).save(path)
    write_metadata(path, ModelMetadata(FER2013, PreprocessSpec()))
    _refused([path, "--int8", "--calibration", cal, "--out", tmp_path / "out"], capsys, tmp_path / "out",
             "N x 48 x 48 x 1")


def test_int8_without_data_or_calibration(tmp_path, capsys):
    path = tmp_path / "model.h5"
    path.write_bytes(b"never read: refused before loading")
    _refused([path, "--int8", "--out", tmp_path / "out"], capsys, tmp_path / "out", "--data DATA")


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    model = tmp_path / "model.keras"
    model.write_bytes(b"never read")
    _refused([model, "--formats", "tflite-fp32", "--out", blocker / "out"], capsys, tmp_path / "none", "is a file")
    if os.geteuid() != 0:  # root writes into read-only folders anyway
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        _refused([model, "--formats", "tflite-fp32", "--out", ro / "out"], capsys, ro, "not writable")
    code, _, err = _run([model, "--formats", "tflite-fp32", "--out", "/proc/fer-edge-out"], capsys)
    assert code == 2 and "not writable" in err and "Traceback" not in err


def test_option_a_format_does_not_take(tmp_path, capsys):
    model = tmp_path / "model.keras"
    model.write_bytes(b"never read")
    _refused([model, "--formats", "tflite-fp32", "--opset", "17", "--out", tmp_path / "out"], capsys,
             tmp_path / "out", "--opset applies to onnx-fp32, onnx-int8")
    _refused([model, "--formats", "tflite-fp32,jpeg", "--out", tmp_path / "out"], capsys, tmp_path / "out",
             "unknown format jpeg")
