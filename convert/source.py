"""The model being converted: loaded once, checked once, with its metadata resolved.

Everything a user can get wrong about the source model is refused here, before any output exists:
not a model file, a truncated file, more than one input or output, an input that is not H x W x 1|3 (an
H x W input, grey faces without a channel axis, is given one),
an output size that does not match the label set, no metadata and no flags to stand in for it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_edge.runtime.model.backends import outputs_probabilities
from fer_edge.runtime.core.errors import ModelError, require
from fer_edge.runtime.core.fileio import sha256_file
from fer_edge.runtime.model.metadata import (ModelFlags, ModelMetadata, check_model_path, read_metadata,
                                              resolve_metadata)
from fer_edge.runtime.model.preprocess import preprocess
from fer_edge.runtime.model.shipped import missing_model

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
TORCH_SUFFIXES = (".pt2", ".pth", ".pt", ".pkl")
UNSAFE_FLAG = "--unsafe-deserialization"  # the user's explicit trust: Keras safe_mode off


@dataclass
class SourceModel:
    path: Path
    model: object  # keras.Model
    meta: ModelMetadata
    sha256: str
    input_shape: tuple[int, int, int]  # H, W, C
    num_outputs: int
    appended_softmax: bool = False  # the file's model outputs scores (logits): fer-convert added the softmax
    _tmp: object = None  # a temporary folder the model is read from (a tf.keras 2 file's SavedModel)
    _cost: dict | None = None  # counted at loading where self.model hides its layers (a tf.keras 2 file)

    kind = "keras"  # what every source gives (see convert/source_onnx.py for the others): predict, predict_inputs,
    # cost, write_saved_model, write_onnx, close

    def cost(self) -> dict:
        from fer_edge.convert.cost import model_cost

        if self._cost is not None:
            return self._cost
        cost = model_cost(self.model)
        return cost if cost["macs"] else {"macs": None, "parameters": cost["parameters"]}  # a SavedModel hides layers

    def write_saved_model(self, folder: Path, log) -> None:
        from fer_edge.convert.search import quiet

        log("exporting the Keras model as a SavedModel")
        with quiet():
            try:
                self.model.export(str(folder), verbose=False)
            except TypeError:  # Keras versions without the verbose argument
                self.model.export(str(folder))

    def write_onnx(self, path: Path, ctx) -> dict:
        from fer_edge.convert.formats import keras_to_onnx

        return keras_to_onnx(ctx, path)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def predict(self, faces: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Face crops -> probabilities from the Keras model itself (the reference)."""
        x = preprocess(faces, self.meta.preprocess)
        return self.predict_inputs(x, batch_size)

    def predict_inputs(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Model inputs -> probabilities (`model.predict`: compiled once, on every Keras backend)."""
        if not len(x):
            return np.zeros((0, self.num_outputs), np.float32)
        return np.asarray(self.model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32)


def load_keras(path: str | Path, safe_mode: bool = True):
    """A Keras model file (.keras or legacy .h5) and its fer-edge metadata (or None); one line on failure."""
    keras = require("keras", "convert")
    path = check_model_path(path, folder_ok=True)
    try:
        model = keras.models.load_model(path, compile=False, safe_mode=safe_mode)
    except Exception as exc:  # Keras raises many types for unreadable files; report it as one line
        raise _load_error(path, exc, safe_mode, "Keras") from None
    return model, read_metadata(path)


def _load_error(path: Path, exc: Exception, safe_mode: bool, loader: str) -> ModelError:
    """One line for a model file a Keras loader refused (Keras 3 or tf_keras)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if safe_mode and "safe_mode" in text:  # Keras refuses Python code (a Lambda layer) in safe mode
        return ModelError(f"{path}: holds Python code (a Lambda layer) that Keras will not run in safe mode: "
                          f"expected a model without it, or {UNSAFE_FLAG} if you trust this file")
    if len(text) > 600:
        text = text[:600].rsplit(". ", 1)[0] + "."
    return ModelError(f"{path}: not a loadable {loader} model ({text})")


def _keras2_version(path: Path) -> str | None:
    """The Keras version a legacy HDF5 model file was saved by, when it is tf.keras 2 (else None)."""
    if path.suffix.lower() not in (".h5", ".hdf5"):
        return None
    try:
        import h5py

        with h5py.File(path, "r") as f:
            version, config = f.attrs.get("keras_version"), f.attrs.get("model_config")
    except Exception:  # not HDF5, or unreadable: Keras's own error stands
        return None
    version = version.decode() if isinstance(version, bytes) else str(version or "")
    return version if config is not None and version.split(".")[0] == "2" else None


def _load_keras2(path: Path, safe_mode: bool, version: str):
    """A tf.keras 2 HDF5 file Keras 3 cannot read (Teachable Machine's keras_model.h5: nested Functional models,
    DepthwiseConv2D configs with `groups`): read by tf_keras, TensorFlow's own Keras 2, and handed on as a
    SavedModel (the graph TensorFlow runs, unchanged). Returns (Keras 3 model, the temporary folder holding it,
    the cost counted on the tf_keras layers, which the SavedModel hides)."""
    import tempfile

    tf = require("tensorflow", "convert")
    pin = "tf_keras==" + ".".join(tf.__version__.split(".")[:2]) + ".*"
    try:
        import tf_keras
        from tf_keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:
        raise ModelError(f"{path}: a tf.keras {version} file, which Keras 3 cannot read: fer-convert reads it with "
                         f"tf_keras, the Keras 2 of TensorFlow {tf.__version__}: pip install --no-deps '{pin}'") from None
    from fer_edge.convert.cost import model_cost
    from fer_edge.convert.search import quiet

    try:
        # tf_keras's HDF5 loader ignores safe_mode (its Lambda check reads the scope): set it here
        with SafeModeScope(safe_mode), quiet():
            model = tf_keras.models.load_model(path, compile=False)
    except Exception as exc:  # tf_keras raises many types for unreadable files; report it as one line
        raise _load_error(path, exc, safe_mode, f"tf.keras {version}") from None
    tmp = tempfile.TemporaryDirectory(prefix="fer-convert-keras2-")
    try:
        with quiet():
            model.export(str(Path(tmp.name) / "saved_model"))
        return _load_saved_model(Path(tmp.name) / "saved_model"), tmp, model_cost(model, tf_keras)
    except BaseException:
        tmp.cleanup()
        raise


def _tree_sha256(folder: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(folder)).encode() + b"\0" + sha256_file(f).encode())
    return h.hexdigest()


