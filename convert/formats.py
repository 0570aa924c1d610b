"""Export formats as rows of data: name, file suffix, the options it takes, and one function.

Each function writes one model file to the path it is given and returns the provenance it wants
recorded in that file's metadata (the recipe). TFLite goes through `model.export` (a SavedModel) and
`TFLiteConverter.from_saved_model`: `from_concrete_functions` produced broken files (READ_VARIABLE ops)
on TF 2.21. ONNX goes through tf2onnx.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from fer_edge.convert.search import quiet, quiet_converter
from fer_edge.runtime.core.errors import FerEdgeError, ModelError, require

DEFAULT_OPSET = 17  # tf2onnx 1.17 converts opsets 13-18 for Keras 3 models; 19 fails


@dataclass
class ExportContext:
    """What every export function may use; the SavedModel is made once, on first use."""
    source: object  # convert.source.SourceModel
    calibration: object | None = None  # calibration.CalibrationSet
    options: dict = field(default_factory=dict)
    heldout: tuple | None = None  # (float32 inputs, reference probabilities, labels or None) to choose INT8 recipes by
    heldout_name: str = ""  # where the held-out faces come from, for the record
    target: dict = field(default_factory=dict)  # min_agreement, max_drop an INT8 recipe must meet on held-out faces
    budget: dict = field(default_factory=dict)  # the parity budget itself (target = budget plus a held-out margin)
    more_calibration: Callable | None = None  # size -> a larger CalibrationSet, when the data allows one
    log: Callable[[str], None] = print
    _tmp: tempfile.TemporaryDirectory | None = None
    _saved_model: Path | None = None
    _onnx_fp32: Path | None = None
    onnx_info: dict = field(default_factory=dict)  # how the float ONNX graph was made, for the record
    confidence: dict = field(default_factory=dict)  # the sure/unsure threshold every file carries (its metadata)

    def workdir(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="fer-convert-")
        return Path(self._tmp.name)

    def saved_model(self) -> Path:
        """The source as a TensorFlow SavedModel (the TFLite formats are made from it), made once."""
        if self._saved_model is None:
            d = self.workdir() / "saved_model"
            self.source.write_saved_model(d, self.log)
            self._saved_model = d
        return self._saved_model

    def onnx_fp32(self) -> Path:
        """The float ONNX graph (made once; onnx-int8 quantizes it)."""
        if self._onnx_fp32 is None:
            p = self.workdir() / "model_fp32.onnx"
            self.onnx_info = self.source.write_onnx(p, self)
            self._onnx_fp32 = p
        return self._onnx_fp32

    def close(self) -> None:
        self.source.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


# --- TFLite ------------------------------------------------------------------------------------

def _tflite(ctx: ExportContext, path: Path, kind: str) -> dict:
    tf = require("tensorflow", "convert")
    conv = tf.lite.TFLiteConverter.from_saved_model(str(ctx.saved_model()))
    recipe = {"converter": "TFLiteConverter.from_saved_model", "tensorflow": tf.__version__}
    if kind == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
        recipe["quantization"] = "float16 weights"
    elif kind == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        recipe["quantization"] = "dynamic range (int8 weights, float activations)"
    else:
        recipe["quantization"] = "none (float32)"
    path.write_bytes(quiet_converter(conv, f"TFLite conversion ({kind})"))
    return recipe


def tflite_fp32(ctx, path):
    return _tflite(ctx, path, "fp32")


def tflite_fp16(ctx, path):
    return _tflite(ctx, path, "fp16")


def tflite_dynamic(ctx, path):
    return _tflite(ctx, path, "dynamic")


def tflite_int8(ctx, path):
    from fer_edge.convert.tflite_int8 import quantize_tflite

    return quantize_tflite(ctx, path, ctx.saved_model(), ctx.workdir())


# --- ONNX --------------------------------------------------------------------------------------

def keras_to_onnx(ctx: ExportContext, path: Path) -> dict:
    """A Keras source's float ONNX graph, by tf2onnx."""
    tf = require("tensorflow", "convert")
    tf2onnx = require("tf2onnx", "convert")
    opset = int(ctx.options.get("opset") or DEFAULT_OPSET)
    h, w, c = ctx.source.input_shape
    sig = (tf.TensorSpec((None, h, w, c), tf.float32, name="face"),)
    ctx.log(f"converting to ONNX (tf2onnx {tf2onnx.__version__}, opset {opset})")
    model, converter = ctx.source.model, "tf2onnx.convert.from_keras"
    with quiet():
        try:
            tf2onnx.convert.from_keras(model, input_signature=sig, opset=opset, output_path=str(path))
        except Exception as exc:  # tf2onnx raises assorted types; report one line
            first = f"ONNX conversion failed: {str(exc).strip().splitlines()[0][:300]}"
            # from_keras looks layers up by tensor name, which fails on Keras 3 Sequential models (KeyError
            # 'keras_tensor_N'); tracing the model's call as a function converts the same graph
            converter = "tf2onnx.convert.from_function"
            try:
                tf2onnx.convert.from_function(tf.function(lambda face: model(face, training=False)),
                                              input_signature=sig, opset=opset, output_path=str(path))
            except Exception:
                raise ModelError(first) from None
    return {"converter": converter, "tf2onnx": tf2onnx.__version__, "opset": opset, "quantization": "none (float32)"}


