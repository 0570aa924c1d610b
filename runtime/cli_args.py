"""Command-line argument groups shared by `fer-edge` and `fer-edge serve-api`, and what they mean to the
library: each CLI module imports these, neither imports the other's parser."""
from __future__ import annotations

import argparse

from fer_edge.runtime.labels import LABEL_SETS
from fer_edge.runtime.preprocess import VALUE_RANGES


def model_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", help="classifier .tflite or .onnx, or the short name of a shipped model "
                   "(e.g. vgg: the accurate one; default: the model shipped as fer-edge's default)")
    g.add_argument("--labels", choices=sorted(LABEL_SETS), help="label set, for a model without fer-edge metadata")
    g.add_argument("--normalize", choices=sorted(VALUE_RANGES), help="input scaling, for a model without metadata")
    g.add_argument("--equalize", action=argparse.BooleanOptionalAction, default=None,
                   help="histogram-equalise faces (overrides the model's metadata)")
    g.add_argument("--threads", type=int, default=None, help="interpreter threads (default: the interpreter's)")
    g.add_argument("--providers", help="onnxruntime providers, comma-separated, e.g. "
                   "CUDAExecutionProvider,CPUExecutionProvider (default CPU)")
    g.add_argument("--kernels", choices=("default", "builtin"), default=None,
                   help="LiteRT kernels (.tflite): default (XNNPACK, the default) or builtin (reference)")


def classifier_options(a: argparse.Namespace) -> dict:
    """The model group's values as Classifier/PipelineOptions keywords (None: not chosen)."""
    providers = [x.strip() for x in a.providers.split(",") if x.strip()] if a.providers else None
    return {"labels": a.labels, "normalize": a.normalize, "equalize": a.equalize, "threads": a.threads,
            "providers": providers, "kernels": a.kernels}