def _load_saved_model(path: Path):
    """A SavedModel folder wrapped as a one-input Keras model (Keras 3 loads SavedModels only as a layer)."""
    keras = require("keras", "convert")
    tf = require("tensorflow", "convert")
    if not (path / "saved_model.pb").is_file():
        raise ModelError(f"{path}: a folder is read as a SavedModel, but it holds no saved_model.pb")
    try:
        sig = tf.saved_model.load(str(path)).signatures["serving_default"]
        layer = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")
    except Exception as exc:  # TensorFlow raises many types for unreadable SavedModels
        raise ModelError(f"{path}: not a loadable SavedModel ({str(exc).strip().splitlines()[0][:200]})") from None
    inputs = list(sig.structured_input_signature[1].values())
    if len(inputs) != 1:
        raise ModelError(f"{path}: expected a model with one input and one output, found {len(inputs)} inputs")
    inp = keras.Input(tuple(inputs[0].shape)[1:], name="face")
    out = layer(inp)
    if isinstance(out, dict):
        if len(out) != 1:
            raise ModelError(f"{path}: expected a model with one input and one output, found {len(out)} outputs")
        out = next(iter(out.values()))
    return keras.Model(inp, out)


def load_source(path: str | os.PathLike, flags: ModelFlags | None = None, safe_mode: bool = True,
                torch_class: str | None = None):
    """The source model by its kind (SOURCES): Keras, SavedModel, ONNX or PyTorch, with its metadata resolved
    (its own, or the user's flags); safe_mode=False only on the user's word (it runs the file's Python code:
    Lambda layers, a pickled PyTorch model)."""
    path = Path(path)
    if not path.exists():
        raise ModelError(missing_model(path))
    suffix = "folder" if path.is_dir() else path.suffix.lower()
    if suffix not in SOURCES:
        raise ModelError(f"{path}: fer-convert reads models: expected .keras, .h5, a SavedModel folder, .onnx, or "
                         f"PyTorch .pt2 (or .pth with --torch-class), found {path.suffix or 'no suffix'!r}")
    if torch_class and suffix not in TORCH_SUFFIXES:
        raise ModelError(f"--torch-class applies to PyTorch files ({', '.join(TORCH_SUFFIXES)}), not to {path.name}")
    return SOURCES[suffix](path, flags or ModelFlags(), safe_mode, torch_class)


