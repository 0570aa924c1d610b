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


USER_ERROR = 2  # exit code of a CLI for a user mistake


def cli_main(fn):
    """Decorate a CLI's `main(argv=None)`: a FerEdgeError becomes one line `ErrorType: message` on stderr
    and exit code 2, never a traceback; main's own return value (None = 0) is the exit code otherwise."""
    import functools
    import sys

    @functools.wraps(fn)
    def wrapper(argv=None):
        try:
            return fn(argv) or 0
        except FerEdgeError as exc:
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
            return USER_ERROR

    return wrapper
