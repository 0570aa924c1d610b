"""Inference backends: one small class per interpreter, chosen from a dict.

Every backend takes a float32 N x H x W x C batch (the output of `preprocess`) and returns float32
N x K probabilities, quantizing int8/uint8 inputs and dequantizing outputs itself. All faces of a frame
go through one call. The interpreter is built once per model, never per frame.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import sys
from pathlib import Path

import numpy as np

import fer_edge.runtime.core.stop as stop
from fer_edge.runtime.core.errors import MissingExtraError, MissingInterpreterError, ModelError
from fer_edge.runtime.model.metadata import (ModelFlags, ModelMetadata, check_model_path, read_metadata,
                                              resolve_metadata)
from fer_edge.runtime.model.preprocess import preprocess


def _quantize(x: np.ndarray, dtype, scale: float, zero_point: int) -> np.ndarray:
    if np.issubdtype(dtype, np.floating):
        return x.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    if np.issubdtype(y.dtype, np.floating):
        return y.astype(np.float32, copy=False)
    return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)


@contextlib.contextmanager
def quiet_stderr():
    """Silence what native code writes to file descriptor 2 in the block (Python's own messages are flushed first)."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


LITERT_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow")  # first found wins


def litert_interpreter(path: str | os.PathLike, threads: int | None = None, kernels: str = "default"):
    """(allocated interpreter, module name) for a .tflite file, from the first interpreter module installed;
    the one place a LiteRT interpreter is built (the classifier's backend and BlazeFace alike)."""
    for name in LITERT_MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError:
            stop.check()  # a stop swallowed inside the import must not send us on to TensorFlow's (seconds)
            continue
        mod = getattr(mod, "lite", mod)  # tensorflow -> tensorflow.lite
        kwargs = {"model_path": str(path), "num_threads": threads}
        if kernels == "builtin":
            kwargs["experimental_op_resolver_type"] = mod.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES \
                if hasattr(mod, "experimental") else mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            interp = mod.Interpreter(**kwargs)
            with quiet_stderr():  # LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate" on every start
                interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{path}: not a loadable .tflite model ({str(exc).splitlines()[0]})") from None
        return interp, name.split(".")[0]
    raise MissingInterpreterError()


def fixed_batch(shape) -> int | None:
    """The batch a model's input shape fixes (N x ... with N a positive number), or None for any batch (None, -1
    or a name). A file exported with a batch of 1 often holds it inside too (a PyTorch flatten's Reshape to
    1 x -1), so it runs one face at a time."""
    n = shape[0] if len(shape) else None
    return int(n) if isinstance(n, (int, np.integer)) and n > 0 else None


def in_fixed_batches(run, x: np.ndarray, batch: int) -> np.ndarray:
    """`run` (a batch of exactly `batch` inputs -> outputs) over any number of inputs: whole batches, the last one
    padded with its first input."""
    parts = []
    for i in range(0, len(x), batch):
        chunk = x[i:i + batch]
        padded = np.concatenate([chunk, np.repeat(chunk[:1], batch - len(chunk), axis=0)])
        parts.append(run(padded)[:len(chunk)])
    return np.concatenate(parts)


def infer_batched(backend, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """A backend's outputs over a large array of model inputs, in fixed-size batches (Classifier.predict_batched
    does the same from raw faces, preprocessing batch by batch so that a dataset is never held as floats)."""
    parts = []
    for i in range(0, len(x), batch_size):
        stop.check()
        parts.append(backend.infer(x[i:i + batch_size]))
    return np.concatenate(parts) if parts else np.zeros((0, backend.num_outputs), np.float32)


class LiteRTBackend:
    """.tflite through ai-edge-litert, else tflite-runtime, else tensorflow.lite (whichever is installed).

    kernels: 'default' (XNNPACK delegate applied by the interpreter) or 'builtin' (the reference
    built-in kernels, BUILTIN_WITHOUT_DEFAULT_DELEGATES); an INT8 file can answer differently on each.
    """

    KERNELS = ("default", "builtin")
    OPTIONS = ("threads", "kernels")  # what open_backend may pass

    def __init__(self, path: str | os.PathLike, threads: int | None = None, kernels: str | None = None):
        kernels = kernels or "default"
        if kernels not in self.KERNELS:
            raise ModelError(f"unknown kernels {kernels!r}: expected one of {', '.join(self.KERNELS)}")
        # the interpreter, and the name of its package (reports record it as the file's "runtime" or "backend")
        self.interpreter, self.interpreter_module = litert_interpreter(path, threads, kernels)
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"{path}: expected one input and one output, found {len(inputs)} and {len(outputs)}")
        self.inp, self.out = inputs[0], outputs[0]
        self.input_shape = tuple(int(v) for v in self.inp["shape"][1:])
        self.num_outputs = int(self.out["shape"][-1])
        self.input_dtype = np.dtype(self.inp["dtype"])
        self.kernels = kernels
        self._batch = int(self.inp["shape"][0])
        # shape_signature: -1 where the file takes any batch (the shape itself says 1 then)
        self.batch = fixed_batch(list(self.inp.get("shape_signature", [-1])))
        self.path = path

    def _resize(self, n: int) -> None:
        if n != self._batch:
            self.interpreter.resize_tensor_input(self.inp["index"], [n, *self.input_shape])
            self.interpreter.allocate_tensors()
            self.inp = self.interpreter.get_input_details()[0]
            self.out = self.interpreter.get_output_details()[0]
            self._batch = n

    def infer(self, x: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            return np.zeros((0, self.num_outputs), np.float32)
        if self.batch is not None and len(x) != self.batch:
            return in_fixed_batches(self.infer, x, self.batch)
        self._resize(len(x))
        scale, zp = self.inp["quantization"]
        self.interpreter.set_tensor(self.inp["index"], _quantize(x, self.input_dtype, scale, zp))
        try:
            self.interpreter.invoke()
        except RuntimeError as exc:  # a kernel refusing its shapes: one line naming the file
            raise ModelError(f"{self.path}: LiteRT could not run the model on {len(x)} faces "
                             f"({str(exc).strip().splitlines()[0][:200]})") from None
        y = self.interpreter.get_tensor(self.out["index"])
        return _dequantize(y, *self.out["quantization"])


class OnnxBackend:
    """.onnx through onnxruntime; providers e.g. ['CPUExecutionProvider'] or CUDA/TensorRT on a Jetson."""

    OPTIONS = ("threads", "providers")  # what open_backend may pass

    def __init__(self, path: str | os.PathLike, threads: int | None = None, providers=None):
        try:
            ort = importlib.import_module("onnxruntime")
        except ImportError:
            raise MissingExtraError("onnxruntime", "onnx") from None
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        available = ort.get_available_providers()
        providers = list(providers or ["CPUExecutionProvider"])
        missing = [p for p in providers if p not in available]
        if missing:
            raise ModelError(f"onnxruntime provider {', '.join(missing)} is not available: this build has {', '.join(available)}")
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ModelError(f"{path}: not a loadable .onnx model ({str(exc).splitlines()[0][:200]})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"{path}: expected one input and one output, found {len(inputs)} and {len(outputs)}")
        self.inp, self.out = inputs[0], outputs[0]
        dims, out_dims = list(self.inp.shape), list(self.out.shape)
        if len(dims) != 4 or not all(isinstance(d, int) and d > 0 for d in dims[1:]):
            raise ModelError(f"{path}: expected an image input of fixed size, N x H x W x C or N x C x H x W, "
                             f"found {' x '.join(str(d) for d in dims)}")
        if not out_dims or not isinstance(out_dims[-1], int):
            raise ModelError(f"{path}: expected an output of N x classes, found {' x '.join(str(d) for d in out_dims)}")
        # PyTorch exports are channels-first (N x 1 x 48 x 48): faces are transposed to that layout
        self.channels_first = dims[1] in (1, 3) and dims[3] not in (1, 3)
        self.input_shape = (dims[2], dims[3], dims[1]) if self.channels_first else tuple(dims[1:])
        self.num_outputs = out_dims[-1]
        self.input_dtype = np.dtype({"tensor(float)": np.float32, "tensor(uint8)": np.uint8,
                                     "tensor(int8)": np.int8}.get(self.inp.type, np.float32))
        self.interpreter_module = "onnxruntime"
        self.kernels = ",".join(providers)
        self.batch = fixed_batch(dims)  # a file exported for a fixed batch (often 1)
        self.path = path

    def infer(self, x: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            return np.zeros((0, self.num_outputs), np.float32)
        if self.batch is not None and len(x) != self.batch:
            return in_fixed_batches(self.infer, x, self.batch)
        x = x.astype(self.input_dtype, copy=False)
        if self.channels_first:
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        try:
            y = self.session.run([self.out.name], {self.inp.name: x})[0]
        except Exception as exc:  # onnxruntime's own types (InvalidArgument, Fail): one line naming the file
            raise ModelError(f"{self.path}: onnxruntime could not run the model on {len(x)} faces "
                             f"({str(exc).strip().splitlines()[0][:300]})") from None
        return np.asarray(y, dtype=np.float32)


BACKENDS = {".tflite": LiteRTBackend, ".onnx": OnnxBackend}


def open_backend(path: str | os.PathLike, **options):
    """The backend for the file's suffix, given the options it declares. An option set to None was not chosen
    (the backend's default applies); a name no backend declares, or one this file's backend does not take, is
    refused rather than dropped, so a misspelt or misplaced option never goes unnoticed."""
    path = check_model_path(path)
    cls = BACKENDS.get(path.suffix.lower())
    if cls is None:
        raise ModelError(f"{path}: the runtime runs {', '.join(BACKENDS)} files, found {path.suffix or 'no suffix'!r}"
                         " (convert Keras models with fer-convert)")
    known = sorted({o for b in BACKENDS.values() for o in b.OPTIONS})
    given = {k: v for k, v in options.items() if v is not None}
    for name in given:
        if name not in known:
            raise ModelError(f"unknown backend option {name!r}: expected one of {', '.join(known)}")
        if name not in cls.OPTIONS:
            takers = ", ".join(s for s, b in BACKENDS.items() if name in b.OPTIONS)
            raise ModelError(f"--{name} applies to {takers} models, not to {path.name}")
    return cls(path, **given)


def outputs_probabilities(infer, input_shape, value_range, tolerance: float = 1e-3) -> bool:
    """Whether a model's outputs are probabilities (non-negative, summing to 1) on a few probe inputs spanning
    its input range: flat dark, bright and mid-grey faces, and random ones. `infer`: N x H x W x C -> N x K."""
    lo, hi = value_range
    rng = np.random.default_rng(0)
    probes = [np.full(input_shape, v, np.float32) for v in (lo, hi, (lo + hi) / 2)]
    probes += [rng.uniform(lo, hi, input_shape).astype(np.float32) for _ in range(5)]
    out = np.concatenate([np.asarray(infer(p[None]), np.float64) for p in probes])  # one at a time: any batch size
    return bool(np.all(out >= -tolerance) and np.all(np.abs(out.sum(axis=1) - 1.0) <= tolerance))


def softmax(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class Classifier:
    """A model file plus its metadata: face crops in, probabilities out (a file that outputs scores, such as
    a third-party model ending in logits, gets a softmax here, which keeps each face's ranking)."""

    def __init__(self, path: str | os.PathLike, flags: ModelFlags | None = None, meta: ModelMetadata | None = None,
                 **backend_options):
        """`meta`: the metadata of a file that carries none (fer-convert verify gives its reference's); the
        user's `flags` (--labels, --normalize, --colour ...) override either."""
        self.path = Path(path)
        self.backend = open_backend(self.path, **backend_options)
        self.meta = resolve_metadata(self.path, read_metadata(self.path) or meta, flags, self.backend.input_shape)
        spec = self.meta.preprocess
        expected = (*spec.size, spec.channels)
        if self.backend.input_shape != expected:
            raise ModelError(f"{self.path}: the model takes input {self.backend.input_shape} but its preprocessing "
                             f"gives {expected}")
        if self.backend.num_outputs != len(self.meta.labels):
            raise ModelError(f"{self.path}: the model has {self.backend.num_outputs} outputs but its labels name "
                             f"{len(self.meta.labels)} classes ({', '.join(self.meta.labels)})")
        # an INT8 softmax output is off by up to half a quantization step (1/512) per class
        self.scores = not outputs_probabilities(self.backend.infer, expected, spec.bounds, tolerance=0.02)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.meta.labels

    def predict(self, faces) -> np.ndarray:
        """Face crops (any size, grey/BGR/BGRA uint8) -> N x K probabilities."""
        if len(faces) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        out = self.backend.infer(preprocess(faces, self.meta.preprocess))
        return softmax(out) if self.scores else out

    def predict_batched(self, faces, batch_size: int = 256, progress=None) -> np.ndarray:
        """predict over a large array of faces (datasets) in fixed-size batches; `progress` (a
        runtime.core.progress.Progress) is advanced by each batch."""
        parts = []
        for i in range(0, len(faces), batch_size):
            stop.check()
            parts.append(self.predict(faces[i:i + batch_size]))
            if progress is not None:
                progress.update(len(parts[-1]))
        return np.concatenate(parts) if parts else np.zeros((0, len(self.labels)), np.float32)
