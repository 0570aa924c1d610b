"""The CI accuracy-parity gate: shipped INT8 files against the fp32 reference's golden outputs,
with the runtime alone (no TensorFlow), on both LiteRT kernel paths; and proof that it bites."""
from __future__ import annotations

import json
import platform

import numpy as np
import pytest

from fer_edge.convert.cli import main as convert_main
from fer_edge.runtime.core.fileio import sha256_file
from fer_edge.runtime.model.metadata import read_metadata
from conftest import ROOT

MODELS = ROOT / "models"
GOLDEN = MODELS / "fer-vgg_golden.npz"
SHIPPED_INT8 = [MODELS / "fer-vgg_int8.tflite", MODELS / "fer-vgg_int8.onnx"]
GATE_EXIT = 3


def test_shipped_files_come_from_the_golden_reference():
    """Golden outputs, the .keras reference and every shipped export name the same model."""
    with np.load(GOLDEN, allow_pickle=False) as z:
        golden_sha = str(z["model_sha256"])
        probs = z["probs"]
    assert golden_sha == sha256_file(MODELS / "fer-vgg.keras")
    assert probs.dtype == np.float16 and probs.shape[1] == 7
    assert np.allclose(probs.astype(np.float32).sum(axis=1), 1.0, atol=0.02)
    for f in [*SHIPPED_INT8, MODELS / "fer-vgg_fp32.tflite"]:
        assert read_metadata(f).provenance["source_sha256"] == golden_sha, f


def _verify(files, data_dir, out, kernel_paths, *extra):
    code = convert_main(["verify", *map(str, files), "--reference", str(GOLDEN), "--data", str(data_dir),
                         "--kernels", ",".join(kernel_paths), "--out", str(out), *extra])
    return code, json.loads((out / "report.json").read_text())


def test_shipped_int8_files_pass_the_gate_on_every_kernel_path(data_dir, tmp_path, kernel_paths):
    pytest.importorskip("onnxruntime")
    code, doc = _verify(SHIPPED_INT8, data_dir, tmp_path / "gate", kernel_paths)
    assert code == 0, doc["failures"]
    assert doc["reference"]["runtime"] == "golden" and doc["eval"]["n"] == 3589
    assert doc["machine"]["arch"] == platform.machine() and doc["kernel_paths"] == list(kernel_paths)
    tfl = doc["formats"]["tflite-int8"]
    assert set(tfl["kernels"]) == set(kernel_paths) | ({"spread"} if len(kernel_paths) == 2 else set())
    for path in kernel_paths:
        assert tfl["kernels"][path]["accuracy_drop"] <= 1.0
        assert tfl["kernels"][path]["agreement"] >= 0.97
    assert doc["formats"]["onnx-int8"]["agreement"] >= 0.97


def damage(src, dst, steps: int, seed: int = 0) -> None:
    """Add random noise of up to +-steps to the largest int8 weight tensor of a .tflite, in place in the
    flatbuffer bytes (found by content), keeping the file's metadata: a quantization gone wrong."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # Weights are the int8 tensors whose bytes are in the file; on the built-in kernels (the only ones
    # under qemu) activation buffers are readable too, so the largest readable tensor is not enough.
    interp = Interpreter(model_path=str(src),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    data = bytearray(src.read_bytes())
    weights = []
    for t in interp.get_tensor_details():
        try:
            a = interp.get_tensor(t["index"])
        except ValueError:
            continue
        if a.dtype == np.int8 and a.size > 1 and a.min() != a.max():
            weights.append(a)
    found = [(w, bytes(data).find(w.tobytes())) for w in sorted(weights, key=lambda w: -w.size)]
    a, off = next((w, o) for w, o in found if o > 0)
    noise = np.random.default_rng(seed).integers(-steps, steps + 1, a.shape)
    data[off:off + a.size] = np.clip(a.astype(np.int16) + noise, -127, 127).astype(np.int8).tobytes()
    dst.write_bytes(bytes(data))


def test_gate_fails_a_damaged_int8_model(data_dir, tmp_path, kernel_paths):
    """On every kernel path this machine runs: on the emulated aarch64 leg, the built-in kernels."""
    bad = tmp_path / "fer-vgg_int8.tflite"
    damage(SHIPPED_INT8[0], bad, steps=60)
    assert read_metadata(bad) == read_metadata(SHIPPED_INT8[0])  # same claims, different weights
    # a seeded sample is plenty for a gross fault, and keeps the emulated aarch64 leg short
    code, doc = _verify([bad], data_dir, tmp_path / "gate", kernel_paths, "--sample", "200")
    assert code == GATE_EXIT
    assert not doc["pass"]
    assert doc["machine"]["arch"] == platform.machine()
    for path in kernel_paths:
        assert any(f"{path} kernels" in f for f in doc["failures"]), (path, doc["failures"])


def test_verify_sample_rescores_the_reference_on_the_same_faces(data_dir, tmp_path):
    """--sample N: the same seeded N faces for the reference and the files, so drops compare like with like.
    (Samples only: a full pass takes over 20 min on the emulated aarch64 leg, which runs this file.)"""
    code_a, a = _verify(SHIPPED_INT8[:1], data_dir, tmp_path / "a", ("builtin",), "--sample", "100")
    code_b, b = _verify(SHIPPED_INT8[:1], data_dir, tmp_path / "b", ("builtin",), "--sample", "100")
    code_c, c = _verify(SHIPPED_INT8[:1], data_dir, tmp_path / "c", ("builtin",), "--sample", "100", "--sample-seed", "1")
    assert code_a == code_b == code_c == 0
    assert a["eval"]["n"] == a["reference"]["n"] == 100
    assert a["reference"]["sample"] == {"faces": 100, "of": 3589, "seed": 0}
    # re-scored on the sample: a share of 100 faces, not the full split's figure copied over
    assert abs(a["reference"]["accuracy"] * 100 - round(a["reference"]["accuracy"] * 100)) < 1e-6
    assert a["formats"] == b["formats"]  # seeded: the same faces every time
    assert (c["reference"]["accuracy"], c["formats"]) != (a["reference"]["accuracy"], a["formats"])


def test_verify_refuses_a_sample_of_no_faces(tmp_path, capsys):
    code = convert_main(["verify", str(SHIPPED_INT8[0]), "--reference", str(GOLDEN), "--data", ".", "--sample", "0",
                         "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--sample must be 1 or more faces, found 0" in err[0]
    assert not (tmp_path / "out").exists()


def test_verify_refuses_an_unknown_kernel_path(capsys):
    with pytest.raises(SystemExit) as exc:
        convert_main(["verify", str(SHIPPED_INT8[0]), "--reference", str(GOLDEN), "--data", ".",
                      "--kernels", "builtin,gpu"])
    assert exc.value.code == 2
    assert "expected distinct kernel paths from default,builtin, found 'builtin,gpu'" in capsys.readouterr().err
