"""The statistics every output reports about faces, computed one way: sure and unsure tallies, each emotion's
share of the sure faces and the dominant emotion. The run's summary (and each track's line in it), the MQTT
summary, Home Assistant's window and each visit keep one `FaceStats` each, so they cannot disagree.

    stats = FaceStats()
    stats.add_all(result.faces)          # faces with .label and .sure
    stats.dominant()                     # 'happy', or None without a sure face
    stats.shares(labels)                 # {'angry': 0.0, ..., 'happy': 0.74, ...} of the sure faces
"""
from __future__ import annotations

from collections import Counter


class FaceStats:
    def __init__(self):
        self.counts: Counter = Counter()  # label -> sure faces
        self.unsure = 0

    def add(self, face) -> None:
        if face.sure:
            self.counts[face.label] += 1
        else:
            self.unsure += 1

    def add_all(self, faces) -> None:
        for face in faces:
            self.add(face)

    @property
    def sure(self) -> int:
        return sum(self.counts.values())

    @property
    def faces(self) -> int:
        return self.sure + self.unsure

    def dominant(self) -> str | None:
        """The emotion of most sure faces (the first seen among equals), None without a sure face."""
        return self.counts.most_common(1)[0][0] if self.counts else None

    def shares(self, labels: tuple[str, ...] | None = None, digits: int = 4) -> dict[str, float]:
        """Each emotion's share of the sure faces: every one of `labels` (0.0 where none), or only those seen,
        most frequent first."""
        n = self.sure
        if labels is None:
            return {k: round(v / n, digits) for k, v in self.counts.most_common()}
        return {k: round(self.counts[k] / n, digits) if n else 0.0 for k in labels}

    def clear(self) -> None:
        self.counts.clear()
        self.unsure = 0
