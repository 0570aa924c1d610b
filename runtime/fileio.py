"""Atomic output files: write to a temporary name beside the target, rename on success."""
from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from fer_edge.runtime.errors import FerEdgeError


def check_writable(path: str | os.PathLike, force: bool = False) -> Path:
    """Refuse to overwrite an existing file without force, and a folder we cannot write to."""
    path = Path(path)
    if path.exists() and not force:
        raise FerEdgeError(f"{path} already exists: pass --force to overwrite it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FerEdgeError(f"cannot write {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise FerEdgeError(f"cannot write {path}: folder {parent} is not writable")
    return path


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
    path = check_writable(path, force)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
