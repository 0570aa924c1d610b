"""Files shipped inside the package (`fer_edge.models`, data only): the classifiers and YuNet."""
from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path


def models_dirs() -> list[Path]:
    """The folders of the fer_edge.models package data (shipped model files): its spec's search locations, in a
    wheel and an editable install alike (importlib.resources can give a MultiplexedPath, whose str() is not a
    path). models/__init__.py holds no code; it is there because `fer_edge` is a regular package."""
    spec = importlib.util.find_spec("fer_edge.models")
    return [Path(p) for p in (spec.submodule_search_locations or []) if Path(p).is_dir()] if spec else []


def shipped_file(name: str) -> Path | None:
    """The path of a file in the fer_edge.models package data, or None when this install lacks it."""
    for folder in models_dirs():
        if (folder / name).is_file():
            return folder / name
    return None


SHIPPED = "fer-{name}_int8.tflite"  # a shipped model's runtime file; `--model NAME` selects it by NAME


def shipped_models() -> dict[str, Path]:
    """Short name -> runtime file of every model this install ships (e.g. 'vgg' -> fer-vgg_int8.tflite)."""
    prefix, suffix = SHIPPED.split("{name}")
    found = {}
    for folder in models_dirs():
        for f in sorted(folder.glob(SHIPPED.format(name="*"))):
            found.setdefault(f.name[len(prefix):-len(suffix)], f)
    return found


# What the wheel leaves out (a device never loads them): the shipped models' Keras references and fp32 files.
NOT_IN_WHEEL = re.compile(r"fer-[\w.-]+(\.keras|_fp32\.tflite)")
SOURCE_HINT = ("the installed package carries the INT8 files only: the shipped models' .keras references and "
               "fp32 files are in models/ of the fer-edge repository and of its sdist "
               "(pip download --no-deps --no-binary :all: fer-edge)")


def shipped_or_path(name: str) -> str:
    """A bare file name (no folder) that is not in the working folder but is shipped in the package (e.g.
    fer-vgg_golden.npz, fer-vgg_int8.tflite) -> the shipped file's path; anything else unchanged."""
    path = Path(name)
    if os.sep in str(name) or "/" in str(name) or path.exists():
        return name
    found = shipped_file(path.name)
    return str(found) if found is not None else name


def missing_model(path, what: str = "model file") -> str:
    """The one-line message for a model file that does not exist; for a shipped reference or fp32 file (left
    out of the wheel), it says where to get it."""
    where = f"; {SOURCE_HINT}" if NOT_IN_WHEEL.fullmatch(Path(path).name) else ""
    return f"{path}: no such {what}{where}"
