"""fer-convert's ONNX route (issue 37): an fp32 ONNX model in, every format out; what it refuses, in one line.

The models are built here with onnx.helper (a few hundred bytes each). The PyTorch routes and the trained
tutorial network are tests/test_convert_torch.py."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX route needs the [convert] extra")
pytest.importorskip("onnxruntime", reason="the ONNX route needs the [convert] extra")
from onnx import TensorProto, helper  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent / "hostile"))
from faults import error_line  # noqa: E402

from fer_edge.convert.cli import main  # noqa: E402

FLAGS = ["--labels", "fer2013", "--normalize", "0,1"]


def _model(path: Path, inputs=(("x", TensorProto.FLOAT, ["N", 1, 48, 48]),), classes: int = 7,
           nodes_before=(), extra_inits=(), logits=True, op_domain=None) -> Path:
    """face -> [nodes_before] -> GlobalAveragePool -> Flatten -> Gemm (classes) [-> Softmax]; channels first."""
    rng = np.random.default_rng(0)
    first = inputs[0][0] if not nodes_before else nodes_before[-1].output[0]
    nodes = list(nodes_before) + [
        helper.make_node("GlobalAveragePool", [first], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w", "b"], ["logits" if logits else "y"])]
    if not logits:
        nodes.append(helper.make_node("Softmax", ["y"], ["logits"], axis=-1))
    channels = 4 if any(n.op_type == "Conv" for n in nodes_before) else inputs[0][2][1]
    inits = [helper.make_tensor("w", TensorProto.FLOAT, [channels, classes], rng.normal(0, 3, channels * classes)),
             helper.make_tensor("b", TensorProto.FLOAT, [classes], rng.normal(0, 1, classes)), *extra_inits]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info(*i) for i in inputs],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], inits)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(op_domain, 1)] if op_domain else [])
    onnx.save(helper.make_model(graph, opset_imports=opsets, ir_version=8), str(path))
    return path


def _conv_front(channels_in: int = 1):
    """A 3x3 convolution in front (weights given as an initializer named 'cw')."""
    rng = np.random.default_rng(1)
    w = helper.make_tensor("cw", TensorProto.FLOAT, [4, channels_in, 3, 3], rng.normal(0, 0.5, 36 * channels_in))
    return [helper.make_node("Conv", ["x", "cw"], ["c"], pads=[1, 1, 1, 1])], [w]


def _hostile(tmp_path: Path, case: str) -> Path:
    p = tmp_path / f"{case}.onnx"
    if case == "two-inputs":
        return _model(p, inputs=(("x", TensorProto.FLOAT, ["N", 1, 48, 48]), ("x2", TensorProto.FLOAT, ["N", 1, 48, 48])),
                      nodes_before=[helper.make_node("Add", ["x", "x2"], ["s"])])
    if case == "dynamic-size":
        return _model(p, inputs=(("x", TensorProto.FLOAT, ["N", 1, "H", "W"]),))
    if case == "uint8-input":
        return _model(p, inputs=(("x", TensorProto.UINT8, ["N", 1, 48, 48]),),
                      nodes_before=[helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT)])
    if case == "five-outputs":
        return _model(p, classes=5)
    if case in ("external-outside", "external-constant"):
        (tmp_path / "secret.bin").write_bytes(np.zeros(36, np.float32).tobytes())
        nodes, _ = _conv_front()
        cw = TensorProto(name="cw", data_type=TensorProto.FLOAT, dims=[4, 1, 3, 3])
        cw.data_location = TensorProto.EXTERNAL
        for k, v in (("location", "../secret.bin"), ("offset", "0"), ("length", "144")):
            cw.external_data.add(key=k, value=v)
        (tmp_path / "models").mkdir()
        if case == "external-constant":  # the same tensor as a Constant node's value, not an initializer
            nodes = [helper.make_node("Constant", [], ["cw"], value=cw), *nodes]
            return _model(tmp_path / "models" / f"{case}.onnx", nodes_before=nodes)
        return _model(tmp_path / "models" / f"{case}.onnx", nodes_before=nodes, extra_inits=[cw])
    raise AssertionError(case)


@pytest.mark.parametrize("case, words", [
    ("two-inputs", ["expected a model with one input and one output, found 2 inputs"]),
    ("dynamic-size", ["expected an image input", "of fixed height, width", "found N x 1 x H x W"]),
    ("uint8-input", ["expected a float32 image input, found UINT8"]),
    ("five-outputs", ["expected an output N x 7", "found N x 5"]),
    ("external-outside", ["expected external tensor data in the model's folder", "'../secret.bin'"]),
    ("external-constant", ["expected external tensor data in the model's folder", "'../secret.bin'"]),
])
def test_a_hostile_onnx_file_is_one_line_exit_2_and_leaves_nothing(tmp_path, capfd, case, words):
    model, out = _hostile(tmp_path, case), tmp_path / "out"
    assert main(["--formats", "onnx-fp32", str(model), *FLAGS, "--out", str(out)]) == 2
    error_line(capfd.readouterr().err, "ModelError", *words)
    assert not out.exists()


def test_an_onnx_model_converts_to_onnx_and_tflite_and_runs_with_no_flags(tmp_path, fer2013, data_dir):
    """Channels-first, logits out: the files take N x H x W x C faces, end in a softmax, carry the metadata,
    and score the same faces alike (onnxruntime's reference, onnx2tf's TFLite)."""
    from fer_edge.runtime.model.backends import Classifier

    pytest.importorskip("onnx2tf", reason="the TFLite formats of an ONNX model need onnx2tf (.ci/torch.sh installs it)")
    nodes, inits = _conv_front()
    model, out = _model(tmp_path / "tiny.onnx", nodes_before=nodes, extra_inits=inits), tmp_path / "out"
    assert main(["--formats", "onnx-fp32,tflite-fp32", str(model), *FLAGS, "--equalize", "--out", str(out)]) == 0
    faces = fer2013.images[:64]
    probs = {}
    for name in ("tiny_fp32.onnx", "tiny_fp32.tflite"):
        clf = Classifier(out / name)
        assert clf.backend.input_shape == (48, 48, 1) and clf.meta.preprocess.equalize and not clf.scores
        assert clf.meta.provenance["appended_softmax"] is True
        probs[name] = clf.predict(faces)
    np.testing.assert_allclose(probs["tiny_fp32.onnx"].sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs["tiny_fp32.onnx"], probs["tiny_fp32.tflite"], atol=1e-4)
    from fer_edge.convert.bench import main as bench  # fer-bench measures them like any other file

    assert bench([str(out / "tiny_fp32.onnx"), str(out / "tiny_fp32.tflite"), "--data", str(data_dir), "--quick",
                  "--threads", "1", "--batches", "1", "--json", str(tmp_path / "bench.json")]) == 0
    text = (tmp_path / "bench.json").read_text()
    assert "tiny_fp32.onnx" in text and "tiny_fp32.tflite" in text


def test_an_operator_tflite_cannot_express_fails_those_formats_and_the_onnx_ones_ship(tmp_path, capfd):
    """A com.microsoft contrib operator: onnxruntime runs it, onnx2tf cannot convert it (without onnx2tf the
    TFLite format fails the same way, saying how to install it)."""
    nodes, inits = _conv_front()
    nodes.append(helper.make_node("Gelu", ["c"], ["g"], domain="com.microsoft"))
    model = _model(tmp_path / "contrib.onnx", nodes_before=nodes, extra_inits=inits, op_domain="com.microsoft")
    out = tmp_path / "out"
    code = main(["--formats", "onnx-fp32,tflite-fp32", str(model), *FLAGS, "--out", str(out)])
    err = capfd.readouterr().err
    assert code == 3, err
    assert (out / "contrib_fp32.onnx").is_file() and not (out / "contrib_fp32.tflite").exists()
    report = (out / "report.json").read_text()
    assert '"error"' in report and "not made" in report
    assert '"runtime": "onnxruntime"' in report  # the reference is the ONNX file run by onnxruntime, not Keras


def _fixed_batch_model(path: Path, batch: int) -> Path:
    """x (batch x 1 x 48 x 48) -> conv -> Reshape to [batch, -1] -> Gemm: a PyTorch export's view(x.size(0), -1)
    traced with a fixed batch, where the Reshape holds the batch."""
    rng = np.random.default_rng(2)
    nodes, inits = _conv_front()
    nodes += [helper.make_node("Reshape", ["c", "shape"], ["flat"]), helper.make_node("Gemm", ["flat", "w", "b"], ["y"])]
    inits += [helper.make_tensor("shape", TensorProto.INT64, [2], [batch, -1]),
              helper.make_tensor("w", TensorProto.FLOAT, [4 * 48 * 48, 7], rng.normal(0, 0.02, 4 * 48 * 48 * 7)),
              helper.make_tensor("b", TensorProto.FLOAT, [7], rng.normal(0, 1, 7))]
    graph = helper.make_graph(nodes, "fixed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, 48, 48])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 7])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_a_graph_that_fixes_a_batch_of_1_converts_and_runs_one_face_at_a_time(tmp_path, fer2013, capfd):
    """Issue 43: onnxruntime failed on a batch ("GEMM: Dimension mismatch") with a traceback. The files keep the
    batch of 1 (ONNX input, TFLite shape signature), and fer-edge's backends run them one face at a time."""
    from fer_edge.runtime.model.backends import Classifier

    pytest.importorskip("onnx2tf", reason="the TFLite formats of an ONNX model need onnx2tf (.ci/torch.sh installs it)")
    model, out = _fixed_batch_model(tmp_path / "fixed.onnx", 1), tmp_path / "out"
    assert main(["--formats", "onnx-fp32,tflite-fp32", str(model), *FLAGS, "--out", str(out)]) == 0
    assert "onnxruntime" not in capfd.readouterr().err  # the probe's expected failure is not shown
    faces = fer2013.images[:5]
    probs = {}
    for name in ("fixed_fp32.onnx", "fixed_fp32.tflite"):
        clf = Classifier(out / name)
        assert clf.backend.batch == 1, name
        probs[name] = clf.predict(faces)
        np.testing.assert_allclose(probs[name], np.concatenate([clf.predict(f[None]) for f in faces]), atol=1e-6)
    np.testing.assert_allclose(probs["fixed_fp32.onnx"], probs["fixed_fp32.tflite"], atol=1e-4)
    assert np.ptp(probs["fixed_fp32.onnx"], axis=0).max() > 1e-3  # each face its own answer, not the first's


