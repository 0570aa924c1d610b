"""ONNX INT8 by onnxruntime static quantization, with the recipe chosen by measured agreement.

onnxruntime's defaults (QDQ, s8 activations, s8 weights) saturate on x86 CPUs without VNNI: a real FER
model agreed with its float original on 74% of faces (DESIGN.md). So we quantize a few candidate
recipes, all from one calibration pass over the same calibration set (onnxruntime's calibration cache),
run each on held-out faces, and keep the one that agrees best with the Keras reference. The table of
candidates and their agreement is recorded in the file's metadata.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fer_edge.runtime.errors import FerEdgeError, ModelError, require


@dataclass(frozen=True)
class Recipe:
    name: str
    quant_format: str  # "QDQ" | "QOperator"
    activations: str  # "QUInt8" | "QInt8"
    weights: str  # "QInt8" | "QUInt8"
    per_channel: bool
    reduce_range: bool  # 7-bit weights: avoids the u8*s8 overflow of x86 kernels without VNNI
    float_head: bool = False  # leave the classifier (last MatMul/Gemm) and softmax in float


RECIPES = {r.name: r for r in (
    Recipe("qdq-u8s8-perchannel-rr", "QDQ", "QUInt8", "QInt8", True, True),
    Recipe("qop-u8s8-perchannel-rr", "QOperator", "QUInt8", "QInt8", True, True),
    Recipe("qdq-u8s8-pertensor-rr", "QDQ", "QUInt8", "QInt8", False, True),
    Recipe("qdq-u8s8-perchannel-rr-floathead", "QDQ", "QUInt8", "QInt8", True, True, float_head=True),
    Recipe("qdq-s8s8-perchannel", "QDQ", "QInt8", "QInt8", True, False),  # onnxruntime's usual choice
)}


ROBUST_MARGIN = 0.005  # agreement a more portable recipe may give up against the best one


def _choose(rows: list[dict]) -> str:
    """The first recipe (RECIPES is ordered most portable first) within ROBUST_MARGIN of the best agreement.

    The search runs on the converting machine's kernels: s8 activations can win on an x86 CPU with VNNI
    and still saturate on one without it, so a near-tie goes to u8 activations with reduce_range.
    """
    measured = [r for r in rows if "agreement" in r]
    if not measured:
        return rows[0]["recipe"]
    best = max(r["agreement"] for r in measured)
    return next(r["recipe"] for r in measured if r["agreement"] >= best - ROBUST_MARGIN)


def _head_nodes(model_path: Path) -> list[str]:
    """Names of the last MatMul/Gemm node and everything after it (the classifier head)."""
    onnx = require("onnx", "convert")
    nodes = list(onnx.load(str(model_path)).graph.node)
    last = max((i for i, n in enumerate(nodes) if n.op_type in ("MatMul", "Gemm")), default=None)
    return [] if last is None else [n.name for n in nodes[last:]]


def _quantize(pre: Path, out: Path, recipe: Recipe, cs, input_name: str, cache: Path) -> None:
    q = require("onnxruntime.quantization", "convert")
    kwargs = dict(
        quant_format=getattr(q.QuantFormat, recipe.quant_format),
        activation_type=getattr(q.QuantType, recipe.activations),
        weight_type=getattr(q.QuantType, recipe.weights),
        per_channel=recipe.per_channel,
        reduce_range=recipe.reduce_range,
        nodes_to_exclude=_head_nodes(pre) if recipe.float_head else None,
        calibrate_method=q.CalibrationMethod.MinMax,
    )
    reader = cs.reader(input_name, batch_size=16)
    try:
        q.quantize_static(str(pre), str(out), reader, calibration_cache_path=str(cache), **kwargs)
    except TypeError:  # onnxruntime < 1.23: no calibration cache, every recipe calibrates again
        q.quantize_static(str(pre), str(out), reader, **kwargs)


def _preprocessed(src: Path, log) -> Path:
    """The float graph after onnxruntime's quant_pre_process (shape inference, fusions), or as is."""
    q = require("onnxruntime.quantization", "convert")
    pre = src.with_name("model_fp32_pre.onnx")
    if not pre.exists():
        try:
            q.quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
        except Exception as exc:  # pre-processing is an optimisation: quantize the plain graph instead
            log(f"note: onnxruntime quant_pre_process failed ({str(exc).splitlines()[0][:120]}): using the plain graph")
            return src
    return pre


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    from fer_edge.runtime.backends import OnnxBackend

    backend = OnnxBackend(path)
    return np.concatenate([backend.infer(x[i:i + 256]) for i in range(0, len(x), 256)])


def quantize_onnx(ctx, path: Path, fp32: Path, work: Path) -> dict:
    """Write the INT8 ONNX file to `path`, quantized from the float graph `fp32` (scratch files in `work`);
    returns its provenance (chosen recipe and the search table). `ctx` gives the calibration set, the held-out
    faces, the options and the log."""
    cs = ctx.calibration
    if cs is None:
        raise FerEdgeError("onnx-int8 needs a calibration set: give --data or --calibration")
    logging.getLogger("root").setLevel(logging.ERROR)  # onnxruntime.quantization logs through the root logger
    pre = _preprocessed(fp32, ctx.log)
    cache = work / "onnx_calibration_cache.json"
    forced = ctx.options.get("onnx_recipe")
    if forced and forced not in RECIPES:
        raise FerEdgeError(f"unknown --onnx-recipe {forced!r}: expected one of {', '.join(RECIPES)}")
    names = [forced] if forced else list(RECIPES)
    x_sel, ref = ctx.heldout if ctx.heldout is not None else (None, None)
    table, cands = [], {}
    for name in names:
        recipe = RECIPES[name]
        cand = work / f"int8_{name}.onnx"
        try:
            _quantize(pre, cand, recipe, cs, "face", cache)
        except Exception as exc:  # a recipe onnxruntime cannot build is skipped, not fatal
            ctx.log(f"  onnx-int8 recipe {name}: failed ({str(exc).splitlines()[0][:120]})")
            table.append({"recipe": name, "error": str(exc).splitlines()[0][:200]})
            continue
        row = {"recipe": name, "bytes": cand.stat().st_size}
        if x_sel is not None and not forced:
            probs = _run(cand, x_sel)
            row["agreement"] = float((probs.argmax(1) == ref.argmax(1)).mean())
            row["max_prob_diff"] = float(np.abs(probs - ref).max())
            ctx.log(f"  onnx-int8 recipe {name}: agreement {100 * row['agreement']:.2f}% on {len(x_sel)} held-out faces")
        table.append(row)
        cands[name] = cand
    if not cands:
        raise ModelError("onnx-int8: every quantization recipe failed: " + "; ".join(r.get("error", "") for r in table))
    name = _choose([r for r in table if "error" not in r])
    cand = cands[name]
    path.write_bytes(cand.read_bytes())
    ort = require("onnxruntime", "convert")
    return {
        "quantizer": "onnxruntime.quantization.quantize_static", "onnxruntime": ort.__version__,
        "calibration": "MinMax", "calibration_faces": len(cs), "recipe": asdict(RECIPES[name]),
        "selection": ("forced with --onnx-recipe" if forced else
                      f"best top-1 agreement with the Keras reference on {len(x_sel)} {ctx.heldout_name} faces "
                      f"(a more portable recipe wins when within {100 * ROBUST_MARGIN:g} pp of the best)"
                      if x_sel is not None else "first recipe (no held-out faces to measure)"),
        "candidates": table,
    }
