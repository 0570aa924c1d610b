"""fer_edge.runtime.core."""