def _resolver(path: Path, flags: ModelFlags):
    """(own metadata or None, (H, W, C)) -> the metadata: own, flags over it, or flags alone (at the input's size)."""
    def resolve(own, input_shape):
        meta = resolve_metadata(path, own, flags, input_shape)
        spec = meta.preprocess
        if (*spec.size, spec.channels) != tuple(input_shape):
            raise ModelError(f"{path}: the model takes input {tuple(input_shape)} but its metadata says "
                             f"{(*spec.size, spec.channels)}")
        return meta
    return resolve


def _onnx_source(path: Path, flags: ModelFlags, safe_mode: bool, torch_class):
    from fer_edge.convert.source_onnx import load_onnx

    return load_onnx(path, _resolver(path, flags))


def _torch_source(path: Path, flags: ModelFlags, safe_mode: bool, torch_class):
    import tempfile

    from fer_edge.convert.source_onnx import load_onnx, torch_to_onnx

    tmp = tempfile.TemporaryDirectory(prefix="fer-convert-src-")
    try:
        onnx_path, how = torch_to_onnx(path, torch_class, not safe_mode, flags.size or (48, 48), Path(tmp.name))
        return load_onnx(onnx_path, _resolver(path, flags), sha256_file(path), tmp, how)
    except BaseException:
        tmp.cleanup()
        raise


def _keras_source(path: Path, flags: ModelFlags, safe_mode: bool, torch_class) -> SourceModel:
    tmp = cost = None
    if path.is_dir():
        model = _load_saved_model(path)
        sha = _tree_sha256(path)
        meta = None
    else:
        try:
            model, meta = load_keras(path, safe_mode=safe_mode)
        except ModelError as exc:
            version = _keras2_version(path)
            if version is None or UNSAFE_FLAG in str(exc):  # not Keras 2, or Python code safe mode refuses
                raise
            model, tmp, cost = _load_keras2(path, safe_mode, version)
            meta = read_metadata(path)
        sha = sha256_file(path)
    try:
        src = _checked_keras_source(path, flags, model, meta, sha)
        src._tmp, src._cost = tmp, cost
        return src
    except BaseException:
        if tmp is not None:
            tmp.cleanup()
        raise


def _checked_keras_source(path: Path, flags: ModelFlags, model, meta, sha: str) -> SourceModel:
    """The loaded Keras model's input and output checked (a channel axis added to an H x W input), its metadata
    resolved, and a softmax appended to a model that outputs scores."""
    inputs, outputs = list(model.inputs), list(model.outputs)
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"{path}: expected a model with one input and one output, found {len(inputs)} inputs "
                         f"and {len(outputs)} outputs")
    ishape, oshape = tuple(inputs[0].shape), tuple(outputs[0].shape)
    if len(ishape) == 3 and None not in ishape[1:] and min(ishape[1:]) >= 8:  # N x H x W: no channel axis
        keras = require("keras", "convert")
        face = keras.Input((*ishape[1:], 1), name="face")
        model = keras.Model(face, model(keras.layers.Reshape(ishape[1:])(face)))
        ishape = tuple(model.inputs[0].shape)
    if len(ishape) != 4 or None in ishape[1:] or ishape[3] not in (1, 3):
        raise ModelError(f"{path}: expected an image input N x H x W x 1 (or x 3), found {ishape}")
    if len(oshape) != 2 or oshape[1] is None:
        raise ModelError(f"{path}: expected an output of N x classes probabilities, found {oshape}")
    input_shape = tuple(int(v) for v in ishape[1:])
    meta = _resolver(path, flags)(meta, input_shape)
    if int(oshape[1]) != len(meta.labels):
        raise ModelError(f"{path}: the model has {oshape[1]} outputs but its labels name {len(meta.labels)} "
                         f"classes ({', '.join(meta.labels)})")
    appended = not outputs_probabilities(lambda x: model.predict(x, verbose=0), input_shape, meta.preprocess.bounds)
    if appended:  # the runtime reports probabilities: a softmax keeps the ranking and gives them
        keras = require("keras", "convert")
        model = keras.Model(model.inputs, keras.layers.Softmax(name="probs")(model.outputs[0]))
    return SourceModel(path, model, meta, sha, input_shape, int(oshape[1]), appended)


SOURCES = {**{s: _keras_source for s in (*KERAS_SUFFIXES, "folder")}, ".onnx": _onnx_source,
           **{s: _torch_source for s in TORCH_SUFFIXES}}


def read_source_metadata(path: str | os.PathLike) -> ModelMetadata | None:
    """Metadata of a source model without loading it (None for .h5 and SavedModel folders)."""
    path = Path(path)
    if path.is_dir() or not path.exists():
        return None
    try:
        return read_metadata(path) if path.suffix.lower() in KERAS_SUFFIXES else None
    except ModelError:
        return None
