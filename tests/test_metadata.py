"""Model metadata travels inside .tflite, .onnx and .keras files and is read back by runtime code alone.

The TensorFlow-built models (tiny Keras net -> .keras, .tflite, .onnx) are made once per module behind
`pytest.importorskip("tensorflow")`, so a runtime-only venv skips those tests and still runs the
pure-python ones below them.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fer_edge.runtime.core.errors import FerEdgeError, ModelError
from fer_edge.runtime.model.labels import FER2013, FERPLUS
from fer_edge.runtime.model.metadata import (
    MEMBER, ONNX_KEY, ModelMetadata, copy_with_metadata, read_metadata, write_metadata,
)
from fer_edge.runtime.model.preprocess import PreprocessSpec

META = ModelMetadata(FER2013, PreprocessSpec(size=(48, 48), value_range=(-1, 1), equalize=True, crop_margin=0.1),
                     provenance={"source_sha256": "ab" * 32, "command": "fer-train --arch tiny"},
                     figures={"public_test_accuracy": 0.5125})
META2 = META.replace(figures={"public_test_accuracy": 0.6}, provenance={"note": "second write"})

# Appending metadata must not change what the model computes: outputs are compared bit for bit.
N_FACES = 4


def _faces(n: int = N_FACES) -> np.ndarray:
    return np.random.default_rng(1).uniform(-1, 1, (n, 48, 48, 1)).astype(np.float32)


# --- models built with TensorFlow (skipped in a runtime-only venv) ---------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    d = tmp_path_factory.mktemp("tiny")
    inp = keras.Input((48, 48, 1), name="face")
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(len(FER2013), activation="softmax")(x)
    model = keras.Model(inp, out)
    faces = _faces()

    keras_path = d / "tiny.keras"
    model.save(keras_path)

    model.export(str(d / "saved"), verbose=False)
    tflite_path = d / "tiny.tflite"
    tflite_path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(d / "saved")).convert())

    tf2onnx = pytest.importorskip("tf2onnx")
    proto, _ = tf2onnx.convert.from_keras(
        model, input_signature=[tf.TensorSpec((None, 48, 48, 1), tf.float32, name="face")], opset=17)
    onnx_path = d / "tiny.onnx"
    onnx_path.write_bytes(proto.SerializeToString())
    return {"keras": keras_path, "tflite": tflite_path, "onnx": onnx_path, "faces": faces,
            "expected": np.asarray(model.predict(faces, verbose=0))}


def _run_tflite(path: Path, faces: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.resize_tensor_input(inp["index"], faces.shape)
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], faces)
    interp.invoke()
    return interp.get_tensor(out["index"]).copy()


def test_tflite_round_trip_and_still_runs(tiny, tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(tiny["tflite"].read_bytes())
    before = _run_tflite(path, tiny["faces"])
    np.testing.assert_allclose(before, tiny["expected"], atol=1e-5)  # the converted model is the model
    assert read_metadata(path) is None

    write_metadata(path, META)
    assert read_metadata(path) == META
    assert np.array_equal(_run_tflite(path, tiny["faces"]), before)  # appended bytes change nothing

    write_metadata(path, META2)  # rewriting replaces, never stacks archives
    assert read_metadata(path) == META2
    data = path.read_bytes()
    original = tiny["tflite"].read_bytes()
    assert data.startswith(original) and data.count(MEMBER.encode()) == 2  # one local header + one directory entry
    with zipfile.ZipFile(io.BytesIO(data[len(original):])) as z:
        assert z.namelist() == [MEMBER]
    assert np.array_equal(_run_tflite(path, tiny["faces"]), before)


def test_onnx_round_trip_and_onnxruntime(tiny, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "model.onnx"
    path.write_bytes(tiny["onnx"].read_bytes())
    assert read_metadata(path) is None
    write_metadata(path, META)
    assert read_metadata(path) == META
    write_metadata(path, META2)
    assert read_metadata(path) == META2

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    custom = sess.get_modelmeta().custom_metadata_map
    assert ModelMetadata.from_json(custom[ONNX_KEY]) == META2
    out = sess.run(None, {sess.get_inputs()[0].name: tiny["faces"]})[0]
    np.testing.assert_allclose(out, tiny["expected"], atol=1e-5)

    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(path))
    assert [p.key for p in proto.metadata_props].count(ONNX_KEY) == 1
    onnx.checker.check_model(proto)


def test_keras_with_metadata_still_loads(tiny, tmp_path):
    keras = pytest.importorskip("keras")
    path = tmp_path / "model.keras"
    path.write_bytes(tiny["keras"].read_bytes())
    assert read_metadata(path) is None
    write_metadata(path, META)
    write_metadata(path, META2)
    assert read_metadata(path) == META2
    with zipfile.ZipFile(path) as z:
        assert z.namelist().count(MEMBER) == 1
    model = keras.models.load_model(path, compile=False)
    np.testing.assert_allclose(model.predict(tiny["faces"], verbose=0), tiny["expected"], atol=1e-6)


# --- pure python: no TensorFlow needed ---------------------------------------------------------------

def _tiny_onnx(path: Path, extra_props: dict[str, str] | None = None, softmax: bool = True, batch="n") -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.linspace(-1, 1, 48 * 48 * 7, dtype=np.float32).reshape(48 * 48, 7), "w")
    shape = numpy_helper.from_array(np.array([-1, 48 * 48], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["face", "shape"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["logits" if softmax else "probs"])]
        + ([helper.make_node("Softmax", ["logits"], ["probs"], axis=1)] if softmax else []),
        "tiny",
        [helper.make_tensor_value_info("face", TensorProto.FLOAT, [batch, 48, 48, 1])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, 7])],
        initializer=[w, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="test")
    model.ir_version = 8
    for k, v in (extra_props or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path


def test_onnx_metadata_props_seen_by_onnx_load(tmp_path):
    onnx = pytest.importorskip("onnx")
    path = _tiny_onnx(tmp_path / "m.onnx", {"author": "someone", "license": "MIT"})
    write_metadata(path, META)
    write_metadata(path, META2)
    proto = onnx.load(str(path))
    props = [(p.key, p.value) for p in proto.metadata_props]
    assert [k for k, _ in props].count(ONNX_KEY) == 1
    assert ("author", "someone") in props and ("license", "MIT") in props  # others' entries survive
    assert ModelMetadata.from_json(dict(props)[ONNX_KEY]) == META2
    assert read_metadata(path) == META2
    onnx.checker.check_model(proto)


def test_onnx_metadata_written_by_onnx_is_read_by_runtime(tmp_path):
    """The protobuf walker reads entries that onnx itself wrote (not only our own appended bytes)."""
    text = META.to_json()
    path = _tiny_onnx(tmp_path / "m.onnx", {"a": "1", ONNX_KEY: text, "z": "é" * 300})  # > 127 bytes: 2-byte lengths
    assert read_metadata(path) == META


def test_onnx_with_metadata_runs_in_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    path = _tiny_onnx(tmp_path / "m.onnx")
    faces = _faces()
    before = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"face": faces})[0]
    write_metadata(path, META)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sess.get_modelmeta().custom_metadata_map[ONNX_KEY] == META.to_json()
    assert np.array_equal(sess.run(None, {"face": faces})[0], before)


def test_appended_archive_is_replaced_and_prefix_kept(tmp_path):
    """The .tflite mechanism on arbitrary bytes: the model bytes stay untouched, one archive at the end."""
    original = b"\x1c\x00\x00\x00TFL3" + np.random.default_rng(0).bytes(5000)
    path = tmp_path / "m.tflite"
    path.write_bytes(original)
    assert read_metadata(path) is None
    for meta in (META, META2, META):
        write_metadata(path, meta)
        assert read_metadata(path) == meta
        data = path.read_bytes()
        assert data.startswith(original)
        with zipfile.ZipFile(io.BytesIO(data[len(original):])) as z:
            assert z.namelist() == [MEMBER]


def test_json_round_trip_and_label_sets():
    assert ModelMetadata.from_json(META.to_json()) == META
    plus = META.replace(label_set=FERPLUS)
    back = ModelMetadata.from_json(plus.to_json())
    assert back.labels == FERPLUS.labels and back.label_set is FERPLUS


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.update(format="other/9"), "format"),
    (lambda d: d.update(labels=list(reversed(d["labels"]))), "differ from label set"),
    (lambda d: d.update(label_set="affectnet"), "unknown label set"),
    (lambda d: d.pop("preprocess"), "missing key"),
    (lambda d: d["preprocess"].update(channels=2), "channels"),
    (lambda d: d["preprocess"].update(gamma=2.2), "unknown preprocessing keys"),
])
def test_invalid_metadata_is_a_model_error(mutate, match):
    import json

    d = json.loads(META.to_json())
    mutate(d)
    with pytest.raises(ModelError, match=match) as exc:
        ModelMetadata.from_json(json.dumps(d), source="x.tflite")
    assert "x.tflite: invalid fer-edge metadata" in str(exc.value)


def test_corrupt_member_in_file_is_a_model_error(tmp_path):
    path = tmp_path / "m.tflite"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(MEMBER, "{not json")
    path.write_bytes(b"TFL3" * 10 + buf.getvalue())
    with pytest.raises(ModelError, match=str(path)):
        read_metadata(path)


def test_read_and_write_refusals(tmp_path):
    (tmp_path / "old.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    assert read_metadata(tmp_path / "old.h5") is None  # legacy files carry none: the user states it
    (tmp_path / "m.pt").write_bytes(b"x")
    with pytest.raises(ModelError, match="unknown model format"):
        read_metadata(tmp_path / "m.pt")
    with pytest.raises(ModelError, match="cannot store metadata"):
        write_metadata(tmp_path / "m.pt", META)
    assert (tmp_path / "m.pt").read_bytes() == b"x"
    with pytest.raises(ModelError, match="no such model file"):
        read_metadata(tmp_path / "missing.onnx")
    with pytest.raises(ModelError, match="no such model file"):
        write_metadata(tmp_path / "missing.onnx", META)
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left behind


def test_garbage_onnx_is_a_model_error(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x0f" * 64)  # wire type 7: not a protobuf
    with pytest.raises(ModelError, match="not a readable ONNX file"):
        read_metadata(path)
    with pytest.raises(ModelError, match="not a readable ONNX file"):
        write_metadata(path, META)
    assert path.read_bytes() == b"\x0f" * 64


def test_copy_with_metadata_leaves_source_alone(tmp_path):
    src = tmp_path / "a.tflite"
    src.write_bytes(b"TFL3" * 100)
    dst = tmp_path / "b.tflite"
    copy_with_metadata(src, dst, META)
    assert read_metadata(src) is None and read_metadata(dst) == META
    with pytest.raises(FerEdgeError, match="already exists"):
        copy_with_metadata(src, dst, META2)
    copy_with_metadata(src, dst, META2, force=True)
    assert read_metadata(dst) == META2
