"""The console scripts (pyproject.toml [project.scripts]): each takes SIGTERM and SIGINT from its first
milliseconds, before its command's module is imported (numpy, OpenCV, Keras: seconds on a small board), so
a stop at any moment of a command's life ends it with exit 130 and its one line, never Python's default
death by signal or a KeyboardInterrupt traceback from inside an import. A command leaves at once when it is
over (its atexit work done, then os._exit after flushing): TensorFlow's teardown at interpreter exit takes
seconds, prints C++ warnings about work it was stopped in, and runs after Python has given the signals back
to the system, where a stop would end the process by the signal (143) after its files were committed. This module is light on purpose: `fer_edge` itself imports nothing."""
from __future__ import annotations

import os
import signal
import sys

_early: list[int] = []  # signals that arrived before runtime/core/stop.py was imported
# TensorFlow's C++ logging (absl: cpu_feature_guard, oneDNN, MLIR, the SavedModel loader) is read from the
# environment when TensorFlow loads: set here, before any import, so a command's own lines are not buried in it.
# 2 keeps C++ errors (and every Python error becomes the command's one line); a value the user set is kept.
QUIET_NATIVE_LOGS = {"TF_CPP_MIN_LOG_LEVEL": "2", "GRPC_VERBOSITY": "ERROR"}


def _record(signum, _frame) -> None:
    _early.append(signum)


def _run(load, argv: list[str] | None) -> None:
    """`load()` gives the command's main (importing its module); run it as a console script runs."""
    for key, value in QUIET_NATIVE_LOGS.items():
        os.environ.setdefault(key, value)
    for sig in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(sig) is not signal.SIG_IGN:  # `nohup`, a shell's `&`: an ignored signal stays so
            signal.signal(sig, _record)

    import fer_edge.runtime.core.stop as stop  # numpy and OpenCV come with it: a signal meanwhile is kept

    stop.carry(_early)
    try:
        with stop.raising(), stop.watched():  # the command's imports: a stop ends them at once (or the last resort)
            main = load()
        code = main(argv)
    except (stop.Interrupted, KeyboardInterrupt):
        print(f"interrupted ({stop.requested() or 'SIGINT'})", file=sys.stderr)
        code = 130
    if code != 130:
        # the command is over, its outputs committed: what is left is the interpreter's teardown, and a stop
        # there, once Python has given the signals back to the system, would kill the process (exit 143). The
        # atexit work runs here, under our handler, and the process leaves without the rest (TensorFlow's
        # teardown takes seconds); a stop meanwhile changes nothing, the work is done.
        import atexit

        atexit._run_exitfuncs()
    _leave(130 if code == 130 else code)


def _leave(code) -> None:
    """Exit now with `code` (None: 0), standard output and error flushed (a reader gone is no error now)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


def _launch(module: str, argv: list[str] | None) -> None:
    import importlib

    _run(lambda: importlib.import_module(module).main, argv)


def main_module(main) -> None:
    """`python -m fer_edge.convert.cli ...` and the other command modules: run as their console scripts run
    (the module's imports are done by then)."""
    _run(lambda: main, None)


def _entry(module: str):
    def entry(argv: list[str] | None = None) -> None:
        _launch(module, argv)

    return entry


fer_edge = _entry("fer_edge.runtime.cli")
fer_convert = _entry("fer_edge.convert.cli")
fer_train = _entry("fer_edge.training.train")
fer_eval = _entry("fer_edge.training.evaluate")
fer_explain = _entry("fer_edge.training.explain")
fer_bench = _entry("fer_edge.convert.bench")
