"""Which Keras backend a training command runs on, and a one-line refusal when that backend is not installed.

fer-train, fer-eval and fer-explain run on Keras' TensorFlow backend (the [train] extra) or its JAX backend
(KERAS_BACKEND=jax with `pip install keras jax`, e.g. on a GPU machine without TensorFlow); fer-convert needs
TensorFlow (its exporters are TensorFlow's)."""
from __future__ import annotations

import os

from fer_edge.runtime.core.errors import FerEdgeError, require


def import_keras():
    """keras, imported; a backend module that is missing (Keras defaults to TensorFlow) is one line, not a traceback."""
    try:
        return require("keras", "train")
    except ModuleNotFoundError as exc:
        chosen = os.environ.get("KERAS_BACKEND") or "tensorflow (Keras' default)"
        raise FerEdgeError(f"Keras' backend is {chosen} but {exc.name} is not installed: set KERAS_BACKEND to an "
                           f"installed one (KERAS_BACKEND=jax with pip install jax), or pip install 'fer-edge[train]' "
                           f"for TensorFlow") from None
