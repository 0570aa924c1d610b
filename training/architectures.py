"""Architectures by name: each one small function (input_shape, num_classes) -> keras.Model.

All are quantization-friendly where it is up to us: plain Conv2D/DepthwiseConv2D + BatchNormalization
(folded by the converters) + ReLU, no Lambda layers, a softmax head kept in float32 for mixed precision.
"""
from __future__ import annotations


def _keras():
    from fer_edge.runtime.core.errors import require

    return require("keras", "train")


def _conv_bn_relu(x, filters, kernel=3, strides=1, name=None):
    keras = _keras()
    L = keras.layers
    x = L.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=name)(x)
    x = L.BatchNormalization()(x)
    return L.ReLU()(x)


def _head(x, num_classes, dropout):
    L = _keras().layers
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dropout(dropout)(x)
    return L.Dense(num_classes, activation="softmax", dtype="float32", name="probs")(x)


def edge(input_shape, num_classes):
    """Edge-first default (~0.2M parameters): depthwise-separable blocks with ReLU6, residual adds."""
    keras = _keras()
    L = keras.layers
    inp = keras.Input(input_shape, name="face")
    x = _conv_bn_relu(inp, 32)
    x = _conv_bn_relu(x, 32)
    for filters in (64, 128, 256):
        shortcut = L.BatchNormalization()(L.Conv2D(filters, 1, strides=2, use_bias=False)(x))
        for i in range(2):
            x = L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
            x = L.BatchNormalization()(x)
            x = L.ReLU(6.0)(x)
            x = L.Conv2D(filters, 1, use_bias=False)(x)
            x = L.BatchNormalization()(x)
            if i == 0:
                x = L.ReLU(6.0)(x)
        x = L.MaxPooling2D(3, strides=2, padding="same")(x)
        x = L.ReLU(6.0)(L.Add()([x, shortcut]))
    return keras.Model(inp, _head(x, num_classes, 0.3), name="edge")


def vgg(input_shape, num_classes, widths=(32, 64, 128, 256)):
    """The accurate one (~1.2M parameters): four VGG stages of two 3x3 convs, BN, ReLU, max-pool."""
    keras = _keras()
    L = keras.layers
    inp = keras.Input(input_shape, name="face")
    x = inp
    for stage, filters in enumerate(widths):
        x = _conv_bn_relu(x, filters)
        x = _conv_bn_relu(x, filters)
        x = L.MaxPooling2D(2)(x)
        x = L.Dropout(0.1 + 0.05 * stage)(x)  # light dropout, growing with depth
    x = _conv_bn_relu(x, widths[-1] * 2, kernel=1)
    return keras.Model(inp, _head(x, num_classes, 0.4), name="vgg")


def vgg_lite(input_shape, num_classes):
    """The edge-sized default (29.4M multiply-adds at 48x48, a quarter of vgg's): vgg's widths at half the
    resolution, through a stride-2 3x3 stem. Chosen by measurement over half-width variants of the same
    cost: channels of 32 and more fill the int8 SIMD lanes, 16-channel layers do not, so this shape ran
    INT8 at about a quarter of vgg's time under XNNPACK where vgg-half ran at 70% (benchmarks/arch_choice.md)."""
    keras = _keras()
    L = keras.layers
    inp = keras.Input(input_shape, name="face")
    x = _conv_bn_relu(inp, 32, strides=2)
    x = _conv_bn_relu(x, 32)
    x = L.MaxPooling2D(2)(x)
    x = L.Dropout(0.1)(x)
    for stage, filters in enumerate((64, 128, 256)):
        x = _conv_bn_relu(x, filters)
        x = _conv_bn_relu(x, filters)
        if stage < 2:
            x = L.MaxPooling2D(2)(x)
        x = L.Dropout(0.15 + 0.05 * stage)(x)
    return keras.Model(inp, _head(x, num_classes, 0.4), name="vgg_lite")


def vgg_half(input_shape, num_classes):
    """vgg at half width (~0.3M parameters): about twice as fast to train on a CPU."""
    return vgg(input_shape, num_classes, widths=(16, 32, 64, 128))


def tutorial_allconv(input_shape, num_classes):
    """The source tutorial's 12-layer all-convolutional net: filters 16,16,32,32,64,64,64,128,256,128,256,
    then a 1x1 conv to the classes; every second conv has stride 2; batch norm; dropout; no dense layer."""
    keras = _keras()
    L = keras.layers
    inp = keras.Input(input_shape, name="face")
    x = inp
    plan = [(16, 5), (16, 5), (32, 3), (32, 3), (64, 3), (64, 3), (64, 3), (128, 3), (256, 3), (128, 1), (256, 3)]
    for i, (filters, kernel) in enumerate(plan):
        x = _conv_bn_relu(x, filters, kernel, strides=2 if i % 2 == 1 and i < 8 else 1)
        if i % 2 == 1:
            x = L.Dropout(0.3 if i < 6 else 0.4)(x)
    x = L.Conv2D(num_classes, 1)(x)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Activation("softmax", dtype="float32", name="probs")(x)
    return keras.Model(inp, out, name="tutorial_allconv")


def tutorial_vgg(input_shape, num_classes):
    """The source tutorial's net: conv blocks 64-128-256 (3x3, BN, 2x2 max-pool), dense 4096-1024-256."""
    keras = _keras()
    L = keras.layers
    inp = keras.Input(input_shape, name="face")
    x = inp
    for filters in (64, 128, 256):
        x = _conv_bn_relu(x, filters)
        x = L.MaxPooling2D(2)(x)
    x = L.Flatten()(x)
    for units in (4096, 1024, 256):
        x = L.Dense(units, activation="relu")(x)
        x = L.Dropout(0.5)(x)
    out = L.Dense(num_classes, activation="softmax", dtype="float32", name="probs")(x)
    return keras.Model(inp, out, name="tutorial_vgg")


ARCHITECTURES = {
    "edge": edge,
    "vgg": vgg,
    "vgg-lite": vgg_lite,
    "vgg-half": vgg_half,
    "tutorial-allconv": tutorial_allconv,
    "tutorial-vgg": tutorial_vgg,
}


def build(name: str, input_shape, num_classes):
    from fer_edge.runtime.core.errors import FerEdgeError

    if name not in ARCHITECTURES:
        raise FerEdgeError(f"unknown architecture {name!r}: expected one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name](tuple(input_shape), num_classes)
