"""Inference backends behind one interface: ``create_segmenter(path, backend="auto")``;
``open_segmenter`` for a TensorRT engine that may have to be built first (serves at once on
ONNX Runtime, switches when the engine is built: see inference/switching.py)."""
from drn_perception.inference.base import (
    BACKENDS,
    BackendUnavailable,
    SegmentationResult,
    Segmenter,
    create_segmenter,
)
from drn_perception.inference.opening import open_segmenter
from drn_perception.inference.switching import Producer, ProducerFailed, SwitchingSegmenter

__all__ = ["BACKENDS", "BackendUnavailable", "Producer", "ProducerFailed", "SegmentationResult", "Segmenter",
           "SwitchingSegmenter", "create_segmenter", "open_segmenter"]
