"""fer_edge.runtime.serve."""
