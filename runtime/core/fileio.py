"""Atomic output files: write to a temporary name beside the target, rename on success."""
from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import sys
from pathlib import Path

import fer_edge.runtime.core.stop as stop
from fer_edge.runtime.core.errors import FerEdgeError


def check_writable(path: str | os.PathLike, force: bool = False, option: str = "") -> Path:
    """Refuse to overwrite an existing file without force, a folder as a file name, and a folder we cannot
    write to. A device or a FIFO (/dev/null, a named pipe) is not a file to protect: it is allowed."""
    path = Path(path)
    name = f"{option} {path}" if option else str(path)
    if path.is_dir():
        raise FerEdgeError(f"{name} is a folder: expected a file name")
    if is_special(path):
        return path
    if path.exists() and not force:
        raise FerEdgeError(f"{name} already exists: pass --force to overwrite it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FerEdgeError(f"cannot write {name}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise FerEdgeError(f"cannot write {name}: folder {parent} is not writable")
    return path


def is_special(path: Path) -> bool:
    """A character or block device, a FIFO or a socket: written in place, never renamed over."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class OutputFile:
    """One output file of a command, checked before any work starts and written under a temporary name
    beside it that replaces it only on `commit()`: a failed or killed run never leaves a half-written file
    at the final name, nor destroys the file it was told to overwrite. `-` is standard output and a device
    or FIFO is written in place (nothing to rename). As a context manager: commit on success, else discard.

        out = OutputFile(a.json, a.force, "--json")      # raises FerEdgeError now, not after the run
        with open(out.target, "w") as f: ...
        out.commit()
    """

    def __init__(self, path: str | os.PathLike, force: bool = False, option: str = ""):
        self.stdout = str(path) == "-"
        self.path = Path(path)
        self.tmp: Path | None = None
        if self.stdout:
            return
        self.path = check_writable(path, force, option)
        if is_special(self.path):
            return
        self.tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}{self.path.suffix}")
        with stop.shielded():  # made and staged together: a stop inside raising() cannot orphan it in between
            try:  # proves the folder takes a new file (a read-only mount, /proc) before any work
                with open(self.tmp, "xb"):
                    stop.staged(self.tmp)
            except OSError as exc:
                self.tmp = None
                raise FerEdgeError(f"cannot write {option + ' ' if option else ''}{self.path}: {exc.strerror}") from None

    @property
    def target(self) -> Path:
        """Where to write now: the temporary file, or the device itself."""
        return self.tmp or self.path

    def open(self, mode: str = "w", **kwargs):
        """The file object to write (sys.stdout for `-`; closing it is the caller's, but not for stdout)."""
        if self.stdout:
            return sys.stdout if "b" not in mode else sys.stdout.buffer
        return open(self.target, mode, **kwargs)

    def commit(self) -> None:
        commit_all([self])

    def _rename(self) -> None:
        if self.tmp is not None:
            os.replace(self.tmp, self.path)
            stop.unstaged(self.tmp)
            self.tmp = None

    def discard(self) -> None:
        if self.tmp is not None:
            with stop.shielded():
                self.tmp.unlink(missing_ok=True)
                stop.unstaged(self.tmp)
                self.tmp = None

    def __enter__(self) -> "OutputFile":
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            try:
                self.commit()
            except BaseException:  # refused after a stop, or the rename failed: no file is left behind
                self.discard()
                raise
        else:
            self.discard()


def commit_all(outputs: list[OutputFile]) -> None:
    """Outputs renamed into place together, once their writing is over: after a stop none of them (they are
    removed: committing() refuses once a stop has arrived, whatever swallowed it before), and a stop arriving
    during the renames does not cut them in half."""
    try:
        with stop.committing():
            for out in outputs:
                out._rename()
    except stop.Interrupted:
        for out in outputs:
            out.discard()
        raise


def check_distinct(paths: dict[str, str | os.PathLike | None]) -> None:
    """Refuse two options naming the same file (e.g. --summary and --json): one would replace the other."""
    given = [(opt, Path(p)) for opt, p in paths.items() if p is not None and str(p) != "-"]
    for i, (opt_a, a) in enumerate(given):
        for opt_b, b in given[i + 1:]:
            same = os.path.abspath(a) == os.path.abspath(b) or (a.exists() and b.exists() and os.path.samefile(a, b))
            if same and not is_special(a):
                raise FerEdgeError(f"{opt_a} and {opt_b} name the same file {a}: give each its own")


def check_out_folder(path: str | os.PathLike, force: bool = False,
                     remedy: str = "pass --force to overwrite it") -> Path:
    """An --out folder: refuse a file, and a folder with something in it unless `force`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FerEdgeError(f"--out {path} is a file: expected a folder")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise FerEdgeError(f"--out {path} is not empty: {remedy}")
    return path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, force: bool = False):
    """Yield a temporary path to write; it replaces `path` only if the block finishes without error."""
    with OutputFile(path, force) as out:
        if out.tmp is not None:
            out.tmp.unlink()  # writers that refuse an existing file (np.savez, Keras) get a fresh name
        yield out.target


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
