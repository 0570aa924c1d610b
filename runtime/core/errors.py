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


class Interrupted(BaseException):
    """SIGTERM turned into an exception, so `finally` blocks and temporary folders clean up as on Ctrl-C."""


_RECEIVED: list[str] = []  # the signals cli_main's handler has seen during the running command


def _raise_interrupted(signum, _frame):
    _RECEIVED.append(signal_name(signum))  # remembered: a library may swallow the exception (see cli_main)
    raise Interrupted(signal_name(signum))


def signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


def cli_main(fn):
    """Decorate a CLI's `main(argv=None)`; it owns the exit codes of every command: main's own return value
    (None = 0, 3 = parity gate failed), 2 with one line `ErrorType: message` on stderr for a user error
    (a FerEdgeError, or an OSError such as a full disk), 130 on Ctrl-C or SIGTERM, never a traceback for
    any of them. SIGTERM (systemd, `docker stop`, CI timeouts) unwinds like Ctrl-C, so temporary files go.
    A library can catch the Interrupted exception in its own code (an import guarded by a bare except, say) and
    fail later in another way, or not at all: once SIGTERM has arrived the command exits 130 whatever follows."""
    import functools
    import signal
    import sys
    import threading

    @functools.wraps(fn)
    def wrapper(argv=None):
        main_thread = threading.current_thread() is threading.main_thread()
        old = signal.signal(signal.SIGTERM, _raise_interrupted) if main_thread else None
        _RECEIVED.clear()

        def interrupted(what) -> int:
            print(f"interrupted ({what})", file=sys.stderr)
            return INTERRUPTED

        try:
            code = fn(argv) or OK
            return interrupted(_RECEIVED[0]) if _RECEIVED else code
        except (KeyboardInterrupt, Interrupted) as exc:
            return interrupted(exc or "SIGINT")
        except (FerEdgeError, OSError) as exc:
            if _RECEIVED:  # whatever a library made of the signal, the command was told to stop
                return interrupted(_RECEIVED[0])
            if isinstance(exc, FerEdgeError):
                print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
            else:  # disk full, a path that cannot be written: one line, no traceback
                where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
                print(f"{type(exc).__name__}: {where}{exc.strerror or exc}", file=sys.stderr)
            return USER_ERROR
        except Exception:
            if _RECEIVED:
                return interrupted(_RECEIVED[0])
            raise
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, old)

    return wrapper
