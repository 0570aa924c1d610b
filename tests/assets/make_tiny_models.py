"""Build the tiny classifier models the runtime tests use (run once; the outputs are committed).

    python tests/assets/make_tiny_models.py

tiny_fer.tflite / tiny_fer.onnx: 48x48x1 grey in [0, 1] -> 8x8 average pool -> dense 7 -> softmax, with
fixed seeded weights, and fer-edge metadata (fer2013 labels). Their answers mean nothing; they are small
(a few KB), deterministic and exercise every runtime path. The .tflite needs TensorFlow to build (not to
run); the .onnx is written with the `onnx` helper alone. Tests strip the metadata at test time to get a
metadata-less model.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from fer_edge.runtime.model.labels import FER2013
from fer_edge.runtime.model.metadata import ModelMetadata, write_metadata
from fer_edge.runtime.model.preprocess import PreprocessSpec

HERE = Path(__file__).resolve().parent
META = ModelMetadata(FER2013, PreprocessSpec(size=(48, 48), channels=1, value_range=(0.0, 1.0)),
                     provenance={"source": "tests/assets/make_tiny_models.py", "note": "random weights, tests only"},
                     # every face sure: tests that want unsure faces pass --min-confidence or strip this
                     confidence={"threshold": 0.0, "rule": "tests only: every face sure"})


def weights():
    rng = np.random.default_rng(20240601)
    return rng.normal(0, 2.0, (36, 7)).astype(np.float32), rng.normal(0, 0.1, (7,)).astype(np.float32)


def make_tflite(path: Path) -> None:
    import tensorflow as tf
    import keras

    w, b = weights()
    inp = keras.Input((48, 48, 1), name="face")
    x = keras.layers.AveragePooling2D(8)(inp)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(7, activation="softmax")(x)
    model = keras.Model(inp, out)
    model.layers[-1].set_weights([w, b])
    with tempfile.TemporaryDirectory() as d:
        model.export(d)
        path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(d).convert())
    write_metadata(path, META)


def make_onnx(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w, b = weights()
    nodes = [
        helper.make_node("Transpose", ["face"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("AveragePool", ["nchw"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Transpose", ["pooled"], ["nhwc"], perm=[0, 2, 3, 1]),  # flatten in Keras' NHWC order
        helper.make_node("Flatten", ["nhwc"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "w", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny_fer",
        [helper.make_tensor_value_info("face", TensorProto.FLOAT, ["n", 48, 48, 1])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", 7])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by onnxruntime >= 1.10
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    write_metadata(path, META)


if __name__ == "__main__":
    make_onnx(HERE / "tiny_fer.onnx")
    make_tflite(HERE / "tiny_fer.tflite")
    for name in ("tiny_fer.onnx", "tiny_fer.tflite"):
        print(name, (HERE / name).stat().st_size, "bytes")
