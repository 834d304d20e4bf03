"""A graph rewrite the OpenVINO backend applies before compiling: the labels head in phase form.

The exported graph ends with the authors' fixed bilinear up-sampling (a transposed grouped
convolution, stride 8, kernel 16) and an ArgMax over the class axis at full resolution. On
OpenVINO's CPU plugin these two are the slowest part of a fast frame: DRN-C-26 at 512x1024 on
a Xeon with AMX spends ~35 ms of a ~120 ms int8 frame there (TopK on the blocked layout the
up-sampling leaves, 24-27 ms), more than all of levels 5-8 together.

The same labels come from the low-resolution logits in *phase form*: a transposed convolution
with stride s writes each output pixel (s*a + r, s*b + q) from a small window of input pixels
around (a, b), with weights that depend only on the phase (r, q). So one stride-1 grouped
transposed convolution with s*s outputs per class (window 3x3 for the authors' kernel 16,
stride 8, padding 4; the taps a phase does not use are zero) gives every phase of every class
at the network's own 1/8 resolution; the ArgMax over classes runs there, per phase, in plain
layout; and the int32 labels are put back into pixel order (depth-to-space, 2 MB at 512x1024).
As many floats as the full-resolution logits, but no TopK on a blocked layout: the head takes
~17 ms of that frame instead of ~35 (of which 11 ms are a layout reorder the plugin inserts
before the ArgMax, 1.5 ms the ArgMax).

Exactness: each output is the same sum of the same four products; only the order of the
additions may differ, so labels can differ only where two classes tie to the last bit of
fp32. The stride-1 up-sampling is a transposed convolution, which the CPU plugin runs in f32
whatever the inference precision (like the original one), so the head stays f32 under bf16;
the backend checks that in the compiled model (``head_precision``) and compiles the graph as
it is where it is not. Confidence (softmax) still comes from the original full-resolution
logits, which stay in the graph when that output is asked for.

The rewrite applies only to the pattern it recognises (a TopK over the classes of a grouped
transposed convolution with one input and one output channel per group, constant weights, no
output padding, output s*h x s*w); anything else is compiled as it is.
"""
from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops

HEAD_NAME = "drn_labels_phase_upsample"  # friendly name of the rewritten up-sampling
MAX_STRIDE = 32  # up-sampling factors the rewrite takes (the authors' is 8)


def _constant(output) -> np.ndarray | None:
    """The value of a constant input (through the Reshape/Convert the ONNX reader adds), else None."""
    node = output.get_node()
    kind = node.get_type_name()
    if kind == "Constant":
        return np.array(node.get_data())
    if kind in ("Reshape", "Convert") and node.get_output_partial_shape(0).is_static:
        value = _constant(node.input_value(0))
        if value is not None:
            return value.reshape(list(node.get_output_shape(0))).astype(np.float32)
    return None


