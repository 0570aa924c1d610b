"""python -m fer_edge.training.wise: a run interpolated with its --init model, chosen on PublicTest only."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from fer_edge.runtime.model.metadata import read_metadata  # noqa: E402
from fer_edge.training import train, wise  # noqa: E402

from test_training import TINY, _one_line_error, _run, ferplus_data, small_data  # noqa: E402,F401  (fixtures)

pytestmark = [pytest.mark.data,
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]


def test_choose_keeps_the_best_second_opinion_above_the_floor():
    rows = [{"alpha": 0.0, "fer2013": 0.68, "ferplus": 0.66}, {"alpha": 0.5, "fer2013": 0.67, "ferplus": 0.70},
            {"alpha": 0.8, "fer2013": 0.66, "ferplus": 0.72}, {"alpha": 1.0, "fer2013": 0.65, "ferplus": 0.73}]
    assert wise.choose(rows, 0.67, "ferplus")["alpha"] == 0.5
    assert wise.choose(rows, 0.60, "ferplus")["alpha"] == 1.0
    assert wise.choose(rows, 0.60, "fer2013")["alpha"] == 0.0
    assert wise.choose(rows, 0.90, "ferplus")["alpha"] == 1.0  # nothing qualifies: the run as it was


@pytest.fixture(scope="module")
def tuned_run(ferplus_data, tmp_path_factory):
    """A tiny run, and a second one fine-tuned from it with FER+ votes blended into the labels."""
    root = tmp_path_factory.mktemp("runs")
    start = root / "start"
    assert train.main(["--data", str(ferplus_data), "--arch", "vgg-half", "--out", str(start), *TINY]) == 0
    tuned = root / "tuned"
    assert train.main(["--data", str(ferplus_data), "--arch", "vgg-half", "--out", str(tuned), *TINY,
                       "--init", str(start / "model.keras"), "--ferplus-mix", "0.5", "--lr", "5e-3"]) == 0
    return start / "model.keras", tuned


def test_wise_keeps_an_interpolation_and_records_it(tuned_run, ferplus_data, capsys):
    start, run = tuned_run
    first = keras.models.load_model(start, compile=False).get_weights()[0]  # the first conv kernel: not batch norm
    end = keras.models.load_model(run / "model.keras", compile=False).get_weights()[0]
    code, stdout, err = _run(capsys, [str(run), "--data", str(ferplus_data), "--alphas", "0,0.5,1",
                                      "--min-val-accuracy", "0"], main=wise.main)
    assert code == 0, err
    rec = read_metadata(run / "model.keras").provenance["wise"]
    assert [r["alpha"] for r in rec["table"]] == [0.0, 0.5, 1.0]
    assert all(set(r) == {"alpha", "fer2013", "ferplus"} for r in rec["table"])  # FER+ scored where at hand
    best = max(rec["table"], key=lambda r: (r["ferplus"], r["fer2013"], r["alpha"]))
    assert rec["alpha"] == best["alpha"] and rec["floor"] == 0
    a = rec["alpha"]
    kept = keras.models.load_model(run / "model.keras", compile=False).get_weights()[0]
    assert np.allclose(kept, (1 - a) * first + a * end, atol=1e-6)
    assert f"kept a={a:.2f}" in stdout and (run / "eval" / "report.json").is_file()
    # the fine-tuned weights are kept as the endpoint: a second call scores the same table
    assert np.allclose(keras.models.load_model(run / wise.FINETUNED, compile=False).get_weights()[0], end)
    code, _, err = _run(capsys, [str(run), "--data", str(ferplus_data), "--alphas", "0,0.5,1"], main=wise.main)
    assert code == 0, err
    again = read_metadata(run / "model.keras").provenance["wise"]
    assert [r["fer2013"] for r in again["table"]] == [r["fer2013"] for r in rec["table"]]
    assert again["floor"] == rec["table"][-1]["fer2013"]  # default floor: the run's own accuracy
    # a floor no average reaches keeps the run exactly as it was
    code, stdout, err = _run(capsys, [str(run), "--data", str(ferplus_data), "--alphas", "0.5,1",
                                      "--min-val-accuracy", "1"], main=wise.main)
    assert code == 0, err
    assert "kept a=1.00" in stdout
    own = keras.models.load_model(run / wise.FINETUNED, compile=False).get_weights()
    assert all(np.array_equal(x, y) for x, y in
               zip(keras.models.load_model(run / "model.keras", compile=False).get_weights(), own))
    code, _, err = _run(capsys, [str(run), "--data", str(ferplus_data), "--alphas", "0,0.5,1"], main=wise.main)
    assert code == 0, err
    again = read_metadata(run / "model.keras").provenance["wise"]
    # the model card states the interpolation and its table
    from fer_edge.training.ship import write_card

    models = run.parent / "models"
    models.mkdir()
    shutil.copyfile(run / "model.keras", models / "fer-tiny.keras")
    card = write_card(run, models, "fer-tiny").read_text()
    assert "fer_edge.training.wise" in card and f"{again['alpha']:g} x the fine-tuned weights" in card, card
    assert "--ferplus-mix 0.5" in card


def test_bad_wise_calls_are_one_line_and_change_nothing(tuned_run, ferplus_data, tmp_path, capsys):
    start, run = tuned_run
    before = (run / "model.keras").read_bytes()
    cases = [
        ([str(run), "--alphas", "0,0.5"], ("--alphas", "include 1")),
        ([str(run), "--alphas", "0,x,1"], ("--alphas", "'0,x,1'")),
        ([str(run), "--min-val-accuracy", "67"], ("--min-val-accuracy", "0..1", "67")),
        ([str(start.parent)], ("not started from --init",)),
        ([str(tmp_path / "nowhere")], ("no such run folder",)),
    ]
    moved = run.parent / "moved.keras"
    (run / wise.FINETUNED).rename(moved)  # an interpolated model.keras without its endpoint is not interpolated again
    try:
        code, _, err = _run(capsys, [str(run), "--data", str(ferplus_data)], main=wise.main)
        _one_line_error(code, err, "already an interpolation", "finetuned.keras")
    finally:
        moved.rename(run / wise.FINETUNED)
    for argv, expected in cases:
        code, _, err = _run(capsys, [*argv, "--data", str(ferplus_data)], main=wise.main)
        _one_line_error(code, err, *expected)
        assert code == 2
    assert (run / "model.keras").read_bytes() == before
