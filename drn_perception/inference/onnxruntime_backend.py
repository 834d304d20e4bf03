"""ONNX Runtime backend: runs the exported graph (CPU, or CUDA where onnxruntime-gpu has it).

ONNX Runtime computes every output of a graph on each run, whatever outputs are asked for,
and the confidence output (a softmax over all classes at full resolution) can cost more than
the network itself. So frames whose confidence nobody wants run on a second session over the
same graph pruned to its labels output (made with the ``onnx`` package where it is installed):
2.4x faster for the shipped model at 512x1024 on 2 CPU cores.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from drn_perception.inference.base import BackendUnavailable, SegmentationResult, Segmenter
from drn_perception.inference.class_check import check_num_classes, onnx_num_classes
from drn_perception.model_info import ModelInfo, sidecar_path

METADATA_KEY = "drn_perception"  # same key deploy/export.py writes
SHRINK_ABOVE_PIXELS = 2048 * 1024  # batch pixels (N*H*W) above which a run returns its arena growth


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
        # Idle pool threads sleep instead of spinning: in the node they would otherwise burn the
        # cores the executor, DDS and the mask conversion need between inferences (node's own
        # work per 1024x512 frame, p95: 8.5-12 ms with spinning, 2.1-2.2 ms without; direct
        # calls no slower within the noise, benchmarks/README.md).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise ValueError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0]}") from None
        super().__init__(path, _read_info(path, self.session), device)
        self._check_classes(path)
        self._shrink = ort.RunOptions()
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.input_name = self.session.get_inputs()[0].name
        self.labels_session = self.session
        if len(self.outputs) > 1 and "labels" in self.outputs:
            try:
                pruned = labels_only_model(path).SerializeToString()
            except ImportError:  # no ``onnx`` here: every frame runs the whole graph
                pruned = None
            if pruned is not None:
                self.labels_session = ort.InferenceSession(pruned, opts, providers=providers)

    def _check_classes(self, path):
        try:
            import onnx
        except ImportError:
            raise BackendUnavailable("backend onnxruntime needs the onnx package (pip install onnx) to check the "
                                     "model's class count against its metadata") from None
        graph = onnx.load(str(path), load_external_data=False)
        check_num_classes(path, self.info.num_classes, onnx_num_classes(graph), "the ONNX graph")
        if any(n.op_type in ("QuantizeLinear", "QLinearConv", "ConvInteger") for n in graph.graph.node):
            self.precision = "int8"  # drn-quantize's QDQ graph; the float parts stay fp32

    def _run(self, images: np.ndarray, want_confidence: bool) -> SegmentationResult:
        # ORT's CPU arena keeps what the largest input needed (two 12 Mpx frames: 6 GB, never
        # returned); a batch over SHRINK_ABOVE_PIXELS gives its growth back right after its run.
        # Smaller frames keep the arena: shrinking on every run costs time on each frame.
        run_options = self._shrink if images.shape[0] * images.shape[1] * images.shape[2] > SHRINK_ABOVE_PIXELS else None
        if want_confidence and "confidence" in self.outputs:
            labels, confidence = self.session.run(["labels", "confidence"], {self.input_name: images}, run_options)
            return SegmentationResult(labels, confidence)
        return SegmentationResult(self.labels_session.run(["labels"], {self.input_name: images}, run_options)[0])


def labels_only_model(path: str | Path):
    """The graph at ``path`` cut down to what its ``labels`` output needs (an onnx.ModelProto).

    Keeps the graph's metadata. Raises ImportError without the ``onnx`` package and
    ValueError when the graph has no ``labels`` output.
    """
    import onnx
    from onnx.utils import Extractor

    graph = onnx.load(str(path))
    outputs = [o.name for o in graph.graph.output]
    if "labels" not in outputs:
        raise ValueError(f"{path} has no 'labels' output (outputs: {outputs}); export it with drn-export")
    initializers = {t.name for t in graph.graph.initializer}
    inputs = [i.name for i in graph.graph.input if i.name not in initializers]
    pruned = Extractor(graph).extract_model(inputs, ["labels"])
    pruned.metadata_props.extend(graph.metadata_props)
    pruned.producer_name = graph.producer_name
    return pruned


def _read_info(path: str | Path, session: ort.InferenceSession) -> ModelInfo:
    """Model metadata from the sidecar JSON, else from the graph's own metadata."""
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        return ModelInfo.read_json(sidecar)
    meta = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY in meta:
        return ModelInfo.from_dict(json.loads(meta[METADATA_KEY]))
    raise ValueError(f"{path} has neither a {sidecar.name} sidecar nor drn_perception metadata; export it with drn-export")
