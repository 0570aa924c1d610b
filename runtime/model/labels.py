"""Label sets, defined once. Runtime code never types a label list: it reads one from model metadata."""
from __future__ import annotations

from dataclasses import dataclass

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

LABEL_SETS: dict[str, LabelSet] = {s.name: s for s in (FER2013, FERPLUS)}
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


def get_label_set(name: str) -> LabelSet:
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise FerEdgeError(f"unknown label set {name!r}: expected one of {', '.join(LABEL_SETS)}") from None
