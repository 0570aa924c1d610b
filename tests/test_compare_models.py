"""benchmarks/compare_models.py: models scored on the same faces, with intervals and paired McNemar tests."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from fer_edge.runtime.data.metrics import mcnemar_exact, wilson_interval

ROOT = Path(__file__).resolve().parents[1]
VGG, LITE = ROOT / "models" / "fer-vgg_int8.tflite", ROOT / "models" / "fer-lite_int8.tflite"


def _script():
    spec = importlib.util.spec_from_file_location("compare_models", ROOT / "benchmarks" / "compare_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_wilson_interval_and_exact_mcnemar_match_known_values():
    lo, hi = wilson_interval(5, 10)
    assert abs(lo - 0.2366) < 1e-4 and abs(hi - 0.7634) < 1e-4
    assert wilson_interval(0, 10)[0] == 0.0 and abs(wilson_interval(0, 10)[1] - 0.2775) < 1e-4
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert mcnemar_exact(0, 10) == pytest.approx(2 / 1024)  # ten of ten discordant faces on one side
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(3, 9) == pytest.approx(mcnemar_exact(9, 3))
    assert mcnemar_exact(30, 21) == pytest.approx(0.2624, abs=1e-4)


@pytest.mark.data
def test_compare_scores_every_set_paired_against_the_reference(data_dir, tmp_path, capsys):
    twin = tmp_path / "twin.tflite"
    shutil.copyfile(LITE, twin)  # the same model under another name must score exactly as the original
    out = tmp_path / "cmp.json"
    assert _script().main([str(VGG), str(LITE), str(twin), "--data", str(data_dir), "--limit", "60",
                           "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    names = {"FER2013 PublicTest", "FER2013 PrivateTest"}
    assert names <= set(doc["results"])
    if (data_dir / "tfeid-dev").is_dir():
        assert doc["results"]["photos tfeid-dev"]["n"] == 60
    for name, row in doc["results"].items():
        ref = row["models"][str(VGG)]
        lite, pair = row["models"][str(LITE)], row["against_reference"][str(LITE)]
        assert row["models"][str(twin)] == lite and row["against_reference"][str(twin)] == pair
        # the paired counts are the difference in accuracy, face by face
        assert lite["accuracy"] - ref["accuracy"] == pytest.approx(
            (pair["only_candidate_right"] - pair["only_reference_right"]) / row["n"])
        assert lite["ci95"][0] <= lite["accuracy"] <= lite["ci95"][1]
        assert 0 < pair["mcnemar_p"] <= 1
    assert out.with_suffix(".md").read_text().count("| FER2013 ") == 2


@pytest.mark.data
def test_bad_compare_inputs_are_one_line_errors(data_dir, tmp_path, capsys):
    main = _script().main
    photos = tmp_path / "photos"
    photos.mkdir()
    out = tmp_path / "cmp.json"
    cases = [([str(VGG), str(VGG)], "each model once"),
             ([str(VGG), str(tmp_path / "none.tflite")], "no such model file"),
             ([str(VGG), "--photos", str(photos)], "expected a labels.csv of file,label rows or one folder per class")]
    (tmp_path / "labelled").mkdir()
    (tmp_path / "labelled" / "labels.csv").write_text("file,label\na.jpg,contempt\n")
    cases.append(([str(VGG), "--photos", str(tmp_path / "labelled")], "'contempt' is not one of the model's"))
    for args, message in cases:
        assert main([*args, "--data", str(data_dir), "--limit", "5", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
        assert not out.exists()


@pytest.mark.data
def test_photos_in_class_folders_score_as_with_labels_csv(data_dir, tmp_path):
    """Another dataset's layout (one folder per class, its own class names, a class the model lacks) is read
    as the same photos with the same labels as a labels.csv would give."""
    import csv

    rows = list(csv.DictReader(open(data_dir / "tfeid-dev" / "labels.csv", newline="")))
    picked = [next(r for r in rows if r["label"] == c) for c in ("angry", "happy", "sad", "surprise")]
    names = {"angry": "anger", "happy": "happiness", "sad": "Sadness", "surprise": "surprised"}
    flat, classes = tmp_path / "flat", tmp_path / "classes"
    flat.mkdir()
    (classes / "contempt").mkdir(parents=True)
    shutil.copyfile(data_dir / "tfeid-dev" / picked[0]["file"], classes / "contempt" / "x.jpg")
    for r in picked:
        src = data_dir / "tfeid-dev" / r["file"]
        shutil.copyfile(src, flat / src.name)
        (classes / names[r["label"]]).mkdir()
        shutil.copyfile(src, classes / names[r["label"]] / src.name)
    (flat / "labels.csv").write_text("file,label\n" + "".join(f"{Path(r['file']).name},{r['label']}\n" for r in picked))
    out = tmp_path / "cmp.json"
    assert _script().main([str(VGG), "--data", str(data_dir), "--limit", "4", "--photos", str(flat),
                           "--photos", str(classes), "--out", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert results["photos flat"]["n"] == results["photos classes"]["n"] == 4  # contempt left out
    assert results["photos flat"]["models"] == results["photos classes"]["models"]
