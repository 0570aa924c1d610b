"""Models with other class lists are scored on the classes they share with the data (issue 43, point 5), and
the tools say which: `fer-edge verify`, fer-eval and fer-bench on the same labelled photos (tfeid-dev).

The second model is the shipped fer-vgg with its classes renamed and reordered in its metadata only (angry is
"grumpy" there, a class tfeid-dev does not have): the same network, so on the faces of the six shared classes
it must give the same answers as fer-vgg, and the angry faces must be left out of its score."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fer_edge.runtime.cli import main as fer_edge
from fer_edge.runtime.model.labels import CUSTOM, LabelSet
from fer_edge.runtime.model.metadata import read_metadata, write_metadata

ROOT = Path(__file__).resolve().parents[1]
VGG = ROOT / "models" / "fer-vgg_int8.tflite"


@pytest.fixture(scope="module")
def grumpy(tmp_path_factory) -> Path:
    """fer-vgg's INT8 file whose metadata calls class 0 'grumpy' (its outputs unchanged)."""
    path = tmp_path_factory.mktemp("grumpy") / "grumpy_int8.tflite"
    shutil.copy(VGG, path)
    meta = read_metadata(VGG)
    labels = ("grumpy", *meta.labels[1:])
    write_metadata(path, meta.replace(label_set=LabelSet(CUSTOM, labels)))
    return path


def _verify(model: Path, photos: Path, tmp_path: Path, capfd) -> tuple[dict, str]:
    out = tmp_path / f"{model.stem}.json"
    assert fer_edge(["verify", "--model", str(model), "--data", str(photos), "--json", str(out)]) == 0
    return json.loads(out.read_text()), capfd.readouterr().err


def test_verify_scores_other_classes_on_the_shared_ones_and_says_which(grumpy, tfeid_dev, tmp_path, capfd):
    vgg, _ = _verify(VGG, tfeid_dev, tmp_path, capfd)
    other, err = _verify(grumpy, tfeid_dev, tmp_path, capfd)
    assert "scored on the 6 classes the model and the data share" in err and "angry" in err
    angry = vgg["per_class"]["angry"]["support"]
    assert angry > 0 and other["n"] == vgg["n"] - angry  # the angry photos left out of its score
    for name in ("happy", "sad", "surprise", "fear", "disgust", "neutral"):  # same network, same answers
        assert other["per_class"][name]["recall"] >= vgg["per_class"][name]["recall"] - 1e-9
    assert other["per_class"]["grumpy"]["support"] == 0


@pytest.mark.slow
def test_fer_bench_names_the_shared_classes(grumpy, tfeid_dev, tmp_path):
    from fer_edge.convert.bench import main as fer_bench

    out = tmp_path / "bench.json"
    assert fer_bench([str(VGG), str(grumpy), "--data", str(tfeid_dev), "--quick", "--threads", "1", "--batches", "1",
                      "--json", str(out)]) == 0
    rows = {r["name"]: r for r in json.loads(out.read_text())["rows"] if r["kernels"] != "builtin"}
    assert "classes" not in rows[VGG.name] and "6 classes" in rows[grumpy.name]["classes"]
    assert rows[grumpy.name]["faces"] < rows[VGG.name]["faces"]
    assert 0.2 < rows[VGG.name]["accuracy"] <= 1 and np.isfinite(rows[grumpy.name]["accuracy"])


@pytest.mark.slow
def test_fer_eval_scores_a_keras_model_on_the_shared_classes(tfeid_dev, tmp_path, capsys):
    pytest.importorskip("keras")
    from fer_edge.training.evaluate import main as fer_eval

    model = tmp_path / "grumpy.keras"
    shutil.copy(ROOT / "models" / "fer-vgg.keras", model)
    meta = read_metadata(model)
    write_metadata(model, meta.replace(label_set=LabelSet(CUSTOM, ("grumpy", *meta.labels[1:]))))
    assert fer_eval([str(model), "--data", str(tfeid_dev), "--splits", "PrivateTest", "--out", str(tmp_path / "ev")]) == 0
    assert "scored on the 6 classes the model and the data share" in capsys.readouterr().out
    report = json.loads((tmp_path / "ev" / "report.json").read_text())["splits"]["PrivateTest"]
    assert report["per_class"]["grumpy"]["support"] == 0 and report["n"] > 100
