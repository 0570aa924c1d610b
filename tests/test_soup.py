"""fer-train --soup: the greedy weight average of a run's best epochs, batch norm measured again, kept only when
it validates higher; and its pieces on small synthetic models."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("tensorflow")
import keras  # noqa: E402

from fer_edge.runtime.model.metadata import read_metadata  # noqa: E402
from fer_edge.training import train  # noqa: E402
from fer_edge.training.soup import epoch_file, greedy_soup, load_epoch, recalibrate_bn, worth_keeping  # noqa: E402

from test_training import TINY, _one_line_error, _run, small_data  # noqa: E402,F401  (small_data: a fixture)

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _bn_model():
    ins = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(3, 3, use_bias=False)(ins)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(2, 3, use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    return keras.Model(ins, keras.layers.Flatten()(x))


def test_batch_norm_statistics_are_measured_layer_after_layer():
    model = _bn_model()
    x = np.random.default_rng(0).normal(2.0, 3.0, (300, 6, 6, 1)).astype(np.float32)
    recalibrate_bn(model, x, batch=64)
    for bn in (l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)):
        a = keras.ops.convert_to_numpy(keras.Model(model.inputs, bn.input)([x])).reshape(-1, bn.input.shape[-1])
        assert np.allclose(keras.ops.convert_to_numpy(bn.moving_mean), a.mean(0), rtol=1e-4, atol=1e-4)
        assert np.allclose(keras.ops.convert_to_numpy(bn.moving_variance), a.var(0), rtol=1e-3, atol=1e-4)


def _linear_problem(seed: int):
    """(rng, faces x, labels y, the true weights, a linear model to hold candidates' weights)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    w_true = rng.normal(size=(4, 3)).astype(np.float32)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, use_bias=False)])
    return rng, x, (x @ w_true).argmax(1), w_true, model


def test_greedy_soup_keeps_what_helps_and_leaves_out_what_hurts():
    rng, x, y, w_true, model = _linear_problem(1)
    good = [w_true + 0.05 * rng.normal(size=w_true.shape).astype(np.float32) for _ in range(2)]
    bad = [20 * rng.normal(size=w_true.shape).astype(np.float32)]  # dominates any average it joins
    cands = [("good a", 0.99, good[:1]), ("bad", 0.5, bad), ("good b", 0.98, good[1:])]
    members, acc = greedy_soup(model, cands, x[:8], x, y, log=lambda m: None)
    assert members == ["good a", "good b"] and acc > 0.9
    assert np.allclose(model.get_weights()[0], (good[0] + good[1]) / 2)  # the model holds the chosen soup


def test_the_best_epoch_seeds_the_soup_even_when_init_validates_higher():
    rng, x, y, w_true, model = _linear_problem(2)
    epoch = w_true + 0.3 * rng.normal(size=w_true.shape).astype(np.float32)
    init = w_true + 0.01 * rng.normal(size=w_true.shape).astype(np.float32)
    cands = [("epoch 2", 0.8, [epoch]), ("--init start.keras", 0.99, [init])]
    members, _ = greedy_soup(model, cands, x[:8], x, y, log=lambda m: None)
    assert members[0] == "epoch 2"  # seeded by the run's own epoch, not by --init
    assert members == ["epoch 2", "--init start.keras"]  # the near-perfect start helps the average, so it joins


def test_a_soup_of_one_model_is_never_kept():
    assert worth_keeping(["epoch 3", "epoch 5"], 0.67, 0.66)
    assert not worth_keeping(["epoch 3", "epoch 5"], 0.66, 0.66)  # not higher: the best epoch stays
    # the --init model alone scoring above every epoch must not become the run's result
    assert not worth_keeping(["--init model.keras"], 0.68, 0.66)


@pytest.mark.data
def test_tiny_run_with_soup_keeps_epochs_and_records_the_attempt(small_data, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--data", str(small_data), "--arch", "vgg-half", "--out", str(out), *TINY, "--epochs", "3", "--soup", "3"]
    code, stdout, err = _run(capsys, argv)
    assert code == 0, err
    assert all(epoch_file(out, e).is_file() for e in (1, 2, 3))
    meta = read_metadata(out / "model.keras")
    soup = meta.provenance["soup"]
    assert soup["candidates"] and set(soup["members"]) <= set(soup["candidates"]) and soup["bn_faces"] == 128
    saved = keras.models.load_model(out / "model.keras", compile=False).get_weights()
    conv = 0  # the first kernel: not a batch-norm statistic, so it is exactly the members' average
    if soup["kept"]:
        assert soup["val_accuracy"] > soup["best_epoch_val_accuracy"]
        epochs = [int(m.split()[1]) for m in soup["members"]]
        mean = np.mean([load_epoch(epoch_file(out, e))[conv] for e in epochs], axis=0)
        assert np.allclose(saved[conv], mean, atol=1e-6)
    else:
        state = json.loads((out / "state.json").read_text())
        best = load_epoch(epoch_file(out, state["best_epoch"] + 1))
        assert all(np.allclose(a, b) for a, b in zip(saved, best))
    assert "soup" in stdout
    # a resumed run keeps --soup from its saved configuration, and keeps saving each epoch's weights
    state = json.loads((out / "state.json").read_text())
    state["config"]["epochs"] = 4
    (out / "state.json").write_text(json.dumps(state))
    code, stdout, err = _run(capsys, ["--data", str(small_data), "--out", str(out), "--resume"])
    assert code == 0, err
    assert epoch_file(out, 4).is_file() and "soup" in stdout
    # the model card says which weights were averaged, when a soup was kept
    from fer_edge.runtime.model.metadata import write_metadata
    from fer_edge.training.ship import write_card

    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(out / "model.keras", models / "fer-tiny.keras")
    meta = read_metadata(models / "fer-tiny.keras")
    record = {**meta.provenance["soup"], "kept": True, "members": ["epoch 2", "epoch 4"]}
    write_metadata(models / "fer-tiny.keras", meta.replace(provenance={**meta.provenance, "soup": record}))
    card = write_card(out, models, "fer-tiny").read_text()
    assert "`--soup`: the average of epoch 2, epoch 4" in card, card


@pytest.mark.data
def test_bad_soup_count_is_one_line_and_writes_nothing(small_data, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = _run(capsys, ["--data", str(small_data), "--out", str(out), "--soup", "-2", *TINY])
    _one_line_error(code, err, "--soup must be 0", "found -2")
    assert not out.exists()


def test_wise_scores_and_keeps_its_two_ends_exactly_as_trained():
    from fer_edge.training.wise import blend

    model = _bn_model()
    rng = np.random.default_rng(3)
    x = rng.normal(1.0, 2.0, (64, 6, 6, 1)).astype(np.float32)
    start = [w + rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()]
    tuned = [np.abs(w + rng.normal(size=w.shape).astype(np.float32)) for w in model.get_weights()]
    for a, want in ((0.0, start), (1.0, tuned)):
        blend(model, start, tuned, a, x)  # batch norm (moving mean and variance included) as each model had it
        assert all(np.array_equal(g, w) for g, w in zip(model.get_weights(), want))
    blend(model, start, tuned, 0.5, x)  # in between: averaged, and batch norm measured again on x
    got = model.get_weights()
    assert np.allclose(got[0], (start[0] + tuned[0]) / 2)
    bn = next(l for l in model.layers if isinstance(l, keras.layers.BatchNormalization))
    assert not np.allclose(keras.ops.convert_to_numpy(bn.moving_mean), (start[3] + tuned[3]) / 2)
