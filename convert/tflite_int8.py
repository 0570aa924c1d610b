"""TFLite INT8 with a recipe search: calibrate once, quantize variants, keep the first that meets the budget.

TFLiteConverter's calibrator records min-max ranges only, so the levers here are percentile ranges (each
activation's recorded range narrowed to a quantile of its per-face extremes, edited into the calibrated model:
one rare extreme no longer coarsens every face's int8 steps, and the file stays fully integer at no cost), the
number of calibration faces, per-channel or per-tensor weights, and, last, keeping the most sensitive layers in
float (mixed precision: those ops run in float between quantize/dequantize pairs, the rest stays INT8). The
mixed-precision steps start with the float head: the classifier tail (the last weighted op and everything
after it) in float with a float output. A quantized softmax has 256 output levels, so two classes often tie
and argmax picks the lower index (2.3% of the fer package's faces); a float tail costs a 7-channel conv or one
dense layer. Then the head plus the layers whose float version brings the output closest to the reference,
then float activations with 8-bit weights (dynamic range: fast on XNNPACK, no integer-only accelerator), then
16-bit activations (slow on CPUs: tried only when no candidate so far meets even the budget). Each candidate is
measured on held-out faces (never the split the report is scored on); the search stops at the first candidate
that meets the budget there with a margin, so a model that passes with the plain recipe costs one conversion.
When none reaches the margin, the cheapest (fewest float ops: float layers cost most on the CPUs with int8
dot-product instructions) among those within the budget and within one standard error of the best agreement
there is kept, else the closest. Per-layer errors come from LiteRT's quantization debugger: each quantized op
is compared with its float counterpart fed the same (quantized) input, on held-out faces.
"""
from __future__ import annotations

import csv
import io
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from fer_edge.convert.search import (DEBUG_FACES, FLOAT_STEPS, MAX_FLOAT_SHARE, TABLE_ROWS, diagnosis, heldout_scores,
                                     meets, quiet_converter, recipe_cost)
import fer_edge.runtime.core.stop as stop
from fer_edge.runtime.core.errors import FerEdgeError, ModelError, require
from fer_edge.runtime.core.progress import Progress

RANGE_QUANTILES = (0.99, 0.9)  # percentile recipes: ranges cut to this quantile of the per-face extremes
MORE_FACES = 2  # the "more calibration faces" step uses this many times the given calibration size
SENSITIVITY_FACES = 500  # held-out faces each layer's effect on the output is measured on
RANKED_LAYERS = 16  # layers probed one by one (those the debugger says lose most): each probe is a quantization
# and a pass over SENSITIVITY_FACES, so a model of hundreds of layers still searches in minutes


# ops whose output shares its input's quantization: keeping them in float changes nothing
_NOT_RANKED = {"QUANTIZE", "DEQUANTIZE", "MAX_POOL_2D", "RESHAPE", "SOFTMAX", "SQUEEZE", "CONCATENATION"}


@dataclass(frozen=True)
class TfliteRecipe:
    name: str
    calibration_faces: int
    per_channel: bool = True
    float_layers: tuple[str, ...] = field(default=())  # output tensor names of ops kept in float (head first)
    activations: str = "int8"  # "int16": LiteRT's 16x8 mode, int16 input/output; "float": dynamic range
    float_head: bool = False  # the classifier tail is among float_layers, and input and output are float32
    range_quantile: float = 1.0  # activation ranges: 1.0 min-max, else this quantile of the per-face extremes

    @property
    def integer_only(self) -> bool:
        return not self.float_layers and self.activations != "float"


def _calibrated(saved_model: Path, cs) -> bytes:
    """The float model with min-max ranges of every tensor recorded on `cs` (quantized later, per variant)."""
    tf = require("tensorflow", "convert")
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = cs.representative_dataset()
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.experimental_new_quantizer = True
    conv._experimental_calibrate_only = True  # noqa: SLF001 - TensorFlow's documented route to its debugger
    return quiet_converter(conv, "TFLite calibration")


