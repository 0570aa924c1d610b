"""Source models that are not Keras: an ONNX file, and PyTorch models, which go to ONNX first.

Every source gives the rest of fer-convert the same thing (see `source.SourceModel`): a float reference that
scores preprocessed faces, its metadata, and the float graphs the formats are made from. For ONNX that is:

- the reference: the user's file run by onnxruntime, behind a canonical wrapper graph: an N x H x W x C input
  named `face` (a Transpose in front of a channels-first model, so calibration, parity and the runtime feed
  every model alike) and a Softmax after a model that outputs logits;
- ONNX out: that canonical graph (quantized by onnxruntime, the same recipe search as for Keras models);
- TFLite out: onnx2tf's SavedModel of the user's graph (onnx2tf turns channels-first into channels-last itself),
  quantized by the same TFLite code as a Keras model's SavedModel.

PyTorch: a `torch.export` program (.pt2) or a state_dict with the class that defines the network
(`--torch-class FILE.py:Class`, weights read with weights_only=True) is exported by torch.onnx.export, then
read as above. A whole pickled model is refused unless the user trusts it (--unsafe-deserialization).
"""
from __future__ import annotations

import contextlib
import importlib.util
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_edge.runtime.core.errors import ModelError, require
from fer_edge.runtime.core.fileio import sha256_file
from fer_edge.runtime.model.metadata import ModelMetadata, read_metadata
from fer_edge.runtime.model.preprocess import preprocess

UNSAFE_FLAG = "--unsafe-deserialization"
FLOAT = 1  # onnx.TensorProto.FLOAT
SAFE_EXPORT = ("export it safely with one of: torch.export.save(torch.export.export(model.eval(), "
               "(torch.rand(1, 1, 48, 48),)), 'model.pt2')  or  torch.save(model.state_dict(), 'model.pth') "
               "(then --torch-class FILE.py:Class)")


def tensor_dims(value_info) -> list:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in value_info.type.tensor_type.shape.dim]


def image_input(graph):
    """The graph's one real input (initializers may be listed as inputs too)."""
    init = {t.name for t in graph.initializer}
    return next(i for i in graph.input if i.name not in init)


def _check_external_data(model, path: Path) -> None:
    """External tensor data must lie in the model's own folder (or below): a path out of it is refused. Every
    tensor onnx would load is checked: initializers, Constant nodes' and other attributes, subgraphs."""
    onnx = require("onnx", "convert")
    from onnx.external_data_helper import _get_all_tensors  # what load_external_data_for_model walks

    base = path.resolve().parent
    for t in _get_all_tensors(model):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        loc = next((e.value for e in t.external_data if e.key == "location"), "")
        target = (base / loc).resolve()
        if Path(loc).is_absolute() or base not in target.parents:
            raise ModelError(f"{path}: expected external tensor data in the model's folder, found tensor "
                             f"{t.name!r} pointing at {loc!r}")
        if not target.is_file():
            raise ModelError(f"{path}: tensor {t.name!r} needs external data file {loc!r}, which does not exist")


def _read_onnx(path: Path):
    onnx = require("onnx", "convert")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelError(f"{path}: not a readable ONNX model ({str(exc).splitlines()[0][:200] or type(exc).__name__})"
                         ) from None
    _check_external_data(model, path)
    onnx.load_external_data_for_model(model, str(path.resolve().parent))
    return model


def _layout(path: Path, model) -> tuple[str, tuple[int, int, int]]:
    """('NCHW' | 'NHWC', (H, W, C)) of the model's one float image input; one line on anything else."""
    init = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init]
    outputs = list(model.graph.output)
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"{path}: expected a model with one input and one output, found {len(inputs)} inputs "
                         f"and {len(outputs)} outputs")
    etype = inputs[0].type.tensor_type.elem_type
    if etype != FLOAT:
        onnx = require("onnx", "convert")
        raise ModelError(f"{path}: expected a float32 image input, found {onnx.TensorProto.DataType.Name(etype)}")
    dims = tensor_dims(inputs[0])
    if len(dims) != 4 or not all(isinstance(d, int) and d > 0 for d in dims[1:]):
        raise ModelError(f"{path}: expected an image input N x C x H x W or N x H x W x C of fixed height, width "
                         f"and channels, found {' x '.join(str(d or '?') for d in dims)}")
    if dims[1] in (1, 3) and dims[3] not in (1, 3):
        return "NCHW", (dims[2], dims[3], dims[1])
    if dims[3] in (1, 3):
        return "NHWC", (dims[1], dims[2], dims[3])
    raise ModelError(f"{path}: expected 1 or 3 channels first or last, found input {' x '.join(map(str, dims))}")


