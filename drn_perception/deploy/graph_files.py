"""What every graph writer in deploy/ reads from an exported model: its metadata and its image input.

Shared by the ONNX Runtime, OpenVINO and TensorRT graph writers (quantize.py,
openvino_quantize.py, tensorrt_graphs.py), so none of them imports another.
"""
from __future__ import annotations

import json
from pathlib import Path

from drn_perception.model_info import sidecar_path

# The node types the int8 graphs quantise (ONNX Runtime's and TensorRT's).
QUANTIZED_OPS = ("Conv", "Relu", "Add")


def parse_size(text: str) -> tuple[int, int]:
    """"HxW" -> (H, W), both at least 8 (any size runs; 8 = one pixel at the output stride)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size {text!r} is not HxW, e.g. 256x512") from None
    if h < 8 or w < 8:
        raise ValueError(f"size {text!r}: height and width must be at least 8")
    return h, w


def read_sidecar(model: Path) -> dict:
    """The exported model's metadata: sidecar JSON, else the graph's own metadata."""
    sidecar = sidecar_path(model)
    if sidecar.is_file():
        try:
            return json.loads(sidecar.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read model metadata {sidecar}: {exc}") from None
    import onnx

    graph = onnx.load(str(model), load_external_data=False)
    for prop in graph.metadata_props:
        if prop.key == "drn_perception":
            return json.loads(prop.value)
    raise ValueError(f"{model} has neither a {sidecar.name} sidecar nor drn_perception metadata; export it with drn-export")


def input_name(model: Path) -> str:
    """The name of the graph's one image input (ValueError if there is not exactly one)."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False)
    initializers = {t.name for t in graph.graph.initializer}
    inputs = [i.name for i in graph.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ValueError(f"{model} should have one image input, has {inputs}")
    return inputs[0]


def classifier_layers(model: str | Path) -> list[str]:
    """The last Conv node of the graph (the classifier): its outputs are the logits.

    Quantised, the logits of every class share one 8-bit scale set by the widest of them, and
    the argmax follows straight from them: on a trained DRN-C-26 (512x1024, synthetic scenes)
    the int8 graph kept 92.7% of the float labels with the classifier quantised and 96.5%
    with it in float. It is a 1x1 convolution at 1/8 resolution, under 0.1% of the MACs.
    """
    import onnx

    convs = [n.name for n in onnx.load(str(model)).graph.node if n.op_type == "Conv"]
    return convs[-1:]


def fine_layers(model: str | Path, float_stride: int, probe: tuple[int, int] = (64, 128),
                ops: tuple[str, ...] = QUANTIZED_OPS) -> list[str]:
    """Names of the ``ops`` nodes (Conv/Relu/Add) whose output is at ``float_stride`` or finer.

    Found by shape inference with the input fixed to ``probe`` (H, W), so it holds for any
    network, whatever its node names.
    """
    import onnx

    if not float_stride:
        return []
    graph = onnx.load(str(model))
    inp = next(i for i in graph.graph.input if i.name not in {t.name for t in graph.graph.initializer})
    dims = inp.type.tensor_type.shape.dim
    for dim, value in zip(dims, (1, *probe, 3)):
        dim.ClearField("dim_param")
        dim.dim_value = value
    inferred = onnx.shape_inference.infer_shapes(graph)
    shapes = {}
    for vi in (*inferred.graph.value_info, *inferred.graph.output):
        d = vi.type.tensor_type.shape.dim
        if len(d) == 4 and all(x.HasField("dim_value") for x in d):
            shapes[vi.name] = [x.dim_value for x in d]
    names = []
    for node in inferred.graph.node:
        shape = shapes.get(node.output[0]) if node.op_type in ops else None
        if shape and shape[2] * float_stride >= probe[0]:  # NCHW: H at stride <= float_stride
            names.append(node.name)
    return names
