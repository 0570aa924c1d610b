"""A model's cost as machine-independent figures: multiply-adds per face and parameters.

Milliseconds depend on the CPU (SIMD width, int8 dot-product instructions, threads); multiply-adds do not,
so reports give both. Counted from the Keras model's layers: every convolution (plain, depthwise, separable)
and dense layer at the model's own input size; pooling, normalisation and activations are not counted
(batch normalisation is folded into the convolutions by the converters).
"""
from __future__ import annotations

import math


def _shape(t) -> tuple:
    return tuple(int(v) for v in t.shape[1:])


def _layer_macs(layer, keras) -> int:
    L = keras.layers
    if isinstance(layer, L.Dense):
        return math.prod(_shape(layer.output)[:-1] or (1,)) * int(layer.kernel.shape[0]) * layer.units
    if not isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D)):
        return 0
    out = _shape(layer.output)
    cin, positions = _shape(layer.input)[-1], math.prod(out[:-1])
    taps = math.prod(layer.kernel_size)
    if isinstance(layer, L.DepthwiseConv2D):
        return positions * taps * out[-1]
    if isinstance(layer, L.SeparableConv2D):
        depth = cin * getattr(layer, "depth_multiplier", 1)
        return positions * (taps * depth + depth * out[-1])
    return positions * taps * (cin // max(1, getattr(layer, "groups", 1))) * out[-1]


def _layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):  # a nested model or block
            yield from _layers(layer)
        else:
            yield layer


def model_cost(model, keras=None) -> dict:
    """{"macs": multiply-adds per face, "parameters": weights} of a Keras model (one input face); `keras`: the
    module whose layers it is made of (Keras 3 unless given: tf_keras for a tf.keras 2 file)."""
    if keras is None:
        import keras

    return {"macs": int(sum(_layer_macs(l, keras) for l in _layers(model))), "parameters": int(model.count_params())}


def fmt_macs(macs: int | None) -> str:
    return "-" if macs is None else f"{macs / 1e6:.1f} M"
