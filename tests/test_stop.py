"""The stop mechanism (runtime/core/stop.py) in one process: the handler records, our checkpoints act, the
commit points refuse, a stop inside a library's __del__ is not reported, the command's TMPDIR goes. Fast:
no subprocess, no model (tests/hostile/test_hostile_stops.py stops the real commands)."""
from __future__ import annotations

import os
import signal
import tempfile
import time

import pytest

import fer_edge.runtime.core.stop as stop
from fer_edge.runtime.core.errors import cli_main
from fer_edge.runtime.core.fileio import OutputFile, commit_all


def _wait_for(condition, timeout: float = 10.0) -> None:
    t0 = time.monotonic()
    while not condition():
        assert time.monotonic() - t0 < timeout
        time.sleep(0.01)


class _Native:
    """Like a TensorFlow object whose __del__ runs when the signal lands (issue 35's UniquePtr.__del__)."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)  # the handler runs here, inside __del__: its exception cannot propagate


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_handler_records_and_our_checkpoint_acts(capfd, tmp_path, sig):
    seen = []

    @cli_main
    def busy(argv=None):
        os.kill(os.getpid(), sig)
        _wait_for(stop.requested)
        seen.append("went on")  # outside raising(): the handler did not raise in the middle of our code
        stop.check()
        seen.append("past the check")

    assert busy() == 130 and seen == ["went on"]
    err = capfd.readouterr().err
    assert err.strip() == f"interrupted ({signal.Signals(sig).name})"


def test_a_stop_swallowed_in_a_del_commits_nothing_and_reports_nothing(capfd, tmp_path):
    target = tmp_path / "model.tflite"

    @cli_main
    def convert(argv=None):
        out = OutputFile(target)
        with open(out.target, "wb") as f:
            f.write(b"half a model")
        try:
            stop._set_depth(stop._raising_depth() + 1)  # as inside stop.raising(), without its own checks
            _Native()  # created and collected at once
        finally:
            stop._set_depth(stop._raising_depth() - 1)
        out.commit()  # the commit point checks for itself

    assert convert() == 130
    err = capfd.readouterr().err
    assert "Exception ignored" not in err and "Traceback" not in err and err.strip() == "interrupted (SIGTERM)", err
    assert not target.exists() and list(tmp_path.iterdir()) == []


CUT_SHORT = """import os, signal, time
import fer_edge.runtime.core.stop as stop
from fer_edge.runtime.core.errors import cli_main


class CutShort:  # like TensorFlow's ApiDefMap when a stop lands in its __init__: __del__ reads what was never set
    def __del__(self):
        self._handle.close()


@cli_main
def main(argv=None):
    if os.environ["STOP"] == "1":
        os.kill(os.getpid(), signal.SIGINT)
        while not stop.requested():
            time.sleep(0.01)
    CutShort()  # collected at once: its __del__ raises AttributeError
    stop.check()
"""


@pytest.mark.parametrize("stopped", [True, False])
def test_an_object_cut_short_by_a_stop_fails_in_del_without_a_report(tmp_path, stopped):
    """Seen in the 20-moment stop run: fer-convert stopped inside tf2onnx said `interrupted (SIGINT)`, then
    Python reported an AttributeError from a half-built object's __del__. After a stop such reports are silent;
    without one, Python reports it as always. A console script's process (pytest has its own hook)."""
    import subprocess
    import sys

    (tmp_path / "cut_short.py").write_text(CUT_SHORT)
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); from fer_edge.launch import _entry; _entry('cut_short')()"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "STOP": "1" if stopped else "0"})
    if stopped:
        assert proc.returncode == 130 and proc.stderr.strip() == "interrupted (SIGINT)", proc.stderr
    else:
        assert proc.returncode == 0 and "Exception ignored" in proc.stderr and "_handle" in proc.stderr, proc.stderr


def test_commit_all_commits_none_after_a_stop(tmp_path):
    with stop.installed():
        outs = [OutputFile(tmp_path / f"{name}.json") for name in ("report", "summary")]
        for out in outs:
            out.target.write_text("{}")
        os.kill(os.getpid(), signal.SIGTERM)
        _wait_for(stop.requested)
        with pytest.raises(stop.Interrupted):
            commit_all(outs)
        for out in outs:
            out.discard()
    assert list(tmp_path.iterdir()) == []


def test_raising_interrupts_a_long_library_call():
    with stop.installed():
        t0 = time.monotonic()
        with pytest.raises(stop.Interrupted):
            with stop.raising():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(30)  # a call with no checkpoint of ours
        assert time.monotonic() - t0 < 10


def test_the_command_gets_its_own_tmpdir_and_it_goes(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    seen = []

    @cli_main
    def leaky(argv=None):
        seen.append(os.environ["TMPDIR"])
        with open(os.path.join(tempfile.mkdtemp(), "x.ses"), "w") as f:  # a library's leftover
            f.write("x")

    assert leaky() == 0
    assert seen[0].startswith(str(tmp_path)) and os.environ["TMPDIR"] == str(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_after_a_command_the_python_api_is_not_stopped():
    @cli_main
    def stopped(argv=None):
        os.kill(os.getpid(), signal.SIGTERM)
        _wait_for(stop.requested)

    assert stopped() == 130
    stop.check()  # the record went with the command: nothing raises here


SLOW = '''import sys, tempfile, time
from pathlib import Path
import fer_edge.runtime.core.stop as stop
from fer_edge.runtime.core.errors import cli_main
from fer_edge.runtime.core.fileio import OutputFile


@cli_main
def main(argv=None):
    out = OutputFile(sys.argv[1])
    Path(tempfile.mkdtemp(), "scratch.bin").write_bytes(b"x")
    if sys.argv[2] == "service":
        with stop.service():
            print("ready", flush=True)
            time.sleep(6)  # a stop is its normal end: it closes its outputs however long that takes
            print("closed", flush=True)
        return 0
    print("ready", flush=True)
    time.sleep(120)  # like a C++ call that releases the GIL: the signal handler waits for it, the last resort not
    out.commit()
'''


def _launch_slow(tmp_path, mode: str):
    import subprocess
    import sys

    (tmp_path / "slow.py").write_text(SLOW)
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); from fer_edge.launch import _entry; _entry('slow')()"
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "result.json"), mode], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "TMPDIR": str(scratch)})
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=110)
    return proc.returncode, time.monotonic() - t0, out, err, scratch


def test_the_last_resort_ends_a_command_stuck_in_a_long_call_and_leaves_nothing(tmp_path):
    """A stop that lands in a call our handler cannot interrupt (here a 120 s sleep, resumed after the handler
    as a C++ call would be): the last resort ends the console script long before the call would have returned,
    with exit 130 and its one line, and removes the staged output and the command's temporary folder."""
    rc, took, _, err, scratch = _launch_slow(tmp_path, "finite")
    assert rc == 130 and err.strip().splitlines()[-1] == "interrupted (SIGTERM)", err
    assert "Traceback" not in err
    assert took < 100, f"ended {took:.1f} s after the signal: the sleep ran out, no last resort acted"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slow.py", "tmpdir"]  # no result.json, no .result.json.tmp
    assert list(scratch.iterdir()) == []


def test_the_last_resort_leaves_a_service_to_finish(tmp_path):
    """A service takes its time to close after a stop (6 s here, past the last resort's 3 s): it is not cut."""
    rc, took, out, err, _ = _launch_slow(tmp_path, "service")
    assert "closed" in out, (rc, err)
    assert rc == 0 and "Traceback" not in err and "interrupted" not in err  # a stop is a service's normal end