def _percentile_ranges(calibrated: bytes, cs, q: float) -> bytes:
    """The calibrated model with each inner activation's recorded range [min, max] narrowed to the q-quantile of
    its per-face maxima and the (1 - q)-quantile of its per-face minima on the calibration faces; values beyond
    saturate. The graph's inputs and outputs keep their ranges."""
    tf = require("tensorflow", "convert")
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(calibrated))
    graph = model.subgraphs[0]
    ends = {int(i) for i in graph.inputs} | {int(i) for i in graph.outputs}
    ranged = [i for i, t in enumerate(graph.tensors) if i not in ends and t.quantization is not None
              and t.quantization.min is not None and len(t.quantization.min) == 1]
    with warnings.catch_warnings():  # "preserve_all_tensors is for debugging": reading them is the point here
        warnings.simplefilter("ignore", UserWarning)
        interp = tf.lite.Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    lows, highs = [], []
    for (x,) in cs.representative_dataset()():
        interp.set_tensor(inp, x)
        interp.invoke()
        values = [interp.get_tensor(i) for i in ranged]
        lows.append([v.min() for v in values])
        highs.append([v.max() for v in values])
    low, high = np.quantile(np.array(lows), 1 - q, axis=0), np.quantile(np.array(highs), q, axis=0)
    for i, lo, hi in zip(ranged, low, high):
        qz = graph.tensors[i].quantization
        qz.min = np.array([max(float(qz.min[0]), min(float(lo), 0.0))], np.float32)
        qz.max = np.array([min(float(qz.max[0]), max(float(hi), 0.0))], np.float32)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _int16(saved_model: Path, cs) -> bytes:
    """Every activation in 16 bits, weights in 8 (TFLite's 16x8 mode has its own calibrating converter)."""
    tf = require("tensorflow", "convert")
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = cs.representative_dataset()
    conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    conv.inference_input_type = tf.int16
    conv.inference_output_type = tf.int16
    return quiet_converter(conv, "TFLite 16x8 quantization")


def _dynamic_range(saved_model: Path) -> bytes:
    """8-bit weights, float activations (quantized on the fly by the kernels that can): no calibration."""
    tf = require("tensorflow", "convert")
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    return quiet_converter(conv, "TFLite dynamic-range quantization")


_WEIGHTED = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D", "BATCH_MATMUL"}


def _ops(model: bytes) -> list[tuple[str, str]]:
    """(op name, first output tensor name) of every op of a .tflite flatbuffer, in execution order."""
    from fer_edge.runtime.model.backends import litert_interpreter

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(model)
        interp, _ = litert_interpreter(path)
        ops = interp._get_ops_details()  # noqa: SLF001 - the only listing of ops LiteRT offers
        return [(op["op_name"], interp._get_tensor_details(op["outputs"][0], 0)["name"])  # noqa: SLF001
                for op in ops if len(op["outputs"])]


def head_layers(calibrated: bytes) -> tuple[str, ...]:
    """Output tensors of the classifier tail: the last weighted op (conv or dense) and every op after it."""
    ops = [op for op in _ops(calibrated) if op[0] not in ("QUANTIZE", "DEQUANTIZE")]
    last = max((i for i, op in enumerate(ops) if op[0] in _WEIGHTED), default=len(ops) - 1)
    return tuple(name for _, name in ops[last:])


def _quantize(calibrated: bytes, recipe: TfliteRecipe, debug: bool = False) -> bytes:
    tf = require("tensorflow", "convert")
    from tensorflow.lite.python import convert as tfl_convert

    # a float head needs fully_quantize off and float32 input and output: with int8 output the quantizer
    # puts the softmax back on its 256 levels (ties again), and fully_quantize re-quantizes around it
    float_io = debug or recipe.float_head
    io_type = tf.float32 if float_io else tf.int8
    try:
        return tfl_convert.mlir_quantize(calibrated, disable_per_channel=not recipe.per_channel,
                                         fully_quantize=not float_io, input_data_type=io_type,
                                         output_data_type=io_type, enable_numeric_verify=debug,
                                         denylisted_nodes=list(recipe.float_layers) or None)
    except Exception as exc:  # the MLIR quantizer raises ConverterError and friends: one line
        raise ModelError(f"TFLite INT8 quantization ({recipe.name}) failed: "
                         f"{str(exc).strip().splitlines()[0][:300]}") from None


