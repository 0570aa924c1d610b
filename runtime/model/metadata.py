"""Model metadata: one JSON document stored inside every model file, readable with the runtime alone.

Mechanism per format (none needs TensorFlow, onnx or onnxruntime to read or write):

- `.tflite`: a zip archive holding `fer_edge.json` appended after the flatbuffer (the approach
  Ultralytics uses). Interpreters ignore trailing bytes; `zipfile` finds the archive from the end.
- `.onnx`: an entry `fer_edge` in the ModelProto's `metadata_props` (field 14). Written by appending
  the serialized field to the protobuf (protobuf merges repeated fields on parse), read with a tiny
  protobuf walker; `onnx` and onnxruntime (`get_modelmeta().custom_metadata_map`) see it too.
- `.keras`: the Keras 3 file is itself a zip; `fer_edge.json` is one more member, ignored by Keras.

Legacy `.h5` files carry no fer-edge metadata: the user states labels and preprocessing instead.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from fer_edge.runtime.core.errors import FerEdgeError, ModelError
from fer_edge.runtime.core.fileio import atomic_output
from fer_edge.runtime.model.labels import LabelSet, label_set_of, parse_labels
from fer_edge.runtime.model.preprocess import IMAGENET, PreprocessSpec

FORMAT = "fer-edge/1"
MEMBER = "fer_edge.json"  # zip member name in .tflite and .keras files
ONNX_KEY = "fer_edge"  # metadata_props key in .onnx files


@dataclass(frozen=True)
class ModelMetadata:
    label_set: LabelSet
    preprocess: PreprocessSpec
    provenance: dict = field(default_factory=dict)  # source model hash, calibration hash, recipe, command
    figures: dict = field(default_factory=dict)  # accuracy and parity figures
    # the sure/unsure threshold and how it was chosen (runtime.data.confidence); empty in older files
    confidence: dict = field(default_factory=dict)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.label_set.labels

    @property
    def threshold(self) -> float | None:
        """The top-class probability from which a face is sure; None: the file predates thresholds."""
        t = self.confidence.get("threshold")
        return float(t) if isinstance(t, (int, float)) and 0.0 <= t <= 1.0 else None

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "label_set": self.label_set.name,
                "labels": list(self.label_set.labels),
                "preprocess": self.preprocess.to_dict(),
                "provenance": self.provenance,
                "figures": self.figures,
                **({"confidence": self.confidence} if self.confidence else {}),
            },
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "metadata") -> "ModelMetadata":
        try:
            d = json.loads(text)
            if d.get("format") != FORMAT:
                raise FerEdgeError(f"format is {d.get('format')!r}, expected {FORMAT!r}")
            label_set = label_set_of(d["label_set"], d["labels"])
            spec = PreprocessSpec.from_dict(d["preprocess"])
            return cls(label_set, spec, dict(d.get("provenance", {})), dict(d.get("figures", {})),
                       dict(d.get("confidence", {})))
        except (ValueError, KeyError, TypeError, AttributeError, FerEdgeError) as exc:
            what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ModelError(f"{source}: invalid fer-edge metadata: {what}") from None

    def replace(self, **changes) -> "ModelMetadata":
        d = {"label_set": self.label_set, "preprocess": self.preprocess,
             "provenance": self.provenance, "figures": self.figures, "confidence": self.confidence}
        d.update(changes)
        return ModelMetadata(**d)


# --- ONNX: a minimal protobuf walker for ModelProto.metadata_props ------------------------------

@dataclass(frozen=True)
class ModelFlags:
    """What a user states about a model that carries no fer-edge metadata (or overrides in one that does):
    the command-line flags --labels, --normalize, --mean/--std, --equalize, --colour and --align, as given."""
    labels: str | None = None  # a label set name, a comma-separated list, or a labels.txt path
    normalize: str | None = None  # 0,1 | -1,1 | 0,255 | imagenet
    mean: str | None = None  # "R,G,B" on the 0-1 scale, in the model's channel order
    std: str | None = None
    equalize: bool | None = None
    colour: str | None = None  # grey | rgb | bgr
    align: str | None = None  # none | 5point
    input_size: str | None = None  # "112" or "112x96" (height x width): a PyTorch state_dict's input, which it lacks

    @property
    def size(self) -> tuple[int, int] | None:
        """--input-size as (height, width), None when not given."""
        if self.input_size is None:
            return None
        parts = self.input_size.lower().split("x")
        if len(parts) not in (1, 2) or not all(p.strip().isdigit() and 8 <= int(p) <= 1024 for p in parts):
            raise ModelError(f"--input-size {self.input_size!r}: expected SIDE or HEIGHTxWIDTH in pixels, 8-1024")
        return int(parts[0]), int(parts[-1])

    def __post_init__(self):
        """What can be checked before the model is read: the numbers, the class names, mean with std."""
        _ = self.size
        for flag, text in (("--mean", self.mean), ("--std", self.std)):
            if text is not None:
                _numbers(text, flag)
        if self.std is not None and min(_numbers(self.std, "--std")) <= 0:
            raise ModelError(f"--std {self.std!r}: std must be positive (it divides)")
        if (self.mean is None) != (self.std is None):
            raise ModelError("--mean and --std go together: give both, as R,G,B on the 0-1 scale")
        if self.normalize is not None and self.mean is not None:
            raise ModelError("give either --normalize or --mean/--std, not both")
        if self.labels is not None:
            try:
                parse_labels(self.labels)
            except FerEdgeError as exc:
                raise ModelError(str(exc)) from None

    def given(self) -> bool:
        return any(v is not None for k, v in vars(self).items() if k != "input_size")

    def scaling_given(self) -> bool:
        return self.normalize is not None or self.mean is not None or self.std is not None


def _scaling(flags: ModelFlags, spec: PreprocessSpec, colour: str) -> dict:
    """value_range / mean / std from the flags (ImageNet's mean and std put in the model's channel order)."""
    if flags.normalize is not None and (flags.mean or flags.std):
        raise ModelError("give either --normalize or --mean/--std, not both")
    if flags.mean is not None or flags.std is not None:
        if flags.mean is None or flags.std is None:
            raise ModelError("--mean and --std go together: give both, as R,G,B on the 0-1 scale")
        return {"mean": _numbers(flags.mean, "--mean"), "std": _numbers(flags.std, "--std")}
    if flags.normalize == "imagenet":
        mean, std = IMAGENET if colour != "bgr" else (IMAGENET[0][::-1], IMAGENET[1][::-1])
        return {"mean": mean, "std": std}
    if flags.normalize is not None:
        return {"value_range": PreprocessSpec.parse_range(flags.normalize), "mean": None, "std": None}
    return {"value_range": spec.value_range, "mean": spec.mean, "std": spec.std}


def _numbers(text: str, flag: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ModelError(f"{flag} {text!r}: expected comma-separated numbers such as 0.485,0.456,0.406") from None
    if not all(v == v and abs(v) != float("inf") for v in values):
        raise ModelError(f"{flag} {text!r}: expected finite numbers, found nan or inf")
    return values


def resolve_metadata(path, meta: ModelMetadata | None, flags: ModelFlags | None = None,
                     input_shape: tuple[int, int, int] | None = None) -> ModelMetadata:
    """The model's own metadata, or one built from the user's flags; a model with neither is refused, and so
    is a 3-channel model without metadata whose channel order nobody stated."""
    flags = flags or ModelFlags()
    if meta is not None and not flags.given():
        return meta
    if meta is None and (flags.labels is None or not flags.scaling_given()):
        raise ModelError(f"{path}: carries no fer-edge metadata: state its classes and scaling with --labels "
                         "SET|NAME,NAME,...|labels.txt and --normalize 0,1|-1,1|0,255|imagenet (or --mean/--std), "
                         "and --colour rgb|bgr for a colour model")
    shape = tuple(input_shape) if input_shape else None
    base = meta.preprocess if meta is not None else PreprocessSpec(
        size=shape[:2] if shape else (48, 48), channels=shape[2] if shape else 1)
    colour = flags.colour or base.colour
    if meta is None and base.channels == 3 and flags.colour is None:
        raise ModelError(f"{path}: the model takes 3-channel faces and carries no metadata: say what they hold with "
                         "--colour rgb|bgr (or --colour grey for a grey face copied to each channel)")
    if colour == "grey" and flags.colour is None and flags.normalize == "imagenet" and base.channels == 3:
        raise ModelError(f"{path}: --normalize imagenet is for colour faces: add --colour rgb (or bgr)")
    align = flags.align or base.align
    try:
        spec = PreprocessSpec(size=base.size, channels=base.channels, **_scaling(flags, base, colour),
                              equalize=base.equalize if flags.equalize is None else flags.equalize,
                              crop_margin=base.crop_margin, colour=colour, align=align,
                              template=base.template if align == base.align else None,
                              align_margin=base.align_margin)
        label_set = parse_labels(flags.labels) if flags.labels else (meta.label_set if meta else None)
    except FerEdgeError as exc:
        raise ModelError(f"{path}: {exc}") from None
    if meta is None:
        return ModelMetadata(label_set, spec)
    return meta.replace(label_set=label_set, preprocess=spec)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _fields(buf: bytes):
    """Yield (field number, wire type, value, start, end) for one protobuf message.

    value is the payload bytes for wire type 2 (length-delimited); start:end is the field's raw span.
    """
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt in (1, 5):
            n = 8 if wt == 1 else 4
            val, pos = buf[pos:pos + n], pos + n
        elif wt == 2:
            n, pos = _varint(buf, pos)
            val, pos = buf[pos:pos + n], pos + n
        else:
            raise ValueError(f"unsupported wire type {wt}")
        if pos > len(buf):
            raise ValueError("truncated field")
        yield num, wt, val, start, pos


def _entry(val: bytes) -> tuple[str, str]:
    """StringStringEntryProto {1: key, 2: value} -> (key, value)."""
    d = {n: v for n, w, v, _, _ in _fields(val) if w == 2}
    return d.get(1, b"").decode(), d.get(2, b"").decode()


def _onnx_props(buf: bytes) -> dict[str, str]:
    # ModelProto field 14 is metadata_props
    return dict(_entry(val) for num, wt, val, _, _ in _fields(buf) if num == 14 and wt == 2)


def _onnx_prop_bytes(key: str, value: str) -> bytes:
    k, v = key.encode(), value.encode()
    entry = b"\x0a" + _encode_varint(len(k)) + k + b"\x12" + _encode_varint(len(v)) + v
    return b"\x72" + _encode_varint(len(entry)) + entry


# --- read and write --------------------------------------------------------------------------

def _read_zip_member(path: Path) -> bytes | None:
    try:
        with zipfile.ZipFile(path) as z:
            return z.read(MEMBER) if MEMBER in z.namelist() else None
    except zipfile.BadZipFile:
        return None


def check_model_path(path: str | os.PathLike, folder_ok: bool = False) -> Path:
    """A model path that names something loadable: not missing, not an empty file, not a folder (unless
    `folder_ok`: a TensorFlow SavedModel), each said as such rather than as a loader's puzzling error."""
    path = Path(path)
    if path.is_dir():
        if folder_ok:
            return path
        raise ModelError(f"{path} is a folder: expected a model file (.tflite or .onnx)")
    if not path.exists():
        raise ModelError(f"{path}: no such model file")
    if path.stat().st_size == 0:
        raise ModelError(f"{path} is empty (0 bytes): not a model file (an interrupted copy or download?)")
    return path


