"""The shared vocabulary every other room speaks: error types, atomic output files, face boxes, the per-frame
results and the package version. Imports nothing above it (the lowest layer)."""
