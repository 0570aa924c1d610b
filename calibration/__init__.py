"""fer_edge.calibration: representative sets of real faces for INT8 calibration (numpy only)."""
