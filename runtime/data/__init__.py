"""Labelled data for measuring a model on a device: the FER2013/FER+ readers, classification metrics and the
golden outputs beside a shipped model (`fer-edge verify`, fer-convert's parity). Imports core and model."""