def read_metadata(path: str | os.PathLike) -> ModelMetadata | None:
    """The fer-edge metadata stored in a model file, or None when the file carries none."""
    path = check_model_path(path, folder_ok=True)
    suffix = path.suffix.lower()
    if suffix in (".tflite", ".keras"):
        raw = _read_zip_member(path)
    elif suffix == ".onnx":
        try:
            raw = _onnx_props(path.read_bytes()).get(ONNX_KEY)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ModelError(f"{path}: not a readable ONNX file ({exc})") from None
    elif suffix in (".h5", ".hdf5") or path.is_dir():
        return None
    else:
        raise ModelError(f"{path}: unknown model format {suffix!r}: expected .tflite, .onnx, .keras or .h5")
    return None if raw is None else ModelMetadata.from_json(raw, source=str(path))


def write_metadata(path: str | os.PathLike, meta: ModelMetadata) -> None:
    """Store metadata inside an existing model file (atomically; replaces earlier fer-edge metadata)."""
    path = Path(path)
    suffix = path.suffix.lower()
    text = meta.to_json()
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    with atomic_output(path, force=True) as tmp:
        if suffix == ".onnx":
            data = path.read_bytes()
            try:
                data = _strip_onnx_prop(data, ONNX_KEY)
            except (ValueError, UnicodeDecodeError) as exc:
                raise ModelError(f"{path}: not a readable ONNX file ({exc})") from None
            tmp.write_bytes(data + _onnx_prop_bytes(ONNX_KEY, text))
        elif suffix in (".tflite", ".keras"):
            if suffix == ".keras":
                _rewrite_keras_zip(path, tmp, text)
            else:
                data = _strip_appended_zip(path) if _read_zip_member(path) is not None else path.read_bytes()
                buf = io.BytesIO()
                with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
                    z.writestr(MEMBER, text)
                tmp.write_bytes(data + buf.getvalue())
        else:
            raise ModelError(f"{path}: cannot store metadata in {suffix!r} files: expected .tflite, .onnx or .keras")


def _strip_onnx_prop(data: bytes, key: str) -> bytes:
    """The ModelProto bytes without the metadata_props entries named `key`."""
    return b"".join(
        data[start:end] for num, wt, val, start, end in _fields(data)
        if not (num == 14 and wt == 2 and _entry(val)[0] == key)
    )


def _strip_appended_zip(path: Path) -> bytes:
    """The flatbuffer without the zip archive that write_metadata appended earlier."""
    with zipfile.ZipFile(path) as z:  # zipfile reports header offsets from the start of the file
        start = min(i.header_offset for i in z.infolist())
    return path.read_bytes()[:start]


def _rewrite_keras_zip(src: Path, dst: Path, text: str) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            if item.filename != MEMBER:
                zout.writestr(item, zin.read(item.filename))
        zout.writestr(MEMBER, text)


def copy_with_metadata(src: str | os.PathLike, dst: str | os.PathLike, meta: ModelMetadata, force: bool = False) -> None:
    """Copy a model file and store metadata in the copy."""
    with atomic_output(dst, force=force) as tmp:
        shutil.copyfile(src, tmp)
        write_metadata(tmp, meta)
