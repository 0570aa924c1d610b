"""runs/ keeps every run's record, and weights only where a shipped model's record names them (issue 31).

A shipped model (models/NAME.keras) names the weights it was made from in its provenance: `init` (the --init
file, by sha256), `distillation.teachers` (by sha256), and `wise` (training.wise: `init`, a path, and
`finetuned`, a file in the run folder that the recorded command's --out names). A weight file in the repository's
runs/ that none of them names is 5 MB in every clone that nothing is reproduced from: this test fails on it.
"""
from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from fer_edge.runtime.core.fileio import sha256_file
from fer_edge.runtime.model.metadata import read_metadata

ROOT = Path(__file__).resolve().parents[1]
WEIGHT_SUFFIXES = (".keras", ".h5", ".npz", ".weights.h5", ".onnx", ".tflite")


def tracked_run_files() -> list[Path]:
    """The files under runs/ that the repository holds (not a developer's untracked local runs)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "runs"], cwd=ROOT, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the repository's runs/ cannot be listed")
    return [ROOT / p for p in out.stdout.decode().split("\0") if p]


def run_folder(provenance: dict) -> Path | None:
    words = shlex.split(provenance.get("command") or "")
    return ROOT / words[words.index("--out") + 1] if "--out" in words[:-1] else None


def named_weights() -> tuple[set[str], set[Path]]:
    """(sha256s, paths) of the weight files that the shipped models' records name."""
    shas, paths = set(), set()
    for model in sorted((ROOT / "models").glob("*.keras")):
        prov = read_metadata(model).provenance
        if "init" in prov:
            shas.add(prov["init"]["sha256"])
        shas.update(t["sha256"] for t in prov.get("distillation", {}).get("teachers", []))
        wise = prov.get("wise")
        if wise:
            paths.add((ROOT / wise["init"]).resolve())
            folder = run_folder(prov)
            assert folder is not None, f"{model.name}: a wise record without the run's --out in its command"
            paths.add((folder / wise["finetuned"]).resolve())
    return shas, paths


def test_every_weight_file_under_runs_is_named_by_a_shipped_model():
    shas, paths = named_weights()
    weights = [p for p in tracked_run_files() if p.name.endswith(WEIGHT_SUFFIXES) and p.is_file()]
    stray = [str(p.relative_to(ROOT)) for p in weights if p.resolve() not in paths and sha256_file(p) not in shas]
    assert not stray, f"weight files under runs/ that no shipped model's record names: {stray}"


def test_the_weights_that_fer_lite_names_are_kept():
    """The other direction: a weight file a shipped model names under runs/ is in the repository."""
    shas, paths = named_weights()
    tracked = {p.resolve() for p in tracked_run_files()}
    missing = [str(p.relative_to(ROOT)) for p in paths if ROOT / "runs" in p.parents and p not in tracked]
    assert not missing, f"weights a shipped model names but runs/ lacks: {missing}"
    assert paths, "no shipped model names a run's weights: expected fer-lite's WiSE-FT ends"


def test_every_run_keeps_its_record():
    folders = {p.parent for p in tracked_run_files() if p.parent.parent == ROOT / "runs"}
    assert folders, "runs/ holds no run records"
    for folder in folders:
        assert (folder / "state.json").is_file() and (folder / "history.jsonl").is_file(), folder