def test_a_graph_fixed_to_a_larger_batch_is_one_line_exit_2(tmp_path, capfd):
    model, out = _fixed_batch_model(tmp_path / "fixed8.onnx", 8), tmp_path / "out"
    assert main(["--formats", "onnx-fp32", str(model), *FLAGS, "--out", str(out)]) == 2
    error_line(capfd.readouterr().err, "ModelError", "fixed8.onnx", "fixed to a batch of 8", "a batch of 1")
    assert not out.exists()


def test_a_library_failing_inside_a_conversion_is_one_line_naming_the_model(tmp_path, capfd, monkeypatch):
    """No internal failure reaches the user as a traceback: a library raising its own type while a format is made
    is one line naming the model and what was found, exit 2, and nothing is left."""
    from fer_edge.convert.source_onnx import OnnxSource

    def fails(self, path, ctx):
        raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : something inside\nsecond line")

    monkeypatch.setattr(OnnxSource, "write_onnx", fails)
    model, out = _model(tmp_path / "tiny.onnx"), tmp_path / "out"
    assert main(["--formats", "onnx-fp32", str(model), *FLAGS, "--out", str(out)]) == 2
    error_line(capfd.readouterr().err, "ModelError", "tiny.onnx: converting failed",
               "RuntimeError: [ONNXRuntimeError] : 2 : INVALID_ARGUMENT : something inside")
    assert not out.exists()
