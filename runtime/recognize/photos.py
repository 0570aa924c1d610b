"""Labelled faces for a model, from whatever the user has: FER2013 (npz, csv, 48x48 image folders) or photos.

A photo set is a folder of photos of any size and colour with a labels.csv (`file,label`, as tfeid-dev) or
one sub-folder per class. Each photo's face is found by the runtime's own detector and cut exactly as fer-edge
cuts it for this model (framing or 5-point alignment, grey or colour), then stored at the model's input size,
so calibration and the parity gate see the crops the device will feed it. A photo without a face is skipped
and counted. Photos carry no official split: each goes to one by a hash of its file name (SPLIT_OF), so a
calibration photo is never a gate photo. Labels are then put in the model's own classes (`in_model_classes`).
"""
from __future__ import annotations

import zlib
from pathlib import Path

import cv2
import numpy as np

from fer_edge.runtime.core.errors import DataError
from fer_edge.runtime.core.stop import check as check_stop
from fer_edge.runtime.data.datasets import (IMAGE_SUFFIXES, SIDE, FaceDataset, in_model_classes, list_photos,
                                            load_dataset)
from fer_edge.runtime.faces.detectors import DEFAULT_DETECTOR, detect_at, make_detector
from fer_edge.runtime.faces.framing import FRAMINGS, crop_source, face_crops
from fer_edge.runtime.model.labels import CUSTOM, LabelSet
from fer_edge.runtime.model.metadata import ModelMetadata
from fer_edge.runtime.model.preprocess import PreprocessSpec, fit_size

# a photo's split from crc32(file name) % 5: two fifths calibrate (Training), one chooses the confidence
# threshold (PublicTest), two are the parity gate's (PrivateTest)
SPLIT_OF = (0, 0, 1, 2, 2)


def is_photo_set(path: Path) -> bool:
    """A folder of photos (labels.csv, or class folders of photos that are not FER2013's 48x48 faces)."""
    if not path.is_dir() or any((path / n).is_file() for n in ("fer2013.npz", "fer2013.csv")):
        return False
    if (path / "labels.csv").is_file():
        return True
    first = next((f for d in sorted(path.iterdir()) if d.is_dir() for f in sorted(d.iterdir())
                  if f.suffix.lower() in IMAGE_SUFFIXES), None)
    if first is None:
        return False
    image = cv2.imread(str(first), cv2.IMREAD_UNCHANGED)
    return image is not None and image.shape[:2] != (SIDE, SIDE)


def read_photo_faces(folder: str | Path, spec: PreprocessSpec, framing: str = "fer2013",
                     detector: str = DEFAULT_DETECTOR) -> FaceDataset:
    """Each photo's highest-scoring face, cut for a model of `spec`, labelled by the photo's own class names."""
    folder = Path(folder)
    photos = list_photos(folder)
    names = tuple(sorted({n for _, n in photos}))
    det = make_detector(detector)
    try:
        faces, labels, splits, kept, unread, faceless = [], [], [], [], 0, 0
        for path, name in photos:
            check_stop()
            crop = _photo_face(path, det, spec, FRAMINGS[framing])
            if crop is None or isinstance(crop, str):
                unread, faceless = unread + (crop == "unread"), faceless + (crop is None)
                continue
            faces.append(crop)
            labels.append(names.index(name))
            splits.append(SPLIT_OF[zlib.crc32(path.name.encode()) % len(SPLIT_OF)])
            kept.append(str(path))
    finally:
        det.close()
    if not faces:
        raise DataError(f"{folder}: no face found in any of its {len(photos)} photos")
    notes = [f"{len(faces)} faces from {len(photos)} photos in {folder} (found by {detector}, cut as fer-edge cuts "
             f"them for this model: {spec.describe()})"]
    if faceless or unread:
        notes.append(f"{faceless} photos without a face and {unread} unreadable ones skipped")
    return FaceDataset(np.stack(faces), np.array(labels, np.int64), np.array(splits, np.uint8),
                       LabelSet(CUSTOM, names), str(folder), names=np.array(kept), notes=notes)


def _photo_face(path: Path, detector, spec: PreprocessSpec, framing) -> np.ndarray | str | None:
    """The crop at the model's size ("unread" for a file OpenCV cannot read, None for no face)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        return "unread"
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    found = detect_at(detector, image, gray, detector.SIZES[1])
    if not found:
        return None
    face = max(found, key=lambda f: f.score)
    return fit_size(face_crops(crop_source(image, gray, spec), [face], spec, framing)[0], spec)


def load_for_model(data: str | Path, meta: ModelMetadata, framing: str = "fer2013") -> FaceDataset:
    """The labelled faces at `data` in the model's own classes; a grey set for a colour model gets a note."""
    path = Path(data)
    spec = meta.preprocess
    if is_photo_set(path):
        ds = read_photo_faces(path, spec, framing)
    else:
        ds = load_dataset(path, label_set="ferplus" if meta.label_set.name == "ferplus" else "fer2013")
        if spec.colour != "grey":
            ds.notes.append(f"warning: {path} holds grey faces but the model takes {spec.colour} colour: each face's "
                            "grey is copied to the three channels, which is not what the device's camera gives it; "
                            "measure a colour model on colour photos (a folder with labels.csv)")
    return in_model_classes(ds, meta.labels)
