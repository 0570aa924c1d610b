"""fer-explain: integrated gradients over one face, drawn beside it (face | attribution | overlay).

Integrated gradients (Sundararajan et al. 2017): attribution = (x - baseline) * the mean gradient of the
class probability along the straight path from a black face (the baseline) to the face. The attributions
of all pixels sum to p(class | face) - p(class | black face); the command prints how close they come.
The face goes through the model's own preprocessing (fer_edge.runtime.model.preprocess), so the map shows
what the model sees.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

import fer_edge.runtime.core.stop as stop
from fer_edge.runtime.cli_args import fix_argv, model_flag_arguments, model_flags
from fer_edge.runtime.core.errors import cli_main, FerEdgeError, require
from fer_edge.runtime.core.fileio import atomic_output, check_writable
from fer_edge.runtime.model.metadata import ModelFlags
from fer_edge.runtime.model.preprocess import PreprocessSpec, preprocess

SMALL = 2  # an image at most this many times the model input on each side is taken as the face itself


def find_face(image: np.ndarray, spec: PreprocessSpec, whole: bool = False, name: str = "image"):
    """(face crop, box or None): the largest face of a photo found and framed as fer-edge does (YuNet,
    FER2013's framing), or the whole image when it is a face crop."""
    from fer_edge.runtime.faces.detectors import DEFAULT_DETECTOR, detect_at, make_detector
    from fer_edge.runtime.faces.framing import FER2013, crop_source, face_crops
    from fer_edge.runtime.model.preprocess import as_bgr

    h, w = image.shape[:2]
    if whole or (h <= SMALL * spec.size[0] and w <= SMALL * spec.size[1]):
        return image, None
    frame = as_bgr(image)
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    detector = make_detector(DEFAULT_DETECTOR)
    try:
        faces = detect_at(detector, frame, gray, detector.SIZES[1])  # the photo default, as fer-edge --image
    finally:
        detector.close()
    if not faces:
        raise FerEdgeError(f"{name}: no face found in the {w}x{h} photo: pass a face crop, or --whole-image to use all of it")
    face = max(faces, key=lambda f: f.w * f.h)
    return face_crops(crop_source(frame, gray, spec), [face], spec, FER2013)[0], face.box


def _path_gradients_tensorflow(model, path: np.ndarray, target: int) -> np.ndarray:
    tf = require("tensorflow", "train")
    path_t = tf.constant(path)
    with tf.GradientTape() as tape:
        tape.watch(path_t)
        probs = tf.cast(model(path_t, training=False), tf.float32)[:, target]
    return tape.gradient(probs, path_t).numpy()


def _path_gradients_jax(model, path: np.ndarray, target: int) -> np.ndarray:
    import jax
    import jax.numpy as jnp

    def total(p):  # each path point's probability depends on that point alone: the sum's gradient is theirs
        return jnp.sum(model(p, training=False)[:, target].astype(jnp.float32))

    return np.asarray(jax.grad(total)(jnp.asarray(path)))


PATH_GRADIENTS = {"tensorflow": _path_gradients_tensorflow, "jax": _path_gradients_jax}  # by Keras backend


def check_backend() -> str:
    """The Keras backend, refused in one line when fer-explain cannot take gradients with it."""
    from fer_edge.training.backend import import_keras

    backend = import_keras().backend.backend()
    if backend not in PATH_GRADIENTS:
        raise FerEdgeError(f"fer-explain takes gradients with the TensorFlow or JAX Keras backend, found "
                           f"KERAS_BACKEND={backend}: run it with KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax")
    return backend


def integrated_gradients(model, x: np.ndarray, target: int, baseline: np.ndarray, steps: int = 50) -> np.ndarray:
    """Attributions (same shape as x, one face HxWxC) for class `target`, trapezoidal rule over `steps`."""
    alphas = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32).reshape(-1, 1, 1, 1)
    x32, b32 = np.asarray(x, np.float32)[None], np.asarray(baseline, np.float32)[None]
    path = b32 + alphas * (x32 - b32)
    grads = PATH_GRADIENTS[check_backend()](model, path, target)
    mean_grad = ((grads[:-1] + grads[1:]) / 2).mean(axis=0)
    return (x - baseline) * mean_grad