def _canonical(model, layout: str, softmax: bool, batch: int | None = None):
    """The model behind an N x H x W x C float input named `face` (any batch, or the one the graph fixes) and,
    when it outputs logits, a Softmax: the graph every ONNX output and the reference are made from."""
    onnx = require("onnx", "convert")
    h = onnx.helper
    g = model.graph
    inp = image_input(g)
    dims = tensor_dims(inp)
    nhwc = [dims[0], dims[2], dims[3], dims[1]] if layout == "NCHW" else list(dims)
    n = batch or "N"
    face = h.make_tensor_value_info("face", FLOAT, [n, *nhwc[1:]])
    nodes, old_out = list(g.node), g.output[0]
    if layout == "NCHW":
        nodes.insert(0, h.make_node("Transpose", ["face"], [inp.name], perm=[0, 3, 1, 2], name="fer_edge_to_nchw"))
    else:
        nodes = [_renamed(n, inp.name, "face") for n in nodes]
    out = old_out
    if softmax:
        nodes.append(h.make_node("Softmax", [old_out.name], ["probs"], axis=-1, name="fer_edge_softmax"))
        out = h.make_tensor_value_info("probs", FLOAT, [n, tensor_dims(old_out)[-1]])
    graph = h.make_graph(nodes, g.name or "model", [face], [out], list(g.initializer),
                         value_info=[v for v in g.value_info])
    new = h.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version,
                       producer_name=model.producer_name or "fer-convert")
    return new


def _renamed(node, old: str, new: str):
    node.input[:] = [new if i == old else i for i in node.input]
    return node


