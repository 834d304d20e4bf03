"""ONNX Runtime backend: runs the exported graph (CPU, or CUDA where onnxruntime-gpu has it)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from drn_perception.inference.base import BackendUnavailable, SegmentationResult, Segmenter
from drn_perception.model_info import ModelInfo, sidecar_path

METADATA_KEY = "drn_perception"  # same key deploy/export.py writes


class OnnxRuntimeSegmenter(Segmenter):
    backend = "onnxruntime"

    def __init__(self, path: str | Path, device: str = "auto", threads: int = 0):
        available = ort.get_available_providers()
        if device == "auto":
            device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in available:
                raise BackendUnavailable("device cuda needs onnxruntime-gpu (CUDAExecutionProvider is not available)")
            dev_id = int(device.partition(":")[2] or 0)
            providers = [("CUDAExecutionProvider", {"device_id": dev_id}), "CPUExecutionProvider"]
        elif device == "cpu":
            providers = ["CPUExecutionProvider"]
        else:
            raise ValueError(f"unknown device {device!r} for onnxruntime: use auto, cpu or cuda[:i]")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise ValueError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0]}") from None
        super().__init__(path, _read_info(path, self.session), device)
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.input_name = self.session.get_inputs()[0].name

    def _run(self, images: np.ndarray, want_confidence: bool) -> SegmentationResult:
        names = ["labels", "confidence"] if want_confidence and "confidence" in self.outputs else ["labels"]
        result = self.session.run(names, {self.input_name: images})
        return SegmentationResult(result[0], result[1] if len(result) > 1 else None)


def _read_info(path: str | Path, session: ort.InferenceSession) -> ModelInfo:
    """Model metadata from the sidecar JSON, else from the graph's own metadata."""
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        return ModelInfo.read_json(sidecar)
    meta = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY in meta:
        return ModelInfo.from_dict(json.loads(meta[METADATA_KEY]))
    raise ValueError(f"{path} has neither a {sidecar.name} sidecar nor drn_perception metadata; export it with drn-export")
