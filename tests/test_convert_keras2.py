"""tf.keras 2 HDF5 files in fer-convert (issue 43): Teachable Machine's `keras_model.h5`, a Sequential holding a
MobileNetV2 feature extractor as a nested Functional model and a dense head, which Keras 3 cannot read
("Could not locate class 'Functional'"); fer-convert reads it with tf_keras (docs/convert.md says why).

The file is built here with tf_keras (weights=None: nothing is downloaded), its batch-norm statistics set from a
few faces so that its features are not all zero, and its head fitted on 256 faces' features: seconds."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

tf_keras = pytest.importorskip("tf_keras", reason="tf.keras 2 files need tf_keras (pip install --no-deps "
                               "'tf_keras==2.21.*'; .ci/run installs it)")

sys.path.insert(0, str(Path(__file__).resolve().parent / "hostile"))
from faults import error_line  # noqa: E402

from fer_edge.convert.cli import main  # noqa: E402
from fer_edge.runtime.model.preprocess import PreprocessSpec, preprocess  # noqa: E402

FLAGS = ["--labels", "fer2013", "--normalize", "-1,1"]  # the grey Lambda model's
LABELS_TXT = "0 Angry\n1 Happy\n2 Sad\n3 Surprise\n4 Neutral\n"  # Teachable Machine's labels.txt
TM_FLAGS = ["--colour", "rgb", "--normalize", "-1,1"]  # with --labels labels.txt: what a TM export needs
SPEC = PreprocessSpec(size=(224, 224), channels=3, value_range=(-1.0, 1.0), colour="rgb")


def _teachable_machine(faces: np.ndarray, labels: np.ndarray, classes: int):
    """Teachable Machine's layout: Sequential[Sequential[Functional 'model1' (MobileNetV2 0.35 to out_relu),
    GlobalAveragePooling2D], Sequential[Dense 100 relu, Dense softmax without bias]]."""
    K = tf_keras
    K.utils.set_random_seed(0)
    base = K.applications.MobileNetV2(input_shape=(224, 224, 3), alpha=0.35, include_top=False, weights=None)
    trunk = K.Model(base.inputs, base.get_layer("out_relu").output, name="model1")
    features = K.Sequential([trunk, K.layers.GlobalAveragePooling2D()], name="sequential_1")
    head = K.Sequential([K.layers.Dense(100, activation="relu", name="dense_Dense1"),
                         K.layers.Dense(classes, activation="softmax", use_bias=False, name="dense_Dense2")],
                        name="sequential_3")
    model = K.Sequential([K.Input((224, 224, 3)), features, head], name="sequential_4")
    x = preprocess(faces, SPEC)
    # untrained MobileNetV2's activations vanish (1e-10 at out_relu): each batch norm takes the statistics of
    # its input on these faces, in one training-mode pass with momentum 0
    norms = [layer for layer in trunk.layers if isinstance(layer, K.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    trunk(x[:64], training=True)
    for layer in norms:
        layer.momentum = 0.999
    head.compile("adam", "sparse_categorical_crossentropy")
    head.fit(features.predict(x, verbose=0), labels, epochs=30, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def teachable(tfeid_dev, tmp_path_factory):
    """(keras_model.h5 and labels.txt as Teachable Machine exports them, the tf_keras model): 5 classes, its head
    fitted on the Training photos of tfeid-dev, cut as fer-edge cuts them for this model."""
    from fer_edge.runtime.model.labels import parse_labels
    from fer_edge.runtime.model.metadata import ModelMetadata
    from fer_edge.runtime.recognize.photos import load_for_model

    d = tmp_path_factory.mktemp("tm")
    (d / "labels.txt").write_text(LABELS_TXT)
    train = load_for_model(tfeid_dev, ModelMetadata(parse_labels(str(d / "labels.txt")), SPEC)).subset("Training")
    model = _teachable_machine(train.images, train.labels, 5)
    model.save(d / "keras_model.h5")
    return d / "keras_model.h5", d / "labels.txt", model


@pytest.mark.data
@pytest.mark.slow
def test_a_teachable_machine_export_converts_and_runs_as_tf_keras_runs_it(teachable, tfeid_dev, tmp_path, monkeypatch,
                                                                          capsys):
    """Keras 3 cannot read the file; `fer-convert --labels labels.txt --colour rgb --normalize -1,1` goes through
    to its files (exit 0: the gate passed), its reference scores the colour faces as tf_keras does, its cost is
    counted on the tf_keras layers, and the files run in fer-edge with no flags, giving tf_keras's probabilities
    and the export's own 5 classes in the JSON and the report. The float formats only: the INT8 recipe search on
    this 224 px network takes minutes here (docs/convert.md), too long for CI."""
    import json

    import keras

    from fer_edge.convert.cost import model_cost
    from fer_edge.runtime.cli import main as fer_edge
    from fer_edge.runtime.model.backends import Classifier
    from fer_edge.runtime.recognize.photos import load_for_model

    path, labels_txt, model = teachable
    with pytest.raises(Exception, match="Functional"):  # why the tf_keras route exists
        keras.models.load_model(path, compile=False)
    out, scratch = tmp_path / "out", tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the SavedModel of the tf_keras model goes
    assert main(["--formats", "tflite-fp32,onnx-fp32", str(path), "--labels", str(labels_txt), *TM_FLAGS,
                 "--data", str(tfeid_dev), "--force-calibration", "--out", str(out)]) == 0
    assert not list(scratch.glob("fer-convert-*"))  # removed after the run (TensorFlow's autograph files stay)
    doc = json.loads((out / "report.json").read_text())
    clf = Classifier(out / "keras_model_fp32.tflite")
    names = ("angry", "happy", "sad", "surprise", "neutral")
    assert clf.labels == names and clf.meta.preprocess.colour == "rgb"
    test = load_for_model(tfeid_dev, clf.meta).subset("PrivateTest")
    theirs = model.predict(preprocess(test.images, SPEC), verbose=0)
    assert len(set(theirs.argmax(1))) > 1  # not a constant model: the comparisons mean something
    assert doc["reference"]["accuracy"] == pytest.approx((theirs.argmax(1) == test.labels).mean(), abs=1e-9)
    twin = keras.applications.MobileNetV2(input_shape=(224, 224, 3), alpha=0.35, include_top=False, weights=None)
    head = 1280 * 100 + 100 * 5  # TM's dense head
    assert doc["reference"]["cost"] == {"macs": model_cost(twin)["macs"] + head, "parameters": model.count_params()}
    for name in ("keras_model_fp32.tflite", "keras_model_fp32.onnx"):
        clf = Classifier(out / name)
        assert clf.backend.input_shape == (224, 224, 3) and clf.meta.preprocess.value_range == (-1.0, 1.0)
        np.testing.assert_allclose(clf.predict(test.images), theirs, atol=1e-4, err_msg=name)
    photo = sorted((tfeid_dev / "images").glob("*.jpg"))[0]
    capsys.readouterr()
    assert fer_edge(["--model", str(out / "keras_model_fp32.tflite"), "--image", str(photo), "--json", "-",
                     "--record", str(tmp_path / "annotated.jpg"), "--report", str(tmp_path / "run.html")]) == 0
    face = json.loads(capsys.readouterr().out.splitlines()[0])["faces"][0]
    assert tuple(face["probs"]) == names and face["label"] in names
    page = (tmp_path / "run.html").read_text()
    assert all(n in page for n in names) and "disgust" not in page
    assert (tmp_path / "annotated.jpg").is_file()


def test_python_code_in_a_tf_keras_2_file_needs_the_users_word(tmp_path, capfd):
    """tf_keras's HDF5 loader runs a Lambda's bytecode unless safe mode is set around it: fer-convert sets it."""
    K = tf_keras
    inner = K.Model(*(lambda i: (i, K.layers.Conv2D(2, 3)(i)))(K.Input((48, 48, 1))), name="model1")
    model = K.Sequential([K.Input((48, 48, 1)), inner, K.layers.Lambda(lambda t: t * 2.0),
                          K.layers.GlobalAveragePooling2D(), K.layers.Dense(7, activation="softmax")])
    path, out = tmp_path / "lambda.h5", tmp_path / "out"
    model.save(path)
    assert main(["--formats", "onnx-fp32", str(path), *FLAGS, "--out", str(out)]) == 2
    error_line(capfd.readouterr().err, "ModelError", "holds Python code (a Lambda layer)", "--unsafe-deserialization")
    assert not out.exists()
    assert main(["--formats", "onnx-fp32", str(path), *FLAGS, "--out", str(out), "--unsafe-deserialization"]) == 0
    assert (out / "lambda_fp32.onnx").is_file()


def test_without_tf_keras_the_error_says_how_to_install_it(teachable, tmp_path, capfd, monkeypatch):
    import tensorflow as tf

    monkeypatch.setitem(sys.modules, "tf_keras", None)  # import tf_keras raises ImportError
    out = tmp_path / "out"
    assert main(["--formats", "onnx-fp32", str(teachable[0]), "--labels", str(teachable[1]), *TM_FLAGS,
                 "--out", str(out)]) == 2
    minor = ".".join(tf.__version__.split(".")[:2])
    error_line(capfd.readouterr().err, "ModelError", "a tf.keras 2.", "Keras 3 cannot read",
               f"pip install --no-deps 'tf_keras=={minor}.*'")
    assert not out.exists()
