"""Inference backends behind one interface: ``create_segmenter(path, backend="auto")``."""
from drn_perception.inference.base import (
    BACKENDS,
    BackendUnavailable,
    SegmentationResult,
    Segmenter,
    create_segmenter,
)

__all__ = ["BACKENDS", "BackendUnavailable", "SegmentationResult", "Segmenter", "create_segmenter"]
