"""A stop is a stop: how every fer-* command takes SIGTERM and SIGINT.

The signal handler only records the signal. Our code acts on it at points it controls: `check()` at the step
boundaries of long loops (a frame, a batch, a recipe, a calibration step), and every commit point refuses to
rename anything into place once a stop has arrived (runtime/core/fileio.py's commit_all, convert's Staging),
so an exception swallowed inside a library can never lead to files written after the stop. Inside
`raising()` (a long library call with no checkpoint of ours: TensorFlow's import and conversion, Keras
tracing a training step) the handler also raises at once, for the first stop only (a second one would land
in the first one's cleanup), and never inside `shielded()` (the renames and cleanups, never cut in half);
`committing()` checks again once it holds the commit lock. If the raise lands in a library's `__del__`,
Python's "Exception ignored" report of it is silenced (the stop is recorded, the next check acts).
`installed()` (used by cli_main) also gives the command a private TMPDIR, removed at its end, so whatever a
library leaves in its temporary folder when it is stopped goes too; these are the process's, so only a command
on the main thread sets them up (the raising() depth is kept per thread).

The last resort: a Python signal handler runs only between bytecodes, so a stop that lands in a long C++ call
(TensorFlow compiling a graph, XLA) waits for it to return. In a console script's process (`carry()`), on the
main thread, `installed()` also starts a thread woken by the signal itself (`signal.set_wakeup_fd`, written by
the C-level handler at once); if the command has not ended `LAST_RESORT_S` after a stop, that thread removes
the staged outputs (`staged()`) and the private TMPDIR, says `interrupted (SIG...)` and ends the process with
130 (after any commit in progress: `committing()`). It can run while the C++ call releases the GIL, as
TensorFlow's and XLA's do. A service (`service()`: a stop is its normal end) is left to finish. Imports nothing
of ours."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path

_received: list[str] = []  # the signals seen while the running command was installed
_depth = threading.local()  # per thread: .raising, the depth of its raising() blocks (the handler reads the main
# thread's: a command on another thread cannot make the main thread's handler raise)
LAST_RESORT_S = 3.0  # seconds a stopped command has to end by itself before the last resort ends it
_staged: dict[Path, None] = {}  # temporary outputs not committed yet (in order): the last resort removes them
_commit_lock = threading.Lock()  # held while outputs are renamed into place
_service = [0]  # depth of service() blocks: a stop is their normal end, not the last resort's business
_armed = [False]  # the last resort: only in a console script's process (carry), never in a host's (tests, the API)
_ended_by_stop = [False]  # a console script's command ended by a stop: its objects' __del__ reports stay silent


class Interrupted(BaseException):
    """A stop (SIGTERM, SIGINT) acted on: unwinds like Ctrl-C, so `finally` blocks and temporary files clean up."""


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def requested() -> str | None:
    """The name of the first signal received ("SIGTERM"), or None."""
    return _received[0] if _received else None


def check() -> None:
    """A step boundary: raise Interrupted if a stop has arrived."""
    if _received:
        raise Interrupted(_received[0])


def carry(early: list[int]) -> None:
    """From the console script's launcher: take the signals over, with any that arrived before this import.
    Our handler first, then the early ones replayed: a signal arriving in between is ours, not lost in `early`."""
    _armed[0] = True
    _take(threading.current_thread() is threading.main_thread())
    for signum in list(early):
        _handler(signum, None)


def _take(main: bool) -> dict:
    """Our handler for SIGTERM and SIGINT (on the main thread, and not for a signal the parent set to be
    ignored: `nohup`, a shell's `&`); the handlers it replaced."""
    sigs = [s for s in (signal.SIGTERM, signal.SIGINT) if main and signal.getsignal(s) is not signal.SIG_IGN]
    return {s: signal.signal(s, _handler) for s in sigs}


def _handler(signum, _frame):
    if _received:  # a second stop: the first one is being acted on (a raise would land in its cleanup)
        return
    _received.append(signal_name(signum))
    if _raising_depth():
        raise Interrupted(signal_name(signum))


def _raising_depth() -> int:
    return getattr(_depth, "raising", 0)


def _set_depth(depth: int) -> None:
    _depth.raising = depth


@contextlib.contextmanager
def raising():
    """A long call into a library where our checks cannot reach: a stop raises at its next Python bytecode."""
    check()
    _set_depth(_raising_depth() + 1)
    try:
        yield
    finally:
        _set_depth(_raising_depth() - 1)
    check()  # a library that swallowed the raise (a __del__, a bare except) still stops here


@contextlib.contextmanager
def shielded():
    """A commit or a cleanup, inside a raising() block: a stop arriving here is only recorded (the next
    check acts), so no rename or removal is cut in half."""
    depth = _raising_depth()
    _set_depth(0)
    try:
        yield
    finally:
        _set_depth(depth)


def _silence_after_stop(hook):
    def unraisable(u):
        if _received or _ended_by_stop[0]:  # the stop landed in a __del__ (recorded, acted on at the next
            return  # check), or an object it cut short fails in its __del__ (an attribute never set): the
        hook(u)  # command says `interrupted (SIG...)` in one line, with no report on stderr

    return unraisable


def staged(path: Path) -> None:
    """A temporary output now exists at `path` (a file, or a folder made for outputs): removed by the last
    resort unless `unstaged` first (committed or cleaned up)."""
    _staged[Path(path)] = None


def unstaged(path: Path) -> None:
    _staged.pop(Path(path), None)


@contextlib.contextmanager
def committing():
    """Renames into place: the last resort waits for them to finish (and shielded() keeps a raise out). A stop
    that came after the caller's own check, up to here, raises Interrupted before the block: nothing is renamed."""
    with _commit_lock, shielded():
        check()
        yield


@contextlib.contextmanager
def service():
    """A live run that takes a stop as its normal end (exit 0): it closes its outputs however long that takes, and
    a stop that arrives meanwhile is forgotten when it ends (a server that re-raises the signal it handled, as
    uvicorn does, ends its command with 0 too). A stop from before it began is kept."""
    before = bool(_received)
    _service[0] += 1
    try:
        yield
    finally:
        _service[0] -= 1
        if not before and not _service[0]:
            _received.clear()


def _end_now(signum: int, scratch: str | None) -> None:
    """The last resort's work: no staged output left, no temporary folder, the one line, exit 130."""
    with _commit_lock:
        for path in reversed(list(_staged)):  # files before the folders made for them
            with contextlib.suppress(OSError):
                path.rmdir() if path.is_dir() else path.unlink()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        os.write(2, f"interrupted ({signal_name(signum)})\n".encode())
        os._exit(130)


def _last_resort(wake: socket.socket, done: threading.Event, scratch: str | None) -> None:
    while True:
        try:
            data = wake.recv(64)
        except OSError:
            return
        if not data or done.is_set():
            return
        stops = [s for s in data if s in (signal.SIGTERM, signal.SIGINT)]
        if stops and not _service[0] and not done.wait(LAST_RESORT_S) and not _service[0]:
            _end_now(stops[0], scratch)


@contextlib.contextmanager
def watched(scratch: str | None = None):
    """The last-resort thread for the length of a command, or of a console script's imports (main thread only:
    the wakeup fd is the process's)."""
    if not _armed[0] or threading.current_thread() is not threading.main_thread():
        yield
        return
    wake, poke = socket.socketpair()
    poke.setblocking(False)
    try:
        old = signal.set_wakeup_fd(poke.fileno(), warn_on_full_buffer=False)
    except ValueError:  # not the main interpreter
        wake.close(), poke.close()
        yield
        return
    done = threading.Event()
    watcher = threading.Thread(target=_last_resort, args=(wake, done, scratch), name="fer-edge-stop", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        signal.set_wakeup_fd(old)
        poke.close()  # the watcher reads the end of the stream and returns
        watcher.join(1.0)
        wake.close()


@contextlib.contextmanager
def installed():
    """For the length of one command: the handlers, a clean record, the quiet unraisable hook, a private TMPDIR.
    These are the process's: only a command on the main thread sets them up; one on another thread (a test's,
    a host's) leaves them alone, so two commands on threads cannot undo each other's."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = _take(True)
    old_hook, old_tempdir, old_env = sys.unraisablehook, tempfile.tempdir, os.environ.get("TMPDIR")
    depth = _raising_depth()  # (a stop recorded by the launcher, before the command, is kept)
    _set_depth(0)
    sys.unraisablehook = _silence_after_stop(old_hook)
    try:
        scratch = tempfile.mkdtemp(prefix="fer-edge-run-")
        tempfile.tempdir = os.environ["TMPDIR"] = scratch
    except OSError:  # no writable temporary folder (a locked-down service): the libraries will say so if they need one
        scratch = None
    try:
        with watched(scratch):
            yield
    finally:
        _ended_by_stop[0] = _armed[0] and bool(_received)  # the process ends next: its teardown stays quiet
        _received.clear()  # a later command, or the Python API, in the same process starts afresh
        _staged.clear()
        _set_depth(depth)
        tempfile.tempdir = old_tempdir
        if old_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old_env
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        if not _ended_by_stop[0]:
            sys.unraisablehook = old_hook
        for s, handler in old.items():
            signal.signal(s, handler)
