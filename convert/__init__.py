"""fer_edge.convert: fer-convert, Keras -> TFLite / ONNX (fp32, fp16, dynamic, INT8) with parity reports."""
