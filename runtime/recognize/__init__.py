"""fer_edge.runtime.recognize."""