def phase_weights(kernel: np.ndarray, stride: int, pad: int) -> tuple[np.ndarray, int, int] | None:
    """(stride*stride, window, window) correlation weights of a stride-``stride`` transposed
    convolution's (k, k) ``kernel`` with padding ``pad``, and the window's reach before/after
    the centre pixel. None where the transposed convolution's output is not stride * input."""
    k = kernel.shape[-1]
    if kernel.shape[-2] != k or k - stride - 2 * pad != 0:
        return None
    # out[s*a + r] = sum_i x[i] * kernel[s*a + r + pad - s*i]; with i = a + d, tap t = r + pad - s*d
    d_lo = min(-((k - 1 - r - pad) // stride) for r in range(stride))
    d_hi = max((r + pad) // stride for r in range(stride))
    window = d_hi - d_lo + 1
    w = np.zeros((stride * stride, window, window), np.float32)
    for r in range(stride):
        for q in range(stride):
            for row, d in enumerate(range(d_lo, d_hi + 1)):
                for col, e in enumerate(range(d_lo, d_hi + 1)):
                    t, u = r + pad - stride * d, q + pad - stride * e
                    if 0 <= t < k and 0 <= u < k:
                        w[r * stride + q, row, col] = kernel[t, u]
    return w, -d_lo, d_hi


def rewrite_labels_head(model: ov.Model) -> bool:
    """Rewrite ``model``'s labels head in phase form, in place; False (model untouched) where
    the pattern is not there."""
    for topk in model.get_ordered_ops():
        if topk.get_type_name() == "TopK" and _rewrite(topk):
            model.validate_nodes_and_infer_types()
            return True
    return False


def _rewrite(topk) -> bool:
    attrs = topk.get_attributes()
    k = _constant(topk.input_value(1))
    if attrs["axis"] != 1 or k is None or int(k.reshape(-1)[0]) != 1:
        return False
    up = topk.input_value(0).get_node()
    while up.get_type_name() == "Convert" and up.get_attributes()["destination_type"] == "f32":
        up = up.input_value(0).get_node()
    if up.get_type_name() != "GroupConvolutionBackpropData" or up.get_input_size() != 2:
        return False
    a = up.get_attributes()
    weights = _constant(up.input_value(1))  # (groups, in per group, out per group, kh, kw)
    stride = a["strides"][0]
    plain = (len(set(a["strides"])) == 1 and len(set(a["pads_begin"] + a["pads_end"])) == 1 and a["auto_pad"] == "explicit"
             and not any(a["output_padding"]) and all(x == 1 for x in a["dilations"]))
    if (not plain or weights is None or weights.ndim != 5 or weights.shape[1:3] != (1, 1)
            or not 2 <= stride <= MAX_STRIDE or not up.input_value(0).get_partial_shape()[1].is_static):
        return False
    classes = weights.shape[0]
    if any(not np.array_equal(weights[c], weights[0]) for c in range(1, classes)):
        return False  # one kernel for all classes (the authors' fixed bilinear weights)
    found = phase_weights(weights[0, 0, 0], stride, a["pads_begin"][0])
    if found is None:
        return False
    w, before, after = found
    s2 = stride * stride
    # stride-1 transposed convolution == correlation with the flipped window; filters (G, 1, s*s, win, win)
    filters = np.ascontiguousarray(np.broadcast_to(w[:, ::-1, ::-1][None, None], (classes, 1, *w.shape)))
    x = up.input_value(0)
    phases = ops.group_convolution_backprop_data(x, ops.constant(filters), strides=[1, 1], pads_begin=[after, after],
                                                 pads_end=[before, before], dilations=[1, 1], output_padding=[0, 0],
                                                 name=HEAD_NAME)
    shape = ops.shape_of(x, "i64")
    n, hw = ops.gather(shape, ops.constant([0], np.int64), 0), ops.gather(shape, ops.constant([2, 3], np.int64), 0)
    by_class = ops.reshape(phases, ops.concat([n, ops.constant([classes, s2], np.int64), hw], 0), False)
    best = ops.topk(by_class, ops.constant(1, np.int64), 1, attrs["mode"], attrs["sort"], stable=attrs.get("stable", False),
                    index_element_type=topk.get_output_element_type(1).get_type_name())
    grid = ops.reshape(best.output(1), ops.concat([n, ops.constant([stride, stride], np.int64), hw], 0), False)
    pixels = ops.transpose(grid, ops.constant([0, 3, 1, 4, 2], np.int64))  # (N, h, s, w, s)
    full = ops.multiply(hw, ops.constant(stride, np.int64))
    labels = ops.reshape(pixels, ops.concat([n, ops.constant([1], np.int64), full], 0), False)
    for target in list(topk.output(1).get_target_inputs()):
        target.replace_source_output(labels.output(0))
    return True


def head_precision(compiled: ov.CompiledModel) -> str | None:
    """The precision the compiled model runs the rewritten up-sampling in (None: not rewritten)."""
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if "originalLayersNames" in info and HEAD_NAME in info["originalLayersNames"].astype(str).split(","):
            return info["runtimePrecision"].astype(str).lower() if "runtimePrecision" in info else None
    return None
