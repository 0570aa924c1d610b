"""fer_edge.runtime.media."""
