"""Hostile inputs to `fer-edge` (run, --image, verify) from a careless user: bad files, bad paths, bad numbers,
outputs in the way. Runtime only (no TensorFlow), in-process where no signal is involved."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import cv2
import pytest

from faults import CLI, bomb, grey_image, leftovers, one_line, write_video  # noqa: F401 (bomb: a fixture)
from fer_edge.runtime.media import images
from fer_edge.runtime.cli import main


def run(capfd, *args) -> tuple[int, str, str]:
    rc = main([*map(str, args)])
    out, err = capfd.readouterr()
    return rc, out, err


@pytest.fixture
def photo(tmp_path) -> Path:
    return grey_image(tmp_path / "photo.png")


# -- 2. decompression bomb: refused from the header, before any pixel is decoded ----------------------------

def test_image_bomb_is_refused_before_decoding(capfd, bomb, monkeypatch):
    def no_decode(*_):
        raise AssertionError("the bomb reached the decoder")

    monkeypatch.setattr(images.cv2, "imdecode", no_decode)
    rc, _, err = run(capfd, "--image", bomb)
    assert rc == 2
    one_line(err, "ImageError", "30000x30000", "over the limit", "before decoding")


def test_a_bomb_in_a_folder_is_skipped_and_the_run_goes_on(capfd, tmp_path, bomb):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a_bomb.png").write_bytes(bomb.read_bytes())
    grey_image(folder / "b.png")
    rc, out, err = run(capfd, "--image", folder)
    assert rc == 0 and "b.png: no face" in out
    assert "a_bomb.png is 30000x30000 pixels" in err and "Traceback" not in err


# -- 3. a 2000x1 image is a frame without a face, alone or in a folder --------------------------------------

def test_a_sliver_image_has_no_face(capfd, tmp_path):
    sliver = grey_image(tmp_path / "sliver.png", 2000, 1)
    rc, out, err = run(capfd, "--image", sliver)
    assert rc == 0 and out.strip() == "sliver.png: no face" and "Traceback" not in err
    folder = tmp_path / "f"
    folder.mkdir()
    grey_image(folder / "a_sliver.png", 2000, 1)
    grey_image(folder / "b.png")
    rc, out, _ = run(capfd, "--image", folder)
    assert rc == 0 and out.splitlines() == ["a_sliver.png: no face", "b.png: no face"]


# -- 4. --summary: checked before the run, never overwritten without --force, never the --json file --------

def test_summary_in_a_missing_folder_fails_before_the_run(capfd, tmp_path, photo):
    events = tmp_path / "events.jsonl"
    rc, _, err = run(capfd, "--image", photo, "--json", events, "--summary", tmp_path / "nope" / "s.json")
    assert rc == 2
    one_line(err, "--summary", "does not exist")
    assert not events.exists() and leftovers(tmp_path) == []


def test_summary_is_not_overwritten_without_force(capfd, tmp_path, photo):
    summary = tmp_path / "s.json"
    summary.write_text("keep")
    rc, _, err = run(capfd, "--image", photo, "--summary", summary)
    assert rc == 2 and summary.read_text() == "keep"
    one_line(err, "already exists", "--force")
    rc, _, _ = run(capfd, "--image", photo, "--summary", summary, "--force")
    assert rc == 0 and json.loads(summary.read_text())["frames"] == 1


def test_summary_and_json_on_the_same_file_are_refused(capfd, tmp_path, photo):
    same = tmp_path / "out.json"
    rc, _, err = run(capfd, "--image", photo, "--json", same, "--summary", same)
    assert rc == 2 and not same.exists() and leftovers(tmp_path) == []
    one_line(err, "--json and --summary name the same file")


# -- 5. verify --json: checked before the evaluation --------------------------------------------------------

def test_verify_json_is_checked_before_the_evaluation(capfd, tmp_path):
    report = tmp_path / "report.json"
    report.write_text("keep")
    no_data = tmp_path / "no-data-here"  # never read: the output check comes first
    rc, _, err = run(capfd, "verify", "--data", no_data, "--json", report)
    assert rc == 2 and report.read_text() == "keep"
    one_line(err, "--json", "already exists", "--force")
    rc, _, err = run(capfd, "verify", "--data", no_data, "--json", tmp_path / "missing" / "r.json")
    assert rc == 2
    one_line(err, "folder", "does not exist")


def test_verify_limit_must_be_positive(capfd, tmp_path):
    rc, _, err = run(capfd, "verify", "--data", tmp_path, "--limit", "-5")
    assert rc == 2
    one_line(err, "--limit must be 1 or more, found -5")


# -- 7. outputs under a temporary name: a failed start destroys nothing and leaves nothing --------------------

def test_a_failed_start_keeps_the_old_json_and_leaves_no_file(capfd, tmp_path, photo):
    events = tmp_path / "events.jsonl"
    events.write_text("old\n")
    rc, _, err = run(capfd, "--image", photo, "--json", events, "--force", "--record", tmp_path / "out.xyz")
    assert rc == 2 and events.read_text() == "old\n" and leftovers(tmp_path) == []
    one_line(err, "--record", "cannot record .xyz")
    fresh = tmp_path / "fresh.jsonl"
    rc, _, err = run(capfd, "--image", photo, "--json", fresh, "--model", tmp_path / "missing.tflite")
    assert rc == 2 and not fresh.exists() and leftovers(tmp_path) == []
    one_line(err, "ModelError", "no such model file")
    rc, _, _ = run(capfd, "--image", photo, "--json", fresh)  # the corrected rerun is not blocked
    assert rc == 0 and json.loads(fresh.read_text())["faces"] == []


# -- 9. --record NAME.jpg on a video: the numbered frames are protected too ----------------------------------

def test_record_images_do_not_overwrite_numbered_frames(capfd, tmp_path):
    video = write_video(tmp_path / "v.avi", 3)
    taken = tmp_path / "shot-000001.jpg"
    taken.write_bytes(b"keep")
    rc, _, err = run(capfd, "--source", video, "--record", tmp_path / "shot.jpg", "--quiet")
    assert rc == 2 and taken.read_bytes() == b"keep" and not (tmp_path / "shot.jpg").exists()
    one_line(err, "shot-000001.jpg", "already exist", "--force")
    rc, _, _ = run(capfd, "--source", video, "--record", tmp_path / "shot.jpg", "--quiet", "--force")
    assert rc == 0 and cv2.imread(str(taken)) is not None and leftovers(tmp_path) == []


# -- 10. config files: not UTF-8, wrong types and choices name the file -----------------------------------

@pytest.mark.parametrize("text, words", [
    (b"# caf\xe9 camera\ncamera = 0\n", "not UTF-8"),
    (b'max_frames = "ten"\n', "key 'max_frames' takes a whole number, found 'ten'"),
    (b'window = "sometimes"\n', "key 'window' takes one of auto, on, off, found 'sometimes'"),
])
def test_config_errors_name_the_file(capfd, tmp_path, text, words):
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(text)
    rc, _, err = run(capfd, "--config", cfg, "--image", "x.png")
    assert rc == 2
    one_line(err, "ConfigError", str(cfg), words)


# -- 11. devices are not files to protect; /proc is not a folder to write ----------------------------------

def test_json_to_dev_null_and_to_proc(capfd, photo):
    rc, _, err = run(capfd, "--image", photo, "--json", "/dev/null")
    assert rc == 0 and "Traceback" not in err
    rc, _, err = run(capfd, "--image", photo, "--json", "/proc/fer-edge-x")
    assert rc == 2
    one_line(err, "cannot write --json /proc/fer-edge-x")


# -- 12. bad input never exits 0 ------------------------------------------------------------------------------

def test_an_unreadable_image_is_an_error(capfd, tmp_path):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is no jpeg")
    rc, _, err = run(capfd, "--image", junk)
    assert rc == 2
    one_line(err, "junk.jpg", "not a decodable image")


@pytest.mark.parametrize("n", ["0", "-3"])
def test_max_frames_must_be_positive(capfd, photo, n):
    rc, out, err = run(capfd, "--image", photo, "--max-frames", n)
    assert rc == 2 and out == ""
    one_line(err, f"--max-frames must be 1 or more, found {n}")


# -- 13. no library noise around the one line ------------------------------------------------------------------

def test_errors_after_the_model_loads_are_one_line(tmp_path):
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(b"\0\0\0\x18ftypmp42" + bytes(range(256)) * 40)
    # a fresh process, as a user runs it (FFmpeg reads its log level once per process): the model loads
    # (LiteRT's INFO line), then FFmpeg fails to parse the file ("moov atom not found")
    done = subprocess.run([*CLI, "--source", str(damaged)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    one_line(done.stderr, "damaged.mp4", "cannot open this video file")


# -- 14. messages that say what is wrong ---------------------------------------------------------------------

def test_model_paths_that_are_no_model_files(capfd, tmp_path, photo):
    rc, _, err = run(capfd, "--image", photo, "--model", tmp_path)
    assert rc == 2
    one_line(err, "is a folder: expected a model file")
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    rc, _, err = run(capfd, "--image", photo, "--model", empty)
    assert rc == 2
    one_line(err, "empty.tflite is empty (0 bytes)")


# -- 6. preview tokens --------------------------------------------------------------------------------------

def test_an_empty_preview_token_is_an_error(capfd, photo, monkeypatch):
    rc, _, err = run(capfd, "--image", photo, "--serve", "0", "--serve-token", "")
    assert rc == 2
    one_line(err, "--serve-token is empty")
    monkeypatch.setenv("FER_EDGE_SERVE_TOKEN", "  ")
    rc, _, err = run(capfd, "--image", photo, "--serve", "0")
    assert rc == 2
    one_line(err, "$FER_EDGE_SERVE_TOKEN is empty")


def test_preview_token_from_a_file_or_the_environment(tmp_path, monkeypatch):
    from fer_edge.runtime.serve.access import read_token as serve_token

    monkeypatch.delenv("FER_EDGE_SERVE_TOKEN", raising=False)
    secret = tmp_path / "token"
    secret.write_text("s3cret-0123456789\n")
    assert serve_token(token_file=str(secret)) == "s3cret-0123456789"
    assert serve_token() is None
    monkeypatch.setenv("FER_EDGE_SERVE_TOKEN", "from-env-0123456789")
    assert serve_token() == "from-env-0123456789"


def test_a_short_token_a_token_without_a_server_and_a_shared_token_file(capfd, photo, tmp_path, monkeypatch):
    monkeypatch.delenv("FER_EDGE_SERVE_TOKEN", raising=False)
    rc, _, err = run(capfd, "--image", photo, "--serve", "0", "--serve-token", "guessable")
    assert rc == 2
    one_line(err, "--serve-token: expected a token of 16 characters or more, found 9")
    for flags in (["--serve-token", "x" * 20], ["--serve-token-file", tmp_path / "t"], ["--no-token"]):
        rc, _, err = run(capfd, "--image", photo, *flags)
        assert rc == 2
        one_line(err, f"{flags[0]} is for the browser preview: give --serve")
    token = tmp_path / "token"
    token.write_text("a-long-enough-token-0123\n")
    for mode, warned in ((0o644, True), (0o640, False), (0o600, False)):  # 640: the service's group (deploy/)
        token.chmod(mode)
        rc, _, err = run(capfd, "--image", photo, "--serve", "0", "--serve-token-file", token)
        assert rc == 0 and ("can be read by every user" in err) == warned, err


def test_an_open_preview_beyond_loopback_needs_no_token_and_warns(capfd, photo, monkeypatch):
    monkeypatch.delenv("FER_EDGE_SERVE_TOKEN", raising=False)
    rc, _, err = run(capfd, "--image", photo, "--serve", "0.0.0.0:0", "--no-token")
    assert rc == 0
    assert "--no-token: http://" in err and "answers anyone who can reach it, without a token" in err
    assert "token=" not in err


# -- 15. one set of exit codes for every command -------------------------------------------------------------

def test_cli_main_owns_the_exit_codes(capfd):
    from fer_edge.runtime.core.errors import cli_main

    def raising(exc):
        @cli_main
        def fake(argv=None):
            raise exc
        return fake

    assert raising(OSError(28, "No space left on device", "/full/out.json"))() == 2
    one_line(capfd.readouterr().err, "OSError: /full/out.json: No space left on device")
    assert raising(KeyboardInterrupt())() == 130
    one_line(capfd.readouterr().err, "interrupted")
    assert cli_main(lambda argv=None: 3)() == 3  # a failed parity gate is main's own answer


def test_sigterm_unwinds_like_ctrl_c(capfd, tmp_path):
    import os
    import signal

    import fer_edge.runtime.core.stop as stop
    from fer_edge.runtime.core.errors import cli_main

    scratch = tmp_path / "scratch"

    @cli_main
    def busy(argv=None):
        scratch.write_text("temporary")
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # systemd, docker stop, a CI timeout
            for _ in range(100):  # a long loop of ours, with its step check
                stop.check()
                time.sleep(0.05)
        finally:
            scratch.unlink()

    assert busy() == 130 and not scratch.exists()
    one_line(capfd.readouterr().err, "interrupted (SIGTERM)")


@pytest.mark.parametrize("then", ["a user error", "an unexpected error", "nothing"])
def test_sigterm_swallowed_by_a_library_still_exits_130(capfd, then):
    """A library may catch the exception the signal raises (a guarded import, say) and fail later as something
    else (seen in CI: a SIGTERM during tf2onnx came out as 'onnxruntime.quantization is not installed')."""
    import os
    import signal

    import fer_edge.runtime.core.stop as stop
    from fer_edge.runtime.core.errors import MissingExtraError, cli_main

    @cli_main
    def busy(argv=None):
        try:
            with stop.raising():  # inside a library call, where the stop raises at once
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
        except BaseException:  # noqa: BLE001 - the library's bare except
            pass
        if then == "a user error":
            raise MissingExtraError("onnxruntime.quantization", "convert")
        if then == "an unexpected error":
            raise RuntimeError("half-imported module")

    assert busy() == 130
    one_line(capfd.readouterr().err, "interrupted (SIGTERM)")
