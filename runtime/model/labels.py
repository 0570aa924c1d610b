"""Label sets, defined once. Runtime code never types a label list: it reads one from model metadata.

A model's classes are its own: a named set below (each in its dataset's own output order, sources in
docs/data.md) or any list of names a user gives (`parse_labels`: a comma-separated list or a labels.txt),
emotions or not. Names are compared in canonical form (lower case, other datasets' spellings mapped).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from fer_edge.runtime.core.errors import FerEdgeError


@dataclass(frozen=True)
class LabelSet:
    name: str
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def index(self, label: str) -> int:
        try:
            return self.labels.index(canonical(label))
        except ValueError:
            raise FerEdgeError(
                f"unknown class {label!r} for label set {self.name!r}: expected one of {', '.join(self.labels)}"
            ) from None


# FER2013 (Kaggle, Goodfellow et al. 2013): emotion ids 0..6 in this order.
FER2013 = LabelSet("fer2013", ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"))
# FER+ (Barsoum et al. 2016): the column order of fer2013new.csv, contempt included.
FERPLUS = LabelSet("ferplus", ("neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt"))

# AffectNet (Mollahosseini et al. 2017): expression ids 0..7; affectnet7 is the same order without contempt.
AFFECTNET8 = LabelSet("affectnet8", ("neutral", "happy", "sad", "surprise", "fear", "disgust", "angry", "contempt"))
AFFECTNET7 = LabelSet("affectnet7", AFFECTNET8.labels[:7])
# RAF-DB basic emotions (Li et al. 2017): labels 1..7 = surprise, fear, disgust, happiness, sadness, anger, neutral.
RAFDB = LabelSet("rafdb", ("surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"))

LABEL_SETS: dict[str, LabelSet] = {s.name: s for s in (FER2013, FERPLUS, AFFECTNET7, AFFECTNET8, RAFDB)}
CUSTOM = "custom"  # the label set name of a list the user gave
MAX_NAME = 40  # characters in a class name: it becomes an entity id, a column, an overlay line
# the names other expression datasets give the same classes (CK+, RAF-DB, AffectNet, FER+'s own columns)
ALIASES = {"anger": "angry", "disgusted": "disgust", "fearful": "fear", "happiness": "happy", "sadness": "sad",
           "surprised": "surprise", "neutrality": "neutral", "contemptuous": "contempt"}


def canonical(label: str) -> str:
    """A class name as the label sets spell it: lower case, other datasets' names mapped (anger -> angry)."""
    label = label.strip().lower()
    return ALIASES.get(label, label)


def known_elsewhere(label: str, labels: tuple[str, ...]) -> bool:
    """A class some label set has but `labels` lack (contempt, for FER2013's)."""
    name = canonical(label)
    return name not in labels and any(name in s.labels for s in LABEL_SETS.values())


def check_names(names, where: str = "labels") -> tuple[str, ...]:
    """Class names in canonical form, or one line saying what is wrong (empty, duplicate, unprintable)."""
    out = tuple(canonical(str(n)) for n in names)
    if len(out) < 2:
        raise FerEdgeError(f"{where}: expected at least 2 class names, found {len(out)}")
    for raw, name in zip(names, out):
        if not name or len(name) > MAX_NAME or not name.isprintable() or re.search(r"[,#+/\\\"'<>]", name):
            raise FerEdgeError(f"{where}: class name {str(raw)!r} must be 1-{MAX_NAME} printable characters "
                               "without , # + / \\ \" ' < >")
    dup = sorted({n for n in out if out.count(n) > 1})
    if dup:
        raise FerEdgeError(f"{where}: duplicate class name {', '.join(dup)} (names are compared in canonical form)")
    return out


def label_set_of(name: str, labels) -> LabelSet:
    """The set a model file names: a known set (its labels must match) or a custom list."""
    labels = tuple(labels)
    if name in LABEL_SETS:
        if labels != LABEL_SETS[name].labels:
            raise FerEdgeError(f"labels {list(labels)} differ from label set {name} {list(LABEL_SETS[name].labels)}")
        return LABEL_SETS[name]
    if name != CUSTOM:
        raise FerEdgeError(f"unknown label set {name!r}: expected one of {', '.join(LABEL_SETS)} or {CUSTOM}")
    return LabelSet(CUSTOM, check_names(labels))


def parse_labels(text: str) -> LabelSet:
    """--labels: a named set, a labels.txt path (Teachable Machine's "0 Name" lines or one name a line), or a
    comma-separated list of names in the model's output order."""
    text = text.strip()
    if text in LABEL_SETS:
        return LABEL_SETS[text]
    path = Path(text)
    if "," not in text and (path.suffix.lower() == ".txt" or path.is_file()):
        return named(check_names(read_labels_txt(path), str(path)))
    if "," not in text:
        raise FerEdgeError(f"--labels {text!r}: expected a label set ({', '.join(LABEL_SETS)}), a labels.txt file or "
                           "a comma-separated list of class names in the model's output order")
    return named(check_names([n for n in text.split(",")], "--labels"))


def named(labels: tuple[str, ...]) -> LabelSet:
    """A list of canonical names as the known set it equals, order included, or as a custom set."""
    return next((s for s in LABEL_SETS.values() if s.labels == labels), LabelSet(CUSTOM, labels))


def read_labels_txt(path: Path) -> list[str]:
    """One class a line, in output order; Teachable Machine writes "0 Angry", "1 Happy", ... (the index first)."""
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise FerEdgeError(f"{path}: cannot read a labels file ({exc.__class__.__name__}: {exc})") from None
    numbered = [re.fullmatch(r"(\d+)\s+(.+)", ln) for ln in lines]
    if lines and all(numbered):
        idx = [int(m.group(1)) for m in numbered]
        if idx != list(range(len(lines))):
            raise FerEdgeError(f"{path}: numbered lines must run 0, 1, 2, ... in order, found {idx}")
        return [m.group(2) for m in numbered]
    return lines


def get_label_set(name: str) -> LabelSet:
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise FerEdgeError(f"unknown label set {name!r}: expected one of {', '.join(LABEL_SETS)}") from None
