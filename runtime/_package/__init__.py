"""fer-edge from Python: facial expressions in photos and streams, with no TensorFlow.

    from fer_edge import Recognizer

    with Recognizer() as rec:
        faces = rec.analyze("photo.jpg")        # [FaceResult(box, label, probs, track, score, landmarks)]
        for result in rec.stream(0):            # camera 0, a video file, a URL or a folder
            print([f.label for f in result.faces])

`fer_edge.compat` is the `fer` package's API (`FER().detect_emotions(img)`, `Video`) on fer-edge. The
command-line tools live in the sub-packages (`fer_edge.runtime`, `fer_edge.convert`, `fer_edge.training`).

This file is the `fer_edge` package itself (pyproject.toml maps it from runtime/_package/). Its names are
loaded on first use, so `import fer_edge.training` or a CLI does not pay for the pipeline's imports.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_NAMES = {
    "Recognizer": "fer_edge.runtime.recognize.recognizer",
    "load_image": "fer_edge.runtime.recognize.recognizer",
    "FaceResult": "fer_edge.runtime.core.results",
    "FrameResult": "fer_edge.runtime.core.results",
    "PipelineOptions": "fer_edge.runtime.recognize.pipeline",
    "FerEdgeError": "fer_edge.runtime.core.errors",
    "ModelError": "fer_edge.runtime.core.errors",
    "DataError": "fer_edge.runtime.core.errors",
    "MissingExtraError": "fer_edge.runtime.core.errors",
    "ImageError": "fer_edge.runtime.media.images",
    "SourceError": "fer_edge.runtime.media.sources",
}
__all__ = sorted(_NAMES) + ["__version__"]

if TYPE_CHECKING:
    from fer_edge.runtime.core.errors import DataError, FerEdgeError, MissingExtraError, ModelError
    from fer_edge.runtime.media.images import ImageError
    from fer_edge.runtime.recognize.pipeline import PipelineOptions
    from fer_edge.runtime.recognize.recognizer import Recognizer, load_image
    from fer_edge.runtime.core.results import FaceResult, FrameResult
    from fer_edge.runtime.media.sources import SourceError

    __version__: str


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        value: Any = version("fer-edge")
    elif name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
    else:
        raise AttributeError(f"module 'fer_edge' has no attribute {name!r}")
    globals()[name] = value  # once: the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
