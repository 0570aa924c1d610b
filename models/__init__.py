"""fer_edge.models: the shipped model files (data only, found with fer_edge.runtime.model.shipped). This file holds no
code: it makes the folder a regular package, which an editable install finds under the regular `fer_edge`."""
