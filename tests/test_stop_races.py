"""Stops without races (issue 44): each test lands a signal at the exact step where the stop machinery had a
gap (signal.raise_signal runs the handler at once; a wrapped step of ours is the hook), and fails on the code
before the fix: a second signal raising inside the first one's cleanup, a stop between a commit's check and
its renames, a signal between the launcher's replay and our handler, two commands on threads undoing each
other's TMPDIR and stop record, a temporary file orphaned while it was being made, and a stop in the
interpreter's teardown killing a finished command by the signal (143)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import fer_edge.runtime.core.stop as stop
from fer_edge.runtime.core.errors import cli_main
from fer_edge.runtime.core.fileio import OutputFile


def test_a_second_stop_does_not_raise_inside_the_first_ones_cleanup():
    cleaned = []
    with stop.installed():
        with pytest.raises(stop.Interrupted):
            with stop.raising():
                try:
                    signal.raise_signal(signal.SIGTERM)  # the stop: raises here, inside the library's call
                finally:
                    signal.raise_signal(signal.SIGINT)  # Ctrl-C while the library unwinds
                    cleaned.append("its cleanup ran to the end")
    assert cleaned == ["its cleanup ran to the end"]


def test_a_stop_between_the_commit_check_and_the_renames_renames_nothing(tmp_path, monkeypatch):
    committing = stop.committing

    def late_stop():  # the signal lands after the commit's own check, as the renames are about to start
        signal.raise_signal(signal.SIGTERM)
        return committing()

    monkeypatch.setattr(stop, "committing", late_stop)
    target = tmp_path / "report.json"

    @cli_main
    def command(argv=None):
        out = OutputFile(target)
        out.target.write_text("{}")
        out.commit()

    assert command() == 130
    assert list(tmp_path.iterdir()) == []  # no report.json, no temporary file


LATE_EARLY_SIGNAL = """
import signal, sys
import fer_edge.runtime.core.stop as stop
take = stop._take
def late(main):  # the signal arrives while the launcher's recorder is still the handler
    signal.raise_signal(signal.SIGTERM)
    return take(main)
stop._take = late
from fer_edge.launch import _run
def main(argv):
    print("the command ran", flush=True)
    return 0
_run(lambda: main, [])
"""


def test_a_signal_as_the_launcher_hands_over_is_not_lost():
    r = subprocess.run([sys.executable, "-c", LATE_EARLY_SIGNAL], capture_output=True, text=True, timeout=120)
    assert r.returncode == 130 and r.stderr.strip() == "interrupted (SIGTERM)", (r.returncode, r.stdout, r.stderr)
    assert "the command ran" not in r.stdout


def test_two_commands_on_threads_keep_their_own_state(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    before = tempfile.gettempdir()
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    @cli_main
    def a(argv=None):
        a_in.set()
        b_in.wait(10)

    @cli_main
    def b(argv=None):
        b_in.set()
        a_out.wait(10)

    ta, tb = threading.Thread(target=a), threading.Thread(target=b)
    ta.start()
    a_in.wait(10)
    tb.start()  # b starts while a runs, a ends while b runs
    ta.join(10)
    a_out.set()
    tb.join(10)
    assert tempfile.gettempdir() == before and os.path.isdir(before) and os.environ["TMPDIR"] == str(tmp_path)
    # and a command ending on a thread does not forget the main thread's stop
    with stop.installed():
        signal.raise_signal(signal.SIGTERM)
        t = threading.Thread(target=cli_main(lambda argv=None: 0))
        t.start()
        t.join(10)
        assert stop.requested() == "SIGTERM"


def test_a_temporary_file_made_inside_raising_is_never_orphaned(tmp_path, monkeypatch):
    staged = stop.staged

    def stop_while_staging(path):  # the signal lands between the file's creation and its record
        signal.raise_signal(signal.SIGTERM)
        staged(path)

    monkeypatch.setattr(stop, "staged", stop_while_staging)
    with stop.installed():
        with pytest.raises(stop.Interrupted):
            with stop.raising():
                OutputFile(tmp_path / "out.json")
        left = list(tmp_path.iterdir())
        assert left and all(p in stop._staged for p in left), (left, list(stop._staged))  # the last resort's


TEARDOWN = """
import sys, time
from pathlib import Path
class Slow:  # destroyed in the interpreter's teardown, after the signals went back to the system (TensorFlow's)
    def __init__(self):  # what __del__ needs, held: the module's globals are gone by then
        self.mark, self.sleep = Path(sys.argv[1]), time.sleep
    def __del__(self):
        self.mark.write_text("tearing down")
        self.sleep(5)
SLOW = Slow()
from fer_edge.launch import _run
_run(lambda: (lambda argv: 0), [])
"""


def test_a_stop_after_the_command_ended_never_kills_it_by_the_signal(tmp_path):
    mark = tmp_path / "teardown"
    proc = subprocess.Popen([sys.executable, "-c", TEARDOWN, str(mark)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while proc.poll() is None and not mark.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    if mark.exists():  # a teardown to land in: stop it there
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 130), (proc.returncode, err)
