"""The parity report's entries as types: what fer-convert writes (report.json), the CI gate and fer-bench read
(the reference), and the model cards are made from.

Each type writes its JSON object with `to_dict` and reads it back with `from_dict`, so report.json keeps its
keys and their order: a figure that was not measured (None) is left out, as the reports always have.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from fer_edge.convert.formats import FORMATS

RECIPE_KEYS = tuple(f.recipe_search for f in FORMATS.values() if f.recipe_search)  # report.json keys of the searches


def _dict(obj, names: dict[str, str] | None = None) -> dict:
    """The fields that are set, in declaration order; `names` maps a field to its JSON key where they differ."""
    names = names or {}
    out = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if value is not None:
            out[names.get(f.name, f.name)] = value.to_dict() if hasattr(value, "to_dict") else value
    return out


def _known(cls, d: dict, names: dict[str, str] | None = None) -> dict:
    """The keywords of `cls` found in d (JSON keys renamed back to field names)."""
    back = {v: k for k, v in (names or {}).items()}
    wanted = {f.name for f in fields(cls)}
    return {back.get(k, k): v for k, v in d.items() if back.get(k, k) in wanted}


class _Entry:
    """to_dict/from_dict of an entry whose fields are its JSON keys, plain values or other entries."""

    def to_dict(self) -> dict:
        return _dict(self)

    @classmethod
    def from_dict(cls, d: dict):
        return cls(**_known(cls, d))


@dataclass
class Reference(_Entry):
    """The fp32 reference the files are held to: the source model (runtime 'keras', or 'onnxruntime' for an ONNX
    or PyTorch source), or its golden outputs (runtime 'golden')."""
    path: str
    sha256: str
    runtime: str = "keras"
    n: int | None = None  # faces measured (None: no --data, nothing measured)
    accuracy: float | None = None
    macro_f1: float | None = None
    recall: dict[str, float] | None = None  # per class
    cost: dict | None = None  # {"macs", "parameters"}, where fer-convert counted them
    sample: dict | None = None  # verify --sample: {"faces", "of", "seed"}, the figures are the subset's


@dataclass
class KernelFigures(_Entry):
    """One LiteRT kernel path's figures for an INT8 .tflite file."""
    accuracy: float
    accuracy_drop: float  # percentage points below the reference
    agreement: float  # share of faces with the reference's top-1 class
    max_prob_diff: float


@dataclass
class Spread(_Entry):
    """How far the two kernel paths are from each other."""
    agreement: float
    max_prob_diff: float


@dataclass
class FormatEntry:
    """One file of the report: its size, and, when measured, its figures against the reference and its verdict."""
    path: str
    bytes: int
    runtime: str | None = None  # the interpreter's package that ran it
    accuracy: float | None = None  # None: converted but not measured (no --data)
    macro_f1: float | None = None
    accuracy_drop: float | None = None
    agreement: float | None = None
    recall_delta: dict[str, float] | None = None  # pp per class, file minus reference
    max_prob_diff: float | None = None
    kernels: dict[str, KernelFigures] | None = None  # INT8 .tflite: every kernel path measured
    spread: Spread | None = None  # written inside "kernels"
    failures: list[str] | None = None
    passed: bool | None = None
    sha256: str | None = None
    error: str | None = None  # the format could not be made from this model (an operator it cannot express)

    @property
    def measured(self) -> bool:
        return self.accuracy is not None

    def to_dict(self) -> dict:
        d = _dict(self, {"passed": "pass"})
        spread = d.pop("spread", None)
        if self.kernels is not None:  # the key keeps its place after max_prob_diff
            d["kernels"] = {k: v.to_dict() for k, v in self.kernels.items()}
            if spread is not None:
                d["kernels"]["spread"] = spread
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FormatEntry":
        kw = _known(cls, d, {"passed": "pass"})
        kernels = dict(kw.pop("kernels", None) or {}) or None
        if kernels is not None:
            spread = kernels.pop("spread", None)
            kw["spread"] = Spread.from_dict(spread) if spread else None
            kw["kernels"] = {k: KernelFigures.from_dict(v) for k, v in kernels.items()}
        return cls(**kw)


@dataclass
class Evaluated(_Entry):
    """Which faces the figures were measured on."""
    data: str
    split: str
    n: int


@dataclass
class Budget(_Entry):
    """The gate: a file fails when it loses more accuracy, or agrees less, than this (on every kernel path)."""
    max_drop_pp: float
    min_agreement: float


