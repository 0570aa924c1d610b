"""fer_edge.runtime.faces."""
