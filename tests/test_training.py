"""fer-train, fer-eval and fer-explain through their CLIs, in-process, on tiny runs.

The runs train on a few hundred faces for one epoch: they check the plumbing (data -> model file with
metadata -> reports), not accuracy. Every architecture goes through once. The data (a small npz cut
from $FER_EDGE_DATA) lives in pytest's tmp folders only.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from fer_edge.runtime.core.fileio import sha256_file  # noqa: E402
from fer_edge.runtime.model.metadata import read_metadata, write_metadata  # noqa: E402
from fer_edge.training import evaluate, explain, train  # noqa: E402
from fer_edge.training.architectures import ARCHITECTURES  # noqa: E402

pytestmark = [pytest.mark.data,
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]  # Keras 3.15 on numpy 2

TINY = ["--limit", "128", "--epochs", "1", "--batch-size", "64"]
PER_SPLIT = {0: 320, 1: 64, 2: 64}  # faces kept from Training, PublicTest, PrivateTest


def _small_npz(fer2013, path: Path, splits=PER_SPLIT) -> Path:
    """A few hundred faces of each split, in FER2013 row order (so FER+ rows can be joined by position)."""
    keep = np.sort(np.concatenate([np.flatnonzero(fer2013.split == s)[:n] for s, n in splits.items()]))
    np.savez(path, pixels=fer2013.images[keep], emotion=fer2013.labels[keep].astype(np.uint8),
             usage=fer2013.split[keep].astype(np.uint8))
    return path


@pytest.fixture(scope="module")
def small_data(fer2013, tmp_path_factory) -> Path:
    return _small_npz(fer2013, tmp_path_factory.mktemp("data") / "fer2013.npz")


@pytest.fixture(scope="module")
def tiny_model(small_data, tmp_path_factory) -> Path:
    """One trained tiny run, shared by the reload, eval and explain tests."""
    out = tmp_path_factory.mktemp("runs") / "edge"
    assert train.main(["--data", str(small_data), "--arch", "edge", "--out", str(out), *TINY]) == 0
    return out


def _run(capsys, argv, main=train.main):
    code = main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _one_line_error(code, err, *expected):
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


# --- every architecture end to end -------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("arch", [a for a in ARCHITECTURES if a != "edge"])
def test_tiny_run_every_architecture(arch, small_data, tmp_path, capsys):
    out = tmp_path / arch
    extra = ["--limit", "64", "--batch-size", "32"] if arch == "tutorial-vgg" else []  # 42M parameters
    code, stdout, err = _run(capsys, ["--data", str(small_data), "--arch", arch, "--out", str(out), *TINY, *extra])
    assert code == 0, err
    assert "epoch 1/1" in stdout
    meta = read_metadata(out / "model.keras")
    assert meta.provenance["arch"] == arch and len(meta.labels) == 7
    assert (out / "eval" / "report.json").is_file()


def test_tiny_run_writes_model_with_metadata_and_reports(tiny_model, small_data):
    from fer_edge.runtime.model.labels import FER2013
    from fer_edge.convert.source import load_keras

    model, meta = load_keras(tiny_model / "model.keras")
    assert meta.labels == FER2013.labels
    assert meta.preprocess.size == (48, 48) and meta.preprocess.value_range == (0.0, 1.0)
    assert model.input_shape == (None, 48, 48, 1) and model.output_shape == (None, 7)
    assert model.compute_dtype == "float32"
    assert meta.provenance["arch"] == "edge" and meta.provenance["command"].startswith("fer-train --data")
    assert meta.provenance["validation"] == "PublicTest"
    assert {"PublicTest", "PrivateTest"} <= set(meta.figures)  # written back by the final evaluation
    report = json.loads((tiny_model / "eval" / "report.json").read_text())
    assert set(report["splits"]) == {"PublicTest", "PrivateTest"}
    assert report["splits"]["PrivateTest"]["n"] == PER_SPLIT[2]
    assert "| PrivateTest | 64 |" in (tiny_model / "eval" / "report.md").read_text()
    for png in ("curves.png", "confusion_PublicTest.png", "confusion_PrivateTest.png"):
        assert (tiny_model / "eval" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history = [json.loads(l) for l in (tiny_model / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1] and "val_accuracy" in history[0]


# --- resume --------------------------------------------------------------------------------------

def test_resume_completes_the_run_with_its_saved_config(small_data, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    argv = ["--data", str(small_data), "--arch", "vgg-half", "--out", str(out), "--limit", "64",
            "--batch-size", "32", "--epochs", "2", "--seed", "3"]
    real_lr_at = train.lr_at

    def stop_before_epoch_2(epoch, cfg):
        if epoch >= 1:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C during epoch 2
        return real_lr_at(epoch, cfg)

    monkeypatch.setattr(train, "lr_at", stop_before_epoch_2)
    code, stdout, err = _run(capsys, argv)
    assert code == 130 and "--resume" in err
    assert json.loads((out / "state.json").read_text())["epoch"] == 1
    monkeypatch.setattr(train, "lr_at", real_lr_at)

    # the saved configuration wins: arch, epochs and seed come from state.json, not these defaults,
    # and an option given now for a saved setting is named as ignored
    code, stdout, err = _run(capsys, ["--data", str(small_data), "--out", str(out), "--resume", "--epochs", "5"])
    assert code == 0, err
    assert "keeps the saved epochs" in stdout
    assert "resuming" in stdout and "epoch 2/2" in stdout and "epoch 1/2" not in stdout
    history = [json.loads(l) for l in (out / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2]
    state = json.loads((out / "state.json").read_text())
    assert state["epoch"] == 2 and state["config"]["arch"] == "vgg-half" and state["config"]["seed"] == 3
    assert read_metadata(out / "model.keras").provenance["arch"] == "vgg-half"

    code, stdout, err = _run(capsys, ["--data", str(small_data), "--out", str(out), "--resume"])
    assert code == 0 and "nothing to train" in stdout  # a finished run stays finished


def test_resume_without_a_run_is_refused(small_data, tmp_path, capsys):
    code, _, err = _run(capsys, ["--data", str(small_data), "--out", str(tmp_path / "none"), "--resume"])
    _one_line_error(code, err, "state.json")
    assert not (tmp_path / "none").exists()


# --- FER+ ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ferplus_data(data_dir, fer2013, tmp_path_factory) -> Path:
    """A data folder in the layout load_dataset expects: fer2013.npz + ferplus/fer2013new.csv, both cut
    to the same rows (the npz keeps FER2013 order; the csv keeps the matching FER+ lines)."""
    src = data_dir / "ferplus" / "fer2013new.csv"
    if not src.is_file():
        pytest.skip(f"no FER+ labels at {src}")
    root = tmp_path_factory.mktemp("ferplus_data")
    keep = np.sort(np.concatenate([np.flatnonzero(fer2013.split == s)[:n] for s, n in PER_SPLIT.items()]))
    np.savez(root / "fer2013.npz", pixels=fer2013.images[keep], emotion=fer2013.labels[keep].astype(np.uint8),
             usage=fer2013.split[keep].astype(np.uint8))
    (root / "ferplus").mkdir()
    wanted = set(keep.tolist())
    with open(src, newline="") as fin, open(root / "ferplus" / "fer2013new.csv", "w", newline="") as fout:
        reader, writer = csv.reader(fin), csv.writer(fout)
        writer.writerow(next(reader))
        for i, row in enumerate(reader):
            if i in wanted:
                writer.writerow(row)
    return root


@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_ferplus_gives_an_eight_class_model(soft, ferplus_data, tmp_path, capsys):
    from fer_edge.runtime.model.labels import FERPLUS
    from fer_edge.convert.source import load_keras

    out = tmp_path / "ferplus"
    argv = ["--data", str(ferplus_data), "--labels", "ferplus", "--arch", "vgg-half", "--out", str(out), *TINY]
    code, stdout, err = _run(capsys, argv + (["--soft"] if soft else []))
    assert code == 0, err
    model, meta = load_keras(out / "model.keras")
    assert model.output_shape == (None, 8) and meta.labels == FERPLUS.labels
    assert meta.provenance["soft"] is soft
    assert json.loads((out / "eval" / "report.json").read_text())["splits"]["PrivateTest"]["labels"] == list(FERPLUS.labels)


def test_ferplus_mix_blends_the_ten_votes_into_fer2013_labels(ferplus_data, tmp_path, capsys):
    from fer_edge.runtime.data.datasets import load_dataset

    ds = load_dataset(ferplus_data)
    tr = ds.subset("Training")
    onehot = np.eye(7, dtype=np.float32)[tr.labels]
    mixed, record = train.ferplus_mix(ds, tr, onehot, 0.25, log=lambda m: None)
    # the expected label of every face, from the csv itself: FER+ columns named as FER2013's, contempt left out
    with open(ferplus_data / "ferplus" / "fer2013new.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    names = {"anger": 0, "disgust": 1, "fear": 2, "happiness": 3, "sadness": 4, "surprise": 5, "neutral": 6}
    changed = 0
    for i, r in zip(tr.rows, mixed):
        votes = np.zeros(7)
        for col, k in names.items():
            votes[k] = int(rows[i][col])
        allv = [int(rows[i][c]) for c in (*names, "contempt", "unknown", "NF")]
        if not rows[i]["Image name"].strip() or int(np.argmax(allv)) >= 8 or votes.sum() == 0:
            expected = np.eye(7)[tr.labels[list(tr.rows).index(i)]]  # FER+ dropped it: the FER2013 label stays
        else:
            expected = 0.75 * np.eye(7)[tr.labels[list(tr.rows).index(i)]] + 0.25 * votes / votes.sum()
            changed += 1
        assert np.allclose(r, expected, atol=1e-6)
    assert changed == record["faces"] > 0.9 * len(tr)
    assert 0.4 < record["majority_agreement"] < 0.9  # FER+ relabelled a good share of FER2013's faces
    # through the CLI: recorded in the model, validated on FER2013's labels as before
    out = tmp_path / "mix"
    code, stdout, err = _run(capsys, ["--data", str(ferplus_data), "--arch", "vgg-half", "--out", str(out),
                                      "--ferplus-mix", "0.5", *TINY])
    assert code == 0, err
    assert "--ferplus-mix 0.5:" in stdout
    meta = read_metadata(out / "model.keras")
    assert meta.labels == ds.label_set.labels and meta.provenance["ferplus_mix"]["weight"] == 0.5


@pytest.mark.parametrize("extra, expected", [
    (["--ferplus-mix", "1.5"], ("--ferplus-mix", "between 0 and 1", "1.5")),
    (["--ferplus-mix", "0.5", "--labels", "ferplus"], ("--ferplus-mix", "--labels fer2013")),
    (["--ferplus-mix", "0.5"], ("--ferplus-mix", "fer2013new.csv", "no such file")),
], ids=["out-of-range", "ferplus-labels", "no-ferplus-csv"])
def test_bad_ferplus_mix_writes_nothing(extra, expected, small_data, tmp_path, capsys):
    code, _, err = _run(capsys, ["--data", str(small_data), "--out", str(tmp_path / "o"), *extra, *TINY])
    _one_line_error(code, err, *expected)
    assert not (tmp_path / "o").exists()


# --- bad input: one clear line, exit code non-zero, nothing written ------------------------------

def test_unknown_architecture_lists_the_valid_ones(small_data, tmp_path, capsys):
    code, _, err = _run(capsys, ["--data", str(small_data), "--arch", "resnet", "--out", str(tmp_path / "o")])
    _one_line_error(code, err, "'resnet'", *ARCHITECTURES)
    assert not (tmp_path / "o").exists()


def test_missing_data_path(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "fer2013.csv"
    code, _, err = _run(capsys, ["--data", str(missing), "--out", str(tmp_path / "o")])
    _one_line_error(code, err, str(missing), "no such file")
    assert not (tmp_path / "o").exists()


def test_out_not_empty_needs_force_and_is_left_alone(small_data, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = _run(capsys, ["--data", str(small_data), "--out", str(out), *TINY])
    _one_line_error(code, err, str(out), "not empty", "--force")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_soft_without_ferplus_writes_nothing(small_data, tmp_path, capsys):
    code, _, err = _run(capsys, ["--data", str(small_data), "--out", str(tmp_path / "o"), "--soft", *TINY])
    _one_line_error(code, err, "--soft", "ferplus")
    assert not (tmp_path / "o").exists()


def test_data_without_public_test_takes_a_seeded_validation_split(fer2013, tmp_path, capsys):
    path = tmp_path / "fer2013.csv"
    pick = np.concatenate([np.flatnonzero(fer2013.split == 0)[:160], np.flatnonzero(fer2013.split == 2)[:32]])
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        for i in pick:
            w.writerow([int(fer2013.labels[i]), " ".join(map(str, fer2013.images[i].ravel())),
                        "Training" if fer2013.split[i] == 0 else "PrivateTest"])
    out = tmp_path / "o"
    code, stdout, err = _run(capsys, ["--data", str(path), "--arch", "vgg-half", "--out", str(out),
                                      "--epochs", "1", "--batch-size", "64", "--seed", "5"])
    assert code == 0, err
    note = next(l for l in stdout.splitlines() if "no PublicTest" in l)
    assert "seeded 10% of Training" in note and "seed 5" in note
    assert "PublicTest" in stdout and "skipped" in stdout  # the evaluation says so too
    assert read_metadata(out / "model.keras").provenance["validation"].startswith("seeded 10% of Training")
    assert set(json.loads((out / "eval" / "report.json").read_text())["splits"]) == {"PrivateTest"}


# --- the GPU code paths, exercised on the CPU ----------------------------------------------------

def test_mixed_precision_path_saves_a_float32_model(small_data, tmp_path, capsys, monkeypatch):
    """With a GPU present fer-train turns mixed precision on; on a CPU the same code must run, the saved
    model must be float32, and the process-wide policy must be restored afterwards."""
    import keras

    monkeypatch.setattr(train, "_gpu_count", lambda: 1)
    out = tmp_path / "mixed"
    code, stdout, err = _run(capsys, ["--data", str(small_data), "--arch", "vgg-half", "--out", str(out),
                                      "--strategy", "mirrored", *TINY, "--limit", "64"])
    assert code == 0, err
    assert "mixed precision on" in stdout and "MirroredStrategy" in stdout
    assert keras.mixed_precision.global_policy().name == "float32"
    from fer_edge.convert.source import load_keras

    model, _ = load_keras(out / "model.keras")
    assert model.compute_dtype == "float32" and all(l.dtype_policy.name == "float32" for l in model.layers)


# --- fer-eval and fer-explain --------------------------------------------------------------------

def test_fer_eval_cli(tiny_model, small_data, tmp_path, capsys):
    out = tmp_path / "report"
    code, stdout, err = _run(capsys, [str(tiny_model / "model.keras"), "--data", str(small_data), "--out", str(out),
                                      "--splits", "PrivateTest"], main=evaluate.main)
    assert code == 0, err
    assert "PrivateTest: accuracy" in stdout
    doc = json.loads((out / "report.json").read_text())
    r = doc["splits"]["PrivateTest"]
    assert r["n"] == PER_SPLIT[2] and np.array(r["confusion"]).sum() == PER_SPLIT[2]
    assert {"precision", "recall", "f1", "roc_auc", "support"} <= set(r["per_class"]["happy"])
    assert (out / "report.md").is_file() and (out / "confusion_PrivateTest.png").is_file()

    # a model without metadata (a third-party file) needs --labels and --normalize, then evaluates the same
    import keras

    bare = tmp_path / "bare.keras"
    keras.models.load_model(tiny_model / "model.keras", compile=False).save(bare)
    argv = [str(bare), "--data", str(small_data), "--out", str(tmp_path / "bare_report"), "--splits", "PrivateTest"]
    code, _, err = _run(capsys, argv, main=evaluate.main)
    _one_line_error(code, err, "no fer-edge metadata", "--labels", "--normalize")
    code, _, err = _run(capsys, argv + ["--labels", "fer2013", "--normalize", "0,1"], main=evaluate.main)
    assert code == 0, err
    again = json.loads((tmp_path / "bare_report" / "report.json").read_text())["splits"]["PrivateTest"]
    assert again["confusion"] == r["confusion"]


def test_fer_eval_keeps_earlier_reports_without_force(tiny_model, small_data, tmp_path, capsys):
    out = tmp_path / "report"
    argv = [str(tiny_model / "model.keras"), "--data", str(small_data), "--out", str(out), "--splits", "PrivateTest"]
    assert _run(capsys, argv, main=evaluate.main)[0] == 0
    (out / "report.json").write_text("earlier")
    code, _, err = _run(capsys, argv, main=evaluate.main)
    _one_line_error(code, err, "not empty", "--force")
    assert (out / "report.json").read_text() == "earlier"
    code, _, err = _run(capsys, argv[:-1] + ["Private", "--force"], main=evaluate.main)
    _one_line_error(code, err, "unknown split 'Private'", "PrivateTest")
    assert (out / "report.json").read_text() == "earlier"
    assert _run(capsys, argv + ["--force"], main=evaluate.main)[0] == 0
    assert json.loads((out / "report.json").read_text())["splits"]["PrivateTest"]["n"] == PER_SPLIT[2]


def test_fer_eval_missing_model(small_data, tmp_path, capsys):
    code, _, err = _run(capsys, [str(tmp_path / "no.keras"), "--data", str(small_data)], main=evaluate.main)
    _one_line_error(code, err, "no.keras")


def test_fer_explain_writes_face_heatmap_overlay(tiny_model, samples_dir, tmp_path, capsys):
    import cv2

    photo = samples_dir / "fer_justin.jpg"
    if not photo.is_file():
        pytest.skip(f"no sample photo {photo}")
    png = tmp_path / "explain.png"
    code, stdout, err = _run(capsys, [str(tiny_model / "model.keras"), str(photo), "--out", str(png), "--steps", "32"],
                             main=explain.main)
    assert code == 0, err
    assert "face at" in stdout  # the photo is larger than a face crop: the runtime's detector found the face
    img = cv2.imread(str(png))
    h, w = img.shape[:2]
    assert 2.2 < w / h < 3.2  # three panels side by side: face | attribution | overlay
    # each panel has content: the image is not blank in any third
    for third in np.array_split(img, 3, axis=1):
        assert third.std() > 10

    # integrated gradients' completeness: attributions sum to p(face) - p(black) (50 steps, trapezoid)
    result = explain.explain(tiny_model / "model.keras", photo, tmp_path / "again.png", steps=50, log=lambda m: None)
    assert result["completeness_error"] <= 0.05 * max(abs(result["probability_gap"]), 1e-3) + 1e-4
    assert result["label"] in read_metadata(tiny_model / "model.keras").labels

    # no overwrite without --force
    code, _, err = _run(capsys, [str(tiny_model / "model.keras"), str(photo), "--out", str(png)], main=explain.main)
    _one_line_error(code, err, "already exists", "--force")


def test_fer_explain_user_mistakes(tiny_model, samples_dir, tmp_path, capsys):
    import keras

    model = str(tiny_model / "model.keras")
    code, _, err = _run(capsys, [model, str(tmp_path / "missing.jpg"), "--out", str(tmp_path / "a.png")], main=explain.main)
    _one_line_error(code, err, "missing.jpg", "no such image")
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    code, _, err = _run(capsys, [model, str(text), "--out", str(tmp_path / "a.png")], main=explain.main)
    _one_line_error(code, err, "notes.jpg", "not an image")
    no_faces = samples_dir / "fer_no-faces.jpg"
    if no_faces.is_file():
        code, _, err = _run(capsys, [model, str(no_faces), "--out", str(tmp_path / "a.png")], main=explain.main)
        _one_line_error(code, err, "no face found", "--whole-image")

    # a model without fer-edge metadata needs --labels and --normalize
    bare = tmp_path / "bare.keras"
    keras.models.load_model(model, compile=False).save(bare)
    face = tmp_path / "face.png"  # a synthetic gradient: enough to run the model on
    import cv2

    cv2.imwrite(str(face), np.tile(np.linspace(0, 255, 48, dtype=np.uint8), (48, 1)))
    code, _, err = _run(capsys, [str(bare), str(face), "--out", str(tmp_path / "a.png")], main=explain.main)
    _one_line_error(code, err, "no fer-edge metadata", "--labels", "--normalize")
    code, stdout, err = _run(capsys, [str(bare), str(face), "--out", str(tmp_path / "a.png"), "--labels", "fer2013",
                                      "--normalize", "0,1", "--steps", "8"], main=explain.main)
    assert code == 0, err
    assert "whole image" in stdout  # a 48x48 image is a face crop: no detection
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temporaries


def test_model_card_command_trains_the_same_run_afresh():
    """The card's command is the saved configuration: parsed back by fer-train it gives the same run."""
    import shlex
    from dataclasses import asdict

    from fer_edge.training.ship import reproduce_command
    from fer_edge.training.train import TrainConfig, build_parser

    cfg = TrainConfig(data="../shared/data", out="runs/x", arch="vgg", epochs=40, patience=20, value_range=(-1.0, 1.0),
                      equalize=True, augment=False, class_weight="balanced", resume=True, command="fer-train ... --resume")
    words = shlex.split(reproduce_command(json.loads(json.dumps(asdict(cfg)))))  # as state.json stores it
    assert words[0] == "fer-train" and "--resume" not in words
    from fer_edge.runtime.cli_args import fix_argv

    a = build_parser().parse_args(fix_argv(words[1:]))
    assert (a.data, a.out, a.arch, a.epochs, a.patience, a.normalize, a.equalize, a.no_augment, a.class_weight) == \
        ("../shared/data", "runs/x", "vgg", 40, 20, "-1,1", True, True, "balanced")
    assert (a.lr, a.batch_size, a.seed) == (cfg.lr, cfg.batch_size, cfg.seed)