@dataclass
class Candidate(_Entry):
    """One recipe an INT8 recipe search tried, with its scores on the held-out faces (or why it failed)."""
    recipe: str
    bytes: int | None = None
    float_layers: int | None = None  # layers (TFLite ops, ONNX nodes) kept in float
    activations: str | None = None  # int8 | int16 | float (TFLite); QUInt8 | QInt8 | QInt16 (ONNX)
    agreement: float | None = None
    max_prob_diff: float | None = None
    accuracy_drop: float | None = None  # pp, when the held-out faces have labels
    error: str | None = None  # the quantizer could not build it


@dataclass
class LayerError(_Entry):
    """How much of a layer's signal the plain INT8 recipe loses (relative RMSE against float)."""
    layer: str  # output tensor
    op: str
    relative_rmse: float
    node: str | None = None  # ONNX: the node writing the tensor
    scale: float | None = None  # TFLite: the tensor's quantization scale


@dataclass
class RecipeCost(_Entry):
    """What the chosen recipe costs against the plain INT8 one: [plain, chosen] each."""
    bytes: list[int]
    ms_per_face: list[float]
    measured: str


@dataclass(kw_only=True)
class RecipeSearch:
    """An INT8 recipe search (a Format row's recipe_search): the tool, the recipe chosen and why, every candidate,
    what leaving the plain recipe cost, and the layers losing most. Also the file's provenance "recipe"."""
    quantizer: str | None = None  # ONNX: onnxruntime's quantizer and version
    onnxruntime: str | None = None
    converter: str | None = None  # TFLite: the converter and TensorFlow's version
    tensorflow: str | None = None
    quantization: str | None = None  # the chosen recipe in words
    calibration: str | None = None  # calibration method
    calibration_faces: int | None = None
    recipe: dict  # the chosen recipe as its backend describes it (name, float layers or nodes, ...)
    integer_only: bool | None = None  # --integer-only: fully-integer recipes only
    selection: str
    candidates: list[Candidate]
    cost: RecipeCost | None = None
    layer_errors: list[LayerError] | None = None
    layer_errors_method: str | None = None

    def to_dict(self) -> dict:
        d = _dict(self)
        d["candidates"] = [c.to_dict() for c in self.candidates]
        if self.layer_errors is not None:
            d["layer_errors"] = [e.to_dict() for e in self.layer_errors]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RecipeSearch":
        kw = _known(cls, d)
        kw["candidates"] = [Candidate.from_dict(c) for c in kw["candidates"]]
        if kw.get("cost") is not None:
            kw["cost"] = RecipeCost.from_dict(kw["cost"])
        if kw.get("layer_errors") is not None:
            kw["layer_errors"] = [LayerError.from_dict(e) for e in kw["layer_errors"]]
        return cls(**kw)


@dataclass
class ParityReport:
    """report.json: the reference, what was measured, the budget, one entry per file, the verdict, convert's INT8
    recipe searches (under their Format row's recipe_search key); `extra` holds what else the command adds
    (convert: the calibration; verify: the machine, the kernel paths)."""
    reference: Reference
    eval: Evaluated | None
    thresholds: Budget
    formats: dict[str, FormatEntry]
    failures: list[str]
    recipes: dict[str, RecipeSearch] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {"reference": self.reference.to_dict(), "eval": None if self.eval is None else self.eval.to_dict(),
                "thresholds": self.thresholds.to_dict(),
                "formats": {name: e.to_dict() for name, e in self.formats.items()},
                "pass": self.passed, "failures": list(self.failures),
                **{key: search.to_dict() for key, search in self.recipes.items()}, **self.extra}

    @classmethod
    def from_dict(cls, d: dict) -> "ParityReport":
        own = {"reference", "eval", "thresholds", "formats", "pass", "failures", *RECIPE_KEYS}
        return cls(reference=Reference.from_dict(d["reference"]),
                   eval=None if d.get("eval") is None else Evaluated.from_dict(d["eval"]),
                   thresholds=Budget.from_dict(d["thresholds"]),
                   formats={name: FormatEntry.from_dict(e) for name, e in d["formats"].items()},
                   failures=list(d.get("failures", [])),
                   recipes={k: RecipeSearch.from_dict(v) for k, v in d.items() if k in RECIPE_KEYS},
                   extra={k: v for k, v in d.items() if k not in own})
