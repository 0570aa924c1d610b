"""The library's own error types. CLIs catch FerEdgeError and print `ErrorType: message`."""


class FerEdgeError(Exception):
    """A user-facing error: the message says what was expected and what was found."""


class DataError(FerEdgeError):
    """A dataset file or folder is missing or malformed."""


class ModelError(FerEdgeError):
    """A model file is missing, unreadable, or lacks what fer-edge needs."""


class MissingExtraError(FerEdgeError):
    """An optional dependency is not installed; the message gives the pip line."""

    def __init__(self, module: str, extra: str):
        super().__init__(f"{module} is not installed: run  pip install 'fer-edge[{extra}]'")


class MissingInterpreterError(FerEdgeError):
    """No TFLite interpreter is importable (the base install carries ai-edge-litert where it has wheels)."""

    def __init__(self):
        super().__init__("no TFLite interpreter is installed: run  pip install ai-edge-litert  (or, on boards it "
                         "has no wheels for, tflite-runtime)")


def require(module: str, extra: str):
    """Import an optional dependency or raise MissingExtraError with the install line."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name and module.split(".")[0] != exc.name.split(".")[0]:
            raise  # the module exists but one of its own imports failed: show the real cause
        raise MissingExtraError(module, extra) from None


OK, USER_ERROR, PARITY_FAILED, INTERRUPTED = 0, 2, 3, 130  # the exit codes of every fer-* command

from fer_edge.runtime.core.stop import Interrupted  # noqa: E402  (stop.py imports nothing of ours)


def cli_main(fn):
    """Decorate a CLI's `main(argv=None)`; it owns the exit codes of every command: main's own return value
    (None = 0, 3 = parity gate failed), 2 with one line `ErrorType: message` on stderr for a user error
    (a FerEdgeError, or an OSError such as a full disk), 130 on SIGINT or SIGTERM, never a traceback for
    any of them. A stop is recorded by runtime/core/stop.py and acted on at our own checkpoints; once one has
    arrived nothing is committed and the command exits 130 whatever a library made of it."""
    import functools
    import sys

    import fer_edge.runtime.core.stop as stop

    def interrupted() -> int:
        print(f"interrupted ({stop.requested() or 'SIGINT'})", file=sys.stderr)
        return INTERRUPTED

    @functools.wraps(fn)
    def wrapper(argv=None):
        with stop.installed():
            try:
                stop.check()  # a stop while the command's modules were imported
                code = fn(argv) or OK
                return interrupted() if stop.requested() else code
            except (KeyboardInterrupt, Interrupted):
                return interrupted()
            except BrokenPipeError as exc:
                if stop.requested():
                    return interrupted()
                if stdout_closed():  # `fer-edge ... --json - | head -1`: the reader has what it wanted
                    return OK
                _one_line(exc)
                return USER_ERROR
            except (FerEdgeError, OSError) as exc:
                if stop.requested():  # whatever a library made of the signal, the command was told to stop
                    return interrupted()
                _one_line(exc)
                return USER_ERROR
            except Exception:
                if stop.requested():
                    return interrupted()
                raise

    return wrapper


def stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader has gone (`| head -1`); if so it now points at /dev/null, so
    the interpreter's last flush of what was buffered for it fails no more (and says nothing on stderr)."""
    import os
    import select
    import sys

    try:
        fd = sys.stdout.fileno()
        poll = select.poll()
        poll.register(fd, select.POLLOUT)
        gone = any(event & select.POLLERR for _, event in poll.poll(0))
    except (AttributeError, OSError, ValueError):  # no real stdout (a test's capture), or no poll()
        return False
    if gone:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)
    return gone


def _one_line(exc: Exception) -> None:
    import sys

    from fer_edge.runtime.core.redact import redact

    if isinstance(exc, FerEdgeError):
        print(redact(f"{type(exc).__name__}: {exc}"), file=sys.stderr)
    else:  # disk full, a path that cannot be written: one line, no traceback
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(redact(f"{type(exc).__name__}: {where}{exc.strerror or exc}"), file=sys.stderr)
