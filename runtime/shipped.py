"""Files shipped inside the package (`fer_edge.models`, data only): the classifiers and YuNet."""
from __future__ import annotations

import importlib.util
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