@pytest.mark.slow
def test_ship_holds_the_exported_files_to_the_budget_it_is_given(tiny_model, small_data, tmp_path, capsys):
    """The ship step's budget reaches the conversion: its recipe search and gate, and the shipped report. (64
    PrivateTest faces: one face is 1.6 pp, so the drop budget is loose too.)"""
    from fer_edge.training import ship

    out = tmp_path / "models"
    code = ship.main([str(tiny_model), "--data", str(small_data), "--name", "fer-tiny", "--out", str(out),
                      "--min-agreement", "0.5", "--max-drop", "50"])
    err = capsys.readouterr().err
    assert code in (0, None), err[-1500:]
    doc = json.loads((out / "fer-tiny_parity.json").read_text())
    assert doc["thresholds"]["min_agreement"] == 0.5 and doc["thresholds"]["max_drop_pp"] == 50
    assert "--min-agreement 0.5 --max-drop 50" in read_metadata(out / "fer-tiny_int8.tflite").provenance["command"]
    for name in ("fer-tiny.keras", "fer-tiny_int8.tflite", "fer-tiny_int8.onnx", "fer-tiny_golden.npz", "fer-tiny_CARD.md"):
        assert (out / name).is_file(), name
    # issue 38: one confidence threshold in every shipped file, the card's section, and the golden file still
    # naming the reference's bytes (its metadata changed after the golden outputs were written)
    files = ("fer-tiny.keras", "fer-tiny_int8.tflite", "fer-tiny_int8.onnx")
    thresholds = {read_metadata(out / n).threshold for n in files}
    assert len(thresholds) == 1 and None not in thresholds, thresholds
    assert "## Sure or not: the confidence threshold" in (out / "fer-tiny_CARD.md").read_text()
    with np.load(out / "fer-tiny_golden.npz", allow_pickle=False) as z:
        assert str(z["model_sha256"]) == sha256_file(out / "fer-tiny.keras")
    assert all(read_metadata(out / n).provenance["source_sha256"] == sha256_file(out / "fer-tiny.keras")
               for n in files[1:])
    # a budget the files cannot meet: the gate fails and the shipped reference is the one that was there before
    meta = read_metadata(out / "fer-tiny.keras")
    write_metadata(out / "fer-tiny.keras", meta.replace(provenance={**meta.provenance, "marker": "shipped before"}))
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    code = ship.main([str(tiny_model), "--data", str(small_data), "--name", "fer-tiny", "--out", str(out), "--force",
                      "--max-drop=-50"])
    err = capsys.readouterr().err
    assert code == 2 and "broke the parity budget" in err.strip().splitlines()[-1], err[-1500:]
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before  # nothing replaced, nothing left behind