def _relative_rmse(float_values, quant_values, scale, zero_point) -> float:
    """RMS of (dequantized - float) over RMS of float: the share of the signal lost at this layer."""
    f = np.concatenate([np.asarray(v, np.float64).ravel() for v in float_values])
    q = np.concatenate([np.asarray(v, np.float64).ravel() for v in quant_values])
    err = (q - zero_point) * scale - f
    return float(np.sqrt(np.mean(err ** 2) / max(np.mean(f ** 2), 1e-12)))


def layer_errors(calibrated: bytes, recipe: TfliteRecipe, faces: np.ndarray) -> list[dict]:
    """Per-layer quantization error on `faces`, worst first: output tensor, op, relative RMSE."""
    tf = require("tensorflow", "convert")

    def dataset():
        for i in range(len(faces)):
            yield [faces[i:i + 1]]

    opts = tf.lite.experimental.QuantizationDebugOptions(
        layer_debug_metrics={}, layer_direct_compare_metrics={"relative_rmse": _relative_rmse})
    debugger = tf.lite.experimental.QuantizationDebugger(
        quant_debug_model_content=_quantize(calibrated, recipe, debug=True), debug_dataset=dataset,
        debug_options=opts)
    debugger.run()
    text = io.StringIO()
    debugger.layer_statistics_dump(text)
    text.seek(0)
    rows = [{"layer": r["tensor_name"], "op": r["op_name"], "relative_rmse": float(r["relative_rmse"]),
             "scale": float(r["scale"])} for r in csv.DictReader(text) if r["op_name"] not in _NOT_RANKED]
    rows = [r for r in rows if np.isfinite(r["relative_rmse"])]
    return sorted(rows, key=lambda r: (-r["relative_rmse"], r["layer"]))


def _score(path, x: np.ndarray, ref: np.ndarray, labels) -> dict:
    """Held-out scores on the worse of LiteRT's two kernel paths (the gate applies to both)."""
    from fer_edge.runtime.model.backends import LiteRTBackend, infer_batched

    rows = [heldout_scores(infer_batched(LiteRTBackend(path, threads=2, kernels=kernels), x), ref, labels)
            for kernels in LiteRTBackend.KERNELS]
    return {k: (min if k == "agreement" else max)(r[k] for r in rows) for k in rows[0]}


def _probs(path, x: np.ndarray) -> np.ndarray:
    from fer_edge.runtime.model.backends import LiteRTBackend, infer_batched

    return infer_batched(LiteRTBackend(path, threads=os.cpu_count()), x)


def _sensitivity(ctx, work: Path, calibrated: bytes, base: TfliteRecipe, layers: list[str]) -> list[str]:
    """`layers` ordered by how much keeping each one in float (beside `base`'s float layers) brings the output
    closer to the reference.

    Measured on the output (mean absolute probability difference on SENSITIVITY_FACES held-out faces), not
    on the layer: a layer's own rounding error says little about how much of it survives to the softmax.
    """
    x, ref = ctx.heldout[0][:SENSITIVITY_FACES], ctx.heldout[1][:SENSITIVITY_FACES]
    cand = work / "tflite_int8_sensitivity.tflite"
    cand.write_bytes(_quantize(calibrated, base))
    plain = np.abs(_probs(cand, x) - ref).sum(1).mean()
    gains = []
    for layer in layers:
        cand.write_bytes(_quantize(calibrated, replace(base, name="probe", float_layers=base.float_layers + (layer,))))
        gains.append(plain - np.abs(_probs(cand, x) - ref).sum(1).mean())
    ctx.log(f"  tflite-int8: ranked {len(layers)} layers (those losing most) by their effect on the output")
    return [layers[i] for i in sorted(range(len(layers)), key=lambda i: (-gains[i], layers[i]))]