@dataclass
class OnnxSource:
    """An fp32 ONNX model (the user's, or one exported from PyTorch) as fer-convert's source."""
    path: Path
    meta: ModelMetadata
    sha256: str
    input_shape: tuple[int, int, int]  # H, W, C (the canonical graph's input)
    num_outputs: int
    layout: str  # the user's file: NCHW | NHWC
    canonical: Path  # the wrapper graph (see the module's doc)
    original: Path  # the user's graph (or the PyTorch export), for onnx2tf
    appended_softmax: bool = False
    exported_by: dict = field(default_factory=dict)  # how a PyTorch model became ONNX
    parameters: int = 0
    batch: int | None = None  # the batch the graph fixes (one face at a time everywhere), None for any
    _tmp: object = None
    _session: object = None

    kind = "onnx"

    def predict(self, faces: np.ndarray, batch_size: int = 256) -> np.ndarray:
        return self.predict_inputs(preprocess(faces, self.meta.preprocess), batch_size)

    def predict_inputs(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Model inputs (N x H x W x C) -> probabilities, by onnxruntime on the canonical graph."""
        if self._session is None:
            from fer_edge.runtime.model.backends import OnnxBackend

            self._session = OnnxBackend(self.canonical)
        from fer_edge.runtime.model.backends import infer_batched

        return infer_batched(self._session, np.asarray(x, np.float32), batch_size)

    def cost(self) -> dict:
        return {"macs": None, "parameters": self.parameters}

    def write_onnx(self, path: Path, ctx) -> dict:
        path.write_bytes(self.canonical.read_bytes())
        return {"converter": "fer-convert (the source ONNX graph, NHWC input 'face')", "layout_of_source": self.layout,
                **self.exported_by, **({"fixed_batch": self.batch} if self.batch else {}),
                "quantization": "none (float32)"}

    def write_saved_model(self, folder: Path, log) -> None:
        from fer_edge.convert.onnx_tflite import onnx_to_saved_model

        keep = None
        if self.layout == "NHWC":
            onnx = require("onnx", "convert")
            keep = image_input(onnx.load(str(self.original), load_external_data=False).graph).name
        onnx_to_saved_model(self.original, folder, self.appended_softmax, log, keep, self.batch)

    def close(self) -> None:
        self._session = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _probabilities(canonical_path: Path, input_shape, value_range) -> bool:
    from fer_edge.runtime.model.backends import OnnxBackend, outputs_probabilities

    return outputs_probabilities(OnnxBackend(canonical_path).infer, input_shape, value_range)


def _graph_batch(path: Path, canonical_path: Path, input_shape, value_range, declared) -> int | None:
    """None when the graph takes any batch; 1 when it only gives each face's answer one face at a time (a
    batch-1 export whose flatten's Reshape holds the 1: onnxruntime fails on more, or mixes the faces).
    Decided by running three faces together and one at a time; `declared`: the batch the user's input names."""
    from fer_edge.runtime.model.backends import OnnxBackend, quiet_stderr

    lo, hi = value_range
    x = np.random.default_rng(0).uniform(lo, hi, (3, *input_shape)).astype(np.float32)
    backend = OnnxBackend(canonical_path)
    fixed = isinstance(declared, int) and declared > 1
    refused = ModelError(f"{path}: expected a graph that runs one face, or any number, at a time; found one fixed "
                         f"to a batch of {declared} (export it with a batch of 1, or a dynamic batch axis)")
    with quiet_stderr():  # onnxruntime logs the failures this probe expects of such a graph
        try:
            alone = np.concatenate([backend.infer(x[i:i + 1]) for i in range(len(x))])
        except ModelError:
            if fixed:
                raise refused from None
            raise
        try:
            together = backend.infer(x)
            if together.shape == alone.shape and np.allclose(together, alone, rtol=1e-3, atol=1e-5):
                return None
        except ModelError:
            pass
    if fixed:
        raise refused
    return 1


def _fix_batch(model, batch: int) -> None:
    """The user's graph (for onnx2tf) with its input's batch set: a fixed-batch graph converts as one."""
    dim = image_input(model.graph).type.tensor_type.shape.dim[0]
    dim.Clear()
    dim.dim_value = batch


def load_onnx(path: Path, resolve, sha256: str | None = None, tmp=None, exported_by: dict | None = None) -> OnnxSource:
    """An ONNX file checked and wrapped; `resolve(own metadata, (H, W, C))` gives the metadata (flags or own)."""
    onnx = require("onnx", "convert")
    tmp = tmp or tempfile.TemporaryDirectory(prefix="fer-convert-src-")
    model = _read_onnx(path)
    layout, input_shape = _layout(path, model)
    own = read_metadata(path) if path.suffix.lower() == ".onnx" and exported_by is None else None
    meta = resolve(own, input_shape)
    out_dims = tensor_dims(model.graph.output[0])
    if not out_dims or out_dims[-1] != len(meta.labels) or len(out_dims) != 2:
        found = " x ".join(str(d or "?") for d in out_dims)
        raise ModelError(f"{path}: expected an output N x {len(meta.labels)} (label set {meta.label_set.name}: "
                         f"{', '.join(meta.labels)}), found {found}")
    work = Path(tmp.name)
    original = work / "source_fp32.onnx"
    onnx.save(model, str(original))
    canonical = work / "canonical_fp32.onnx"
    onnx.save(_canonical(model, layout, softmax=False), str(canonical))
    try:
        batch = _graph_batch(path, canonical, input_shape, meta.preprocess.bounds,
                             tensor_dims(image_input(model.graph))[0])
        appended = not _probabilities(canonical, input_shape, meta.preprocess.bounds)
    except ModelError as exc:  # onnxruntime cannot load or run it: say so of the user's file
        raise ModelError(str(exc).replace(str(canonical), str(path))) from None
    if batch:
        _fix_batch(model, batch)
        onnx.save(model, str(original))
    if appended or batch:
        onnx.save(_canonical(model, layout, softmax=appended, batch=batch), str(canonical))
    params = int(sum(np.prod(t.dims) for t in model.graph.initializer))
    return OnnxSource(path, meta, sha256 or sha256_file(path), input_shape, len(meta.labels), layout, canonical,
                      original, appended, dict(exported_by or {}), params, batch, tmp)


# --- PyTorch -------------------------------------------------------------------------------------

def _import_class(spec: str):
    """FILE.py:ClassName -> the class; one line when the file does not import or lacks the class."""
    file, _, name = spec.rpartition(":")
    if not file or not name:
        raise ModelError(f"--torch-class: expected FILE.py:ClassName, found {spec!r}")
    path = Path(file)
    if not path.is_file():
        raise ModelError(f"--torch-class: expected a Python file defining {name}, found no file {file}")
    mod_name = f"fer_edge_torch_class_{path.stem}"
    spec_ = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec_)
    sys.modules[mod_name] = module
    try:
        spec_.loader.exec_module(module)
    except Exception as exc:  # the user's code: any error, as one line
        sys.modules.pop(mod_name, None)
        raise ModelError(f"--torch-class: {file} does not import ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        raise ModelError(f"--torch-class: expected a class {name} in {file}, found "
                         f"{'none' if cls is None else type(cls).__name__}")
    return cls


