"""Is the class list a model's metadata gives the one its graph computes?

The class names come from a JSON sidecar or the graph's metadata: text anyone can edit. A sidecar
cut to 5 classes in front of a 19-class graph would make the node publish ids 5..18 under no name,
or name ids with the wrong classes. So every backend compares the metadata with what the file really
computes (the class dimension the argmax reduces over, or the classifier's output channels) when it
loads, and refuses a mismatch.
"""
from __future__ import annotations

from pathlib import Path


def check_num_classes(path: str | Path, metadata_classes: int, computed: int | None, where: str) -> None:
    """ValueError when the graph's class count differs from the metadata's; None ``computed``
    (the graph does not say) raises too: a count that cannot be checked is not believed."""
    if computed is None:
        raise ValueError(f"{Path(path).name}: cannot tell how many classes {where} computes, so its metadata "
                         f"({metadata_classes} classes) cannot be checked; export it with drn-export")
    if computed != metadata_classes:
        raise ValueError(f"{Path(path).name}: metadata lists {metadata_classes} classes but {where} computes "
                         f"{computed}: the sidecar/metadata does not belong to this model (re-export it with drn-export)")


def onnx_num_classes(model) -> int | None:
    """Size of the class axis the graph's ArgMax reduces (from ONNX shape inference); ``model``
    is an onnx.ModelProto. None when there is no ArgMax or its input has no static class size."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    shapes = {v.name: v.type.tensor_type.shape for v in (*g.value_info, *g.output, *g.input)}
    for node in g.node:
        if node.op_type != "ArgMax":
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        shape = shapes.get(node.input[0])
        if shape is None or len(shape.dim) <= axis:
            return None
        dim = shape.dim[axis]
        return int(dim.dim_value) if dim.HasField("dim_value") else None
    return None