def _ladder(cs_size: int, more: bool) -> list[TfliteRecipe]:
    """Fully-integer candidates, in the order tried: the plain recipe first."""
    out = [TfliteRecipe("minmax-perchannel", cs_size)]
    out += [TfliteRecipe(f"p{100 * q:g}-perchannel", cs_size, range_quantile=q) for q in RANGE_QUANTILES]
    out.append(TfliteRecipe("minmax-pertensor", cs_size, per_channel=False))
    if more:
        out.append(TfliteRecipe(f"minmax-perchannel-{MORE_FACES * cs_size}faces", MORE_FACES * cs_size))
    return out


@dataclass
class _Search:
    """The candidates of one quantize_tflite call: calibrated models are made once per (faces, range quantile)
    and reused; each recipe tried is written into `work`, scored on the held-out faces (when there are some)
    and recorded in `tried` as (recipe, file, scores)."""
    ctx: object
    saved_model: Path
    work: Path
    calibrated: dict = field(default_factory=dict)  # (faces, range quantile) -> calibrated model
    tried: list = field(default_factory=list)

    def __post_init__(self):
        cs = self.ctx.calibration
        self.calibrated[(len(cs), 1.0)] = _calibrated(self.saved_model, cs)

    def calibrated_for(self, recipe: TfliteRecipe) -> bytes:
        ctx, cs, calibrated, n = self.ctx, self.ctx.calibration, self.calibrated, recipe.calibration_faces
        if (n, recipe.range_quantile) not in calibrated:
            faces = cs if n == len(cs) else ctx.more_calibration(n)
            if (n, 1.0) not in calibrated:
                ctx.log(f"  tflite-int8: calibrating on {len(faces)} faces")
                calibrated[(n, 1.0)] = _calibrated(self.saved_model, faces)
            if recipe.range_quantile < 1.0:
                calibrated[(n, recipe.range_quantile)] = _percentile_ranges(calibrated[(n, 1.0)], faces,
                                                                            recipe.range_quantile)
        return calibrated[(n, recipe.range_quantile)]

    def attempt(self, recipe: TfliteRecipe) -> bool:
        """Tries one recipe; whether it meets the target (always, with no held-out faces to measure)."""
        ctx, heldout = self.ctx, self.ctx.heldout
        stop.check()  # a recipe is a step of the search
        cand = self.work / f"tflite_int8_{len(self.tried)}.tflite"
        if recipe.activations == "int16":
            cand.write_bytes(_int16(self.saved_model, ctx.calibration))
        elif recipe.activations == "float":
            cand.write_bytes(_dynamic_range(self.saved_model))
        else:
            cand.write_bytes(_quantize(self.calibrated_for(recipe), recipe))
        row = {"recipe": recipe.name, "bytes": cand.stat().st_size, "float_layers": len(recipe.float_layers),
               "activations": recipe.activations}
        if heldout is not None:
            row.update(_score(cand, *heldout))
            ctx.log(f"  tflite-int8 recipe {recipe.name}: agreement {100 * row['agreement']:.2f}%, accuracy drop "
                    f"{row.get('accuracy_drop', float('nan')):+.2f} pp on {len(heldout[0])} held-out faces "
                    "(worse kernel path)")
        self.tried.append((recipe, cand, row))
        return heldout is None or meets(row, ctx.target)


