"""fer-bench on the tiny committed models: the report has the agreed columns and records where it ran.

No timing is asserted anywhere: numbers depend on the machine and its load; only their presence is checked.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fer_edge.convert.bench import discover, main
from fer_edge.convert.bench_report import SIMD, int8_findings, markdown

ASSETS = Path(__file__).parent / "assets"
TINY = [ASSETS / "tiny_fer.tflite", ASSETS / "tiny_fer.onnx"]
LATENCY_KEYS = {"t1_b1", "t1_b8", "t2_b1", "t2_b8"}
LATENCY_HEADER = "| 1 thr, batch 1 | 1 thr, batch 8 | 2 thr, batch 1 | 2 thr, batch 8 |"


def run(tmp_path, *extra) -> tuple[dict, str]:
    js, md = tmp_path / "bench.json", tmp_path / "BENCHMARKS.md"
    assert main(["--quick", *map(str, TINY), "--json", str(js), "--markdown", str(md), *map(str, extra)]) == 0
    return json.loads(js.read_text()), md.read_text()


def test_quick_without_data_gives_sizes_and_latency(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FER_EDGE_DATA", raising=False)
    doc, md = run(tmp_path)
    assert [(r["name"], r["format"], r["kernels"]) for r in doc["rows"]] == [
        ("tiny_fer.tflite", "tflite-fp32", "default"), ("tiny_fer.onnx", "onnx-fp32", "cpu")]
    for r in doc["rows"]:
        assert r["bytes"] == Path(r["file"]).stat().st_size and len(r["sha256"]) == 64
        assert set(r["latency"]) == LATENCY_KEYS
        assert all(v["p50_ms"] > 0 and v["p95_ms"] >= v["p50_ms"] for v in r["latency"].values())
        assert "accuracy" not in r and "e2e" not in r
    assert doc["machine"]["cpu"] and doc["machine"]["cores"] >= 1
    assert {"python", "numpy", "opencv", "ai-edge-litert"} <= set(doc["versions"])
    assert doc["command"].startswith("fer-bench --quick ")
    assert "| file | format | kernels | size | multiply-adds | parameters | accuracy | agreement " + LATENCY_HEADER in md
    assert all("macs" not in r for r in doc["rows"])  # the tiny test models record no cost: shown as "-"
    assert "SIMD: " in md and set(doc["machine"]["simd"]) <= set(SIMD)
    assert "not measured" in md and doc["command"] in md and doc["machine"]["cpu"] in md
    assert "## INT8 against fp32 on this machine" in md
    assert capsys.readouterr().out.strip() == md.strip()  # the same report on stdout


def test_json_to_stdout_gives_only_json_there_and_writes_no_file_named_dash(tmp_path, monkeypatch, capsys):
    """`--json -`: the JSON document alone on stdout, the human report and progress on stderr."""
    monkeypatch.delenv("FER_EDGE_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["--quick", str(TINY[0]), "--threads", "1", "--batches", "1", "--json", "-"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)  # the whole of stdout is one JSON document
    assert [r["name"] for r in doc["rows"]] == ["tiny_fer.tflite"] and doc["command"].endswith("--json -")
    assert "| file | format | kernels |" in err and "fer-bench: done in" in err
    assert not (tmp_path / "-").exists() and list(tmp_path.iterdir()) == []


@pytest.mark.data
@pytest.mark.slow
def test_quick_with_data_and_video_gives_accuracy_and_frames_per_second(tmp_path, data_dir, samples_dir,
                                                                        blazeface_model):
    pytest.importorskip("onnxruntime")
    doc, md = run(tmp_path, "--data", data_dir, "--video", samples_dir / "fer_test.mp4", "--blazeface", blazeface_model)
    assert doc["reference"]["split"] == "PrivateTest" and doc["reference"]["n"] == 256
    for r in doc["rows"]:
        assert 0.0 <= r["accuracy"] <= 1.0 and "agreement" not in r  # no golden, no .keras: nothing to agree with
        import cv2

        haar = {"haar"} if hasattr(cv2, "CascadeClassifier") else set()  # OpenCV 5 has no Haar cascades
        assert set(r["e2e"]) == {"yunet", "blazeface"} | haar
        for e in r["e2e"].values():
            assert e["fps"] > 0 and e["frames"] == 15 and {"detect", "classify"} <= set(e["stage_ms"])
    assert "## End to end on `fer_test.mp4` (15 frames, 1 thread)" in md
    # without Haar cascades there is no tutorials' loop to compare with, and the report says why
    assert ("baseline_note" in doc) == (not haar) and (haar or "has no Haar cascades" in md)
    assert "| file | kernels | yunet frames/s | yunet detect / classify ms | " in md and "blazeface frames/s |" in md


def _row(name, fmt, kernels, p50, fps):
    return {"name": name, "file": name, "format": fmt, "kernels": kernels, "bytes": 1000, "sha256": "0" * 64,
            "latency": {"t1_b1": {"p50_ms": p50, "p95_ms": p50}},
            "e2e": {"haar": {"fps": fps, "frames": 10, "stage_ms": {"detect": 1.0, "classify": 1.0}}}}


def test_int8_slower_than_fp32_is_said_plainly():
    """The findings compare each INT8 row with the fp32 file of its runtime; values here are made up."""
    rows = [_row("m_fp32.tflite", "tflite-fp32", "default", 2.0, 30.0),
            _row("m_int8.tflite", "tflite-int8", "default", 0.5, 31.0),
            _row("m_int8.tflite", "tflite-int8", "builtin", 3.0, 29.0)]
    findings = int8_findings({"rows": rows})
    assert [(f["int8"], f["what"], f["slower"]) for f in findings] == [
        ("m_int8.tflite", "latency p50, 1 thread, batch 1", False),
        ("m_int8.tflite", "end-to-end frames/s, haar", False),
        ("m_int8.tflite (built-in kernels)", "latency p50, 1 thread, batch 1", True),
        ("m_int8.tflite (built-in kernels)", "end-to-end frames/s, haar", True)]
    doc = {"machine": {"cpu": "X", "cores": 2, "usable_cores": 2, "arch": "x86_64", "platform": "Linux"},
           "versions": {"python": "3"}, "settings": {"threads": [1], "batches": [1], "rounds": 1, "iters": 1,
                                                     "warmup": 0, "keras_iters": 1, "e2e_repeats": 1, "video": "v.mp4"},
           "rows": rows, "reference": None, "baseline": None, "findings": findings, "command": "fer-bench x",
           "seconds": 1.0}
    md = markdown(doc)
    assert "INT8 is **slower** than fp32 here" in md
    assert "- `m_int8.tflite (built-in kernels)`: latency p50, 1 thread, batch 1: 3.000 against 2.000 ms/face" in md


def test_discover_reads_folders_and_refuses_other_files(tmp_path):
    assert [m.format for m in discover([str(ASSETS)])] == ["tflite-fp32", "onnx-fp32"]
    (tmp_path / "notes.txt").write_text("x")
    assert main([str(tmp_path / "notes.txt")]) == 2
    assert main([str(tmp_path)]) == 2  # a folder without models


def test_existing_output_needs_force(tmp_path, capsys):
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("old")
    assert main(["--quick", str(TINY[0]), "--markdown", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and out.read_text() == "old"


def test_cost_recorded_in_a_file_is_reported(tmp_path):
    """Multiply-adds and parameters come from the file's metadata (fer-convert writes them as `cost`)."""
    from fer_edge.convert.bench import file_cost
    from fer_edge.runtime.model.metadata import read_metadata, write_metadata

    tfl = tmp_path / "m.tflite"
    tfl.write_bytes(TINY[0].read_bytes())
    meta = read_metadata(tfl)
    write_metadata(tfl, meta.replace(provenance={**meta.provenance, "cost": {"macs": 29363968, "parameters": 1176359}}))
    cost = file_cost(tfl)
    assert {k: cost.get(k) for k in ("macs", "parameters")} == {"macs": 29363968, "parameters": 1176359}
    assert "macs" not in file_cost(TINY[0]) and "parameters" not in file_cost(TINY[0])


