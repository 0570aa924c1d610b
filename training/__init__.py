"""fer_edge.training: fer-train, fer-eval and fer-explain (needs the [train] extra: TensorFlow/Keras 3)."""