def _integer_ladder(s: _Search) -> tuple[bool, list[dict]]:
    """The fully-integer recipes in order until one meets the target: (whether one did, the layer errors of
    the plain recipe, measured only when it misses)."""
    ladder = _ladder(len(s.ctx.calibration), s.ctx.more_calibration is not None)
    with Progress(len(ladder), "tflite-int8 recipes") as bar:  # on a terminal; full once one meets the target
        ok, heldout = s.attempt(ladder[0]), s.ctx.heldout
        bar.update()
        errors = []
        if not ok and heldout is not None:  # what breaks: only asked when the plain recipe misses (it costs a pass)
            errors = diagnosis("tflite-int8", lambda: layer_errors(s.calibrated_for(ladder[0]), ladder[0],
                                                                   heldout[0][:DEBUG_FACES]), s.ctx.log)
        for recipe in ladder[1:]:
            if ok:
                break
            ok = s.attempt(recipe)
            bar.update()
    return ok, errors


def _mixed_precision(s: _Search, errors: list[dict], budget: dict) -> bool:
    """The float head, then the most sensitive layers in float beside it, then dynamic range, then (only when
    nothing faster meets the budget itself) 16-bit activations; whether one met the target."""
    best = max((t for t in s.tried if t[0].integer_only), key=lambda t: t[2]["agreement"])[0]
    cal = s.calibrated_for(best)
    head = replace(best, name=f"{best.name}+floathead", float_layers=head_layers(cal), float_head=True)
    ok = s.attempt(head)
    if not ok and errors:
        others = [r["layer"] for r in errors if r["layer"] not in head.float_layers]
        ranked = _sensitivity(s.ctx, s.work, cal, head, others[:RANKED_LAYERS])
        for k in (k for k in FLOAT_STEPS if k <= min(len(ranked), MAX_FLOAT_SHARE * len(others))):
            ok = s.attempt(replace(head, name=f"{head.name}+float{k}", float_layers=head.float_layers + tuple(ranked[:k])))
            if ok:
                break
    if not ok:  # every activation in float, weights in 8 bits: XNNPACK runs it at float speed or better
        ok = s.attempt(TfliteRecipe("dynamic-range", 0, activations="float"))
    # every layer integer again, with 16-bit activations: accurate, but LiteRT runs them on reference kernels,
    # 50-100x slower; only when no faster candidate meets the budget itself (short of the held-out margin)
    if not ok and not any(meets(row, budget) for _, _, row in s.tried):
        ok = s.attempt(TfliteRecipe("minmax-16x8", len(s.ctx.calibration), activations="int16"))
    return ok


def quantize_tflite(ctx, path: Path, saved_model: Path, work: Path) -> dict:
    """Write the INT8 .tflite file to `path`, quantized from `saved_model` (scratch files in `work`); returns its
    provenance (recipe, search table, layer errors). `ctx` gives the calibration set, the held-out faces and the
    target, more calibration faces, the options and the log. The steps: the fully-integer ladder, then (unless
    --integer-only) mixed precision, then the choice among what was tried."""
    tf = require("tensorflow", "convert")
    if ctx.calibration is None:
        raise FerEdgeError("tflite-int8 needs a calibration set: give --data or --calibration")
    integer_only = bool(ctx.options.get("integer_only"))
    heldout = ctx.heldout  # (inputs, reference probabilities, labels or None) or None
    budget = ctx.budget or ctx.target  # the budget itself; target adds the held-out margin
    s = _Search(ctx, saved_model, work)
    ok, errors = _integer_ladder(s)
    if not ok and not integer_only:
        ok = _mixed_precision(s, errors, budget)
    tried = s.tried
    within = [] if ok or heldout is None else [t for t in tried if meets(t[2], budget)]
    if ok:
        recipe, cand, _ = tried[-1]
    elif within:  # short of the margin: the cheapest of those as good as the best within the budget
        recipe, cand, _ = cheapest_of_best(within, len(heldout[0]))
    else:  # the closest, and the parity gate will say so
        recipe, cand, _ = max(tried, key=lambda t: (t[2]["agreement"], -float_cost(t[0])))
    path.write_bytes(cand.read_bytes())
    cost = recipe_cost(tried[0][1], cand, heldout[0][:1]) if recipe != tried[0][0] and heldout is not None else None
    return _provenance(ctx, tf.__version__, recipe, tried, cost, errors, (ok, integer_only, bool(within)))