def test_a_file_without_a_recorded_cost_takes_its_references(tmp_path):
    """Files converted before costs were recorded (the shipped fer-vgg's) show the figures of a file made from the
    same reference in the same run; a file of another reference stays without."""
    from fer_edge.convert.bench import fill_costs

    rows = [{"sha256": "k", "parameters": 1311271},  # the .keras: parameters only
            {"sha256": "a", "source_sha256": "k"},  # an old export: nothing
            {"sha256": "b", "source_sha256": "k", "macs": 118_600_000, "parameters": 1311271},  # a new export
            {"sha256": "c", "source_sha256": "other"}]
    fill_costs(rows)
    assert [r.get("macs") for r in rows] == [118_600_000, 118_600_000, 118_600_000, None]
    assert rows[0]["parameters"] == rows[1]["parameters"] == 1311271


def test_files_of_two_references_are_refused(tmp_path, capsys):
    """fer-bench compares the formats of one model: files converted from two references (recorded in their
    provenance) get one line and exit 2, before anything is measured or written."""
    from fer_edge.runtime.model.metadata import read_metadata, write_metadata

    files = []
    for name, ref in (("a_int8.tflite", "aa" * 32), ("b_int8.tflite", "bb" * 32)):
        f = tmp_path / name
        f.write_bytes(TINY[0].read_bytes())
        meta = read_metadata(f)
        write_metadata(f, meta.replace(provenance={**meta.provenance, "source_sha256": ref}))
        files.append(f)
    out = tmp_path / "BENCHMARKS.md"
    assert main(["--quick", *map(str, files), "--markdown", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "one model" in err and "a_int8.tflite" in err and "b_int8.tflite" in err
    assert not out.exists()


def test_markdown_keeps_the_sections_other_tools_added(tmp_path, monkeypatch):
    """Rewriting BENCHMARKS.md replaces fer-bench's own sections and keeps the ones after them that
    bench_runtime.py and the detector study wrote."""
    monkeypatch.delenv("FER_EDGE_DATA", raising=False)
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# fer-edge benchmarks\n\nSTALE-MACHINE\n\n## Headline\n\nSTALE-HEADLINE\n\n"
                  "## INT8 against fp32 on this machine\n\nSTALE-INT8\n\n## Files\n\nSTALE-FILES\n\n"
                  "## The default detector (YuNet) and face framing\n\nDETECTOR STUDY\n\n"
                  "## fer-edge runtime: detection scheduling and memory\n\nRUNTIME TABLE\n")
    _, text = run(tmp_path, "--force")
    assert "STALE-" not in text and text.count("## INT8 against fp32 on this machine") == 1
    assert text.index("## INT8 against fp32") < text.index("DETECTOR STUDY") < text.index("RUNTIME TABLE")
    assert text.count("## The default detector") == 1 and text.endswith("RUNTIME TABLE\n")
