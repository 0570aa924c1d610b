"""`--normalize -1,1` reaches every CLI as a value, not as an unknown option (argparse's default reading)."""
from __future__ import annotations

import pytest

from fer_edge.runtime.cli_args import fix_argv
from conftest import ROOT

TINY = ROOT / "tests" / "assets" / "tiny_fer.tflite"


def test_fix_argv_joins_negative_values_only():
    assert fix_argv(["--normalize", "-1,1", "--x", "-2"]) == ["--normalize=-1,1", "--x", "-2"]
    assert fix_argv(["--normalize", "0,1"]) == ["--normalize", "0,1"]


def test_fer_edge_takes_negative_range_from_flags_and_config(samples_dir, tmp_path, capsys):
    from fer_edge.runtime.cli import main

    image = samples_dir / "fer_justin.jpg"
    assert main(["--image", str(image), "--model", str(TINY), "--labels", "fer2013", "--normalize", "-1,1"]) == 0
    first = capsys.readouterr().out
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'image = "{image}"\nmodel = "{TINY}"\nlabels = "fer2013"\nnormalize = "-1,1"\n')
    assert main(["--config", str(cfg)]) == 0
    assert capsys.readouterr().out == first and "face 1" in first


@pytest.mark.parametrize("module", ["fer_edge.training.evaluate", "fer_edge.training.train"])
def test_training_clis_accept_negative_range(module, capsys):
    pytest.importorskip("tensorflow")
    import importlib

    main = importlib.import_module(module).main
    args = ["/nonexistent.keras", "--data", "/nonexistent"] if module.endswith("evaluate") else \
        ["--data", "/nonexistent", "--out", "/nonexistent-out"]
    assert main([*args, "--normalize", "-1,1"]) == 2
    assert "expected one argument" not in capsys.readouterr().err
