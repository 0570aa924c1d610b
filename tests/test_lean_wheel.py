"""The lean device wheel (issue 31): it carries what a device runs (INT8 files, golden outputs, YuNet, licences,
cards) and not the Keras references or fp32 files, which stay in the repository and the sdist. CI builds the
wheel and runs .ci/check_wheel.py on it; here, that check's rules, and what a wheel-only install does when
asked for a file it lacks (one line saying where to get it) or for a shipped file by its bare name."""
from __future__ import annotations

import importlib.util
import tomllib

import pytest

from fer_edge.runtime.model.shipped import missing_model, shipped_file, shipped_or_path
from conftest import ROOT


def _check_wheel():
    spec = importlib.util.spec_from_file_location("check_wheel", ROOT / ".ci" / "check_wheel.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SHIPPED = ["LICENSE-yunet.txt", "MODEL_CARD.md", "face_detection_yunet_2026may.onnx", "fer-vgg.keras",
           "fer-vgg_CARD.md", "fer-vgg_fp32.tflite", "fer-vgg_golden.npz", "fer-vgg_int8.onnx", "fer-vgg_int8.tflite"]
DEVICE = {n for n in SHIPPED if n not in ("fer-vgg.keras", "fer-vgg_fp32.tflite")}


def test_the_wheel_check_wants_the_device_files_only_and_a_small_wheel():
    check = _check_wheel()
    assert check.wheel_problems(SHIPPED, DEVICE, 5_000_000) == []
    assert any("fer-vgg.keras" in p for p in check.wheel_problems(SHIPPED, DEVICE | {"fer-vgg.keras"}, 5_000_000))
    assert any("fp32" in p for p in check.wheel_problems(SHIPPED, DEVICE | {"fer-vgg_fp32.tflite"}, 5_000_000))
    assert any("fer-vgg_int8.onnx" in p for p in check.wheel_problems(SHIPPED, DEVICE - {"fer-vgg_int8.onnx"}, 1))
    assert any("YuNet" in p for p in check.wheel_problems(SHIPPED, DEVICE - {"LICENSE-yunet.txt"}, 1))
    assert any("over the" in p for p in check.wheel_problems(SHIPPED, DEVICE, 23_800_000))


def test_pyproject_leaves_the_references_out_of_the_wheel_and_keeps_them_in_the_sdist():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert not any(g.endswith(".keras") for g in tool["package-data"]["fer_edge.models"])
    assert {"*.keras", "*_fp32.tflite"} <= set(tool["exclude-package-data"]["fer_edge.models"])
    assert "include models/*.keras models/*_fp32.tflite" in (ROOT / "MANIFEST.in").read_text()


def test_a_missing_reference_says_where_to_get_it_in_one_line():
    msg = missing_model("models/fer-vgg.keras")
    assert msg.startswith("models/fer-vgg.keras: no such model file; ") and "sdist" in msg and "\n" not in msg
    assert "sdist" in missing_model("fer-lite_fp32.tflite")
    assert missing_model("mine.keras") == "mine.keras: no such model file"  # not a shipped name: no hint


def test_a_bare_shipped_name_is_the_installed_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert shipped_or_path("fer-vgg_golden.npz") == str(shipped_file("fer-vgg_golden.npz"))
    assert shipped_or_path("sub/fer-vgg_golden.npz") == "sub/fer-vgg_golden.npz"  # a path is a path
    assert shipped_or_path("nothing.npz") == "nothing.npz"
    (tmp_path / "fer-vgg_golden.npz").write_bytes(b"mine")
    assert shipped_or_path("fer-vgg_golden.npz") == "fer-vgg_golden.npz"  # a file in the working folder wins


@pytest.mark.data
def test_verify_by_shipped_names_from_anywhere(data_dir, tmp_path, monkeypatch, capsys):
    """What a device with only the wheel runs: the shipped INT8 file against its golden outputs, by name."""
    from fer_edge.convert.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["verify", "fer-vgg_int8.tflite", "--reference", "fer-vgg_golden.npz", "--data", str(data_dir),
                 "--sample", "300", "--kernels", "builtin"]) == 0
    out, err = capsys.readouterr()
    assert f"reference: golden outputs {shipped_file('fer-vgg_golden.npz')}" in err
    assert "tflite-int8:" in err and "parity on PrivateTest: pass" in out


@pytest.mark.data
def test_fer_edge_verify_measures_agreement_with_the_golden_outputs(data_dir, tmp_path, capsys):
    """fer-edge verify on a shipped model reads NAME_golden.npz beside it: its agreement is the share of faces
    whose top-1 class is the golden outputs' (checked here through convert.golden's own row matching)."""
    import json

    from fer_edge.convert.golden import load_golden
    from fer_edge.runtime.model.backends import Classifier
    from fer_edge.runtime.cli import main
    from fer_edge.runtime.data.datasets import load_dataset

    out = tmp_path / "verify.json"
    assert main(["verify", "--model", "vgg", "--data", str(data_dir), "--limit", "300", "--json", str(out)]) == 0
    got = json.loads(out.read_text())["golden_agreement"]
    assert "golden outputs (fer-vgg_golden.npz)" in capsys.readouterr().err
    _, ref_probs, ev = load_golden(shipped_file("fer-vgg_golden.npz"), load_dataset(data_dir))
    mine = Classifier(shipped_file("fer-vgg_int8.tflite")).predict_batched(ev.faces[:300])
    assert got == {"file": "fer-vgg_golden.npz", "faces": 300,
                   "agreement": round(float((mine.argmax(1) == ref_probs[:300].argmax(1)).mean()), 6)}
    lone = tmp_path / "fer-vgg_int8.tflite"  # the same file with no golden outputs beside it: nothing claimed
    lone.write_bytes(shipped_file("fer-vgg_int8.tflite").read_bytes())
    assert main(["verify", "--model", str(lone), "--data", str(data_dir), "--limit", "50", "--json",
                 str(tmp_path / "lone.json")]) == 0
    assert "golden_agreement" not in json.loads((tmp_path / "lone.json").read_text())
