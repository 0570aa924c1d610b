"""Machine output is clean: with `--json -` (or `--summary -`) standard output carries nothing but that format,
so `fer-edge ... --json - | jq` parses; human lines go to stderr. Each command runs as a user runs it, in its own
process, and its whole stdout goes through a JSON parser."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def fer_edge(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fer_edge.runtime.cli", *argv], capture_output=True, text=True,
                          timeout=600)


def json_lines(stdout: str) -> list[dict]:
    """Every line of stdout parsed as JSON (a line that is not JSON fails with the line shown)."""
    lines = stdout.splitlines()
    assert lines, "nothing on stdout"
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"stdout holds a line that is not JSON: {line!r}")
    return parsed


def test_image_json_to_stdout_is_only_json_lines_and_the_readable_line_goes_to_stderr(samples_dir):
    proc = fer_edge("--image", str(samples_dir / "fer_justin.jpg"), "--json", "-", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    (line,) = json_lines(proc.stdout)
    assert line["source"] == "fer_justin.jpg" and line["faces"][0]["label"] == "happy"
    assert "fer_justin.jpg: face 1" in proc.stderr  # the human line is still shown, on stderr


def test_image_without_json_keeps_its_readable_line_on_stdout(samples_dir):
    proc = fer_edge("--image", str(samples_dir / "fer_justin.jpg"), "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    assert "fer_justin.jpg: face 1" in proc.stdout


def test_folder_json_to_stdout_is_only_json_lines(samples_dir, tmp_path):
    for name in ("fer_justin.jpg", "fer_no-faces.jpg"):
        shutil.copy(samples_dir / name, tmp_path / name)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")  # a skipped file logs a warning: on stderr
    proc = fer_edge("--source", str(tmp_path), "--json", "-", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    lines = json_lines(proc.stdout)
    assert [line["source"] for line in lines] == ["fer_justin.jpg", "fer_no-faces.jpg"]
    assert "unreadable files (1): broken.jpg" in proc.stderr  # the summary is on stderr


def test_video_json_to_stdout_is_only_json_lines(samples_dir):
    proc = fer_edge("--source", str(samples_dir / "fer_test.mp4"), "--json", "-", "--max-frames", "8",
                    "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    assert [line["frame"] for line in json_lines(proc.stdout)] == list(range(8))


def test_summary_to_stdout_is_one_json_document(samples_dir):
    proc = fer_edge("--source", str(samples_dir / "fer_test.mp4"), "--summary", "-", "--max-frames", "3",
                    "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["frames"] == 3


def test_two_outputs_on_stdout_are_refused(samples_dir):
    proc = fer_edge("--source", str(samples_dir / "fer_test.mp4"), "--json", "-", "--summary", "-")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines()[-1].startswith("FerEdgeError: --json - and --summary -")


def test_verify_json_to_stdout_is_one_json_document(data_dir):
    proc = fer_edge("verify", "--data", str(data_dir), "--limit", "64", "--threads", "1", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["n"] == 64 and "accuracy" in report
    assert "accuracy" in proc.stderr  # the readable line


def test_a_closed_stdout_ends_the_run_quietly(samples_dir):
    """`fer-edge ... --json - | head -1`: exit 0 and nothing on stderr. The output (20 passes over the video) is
    larger than a pipe holds, so the run is still writing when the reader goes."""
    proc = subprocess.Popen([sys.executable, "-m", "fer_edge.runtime.cli", "--source", str(samples_dir / "fer_test.mp4"),
                             "--loop", "20", "--model", str(Path(__file__).parent / "assets" / "tiny_fer.tflite"), "--threads", "1", "--json", "-"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does once it has its line
    err = proc.stderr.read()
    assert proc.wait(120) == 0, err
    assert json.loads(first)["frame"] == 0 and err == ""
