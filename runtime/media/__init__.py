"""Frames in and pictures out: still images, frame sources (files, cameras, URLs, folders) with reconnects,
drawing, and the sinks a run writes to (JSON Lines, annotated video, a window, the summary)."""