def _provenance(ctx, tf_version: str, recipe: TfliteRecipe, tried: list, cost, errors: list[dict],
                outcome: tuple[bool, bool, bool]) -> dict:
    """The chosen recipe and how it was chosen, for the file's metadata and the report. `outcome`: (a recipe
    met the target, --integer-only, kept one within the budget short of the margin)."""
    ok, integer_only, within = outcome
    heldout = ctx.heldout
    target = ctx.target if heldout is not None else None
    return {
        "converter": "TFLiteConverter.from_saved_model (calibrate only) + mlir_quantize",
        "tensorflow": tf_version, "quantization": _quantization_text(recipe),
        "calibration": ("none (dynamic range)" if recipe.activations == "float" else "min-max"
                        if recipe.range_quantile == 1.0 else f"{recipe.range_quantile:g}-quantile of per-face "
                        "extremes"),
        "calibration_faces": recipe.calibration_faces,
        "recipe": asdict(recipe), "integer_only": integer_only,
        "selection": _selection_text(heldout, ctx.heldout_name, target, ok, integer_only, within),
        "candidates": [row for _, _, row in tried],
        "cost": cost,
        "layer_errors": errors[:TABLE_ROWS],
        "layer_errors_method": (f"LiteRT QuantizationDebugger: each op against its float counterpart fed the same "
                                f"input, on {min(DEBUG_FACES, len(heldout[0]))} {ctx.heldout_name} faces; relative "
                                "RMSE = RMS(error) / RMS(float output)") if errors else None,
    }


def float_cost(recipe: TfliteRecipe) -> int:
    """Rank of a recipe's cost on CPUs with int8 dot products: fully integer, then float ops one by one, then
    every activation in float (dynamic range), then 16-bit activations (reference kernels, slowest)."""
    return {"int8": len(recipe.float_layers), "float": 10 ** 6, "int16": 10 ** 7}[recipe.activations]


def cheapest_of_best(rows: list, faces: int):
    """Of (recipe, file, scores) rows, the cheapest whose agreement is within one standard error (binomial, on
    `faces` faces) of the best: a difference that size is not evidence that the dearer recipe is better."""
    best = max(r[2]["agreement"] for r in rows)
    se = (best * (1 - best) / faces) ** 0.5
    return min((r for r in rows if r[2]["agreement"] >= best - se - 1e-12),
               key=lambda r: (float_cost(r[0]), -r[2]["agreement"]))


def _quantization_text(recipe: TfliteRecipe) -> str:
    if recipe.activations == "int16":
        return "full integer, 16-bit activations, int16 input and output"
    if recipe.activations == "float":
        return "dynamic range: 8-bit weights, float activations, float32 input and output"
    if recipe.float_head:
        return (f"INT8 with {len(recipe.float_layers)} ops in float (the classifier head first), "
                "float32 input and output")
    return "full integer, int8 input and output" + (f", {len(recipe.float_layers)} layers kept in float"
                                                     if recipe.float_layers else "")


def _selection_text(heldout, where: str, target: dict | None, ok: bool, integer_only: bool,
                    within: bool = False) -> str:
    if heldout is None:
        return "plain recipe (no held-out faces to measure)"
    goal = (f"agreement >= {100 * target['min_agreement']:.2f}% and accuracy drop <= {target['max_drop']:.2f} pp "
            f"on {len(heldout[0])} {where} faces, worse LiteRT kernel path")
    if ok:
        return f"first recipe meeting {goal}"
    if within:
        return (f"no {'fully-integer ' if integer_only else ''}recipe met {goal} (the budget plus a margin): kept "
                "the cheapest (fewest float ops) among those within the budget itself and within one standard "
                "error of their best agreement")
    return (f"no {'fully-integer ' if integer_only else ''}recipe met {goal}: kept the closest one")
