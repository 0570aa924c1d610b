"""fer_edge.calibration: representative sets of real faces for INT8 calibration (numpy only)."""
from fer_edge.calibration.sampler import (DEFAULT_SIZE, MIN_SIZE, CalibrationReader, CalibrationSet,
                                          build_calibration, check_calibration, load_calibration,
                                          manifest_path, save_calibration, stratified_indices)

__all__ = ["DEFAULT_SIZE", "MIN_SIZE", "CalibrationReader", "CalibrationSet", "build_calibration",
           "check_calibration", "load_calibration", "manifest_path", "save_calibration", "stratified_indices"]