@contextlib.contextmanager
def _importable_as_saved(cls, torch_class: str | None):
    """While a whole pickled model loads: --torch-class's file also under its own module name (net.py -> `net`),
    the name the pickle recorded when the model was saved from a script beside it."""
    name = Path(torch_class.rpartition(":")[0]).stem if cls is not None else None
    if name is None or name in sys.modules:
        yield
        return
    sys.modules[name] = sys.modules[cls.__module__]
    try:
        yield
    finally:
        sys.modules.pop(name, None)


def _load_torch_file(path: Path, torch_class: str | None, unsafe: bool):
    """A .pth/.pt/.pkl file -> an nn.Module in eval mode: a state_dict into --torch-class, or (trusted only)
    a whole pickled model."""
    torch = require("torch", "torch")
    cls = _import_class(torch_class) if torch_class else None
    try:
        with _importable_as_saved(cls, torch_class):
            obj = torch.load(path, map_location="cpu", weights_only=not unsafe)
    except Exception as exc:  # pickle.UnpicklingError for a whole model under weights_only; others for junk
        text = str(exc)
        if isinstance(exc, ModuleNotFoundError) and unsafe:
            raise ModelError(f"{path}: the pickled model's class is in a module not found here ({text}): give "
                             "--torch-class FILE.py:ClassName naming the file that defines it") from None
        if "weights_only" in text or "Weights only load failed" in text:
            raise ModelError(f"{path}: expected a state_dict or a torch.export program, found a pickled whole model "
                             f"(loading it runs code from the file): {SAFE_EXPORT}; or {UNSAFE_FLAG} if you trust "
                             "this file") from None
        raise ModelError(f"{path}: not a readable PyTorch file ({text.splitlines()[0][:200] if text else ''})") from None
    if isinstance(obj, torch.nn.Module):
        return obj.eval()
    if not (isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values())):
        raise ModelError(f"{path}: expected a state_dict (parameter name -> tensor) or a whole model, found "
                         f"{type(obj).__name__}")
    if cls is None:
        raise ModelError(f"{path}: a state_dict holds weights, not the network: expected --torch-class "
                         "FILE.py:ClassName naming the class that defines it")
    try:
        module = cls()
        module.load_state_dict(obj, strict=True)
    except Exception as exc:  # RuntimeError listing missing/unexpected keys and size mismatches
        text = " ".join(str(exc).split())
        raise ModelError(f"{path}: the state_dict does not fit {torch_class} ({text[:400]})") from None
    return module.eval()


def _example_input(module, path: Path, size: tuple[int, int]):
    """A 1 x C x H x W example: C from the first 4-D weight (a conv's input channels)."""
    torch = require("torch", "torch")
    first = next((p for p in module.state_dict().values() if p.ndim == 4), None)
    channels = int(first.shape[1]) if first is not None else 1
    if channels not in (1, 3):
        raise ModelError(f"{path}: expected a network taking 1 or 3 channels, found a first convolution with "
                         f"{channels} input channels")
    return torch.rand(1, channels, *size)


def torch_to_onnx(path: Path, torch_class: str | None, unsafe: bool, size: tuple[int, int], work: Path) -> tuple:
    """(the ONNX file exported from a PyTorch model, how it was exported)."""
    torch = require("torch", "torch")
    if path.suffix.lower() == ".pt2":
        try:
            program = torch.export.load(str(path))
        except Exception as exc:  # a damaged or foreign zip
            raise ModelError(f"{path}: not a loadable torch.export program ({str(exc).splitlines()[0][:200]})"
                             ) from None
        module = program.module()
        example = tuple(program.example_inputs[0]) if program.example_inputs else None
        example = example[0] if example else torch.rand(1, 1, *size)
        how = {"pytorch_source": "torch.export program (.pt2)"}
    else:
        module = _load_torch_file(path, torch_class, unsafe)
        example = _example_input(module, path, size)
        how = {"pytorch_source": "state_dict + " + torch_class if torch_class and not unsafe else "pickled module"}
    out = work / "torch_fp32.onnx"
    # a .pt2 module cannot switch modes (no train()): it was exported in eval mode, so it keeps the one it has
    mode = torch.onnx.TrainingMode.PRESERVE if path.suffix.lower() == ".pt2" else torch.onnx.TrainingMode.EVAL
    try:
        with torch.no_grad():
            torch.onnx.export(module, (example,), str(out), input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "N"}, "output": {0: "N"}}, opset_version=17, dynamo=False,
                              training=mode)
    except Exception as exc:  # an operator torch.onnx cannot express, data-dependent control flow
        raise ModelError(f"{path}: torch.onnx.export failed ({str(exc).splitlines()[0][:300]})") from None
    return out, dict(how, exporter=f"torch.onnx.export (TorchScript, opset 17), torch {torch.__version__}")
