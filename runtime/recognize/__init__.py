"""The frame loop and the Python API on top of it: the Pipeline (frame -> faces -> crops -> classifier ->
results), `fer_edge.Recognizer`, and the `fer` package's API (`fer_edge.compat`)."""
