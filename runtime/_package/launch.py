"""The console scripts (pyproject.toml [project.scripts]): each takes SIGTERM and SIGINT from its first
milliseconds, before its command's module is imported (numpy, OpenCV, Keras: seconds on a small board), so
a stop at any moment of a command's life ends it with exit 130 and its one line, never Python's default
death by signal or a KeyboardInterrupt traceback from inside an import. A stopped command leaves at once
(os._exit after flushing): TensorFlow's teardown at interpreter exit takes seconds and prints C++ warnings
about the work it was stopped in. This module is light on purpose: `fer_edge` itself imports nothing."""
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
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)


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
