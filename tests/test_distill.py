"""fer-train --teacher: knowledge distillation through the CLI on tiny runs, and every bad teacher refused
with one line before anything is written."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from fer_edge.runtime.core.fileio import sha256_file  # noqa: E402
from fer_edge.runtime.model.metadata import read_metadata, write_metadata  # noqa: E402
from fer_edge.runtime.model.preprocess import PreprocessSpec  # noqa: E402
from fer_edge.training import distill, train  # noqa: E402

from test_training import TINY, _one_line_error, _run, small_data  # noqa: E402,F401  (small_data: a fixture)

pytestmark = [pytest.mark.data,
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]


@pytest.fixture(scope="module")
def teacher(small_data, tmp_path_factory) -> Path:
    """A tiny trained run used as the teacher (its accuracy does not matter here, its outputs do)."""
    out = tmp_path_factory.mktemp("runs") / "teacher"
    assert train.main(["--data", str(small_data), "--arch", "vgg-half", "--out", str(out), *TINY]) == 0
    return out / "model.keras"


def test_tiny_distillation_run_records_teacher_and_resumes(small_data, teacher, tmp_path, capsys):
    out = tmp_path / "student"
    argv = ["--data", str(small_data), "--arch", "vgg-lite", "--out", str(out), "--teacher", str(teacher),
            "--temperature", "3", "--soft-weight", "0.6", "--limit", "128", "--epochs", "2", "--batch-size", "64"]
    code, stdout, err = _run(capsys, argv)
    assert code == 0, err
    assert "flip-averaged" in stdout and "epoch 2/2" in stdout
    meta = read_metadata(out / "model.keras")
    d = meta.provenance["distillation"]
    assert d["teachers"][0]["file"] == teacher.name and d["temperature"] == 3 and d["soft_weight"] == 0.6
    assert set(d["teacher_val_accuracy"]) == {"plain", "flip_averaged"}
    assert meta.provenance["macs"] > 0 and meta.provenance["parameters"] > 0
    # the teacher's targets are cached in the run, keyed by the teacher and the faces, and are probabilities
    with np.load(out / distill.CACHE, allow_pickle=False) as z:
        probs = z["probs"]
    assert probs.shape == (128, 7) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    # the best model carries no distillation loss: it loads without fer-edge's code registered
    zipped = (out / "model.keras").read_bytes()
    assert b"Distillation" not in zipped
    # resume: one more epoch from the checkpoint (which does carry the loss), reusing the cached targets
    state = json.loads((out / "state.json").read_text())
    state["config"]["epochs"] = 3
    (out / "state.json").write_text(json.dumps(state))
    code, stdout, err = _run(capsys, ["--data", str(small_data), "--out", str(out), "--resume"])
    assert code == 0, err
    assert "resuming" in stdout and "epoch 3/3" in stdout
    assert "mirror images" not in stdout  # the training targets came from the cache
    assert read_metadata(out / "model.keras").provenance["distillation"]["teachers"][0]["sha256"] == d["teachers"][0]["sha256"]


def test_teacher_views_label_fixed_augmented_views(small_data, teacher, tmp_path, capsys):
    out = tmp_path / "student"
    argv = ["--data", str(small_data), "--arch", "vgg-lite", "--out", str(out), "--teacher", str(teacher),
            "--teacher-views", "3", *TINY]
    code, stdout, err = _run(capsys, argv)
    assert code == 0, err
    assert "3 fixed augmented views" in stdout
    with np.load(out / distill.CACHE, allow_pickle=False) as z:
        probs = z["probs"]
    assert probs.shape == (3, 128, 7) and np.allclose(probs.sum(axis=-1), 1, atol=1e-4)
    assert not np.allclose(probs[0], probs[1])  # different views, different targets
    d = read_metadata(out / "model.keras").provenance["distillation"]
    assert "3 fixed augmented views" in d["targets"]
    # resume reuses the views' cached targets (the views are drawn again from the seed, and match the key)
    state = json.loads((out / "state.json").read_text())
    state["config"]["epochs"] = 2
    (out / "state.json").write_text(json.dumps(state))
    code, stdout, err = _run(capsys, ["--data", str(small_data), "--out", str(out), "--resume"])
    assert code == 0, err
    assert "epoch 2/2" in stdout and "mirror images" not in stdout
    # a --force rerun with the same teacher and views reuses them too, and keeps them for the next run
    code, stdout, err = _run(capsys, argv + ["--force", "--lr", "1e-3"])
    assert code == 0, err
    assert "epoch 1/1" in stdout and "mirror images" not in stdout
    with np.load(out / distill.CACHE, allow_pickle=False) as z:
        assert np.array_equal(z["probs"], probs)
    # other views (another seed) do not match the cached key: the teacher runs again
    code, stdout, err = _run(capsys, argv + ["--force", "--seed", "1"])
    assert code == 0, err
    assert "made by other teachers or faces" in stdout and "mirror images" in stdout


def test_distillation_loss_is_hinton_kd():
    """The loss against a numpy reference: (1-w) CE(smoothed hard) + w T^2 KL(q_T || p_T)."""
    loss, _ = distill.loss_and_metric(3, temperature=2.0, soft_weight=0.7, label_smoothing=0.1)
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), 5).astype(np.float32)
    q = rng.dirichlet(np.ones(3), 5).astype(np.float32)
    hard = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 5)]
    got = float(np.asarray(loss(np.concatenate([hard, q], 1), p)))

    def tempered(x, t):
        e = np.exp(np.log(x) / t)
        return e / e.sum(1, keepdims=True)

    smooth = hard * 0.9 + 0.1 / 3
    ce = -(smooth * np.log(p)).sum(1)
    pt, qt = tempered(p, 2.0), tempered(q, 2.0)
    kl = (qt * (np.log(qt) - np.log(pt))).sum(1)
    assert got == pytest.approx(float(np.mean(0.3 * ce + 0.7 * 4 * kl)), rel=1e-4)


def _teacher_variant(teacher: Path, tmp_path: Path, **changes) -> Path:
    dst = tmp_path / "bad_teacher.keras"
    shutil.copyfile(teacher, dst)
    meta = read_metadata(dst)
    write_metadata(dst, meta.replace(**changes))
    return dst


@pytest.mark.parametrize("case", ["missing", "folder", "no-metadata", "labels", "input-size", "suffix"])
def test_bad_teacher_is_one_line_and_writes_nothing(case, small_data, teacher, tmp_path, capsys):
    from fer_edge.runtime.model.labels import get_label_set

    if case == "missing":
        bad, expected = tmp_path / "nope.keras", "no such model file"
    elif case == "folder":
        (tmp_path / "dir.keras").mkdir()
        bad, expected = tmp_path / "dir.keras", "no such model file"
    elif case == "no-metadata":
        import keras

        bad = tmp_path / "plain.h5"
        keras.models.load_model(teacher, compile=False).save(bad)
        expected = "carries no fer-edge metadata"
    elif case == "labels":
        bad, expected = _teacher_variant(teacher, tmp_path, label_set=get_label_set("ferplus")), "label set ferplus"
    elif case == "input-size":
        bad = _teacher_variant(teacher, tmp_path, preprocess=PreprocessSpec(size=(64, 64)))
        expected = "expected the same input size"
    else:
        bad = tmp_path / "teacher.tflite"
        bad.write_bytes(b"x")
        expected = "expected a Keras reference"
    out = tmp_path / "run"
    code, _, err = _run(capsys, ["--data", str(small_data), "--arch", "vgg-lite", "--out", str(out),
                                 "--teacher", str(bad), *TINY])
    assert code == 2
    _one_line_error(code, err, "--teacher", expected)
    assert not out.exists()


@pytest.mark.parametrize("flags,expected", [(["--temperature", "0"], "--temperature must be positive"),
                                            (["--soft-weight", "1.5"], "--soft-weight must be between 0 and 1"),
                                            (["--teacher-views", "-1"], "--teacher-views must be 0"),
                                            (["--teacher-views", "2", "--no-augment"], "cannot be used with --no-augment"),
                                            (["--strong-augment", "--no-augment"], "contradict each other")])
def test_bad_distillation_options(flags, expected, small_data, teacher, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = _run(capsys, ["--data", str(small_data), "--out", str(out), "--teacher", str(teacher), *flags, *TINY])
    _one_line_error(code, err, expected)
    assert not out.exists()


def test_teacher_views_without_a_teacher_is_refused(small_data, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = _run(capsys, ["--data", str(small_data), "--out", str(out), "--teacher-views", "4", *TINY])
    _one_line_error(code, err, "--teacher-views", "needs --teacher")
    assert not out.exists()


def test_fixed_views_batches_pair_each_view_with_its_own_targets():
    """Consistent teaching: every face in a batch is one of its fixed views (or that view mirrored), and its
    targets are that view's, never another view's or another face's."""
    from fer_edge.training.data import Augment, fixed_views, make_sequence

    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (40, 12, 12), dtype=np.uint8)
    views = fixed_views(faces, 3, seed=5, augment=Augment())
    assert views.shape == (3, 40, 12, 12) and not np.array_equal(views[0], views[1])
    assert np.array_equal(views, fixed_views(faces, 3, seed=5, augment=Augment()))  # the same views on resume
    k, n = np.meshgrid(np.arange(3), np.arange(40), indexing="ij")
    targets = np.stack([k, n], axis=-1).astype(np.float32)  # each view's targets name (view, face)
    spec = PreprocessSpec(size=(12, 12))
    seq = make_sequence(views, targets, np.ones(40, np.float32), spec, 16, seed=1, augment=Augment())
    assert len(seq) == 3
    seen, mirrored = set(), 0
    for b in range(len(seq)):
        x, y, _ = seq[b]
        for img, (v, i) in zip(np.rint(x[..., 0] * 255).astype(np.uint8), y.astype(int)):
            plain, flipped = np.array_equal(img, views[v, i]), np.array_equal(img, views[v, i][:, ::-1])
            assert plain or flipped
            mirrored += not plain
            seen.add(int(i))
    assert seen == set(range(40)) and 0 < mirrored < 40  # every face once per epoch; some mirrored, some not


