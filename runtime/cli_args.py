"""Command-line argument groups shared by `fer-edge` and `fer-edge serve-api`, and what they mean to the
library: each CLI module imports these, neither imports the other's parser."""
from __future__ import annotations

import argparse
import sys

from fer_edge.runtime.detectors import DEFAULT_DETECTOR, DETECTORS
from fer_edge.runtime.framing import FRAMINGS
from fer_edge.runtime.labels import LABEL_SETS
from fer_edge.runtime.preprocess import VALUE_RANGES


def fix_argv(argv: list[str] | None) -> list[str]:
    """`--normalize -1,1` -> `--normalize=-1,1` (argparse would take '-1,1' for an option); for every CLI."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--normalize" and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            out.append(f"--normalize={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def model_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", help="classifier .tflite or .onnx, or the short name of a shipped model "
                   "(e.g. vgg: the accurate one; default: the model shipped as fer-edge's default)")
    g.add_argument("--labels", dest="label_set", choices=sorted(LABEL_SETS),
                   help="label set, for a model without fer-edge metadata")
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
    return {"label_set": a.label_set, "normalize": a.normalize, "equalize": a.equalize, "threads": a.threads,
            "providers": providers, "kernels": a.kernels}


def detector_arguments(g) -> None:
    """Detector choice, its declared options (--detect-NAME) and the framing, for fer-edge and serve-api."""
    g.add_argument("--detector", choices=sorted(DETECTORS), default=DEFAULT_DETECTOR,
                   help=f"face detector (default {DEFAULT_DETECTOR}; haar needs OpenCV 4.x)")
    g.add_argument("--detector-model", metavar="PATH", help="the detector's model file (default: YuNet's shipped "
                   "with fer-edge; BlazeFace's face_detection_short_range.tflite, else found in an installed mediapipe)")
    g.add_argument("--detect-size", type=int, metavar="PX", help="width of the copy of each frame the detector "
                   "sees (default: the detector's, for yunet 320 on streams and 640 on photos)")
    for name in sorted({k for cls in DETECTORS.values() for k in cls.OPTIONS}):
        g.add_argument(f"--detect-{name}", type=float, metavar="X", help=" / ".join(
            f"{cls.name}: {cls.OPTIONS[name]}" for cls in DETECTORS.values() if name in cls.OPTIONS))
    g.add_argument("--framing", choices=list(FRAMINGS), default="fer2013", help="how faces are cut for the "
                   "classifier: fer2013 (FER2013's eye position and scale, head tilt levelled, where the detector "
                   "gives landmarks) or box (the detector's box)")


def detector_options(a: argparse.Namespace) -> dict:
    """The detector group's values as PipelineOptions keywords; a --detect-X flag not given is left to the detector."""
    options = {k: getattr(a, f"detect_{k}") for cls in DETECTORS.values() for k in cls.OPTIONS
               if getattr(a, f"detect_{k}") is not None}
    return {"detector": a.detector, "detector_model": a.detector_model, "detect_size": a.detect_size,
            "detect_options": options, "framing": a.framing}