def onnx_fp32(ctx, path):
    src = ctx.onnx_fp32()
    path.write_bytes(src.read_bytes())
    return dict(ctx.onnx_info)


def onnx_int8(ctx, path):
    from fer_edge.convert.onnx_int8 import quantize_onnx

    return quantize_onnx(ctx, path, ctx.onnx_fp32(), ctx.workdir())


# --- the table ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Format:
    name: str
    suffix: str  # appended to the model's stem
    options: tuple[str, ...]  # option names this format accepts
    export: Callable
    calibrated: bool = False  # needs a calibration set
    int8: bool = False  # integer kernels: evaluated on every kernel path
    recipe_search: str | None = None  # searches recipes on held-out faces; its recipe goes in the report under this key


FORMATS = {f.name: f for f in (
    Format("tflite-fp32", "_fp32.tflite", (), tflite_fp32),
    Format("tflite-fp16", "_fp16.tflite", (), tflite_fp16),
    Format("tflite-dynamic", "_dynamic.tflite", (), tflite_dynamic),
    Format("tflite-int8", "_int8.tflite", ("calibration", "integer_only"), tflite_int8, calibrated=True, int8=True,
           recipe_search="tflite_int8_recipe"),
    Format("onnx-fp32", "_fp32.onnx", ("opset",), onnx_fp32),
    Format("onnx-int8", "_int8.onnx", ("opset", "calibration", "onnx_recipe", "integer_only"), onnx_int8,
           calibrated=True, int8=True, recipe_search="onnx_int8_recipe"),
)}
INT8_FORMATS = tuple(name for name, f in FORMATS.items() if f.int8)


def parse_formats(text: str) -> list[Format]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise FerEdgeError(f"--formats is empty: expected a comma-separated list of {', '.join(FORMATS)}")
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise FerEdgeError(f"unknown format {', '.join(unknown)}: expected one of {', '.join(FORMATS)}")
    return [FORMATS[n] for n in dict.fromkeys(names)]


def check_options(formats: list[Format], given: dict) -> None:
    """Reject an option that none of the chosen formats takes, naming the ones that do."""
    for opt, value in given.items():
        if value is None or value is False:
            continue
        takers = [f.name for f in FORMATS.values() if opt in f.options]
        if not any(opt in f.options for f in formats):
            flag = "--" + opt.replace("_", "-")
            raise FerEdgeError(f"{flag} applies to {', '.join(takers)}, not to the chosen formats "
                               f"({', '.join(f.name for f in formats)})")


def output_path(out_dir: str | os.PathLike, stem: str, fmt: Format) -> Path:
    return Path(out_dir) / f"{stem}{fmt.suffix}"
