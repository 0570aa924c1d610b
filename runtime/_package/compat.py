"""The `fer` package's API on fer-edge: change `from fer import FER, Video` to
`from fer_edge.compat import FER, Video` (and `fer.exceptions.InvalidImage` to `fer_edge.compat.InvalidImage`).
What is the same and what differs: docs/python.md. The code is fer_edge.runtime.recognize.fer_compat."""
from fer_edge.runtime.recognize.fer_compat import FER, InvalidImage, Video

__all__ = ["FER", "InvalidImage", "Video"]
