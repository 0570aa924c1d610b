"""fer_edge.runtime.model."""