def test_strong_augment_reaches_blurred_small_and_turned_faces(small_data, teacher, tmp_path, capsys):
    from fer_edge.training.data import Augment

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48]
    faces = np.repeat((((yy // 4 + xx // 4) % 2) * 255).astype(np.uint8)[None], 64, axis=0)  # sharp checkerboards
    sharpness = lambda f: np.abs(np.diff(f.astype(np.float32), axis=2)).mean()
    plain, strong = Augment()(faces, rng), Augment.strong()(faces, np.random.default_rng(0))
    assert strong.shape == faces.shape and strong.dtype == np.uint8
    assert sharpness(strong) < 0.9 * sharpness(plain)  # blur and low-resolution copies soften edges
    assert Augment.strong().max_rotate > Augment().max_rotate and Augment.strong().max_zoom > Augment().max_zoom
    # through the CLI: the teacher labels strongly augmented views, and the run records it
    out = tmp_path / "strong"
    code, stdout, err = _run(capsys, ["--data", str(small_data), "--arch", "vgg-lite", "--out", str(out), "--teacher",
                                      str(teacher), "--teacher-views", "2", "--strong-augment", *TINY])
    assert code == 0, err
    d = read_metadata(out / "model.keras").provenance["distillation"]
    assert "2 fixed strongly augmented views" in d["targets"]
    assert json.loads((out / "state.json").read_text())["config"]["strong_augment"] is True


def test_init_starts_from_a_reference_and_refuses_another_architecture(small_data, teacher, tmp_path, capsys):
    """--init copies a finished run's weights into a new run (a new schedule); the run records where it started."""
    import keras

    out = tmp_path / "more"
    code, stdout, err = _run(capsys, ["--data", str(small_data), "--arch", "vgg-half", "--out", str(out),
                                      "--init", str(teacher), "--lr", "1e-9", *TINY])
    assert code == 0, err
    meta = read_metadata(out / "model.keras")
    assert meta.provenance["init"] == {"file": teacher.name, "sha256": sha256_file(teacher)}
    # at a learning rate of 1e-9 the weights stay where --init put them (batch-norm statistics aside)
    start = keras.models.load_model(teacher, compile=False)
    end = keras.models.load_model(out / "model.keras", compile=False)
    convs = [(a, b) for a, b in zip(start.layers, end.layers) if a.__class__.__name__ == "Conv2D"]
    assert convs and all(np.allclose(a.get_weights()[0], b.get_weights()[0], atol=1e-5) for a, b in convs)
    other = tmp_path / "other"
    code, _, err = _run(capsys, ["--data", str(small_data), "--arch", "vgg-lite", "--out", str(other),
                                 "--init", str(teacher), *TINY])
    _one_line_error(code, err, "--init", "do not fit --arch vgg-lite", "expected a model of the same architecture")
    assert not other.exists()
    code, _, err = _run(capsys, ["--data", str(small_data), "--arch", "vgg-half", "--out", str(other),
                                 "--init", str(tmp_path / "nope.keras"), *TINY])
    _one_line_error(code, err, "--init", "no such model file")
    assert not other.exists()
