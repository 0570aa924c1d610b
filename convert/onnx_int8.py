"""ONNX INT8 by onnxruntime static quantization, with the recipe chosen by measured agreement.

onnxruntime's defaults (QDQ, s8 activations, s8 weights) saturate on x86 CPUs without VNNI: a real FER
model agreed with its float original on 74% of faces (DESIGN.md). So we quantize a few candidate
recipes, all from one calibration pass over the same calibration set (onnxruntime's calibration cache),
run each on held-out faces, and keep the one that agrees best with the Keras reference. When that one
misses the budget on the held-out faces, the search goes on: percentile and entropy calibration, then the
nodes whose activations lose most to rounding (onnxruntime's qdq_loss_debug) kept in float, 1, 2, 4, ...
of them, then 16-bit activations. The table of candidates is recorded in the file's metadata.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from fer_edge.convert.search import (DEBUG_FACES, FLOAT_STEPS, MAX_FLOAT_SHARE, TABLE_ROWS, diagnosis, heldout_scores,
                                     meets, recipe_cost)
import fer_edge.runtime.core.stop as stop
from fer_edge.runtime.core.errors import FerEdgeError, ModelError, require
from fer_edge.runtime.core.progress import Progress


@dataclass(frozen=True)
class Recipe:
    name: str
    quant_format: str  # "QDQ" | "QOperator"
    activations: str  # "QUInt8" | "QInt8"
    weights: str  # "QInt8" | "QUInt8"
    per_channel: bool
    reduce_range: bool  # 7-bit weights: avoids the u8*s8 overflow of x86 kernels without VNNI
    float_head: bool = False  # leave the classifier (last Conv/MatMul/Gemm and what follows) in float
    calibration: str = "MinMax"  # onnxruntime CalibrationMethod: MinMax | Percentile | Entropy
    float_nodes: tuple[str, ...] = ()  # nodes kept in float (mixed precision), most sensitive first


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
    """Names of the last weighted node (Conv, MatMul, Gemm) and everything after it: the classifier head.

    A dense head or a fully-convolutional one (the fer package's mini-XCEPTION ends in a 7-channel Conv,
    a global average and the softmax): a quantized softmax has 256 levels, and its ties go to the lower index.
    """
    onnx = require("onnx", "convert")
    nodes = list(onnx.load(str(model_path)).graph.node)
    last = max((i for i, n in enumerate(nodes) if n.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm")),
               default=None)
    return [] if last is None else [n.name for n in nodes[last:]]


def _quantize(pre: Path, out: Path, recipe: Recipe, cs, input_name: str, cache: Path, head: list[str]) -> None:
    """`head`: _head_nodes(pre), the nodes a float-head recipe keeps in float."""
    q = require("onnxruntime.quantization", "convert")
    exclude = (head if recipe.float_head else []) + list(recipe.float_nodes)
    kwargs = dict(
        quant_format=getattr(q.QuantFormat, recipe.quant_format),
        activation_type=getattr(q.QuantType, recipe.activations),
        weight_type=getattr(q.QuantType, recipe.weights),
        per_channel=recipe.per_channel,
        reduce_range=recipe.reduce_range,
        nodes_to_exclude=exclude or None,
        calibrate_method=getattr(q.CalibrationMethod, recipe.calibration),
    )
    # equal batches: the histogram calibrators cannot stack a shorter last batch; one face at a time for a graph
    # that fixes a batch of 1
    reader = cs.reader(input_name, batch_size=1 if _fixed_batch(pre) else
                       max(d for d in range(1, 33) if len(cs) % d == 0))
    if recipe.calibration != "MinMax":  # one cache per method
        cache = cache.with_name(f"{cache.stem}_{recipe.calibration}{cache.suffix}")
    try:
        q.quantize_static(str(pre), str(out), reader, calibration_cache_path=str(cache), **kwargs)
    except TypeError:  # onnxruntime < 1.23: no calibration cache, every recipe calibrates again
        q.quantize_static(str(pre), str(out), reader, **kwargs)


def _fixed_batch(path: Path) -> int | None:
    from fer_edge.convert.source_onnx import image_input, tensor_dims
    from fer_edge.runtime.model.backends import fixed_batch

    onnx = require("onnx", "convert")
    return fixed_batch(tensor_dims(image_input(onnx.load(str(path), load_external_data=False).graph)))


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
    from fer_edge.runtime.model.backends import OnnxBackend, infer_batched

    return infer_batched(OnnxBackend(path), x)


def layer_errors(pre: Path, qdq: Path, x: np.ndarray) -> list[dict]:
    """Per-tensor activation error of a QDQ model on faces `x`, worst first (onnxruntime's qdq_loss_debug).

    For every quantized activation: relative RMSE between the float value the QDQ model computed and the
    same value after its QuantizeLinear/DequantizeLinear pair, i.e. what rounding to 8 bits lost there.
    """
    onnx = require("onnx", "convert")
    dbg = require("onnxruntime.quantization.qdq_loss_debug", "convert")
    from fer_edge.calibration import CalibrationSet

    aug = qdq.with_name(qdq.stem + "_debug.onnx")
    dbg.modify_model_output_intermediate_tensors(str(qdq), str(aug))
    faces = CalibrationSet(x, np.zeros(len(x), np.int64), np.zeros(len(x), np.int64))
    match = dbg.create_activation_matching(dbg.collect_activations(str(aug), faces.reader("face", 1)))
    producers = {out: n for n in onnx.load(str(pre)).graph.node for out in n.output}
    rows = []
    for tensor, m in match.items():
        node = producers.get(tensor)
        if node is None or not m.get("pre_qdq") or not m.get("post_qdq") or node.op_type in ("Relu", "Clip"):
            # the graph input, a tensor without a QDQ pair, or an activation onnxruntime folds into the
            # preceding node's QDQ pair (its value before the pair is then the pre-activation one)
            continue
        before = np.concatenate([np.ravel(v) for v in m["pre_qdq"]]).astype(np.float64)
        after = np.concatenate([np.ravel(v) for v in m["post_qdq"]]).astype(np.float64)
        rel = float(np.sqrt(np.mean((after - before) ** 2) / max(np.mean(before ** 2), 1e-12)))
        rows.append({"layer": tensor, "op": node.op_type, "relative_rmse": rel, "node": node.name})
    aug.unlink(missing_ok=True)
    return sorted(rows, key=lambda r: (-r["relative_rmse"], r["layer"]))


def _fallback(scored: list[dict], budget: dict) -> str:
    """No candidate reached the target (the budget plus the held-out margin): the best agreement among those
    within the budget itself, else the closest, and the parity gate will say so. 16-bit activations run
    slower than fp32 on onnxruntime's CPU kernels (3x measured here): kept only when no faster candidate is
    within the budget (or, when none is, as close)."""
    within = [r for r in scored if meets(r, budget)]
    pool = within or scored
    pool = [r for r in pool if r["activations"] != "QInt16"] or pool
    return max(pool, key=lambda r: (r["agreement"], -r["float_layers"]))["recipe"]


@dataclass
class _Search:
    """The candidates of one quantize_onnx call: each recipe tried is quantized into `work`, scored on the
    held-out faces (when there are some) and recorded in `table`; those that built are in `cands`."""
    ctx: object
    pre: Path  # the preprocessed float graph
    work: Path
    head: list[str]
    x_sel: np.ndarray | None  # held-out inputs (None: nothing to measure)
    ref: np.ndarray | None
    labels: np.ndarray | None
    table: list = field(default_factory=list)
    cands: dict = field(default_factory=dict)  # recipe name -> (Recipe, quantized file)

    def attempt(self, recipe: Recipe) -> dict | None:
        ctx, table, x_sel = self.ctx, self.table, self.x_sel
        stop.check()  # a recipe is a step of the search
        cand = self.work / f"int8_{len(table)}.onnx"
        try:
            _quantize(self.pre, cand, recipe, ctx.calibration, "face", self.work / "onnx_calibration_cache.json",
                      self.head)
        except Exception as exc:  # a recipe onnxruntime cannot build is skipped, not fatal
            ctx.log(f"  onnx-int8 recipe {recipe.name}: failed ({str(exc).splitlines()[0][:120]})")
            table.append({"recipe": recipe.name, "error": str(exc).splitlines()[0][:200]})
            return None
        row = {"recipe": recipe.name, "bytes": cand.stat().st_size,
               "float_layers": len(recipe.float_nodes) + (len(self.head) if recipe.float_head else 0),
               "activations": recipe.activations}
        if x_sel is not None:
            row.update(heldout_scores(_run(cand, x_sel), self.ref, self.labels))
            ctx.log(f"  onnx-int8 recipe {recipe.name}: agreement {100 * row['agreement']:.2f}%, accuracy drop "
                    f"{row.get('accuracy_drop', float('nan')):+.2f} pp on {len(x_sel)} held-out faces")
        table.append(row)
        self.cands[recipe.name] = (recipe, cand)
        return row

    def first_to_meet(self, recipes) -> str | None:
        """Tries the recipes in order; the name of the first that meets the target, or None."""
        for recipe in recipes:
            row = self.attempt(recipe)
            if row is not None and meets(row, self.ctx.target):
                return recipe.name
        return None

    def scored(self) -> list[dict]:
        return [r for r in self.table if "agreement" in r]


def _plain_recipes(s: _Search, forced: str | None, integer_only: bool) -> tuple[str, bool]:
    """The fixed recipes (or the one --onnx-recipe forces): (the best one's name, whether it meets the target)."""
    names = [name for name in ([forced] if forced else RECIPES)  # a float head is not a fully-integer file
             if forced or not (integer_only and RECIPES[name].float_head)]
    with Progress(len(names), "onnx-int8 recipes") as bar:  # on a terminal only
        for name in names:
            s.attempt(RECIPES[name])
            bar.update()
    if not s.cands:
        raise ModelError("onnx-int8: every quantization recipe failed: " + "; ".join(r.get("error", "") for r in s.table))
    name = _choose([r for r in s.table if "error" not in r])
    return name, s.x_sel is None or meets(next(r for r in s.table if r["recipe"] == name), s.ctx.target)


def _other_calibrations(s: _Search, name: str) -> str | None:
    """Percentile, then entropy calibration of the best QDQ recipe: the first that meets the target, or None."""
    base = s.cands[name][0]
    if base.quant_format != "QDQ":  # only QDQ graphs can keep single nodes in float and be debugged
        base = next(RECIPES[r["recipe"]] for r in sorted(s.scored(), key=lambda r: -r["agreement"])
                    if RECIPES[r["recipe"]].quant_format == "QDQ")
    return s.first_to_meet(replace(base, name=f"{base.name}-{m.lower()}", calibration=m)
                           for m in ("Percentile", "Entropy"))


def _mixed_precision(s: _Search, integer_only: bool) -> tuple[str | None, list[dict]]:
    """The most sensitive nodes kept in float (1, 2, 4, ...), then 16-bit activations: (the first recipe that
    meets the target or None, the layer errors that ranked the nodes)."""
    cands, table = s.cands, s.table
    base = max((cands[r["recipe"]][0] for r in s.scored() if not cands[r["recipe"]][0].float_nodes
                and cands[r["recipe"]][0].quant_format == "QDQ"),
               key=lambda rc: next(r["agreement"] for r in table if r["recipe"] == rc.name))
    errors = diagnosis("onnx-int8", lambda: layer_errors(s.pre, cands[base.name][1], s.x_sel[:DEBUG_FACES]),
                       s.ctx.log)
    if integer_only:
        return None, errors
    ranked = list(dict.fromkeys(e["node"] for e in errors))
    name = s.first_to_meet(replace(base, name=f"{base.name}+float{k}", float_nodes=tuple(ranked[:k]))
                           for k in FLOAT_STEPS if k <= MAX_FLOAT_SHARE * len(ranked))
    if name is None:  # every layer quantized again, with 16-bit activations (QDQ, com.microsoft Q/DQ ops)
        name = s.first_to_meet([replace(base, name="qdq-a16w8-perchannel", activations="QInt16", reduce_range=False,
                                        calibration="MinMax", float_head=False, float_nodes=())])
    return name, errors


def quantize_onnx(ctx, path: Path, fp32: Path, work: Path) -> dict:
    """Write the INT8 ONNX file to `path`, quantized from the float graph `fp32` (scratch files in `work`);
    returns its provenance (chosen recipe, search table, layer errors). `ctx` gives the calibration set, the
    held-out faces and the target, the options and the log. The steps: the fixed recipes, then (when the best
    misses the target on the held-out faces) other calibration methods, then mixed precision, then the
    closest candidate within the budget."""
    if ctx.calibration is None:
        raise FerEdgeError("onnx-int8 needs a calibration set: give --data or --calibration")
    logging.getLogger("root").setLevel(logging.ERROR)  # onnxruntime.quantization logs through the root logger
    pre = _preprocessed(fp32, ctx.log)
    forced = ctx.options.get("onnx_recipe")
    if forced and forced not in RECIPES:
        raise FerEdgeError(f"unknown --onnx-recipe {forced!r}: expected one of {', '.join(RECIPES)}")
    x_sel, ref, labels = ctx.heldout if ctx.heldout is not None and not forced else (None, None, None)
    s = _Search(ctx, pre, work, _head_nodes(pre), x_sel, ref, labels)
    integer_only = bool(ctx.options.get("integer_only"))
    name, ok = _plain_recipes(s, forced, integer_only)
    errors = []
    if not ok:
        better = _other_calibrations(s, name)
        name, ok = (better, True) if better else (name, False)
    if not ok:
        better, errors = _mixed_precision(s, integer_only)
        name = better or _fallback(s.scored(), ctx.budget or ctx.target)
    recipe, cand = s.cands[name]
    path.write_bytes(cand.read_bytes())
    table = s.table
    first = s.cands[table[0]["recipe"]][1] if table[0]["recipe"] in s.cands else None
    cost = recipe_cost(first, cand, x_sel[:1]) if x_sel is not None and first is not None and first != cand else None
    return _provenance(ctx, recipe, table, cost, errors, forced, integer_only, x_sel)


def _provenance(ctx, recipe: Recipe, table, cost, errors, forced, integer_only: bool, x_sel) -> dict:
    """The chosen recipe and how it was chosen, for the file's metadata and the report."""
    ort = require("onnxruntime", "convert")
    return {
        "quantizer": "onnxruntime.quantization.quantize_static", "onnxruntime": ort.__version__,
        "calibration": recipe.calibration, "calibration_faces": len(ctx.calibration), "recipe": asdict(recipe),
        "integer_only": integer_only,
        "selection": ("forced with --onnx-recipe" if forced else
                      f"best top-1 agreement with the Keras reference on {len(x_sel)} {ctx.heldout_name} faces "
                      f"(a more portable recipe wins when within {100 * ROBUST_MARGIN:g} pp of the best); when it "
                      f"misses agreement >= {100 * ctx.target['min_agreement']:.2f}% or accuracy drop <= "
                      f"{ctx.target['max_drop']:.2f} pp there: other calibration methods, then "
                      + ("nothing else (--integer-only: fully-integer recipes only)" if integer_only else
                         "layers in float, then 16-bit activations")
                      if x_sel is not None else "first recipe (no held-out faces to measure)"),
        "candidates": table,
        "cost": cost,
        "layer_errors": errors[:TABLE_ROWS],
        "layer_errors_method": (f"onnxruntime qdq_loss_debug on {min(DEBUG_FACES, len(x_sel))} {ctx.heldout_name} "
                                "faces: relative RMSE of each activation across its QuantizeLinear/DequantizeLinear "
                                "pair") if errors else None,
    }