def draw(face: np.ndarray, attr: np.ndarray, title: str, path: Path, force: bool) -> None:
    """face | signed attribution (red for, blue against the class) | |attribution| over the face."""
    matplotlib = require("matplotlib", "train")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lim = float(np.abs(attr).max()) or 1.0
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.9))
    axes[0].imshow(face, cmap="gray", vmin=0, vmax=255)
    axes[0].set_title("face (model input)")
    im = axes[1].imshow(attr, cmap="RdBu_r", vmin=-lim, vmax=lim)
    axes[1].set_title("integrated gradients")
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.04)
    axes[2].imshow(face, cmap="gray", vmin=0, vmax=255)
    axes[2].imshow(np.abs(attr), cmap="inferno", alpha=0.55, vmin=0, vmax=lim)
    axes[2].set_title("overlay |attribution|")
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_output(path, force=force) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def explain(model_path, image_path, out, flags: ModelFlags | None = None, target=None, steps=50,
            whole_image=False, force=False, log=print) -> dict:
    from fer_edge.convert.source import load_source, read_source_metadata

    out, image_path = Path(out), Path(image_path)
    if out.suffix.lower() != ".png":
        raise FerEdgeError(f"--out {out}: expected a .png file name, found {out.suffix or 'no suffix'}")
    check_writable(out, force)  # before any work, so a refused output costs nothing
    check_backend()
    require("matplotlib", "train")  # draws the figure: refused now rather than after the gradients
    if steps < 2:
        raise FerEdgeError(f"--steps must be at least 2, found {steps}")
    if not image_path.is_file():
        raise FerEdgeError(f"{image_path}: no such image file")
    image = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FerEdgeError(f"{image_path}: not an image OpenCV can read: expected .jpg, .png, .bmp, ...")
    if image.dtype != np.uint8:  # 16-bit PNGs and the like
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(1, int(image.max())))

    own = read_source_metadata(model_path) is not None
    if own and flags is not None and flags.given():
        log(f"note: {model_path} carries its own labels and preprocessing: --labels/--normalize ignored")
    src = load_source(model_path, None if own else flags)
    model, meta = src.model, src.meta
    spec = meta.preprocess
    if tuple(model.input_shape[1:]) != (*spec.size, spec.channels):
        raise FerEdgeError(f"{model_path}: input shape {model.input_shape[1:]} does not match its preprocessing "
                           f"{(*spec.size, spec.channels)}")

    crop, box = find_face(image, spec, whole_image, str(image_path))
    x = preprocess([crop], spec)[0]
    baseline = preprocess([np.zeros(spec.size, np.uint8)], spec)[0]  # black, in the model's value range
    probs = np.asarray(model(np.stack([x, baseline]), training=False), np.float32)
    pred = int(probs[0].argmax())
    k = meta.label_set.index(target) if target else pred
    attr = integrated_gradients(model, x, k, baseline, steps).sum(axis=-1)
    gap = float(probs[0, k] - probs[1, k])
    completeness = abs(float(attr.sum()) - gap)

    name = meta.labels[k]
    title = f"{meta.labels[pred]} {probs[0, pred]:.2f}" + ("" if k == pred else f"  (explaining {name} {probs[0, k]:.2f})")
    lo, hi = spec.value_range
    face = (x[:, :, 0] - lo) * (255.0 / (hi - lo))  # the model input, back on the 0..255 scale
    draw(face, attr, f"{image_path.name}: {title}", out, force)
    where = "whole image" if box is None else f"face at x={box[0]} y={box[1]} {box[2]}x{box[3]}"
    log(f"{image_path.name}: {meta.labels[pred]} {probs[0, pred]:.3f} ({where}); integrated gradients for {name} "
        f"over {steps} steps sum to {attr.sum():+.4f} vs p(face) - p(black) {gap:+.4f}; wrote {out}")
    return {"label": meta.labels[pred], "probability": float(probs[0, pred]), "target": name, "box": box,
            "attribution_sum": float(attr.sum()), "probability_gap": gap, "completeness_error": completeness}


@cli_main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="fer-explain", description=__doc__.splitlines()[0])
    p.add_argument("model", help=".keras (with fer-edge metadata) or .h5 model")
    p.add_argument("image", help="a face crop, or a photo in which the largest face is found and framed as "
                   "fer-edge does")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--target", default=None, help="class to explain (default: the predicted one)")
    p.add_argument("--steps", type=int, default=50, help="integration steps (default 50)")
    p.add_argument("--whole-image", action="store_true", help="use the whole image as the face, no detection")
    model_flag_arguments(p)
    p.add_argument("--force", action="store_true", help="overwrite --out")
    args = p.parse_args(fix_argv(argv))
    with stop.raising():  # Keras's import and load, the gradients: library calls without checkpoints of ours
        explain(args.model, args.image, args.out, flags=model_flags(args),
                target=args.target, steps=args.steps, whole_image=args.whole_image, force=args.force,
                log=lambda m: print(m, flush=True))


if __name__ == "__main__":  # as its console script runs: stops, exit codes (fer_edge/launch.py)
    from fer_edge.launch import main_module

    main_module(main)
