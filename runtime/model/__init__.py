"""The classifier as a file: labels, the preprocessing contract, the metadata stored inside each model, the
inference backends (LiteRT, tflite-runtime, ONNX Runtime) and the models shipped in the package. Imports only core."""
