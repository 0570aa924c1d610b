"""fer_edge.runtime.data."""
