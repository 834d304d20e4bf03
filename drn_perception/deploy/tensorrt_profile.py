"""drn-build-engine's default optimisation profile, and the activation memory at its maximum.

The profile follows the model and the robot, not a fixed 4x1024x2048 maximum (which holds several
608 MiB fp32 tensors for 19 classes: too much for an 8 GB Orin Nano / NX next to the ONNX Runtime
session the node serves with during the first build):

* sizes: ``--sizes HxW[,HxW...]`` (the network input sizes the cameras give: the node's
  ``input_size``, or the camera frames as the node scales them), by default the model's own
  input size from its sidecar (``input_size``, else the size it was trained at), else 512x1024;
* batch: ``--cameras N`` (the node batches one frame per camera), default 1.

MIN = (1, smallest H, smallest W), OPT = (N, first size), MAX = (N, largest H, largest W).

The activation memory is computed from the graph, without TensorRT: ONNX shape inference with
the input fixed at the profile's MAX gives every tensor's shape and type; walking the nodes in
graph order, a tensor is live from the node that makes it to the last node that reads it, and
the peak of the live tensors' bytes is printed, with the largest single tensor. TensorRT fuses
layers (fewer tensors) and adds workspace and weights, so this is an estimate of the
activations' share, not a promise of the engine's total.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from drn_perception.inference.trt_profile import MIN_SIDE, Profile, shape_str

FALLBACK_SIZE = (512, 1024)
# bytes per element of the ONNX tensor types a DRN graph holds (TensorProto enum -> size)
_ITEMSIZE = {1: 4, 2: 1, 3: 1, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 16: 2}


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """"480x640,720x1280" -> [(480, 640), (720, 1280)] (ValueError naming the bad part)."""
    sizes = []
    for part in str(text).split(","):
        try:
            h, w = (int(v) for v in part.strip().lower().split("x"))
        except ValueError:
            raise ValueError(f"--sizes: {part.strip()!r} is not HxW (e.g. 512x1024)") from None
        if h < MIN_SIDE or w < MIN_SIDE:
            raise ValueError(f"--sizes: height and width must be at least {MIN_SIDE}, got {part.strip()!r}")
        sizes.append((h, w))
    return sizes


def model_size(info: dict) -> tuple[int, int] | None:
    """The model's own input size from its sidecar: ``input_size``, else ``trained_synthetic_size``."""
    for key in ("input_size", "trained_synthetic_size", "trained_size"):
        value = info.get(key)
        if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
            return int(value[0]), int(value[1])
    return None


def default_profile(info: dict, sizes: list[tuple[int, int]] | None = None, cameras: int = 1) -> Profile:
    """The profile for ``cameras`` cameras at ``sizes`` (default: the model's size, see module doc)."""
    if cameras < 1:
        raise ValueError(f"--cameras must be at least 1, got {cameras}")
    sizes = sizes or [model_size(info) or FALLBACK_SIZE]
    lo = (1, min(h for h, _ in sizes), min(w for _, w in sizes), 3)
    opt = (cameras, sizes[0][0], sizes[0][1], 3)
    hi = (cameras, max(h for h, _ in sizes), max(w for _, w in sizes), 3)
    return Profile.parse("/".join(shape_str(s) for s in (lo, opt, hi)))


@dataclass(frozen=True)
class ActivationMemory:
    shape: tuple[int, ...]
    peak_bytes: int
    largest_bytes: int
    largest_name: str
    tensors: int

    def describe(self) -> str:
        mib = 2**20
        return (f"activation memory at the profile's maximum {shape_str(self.shape)}: about "
                f"{self.peak_bytes / mib:.0f} MiB at the peak of live tensors (largest: {self.largest_name}, "
                f"{self.largest_bytes / mib:.0f} MiB; {self.tensors} tensors, from ONNX shape inference; "
                "TensorRT adds workspace and weights and fuses layers)")


def activation_memory(onnx_path: str | Path, shape: tuple[int, ...]) -> ActivationMemory:
    """Peak bytes of live tensors with the graph's input fixed at ``shape`` (see the module doc)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    image = next(i for i in graph.input if i.name not in initializers)
    dims = image.type.tensor_type.shape.dim
    if len(dims) != len(shape):
        raise ValueError(f"{onnx_path}: input {image.name} has {len(dims)} dimensions, profile shape {shape_str(shape)}")
    for dim, value in zip(dims, shape):
        dim.ClearField("dim_param")
        dim.dim_value = int(value)
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    sizes: dict[str, int] = {}
    for vi in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        t = vi.type.tensor_type
        if not t.HasField("shape") or not all(d.HasField("dim_value") for d in t.shape.dim):
            continue
        n = 1
        for d in t.shape.dim:
            n *= d.dim_value
        sizes[vi.name] = n * _ITEMSIZE.get(t.elem_type, 4)
    nodes = list(inferred.graph.node)
    last_use = {name: len(nodes) for name in (o.name for o in inferred.graph.output)}
    for index, node in enumerate(nodes):
        for name in node.input:
            if name in sizes:
                last_use[name] = max(last_use.get(name, index), index)
    live = {image.name: sizes.get(image.name, 0)}
    peak = sum(live.values())
    for index, node in enumerate(nodes):
        for name in node.output:
            if name in sizes:
                live[name] = sizes[name]
        peak = max(peak, sum(live.values()))
        for name in [n for n in live if last_use.get(n, -1) <= index]:
            del live[name]
    largest = max(sizes, key=sizes.get) if sizes else ""
    return ActivationMemory(tuple(shape), peak, sizes.get(largest, 0), largest, len(sizes))
