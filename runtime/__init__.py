"""fer_edge.runtime: what a device needs (numpy and OpenCV only at import time).

The preprocessing contract, label sets, model metadata and dataset readers live here so that
training, conversion, calibration and the device runtime all share one definition of each.
"""
from fer_edge.runtime.core.errors import FerEdgeError, DataError, ModelError, MissingExtraError
from fer_edge.runtime.model.labels import LabelSet, LABEL_SETS, FER2013, FERPLUS, get_label_set
from fer_edge.runtime.model.preprocess import PreprocessSpec, preprocess, crop_faces
from fer_edge.runtime.model.metadata import ModelMetadata, read_metadata, write_metadata

__all__ = [
    "FerEdgeError", "DataError", "ModelError", "MissingExtraError",
    "LabelSet", "LABEL_SETS", "FER2013", "FERPLUS", "get_label_set",
    "PreprocessSpec", "preprocess", "crop_faces",
    "ModelMetadata", "read_metadata", "write_metadata",
]
