"""Files shipped inside the package (`fer_edge.models`, data only): the classifiers and YuNet."""
from __future__ import annotations

import importlib.resources
import importlib.util
from pathlib import Path


def models_dirs() -> list[Path]:
    """The folders of the fer_edge.models package data (shipped model files)."""
    try:
        return [Path(str(importlib.resources.files("fer_edge.models")))]
    except (ModuleNotFoundError, NotADirectoryError):
        # models/ holds no code, so it is a namespace package; Python 3.11's resources reader rejects the
        # path hook of a setuptools editable install ("MultiplexedPath only supports directories")
        spec = importlib.util.find_spec("fer_edge.models")
        return [Path(p) for p in (spec.submodule_search_locations or []) if spec and Path(p).is_dir()]


def shipped_file(name: str) -> Path | None:
    """The path of a file in the fer_edge.models package data, or None when this install lacks it."""
    for folder in models_dirs():
        if (folder / name).is_file():
            return folder / name
    return None
