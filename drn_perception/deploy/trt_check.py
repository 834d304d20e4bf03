"""Would TensorRT's ONNX parser take this graph? A check per TensorRT version, without TensorRT.

``check_model(model_or_path)`` reads any ONNX model and returns a ``TrtReport``: per supported
version (trt_rules.VERSIONS: 8.6, 10.3, 10.13-10.16, 11) the nodes the parser (or TensorRT's
network rules right after it) would refuse, each with the reason, and warnings for what imports
but binds or computes differently from ONNX Runtime. The rules and where each comes from are in
deploy/trt_rules.py; this module only applies them:

- the operator has an importer in that release (or is a model-local function, 9.0+);
- every tensor's type has a TensorRT type there, and the operator takes its input's type;
- uint8 only as a network input feeding Casts to float/half, or a network output from such a Cast;
- INT64: taken natively from 10.0; 8.6 narrows it to INT32, so INT64 network inputs/outputs
  bind as INT32 there (a warning; shape tensors such as Shape -> Gather -> Slice are fine);
- the attributes the importers refuse (Resize, Pad, Slice/Squeeze/Unsqueeze/Reduce axes,
  auto_pad, pooling rank, TopK, Dropout, Constant);
- Q/DQ in TensorRT's form: symmetric (zero point 0, never uint8), a type the release quantizes
  to, positive scales of a type it reads, per-tensor or per-axis along a stated axis.

``drn-build-engine --check MODEL.onnx`` prints the report (exit 0: every version accepts, 1: some
refuse, 2: not a readable model); drn-export runs it on every graph it writes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from drn_perception.deploy import trt_rules as R

PARSER, BUILDER = "parser", "builder"
_FLOAT_TYPES = (1, 10)  # TensorProto FLOAT, FLOAT16: what uint8 converts to and from
_REDUCE_OPS = frozenset({"ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
                         "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare"})
_KERNEL_OPS = frozenset({"Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool"})
_QDQ = frozenset({"QuantizeLinear", "DequantizeLinear"})


class CheckError(ValueError):
    """The file is not an ONNX model this check can read."""


@dataclass(frozen=True)
class Finding:
    node: str  # node name, or the tensor name for a graph input/output
    op: str
    reason: str
    stage: str = PARSER  # PARSER: the ONNX parser stops; BUILDER: TensorRT's network rules refuse it

    def __str__(self) -> str:
        return f"{self.node or '(unnamed)'} [{self.op}]: {self.reason}"


@dataclass
class TrtReport:
    """Per TensorRT version: the findings that stop the import, and the warnings."""
    source: str
    versions: tuple[str, ...]
    _refused: dict[str, list[Finding]] = field(default_factory=dict)
    _warned: dict[str, list[Finding]] = field(default_factory=dict)

    def refusals(self, version: str) -> list[Finding]:
        return list(self._refused[resolve_version(version)])

    def warnings(self, version: str) -> list[Finding]:
        return list(self._warned[resolve_version(version)])

    def accepted(self, version: str) -> bool:
        return not self._refused[resolve_version(version)]

    def refused_versions(self) -> list[str]:
        return [v for v in self.versions if self._refused[v]]

    @property
    def ok(self) -> bool:
        return not self.refused_versions()

    def problem(self) -> str:
        """'' when every checked version accepts the graph, else one line: who refuses, and the first reason."""
        refused = self.refused_versions()
        if not refused:
            return ""
        found = self._refused[refused[0]]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        return f"TensorRT {', '.join(refused)} would refuse {self.source}: {found[0]}{more}"

    def format(self, warnings: bool = True) -> str:
        lines = []
        for v in self.versions:
            info = next(x for x in R.VERSIONS if x.name == v)
            refused = self._refused[v]
            head = f"TensorRT {v} ({info.jetpack}): "
            lines.append(head + ("OK" if not refused else f"REFUSED ({len(refused)} finding(s))"))
            lines += [f"  refused ({f.stage}): {f}" for f in refused]
            if warnings:
                lines += [f"  warning: {f}" for f in self._warned[v]]
        return "\n".join(lines)


def resolve_version(name: str) -> str:
    """'8.6', '10.3', '10.13'..'10.16' or '10.13-10.16', '11' or '11.x' -> the rule set's name."""
    text = str(name).strip().removesuffix(".x")
    if text in R.VERSION_NAMES:
        return text
    parts = text.split(".")
    if parts[0] == "11":
        return "11"
    if parts[0] == "10" and len(parts) > 1 and parts[1].isdigit() and 13 <= int(parts[1]) <= 16:
        return "10.13-10.16"
    if parts[:2] in (["10", "3"], ["8", "6"]):
        return ".".join(parts[:2])
    raise ValueError(f"TensorRT {name} is not a supported version (supported: {', '.join(R.VERSION_NAMES)})")


def check_model(model_or_path, versions=None, source: str | None = None) -> TrtReport:
    """Check an ``onnx.ModelProto`` or a path; ``versions`` defaults to every supported one;
    ``source`` names the model in messages (default: the path, or the graph's name)."""
    import onnx

    if isinstance(model_or_path, onnx.ModelProto):
        model, source = model_or_path, source or model_or_path.graph.name or "model"
    else:
        path = Path(model_or_path)
        try:
            model = onnx.load(str(path), load_external_data=False)
        except FileNotFoundError:
            raise CheckError(f"{path}: no such file") from None
        except Exception as exc:  # protobuf's DecodeError and friends: not an ONNX file
            raise CheckError(f"{path}: not an ONNX model ({type(exc).__name__}: {exc})") from None
        if not model.graph.node:
            raise CheckError(f"{path}: not an ONNX model (no graph nodes)")
        source = source or str(path)
    names = tuple(dict.fromkeys(resolve_version(v) for v in (versions or R.VERSION_NAMES)))
    graph = _Graph(model)
    report = TrtReport(source, names)
    for v in names:
        checker = _VersionCheck(graph, v)
        checker.run()
        report._refused[v], report._warned[v] = checker.refused, checker.warned
    return report


class _Graph:
    """What the rules read: types, shapes and constant values of every tensor, and the uses."""

    def __init__(self, model):
        import onnx
        from onnx import numpy_helper, shape_inference

        try:
            inferred = shape_inference.infer_shapes(model, strict_mode=False)
        except Exception:  # inference is a help, not a requirement: declared types still count
            inferred = model
        self.model = inferred
        self.opset = next((o.version for o in inferred.opset_import if o.domain in ("", "ai.onnx")), 0)
        self.functions = {(f.domain, f.name) for f in inferred.functions}
        self.types: dict[str, int] = {}
        self.shapes: dict[str, list] = {}
        self.consts: dict[str, np.ndarray] = {}
        self.nodes: list = []
        self.consumers: dict[str, list] = {}
        self.graph_inputs = {i.name for i in inferred.graph.input}
        self.graph_outputs = {o.name for o in inferred.graph.output}
        self._walk(inferred.graph, onnx, numpy_helper)

    def _walk(self, g, onnx, numpy_helper):
        for vi in [*g.input, *g.output, *g.value_info]:
            t = vi.type.tensor_type
            if t.elem_type:
                self.types[vi.name] = t.elem_type
            if t.HasField("shape"):
                self.shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        for init in g.initializer:
            self.types[init.name] = init.data_type
            self.shapes[init.name] = list(init.dims)
            self.consts[init.name] = _to_array(numpy_helper, init)
        for node in g.node:
            self.nodes.append(node)
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)
            if node.op_type == "Constant" and node.output:
                for a in node.attribute:
                    if a.name == "value":
                        self.types[node.output[0]] = a.t.data_type
                        self.shapes[node.output[0]] = list(a.t.dims)
                        self.consts[node.output[0]] = _to_array(numpy_helper, a.t)
            for a in node.attribute:  # If / Loop / Scan bodies are imported node by node too
                for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                    self._walk(sub, onnx, numpy_helper)

    def type_name(self, tensor: str, version: str) -> str | None:
        t = self.types.get(tensor)
        return None if t is None else R.DTYPES[version].get(t, f"<{_onnx_type(t)}>")


def _to_array(numpy_helper, tensor):
    try:
        return numpy_helper.to_array(tensor)
    except Exception:  # external data not loaded, or a type numpy lacks: value unknown
        return None


def _onnx_type(t: int) -> str:
    import onnx

    return onnx.TensorProto.DataType.Name(t)


def _attr(node, name, default=None):
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


class _VersionCheck:
    def __init__(self, graph: _Graph, version: str):
        self.g, self.v = graph, version
        self.ops, self.refused, self.warned = R.OPS[version], [], []

    def refuse(self, node, reason, stage=PARSER):
        self.refused.append(Finding(node.name, node.op_type, reason, stage))

    def warn(self, node, reason):
        self.warned.append(Finding(node.name, node.op_type, reason))

    def is_const(self, name):
        return name in self.g.consts

    def run(self):
        lo, hi = next(x.opsets for x in R.VERSIONS if x.name == self.v)
        g = self.g
        if not lo <= g.opset <= hi:
            self.warned.append(Finding("", "model", f"opset {g.opset}: TensorRT {self.v} documents opsets {lo}-{hi}; "
                                       "operators whose form changed after that may import differently"))
        self.io_rules()
        for node in g.nodes:
            if not self.op_rule(node) or not self.dtype_rules(node):
                continue  # one reason per node is enough where the rest would follow from it
            self.uint8_rules(node)
            check = getattr(self, f"rule_{node.op_type}", None)
            if node.op_type in _REDUCE_OPS:
                check = self.rule_Reduce
            elif node.op_type in _KERNEL_OPS:
                self.rule_kernel(node)
            if check:
                check(node)

    # --- graph inputs and outputs -------------------------------------------------------------
    def io_rules(self):
        g, v = self.g, self.v
        for name in sorted(g.graph_inputs | g.graph_outputs):
            kind = "input" if name in g.graph_inputs else "output"
            tname = g.type_name(name, v)
            if tname is not None and tname.startswith("<"):
                self.refused.append(Finding(name, f"graph {kind}", f"type {tname[1:-1]} has no TensorRT type in {v}"))
            elif g.types.get(name) == 7 and v == "8.6":
                self.warned.append(Finding(name, f"graph {kind}", "INT64: TensorRT 8.6 binds it as INT32 (10.x: "
                                           "INT64); cast to INT32 in the graph for one binding on every version"))
            if tname == "UINT8" and kind == "input":
                for user in g.consumers.get(name, []):
                    if user.op_type != "Cast" or _attr(user, "to") not in _FLOAT_TYPES:
                        self.refuse(user, f"reads the uint8 network input {name!r}: a uint8 input may only feed Casts "
                                    "to float/half (TensorRT DataType::kUINT8)", BUILDER)

    # --- the operator exists ------------------------------------------------------------------
    def op_rule(self, node) -> bool:
        op = node.op_type
        if op in self.ops or op in R.TRT_OPS[self.v]:
            return True
        if (node.domain, op) in self.g.functions:
            if R.LOCAL_FUNCTIONS[self.v]:
                return False  # inlined by the parser; its body is not checked here
            self.refuse(node, "model-local function: TensorRT 8.6's parser has no importer for these (9.0+)")
            return False
        where = f" (domain {node.domain})" if node.domain not in ("", "ai.onnx") else ""
        self.refuse(node, f"no importer for {op}{where} in TensorRT {self.v}: the parser would look for a plugin "
                    "of that name")
        return False

    # --- types ----------------------------------------------------------------------------------
    def dtype_rules(self, node) -> bool:
        g, v, op = self.g, self.v, node.op_type
        for name in [*node.input, *node.output]:
            tname = g.type_name(name, v) if name else None
            if tname is not None and tname.startswith("<"):
                self.refuse(node, f"tensor {name!r} is {tname[1:-1]}, which TensorRT {v} has no type for")
                return False
        if op in _QDQ or op in ("Cast", "CastLike") or op not in self.ops:
            return True
        allowed = self.ops[op]
        if op in R.TYPED_BY_OUTPUT:
            idx, names = "output", [node.output[0]] if node.output else []
        elif op in R.ALL_INPUTS:
            idx, names = "input", list(node.input)
        else:
            picks = R.TYPED_INPUTS.get(op, (0,))
            idx, names = "input", [node.input[i] for i in picks if i < len(node.input)]
        for name in names:
            tname = g.type_name(name, v) if name else None
            if tname not in (None, "UINT8") and tname not in allowed:
                self.refuse(node, f"{op} takes {', '.join(t for t in R.TYPE_NAMES if t in allowed)} in TensorRT {v} "
                            f"(operators.md); {idx} {name!r} is {tname}")
        return True

    def uint8_rules(self, node):
        g = self.g
        if node.op_type in ("Constant", "QuantizeLinear"):
            return  # uint8 weights import as INT32, a Q's output as INT8: the qdq rules judge those
        for name in node.output:
            if name and g.types.get(name) == 2 and name not in g.graph_outputs:
                self.refuse(node, f"output {name!r} is uint8 and not a network output: \"TensorRT does not support "
                            "UINT8 types for intermediate tensors\" (ModelImporter.cpp, 8.6-GA and 10.x)")
            elif name in g.graph_outputs and g.types.get(name) == 2:
                src = g.types.get(node.input[0]) if node.input else None
                if node.op_type != "Cast" or src not in _FLOAT_TYPES:
                    self.refuse(node, f"uint8 network output {name!r} must come from a Cast of a float/half tensor "
                                "(TensorRT DataType::kUINT8)", BUILDER)

    def rule_Cast(self, node):
        g, v = self.g, self.v
        to = _attr(node, "to")
        if to is not None and to not in R.DTYPES[v]:
            self.refuse(node, f"casts to {_onnx_type(to)}, which TensorRT {v} has no type for")
            return
        src = g.types.get(node.input[0]) if node.input else None
        if src == 2 and to not in _FLOAT_TYPES:
            self.refuse(node, f"casts uint8 to {_onnx_type(to)}: uint8 converts only to/from float and half "
                        "(TensorRT DataType::kUINT8)", BUILDER)
        allowed = self.ops["Cast"]
        for tname in (g.type_name(node.input[0], v) if node.input else None, R.DTYPES[v].get(to)):
            if tname is not None and tname not in allowed:
                self.refuse(node, f"Cast takes {', '.join(t for t in R.TYPE_NAMES if t in allowed)} in TensorRT {v} "
                            f"(operators.md), not {tname}")

    # --- attributes -----------------------------------------------------------------------------
    def rule_Resize(self, node):
        mode = _text(_attr(node, "mode", b"nearest"))
        if mode not in R.RESIZE_MODES:
            self.refuse(node, f"mode {mode!r}: the importer takes nearest, linear, cubic")
        coord = _text(_attr(node, "coordinate_transformation_mode", b"half_pixel"))
        if self.g.opset >= 11 and coord not in R.RESIZE_COORDINATE_MODES:
            self.refuse(node, f"coordinate_transformation_mode {coord!r}: TensorRT takes "
                        f"{', '.join(sorted(R.RESIZE_COORDINATE_MODES))}")
        nearest = _text(_attr(node, "nearest_mode", b"round_prefer_floor"))
        if self.v == "8.6" and coord == "tf_half_pixel_for_nn" and nearest != "round_prefer_floor":
            self.refuse(node, "tf_half_pixel_for_nn takes only nearest_mode round_prefer_floor in TensorRT 8.6")
        if _attr(node, "antialias", 0):
            self.refuse(node, "antialias=1: TensorRT's resize does not antialias (operators.md 10.x; 8.6 predates "
                        "the attribute and would ignore it)")
        policy = _text(_attr(node, "keep_aspect_ratio_policy", b"stretch"))
        if policy != "stretch":
            self.refuse(node, f"keep_aspect_ratio_policy {policy!r}: TensorRT takes only 'stretch' (operators.md 10.x)")
        scales_at = 2 if self.g.opset >= 11 else 1
        scales = self.g.consts.get(node.input[scales_at]) if len(node.input) > scales_at else None
        inner = R.RESIZE_INNER_DIMS.get(mode)
        if inner and scales is not None and scales.size > inner and np.any(scales.reshape(-1)[:-inner] != 1):
            self.refuse(node, f"{mode} resize of an axis other than the last {inner} (scales {scales.tolist()}): "
                        "canUseNDResize refuses it")

    def rule_Pad(self, node):
        mode = _text(_attr(node, "mode", b"constant"))
        if mode not in R.PAD_MODES[self.v]:
            self.refuse(node, f"mode {mode!r}: TensorRT {self.v} pads {', '.join(sorted(R.PAD_MODES[self.v]))}")
        if len(node.input) > 3 and node.input[3]:
            rule = R.PAD_AXES[self.v]
            if rule == "none" or (rule == "constant" and not self.is_const(node.input[3])):
                what = "an axes input" if rule == "none" else "a non-constant axes input"
                self.refuse(node, f"{what}: TensorRT {self.v} does not support dynamic axes for pad")

    def rule_Slice(self, node):
        if len(node.input) > 3 and node.input[3] and not self.is_const(node.input[3]) \
                and not R.SLICE_TENSOR_AXES[self.v]:
            self.refuse(node, f"axes from a tensor: TensorRT {self.v} needs constant Slice axes (tensors from 10.3)")

    def _const_axes(self, node, index, what):
        if len(node.input) > index and node.input[index] and not self.is_const(node.input[index]):
            self.refuse(node, f"{what} axes from a tensor: TensorRT needs them constant (an initializer; fold "
                        "constants first, e.g. polygraphy surgeon sanitize --fold-constants)")

    def rule_Squeeze(self, node):
        self._const_axes(node, 1, "Squeeze")

    def rule_Unsqueeze(self, node):
        self._const_axes(node, 1, "Unsqueeze")

    def rule_Reduce(self, node):
        self._const_axes(node, 1, node.op_type)

    def rule_kernel(self, node):
        pad = _text(_attr(node, "auto_pad", b"NOTSET"))
        if pad not in R.AUTO_PAD:
            self.refuse(node, f"auto_pad {pad!r}: getKernelParams takes NOTSET, SAME_UPPER, SAME_LOWER, VALID")
        rank = len(self.g.shapes.get(node.input[0], [])) if node.input else 0
        if node.op_type == "ConvTranspose" and rank and not 3 <= rank <= 5:
            self.refuse(node, f"a rank-{rank} input: TensorRT deconvolves 1D, 2D or 3D inputs (rank 3-5)")
        if node.op_type in ("MaxPool", "AveragePool") and rank and not 3 <= rank <= 5:
            self.refuse(node, f"a rank-{rank} input: poolingHelper pools 2D or 3D (1D as 2D), rank 3-5")
        if node.op_type in ("MaxPool", "AveragePool", "LpPool") and any(d != 1 for d in _attr(node, "dilations", [])):
            self.refuse(node, "pooling dilations other than 1: poolingHelper refuses them (8.6-GA, 10.x)")
        if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]:
            self.refuse(node, "the Indices output: TensorRT's MaxPool does not produce it (operators.md)")

    def rule_TopK(self, node):
        if _attr(node, "sorted", 1) != 1 and self.v != "8.6":
            self.refuse(node, f"sorted=0: operators.md ({self.v}) says sorted must be 1")
        k = self.g.consts.get(node.input[1]) if len(node.input) > 1 else None
        if k is not None and k.size and int(k.reshape(-1)[0]) >= 3840:
            self.refuse(node, f"K={int(k.reshape(-1)[0])}: TensorRT's TopK takes K < 3840 (operators.md 10.x)")

    def rule_Dropout(self, node):
        if len(node.input) > 2 and node.input[2]:
            value = self.g.consts.get(node.input[2])
            if value is None or bool(value.reshape(-1)[0]):
                self.refuse(node, "is_training must be an initializer that is False (operators.md)")

    def rule_Constant(self, node):
        for a in node.attribute:
            if a.name in ("sparse_value", "value_string", "value_strings"):
                self.refuse(node, f"attribute {a.name}: the Constant importer takes value/value_float(s)/value_int(s)")

    # --- Q/DQ ---------------------------------------------------------------------------------
    def rule_QuantizeLinear(self, node):
        self.qdq(node, quantize=True)

    def rule_DequantizeLinear(self, node):
        self.qdq(node, quantize=False)

    def qdq(self, node, quantize):
        g, v = self.g, self.v
        x = node.input[0]
        scale = node.input[1] if len(node.input) > 1 else ""
        zp = node.input[2] if len(node.input) > 2 else ""
        if not scale:
            self.refuse(node, "no scale input")
            return
        if not zp and R.QDQ_NEEDS_ZERO_POINT[v]:
            self.refuse(node, "no zero point input: TensorRT 8.6 needs all 3 inputs (an int8 zero point of 0)")
        qtype = g.type_name(zp, v) if zp else g.type_name(node.output[0] if quantize else x, v)
        if qtype == "UINT8":  # uint8 weights import as INT32; the helper then warns and quantizes to INT8
            self.refuse(node, "uint8 (asymmetric) Q/DQ: TensorRT quantizes to INT8 instead (zero point 0, else "
                        "refused), so values above 127*scale clip: not what ONNX Runtime computes; write int8 "
                        "symmetric Q/DQ")
        elif qtype is not None and qtype not in R.QDQ_TYPES[v]:
            self.refuse(node, f"quantizes to {qtype}: TensorRT {v} takes {', '.join(sorted(R.QDQ_TYPES[v]))}")
        zp_value = g.consts.get(zp) if zp else None
        if zp_value is not None and np.any(zp_value.astype(np.float64) != 0):
            self.refuse(node, "zero point is not 0: TensorRT supports symmetric quantization only")
        stype = g.type_name(scale, v)
        if stype is not None and stype not in R.QDQ_SCALE_TYPES[v]:
            self.refuse(node, f"scale is {stype}: TensorRT {v} reads {', '.join(sorted(R.QDQ_SCALE_TYPES[v]))} scales")
        s_value = g.consts.get(scale)
        if s_value is not None and not np.all(s_value.astype(np.float64) > 0):
            self.refuse(node, "scale coefficients must all be positive")
        x_shape = g.shapes.get(x)
        if qtype == "INT4" and x_shape and x_shape[-1] is not None and x_shape[-1] % 2:
            self.refuse(node, "INT4 quantization of a tensor with an odd last dimension")
        s_shape = list(s_value.shape) if s_value is not None else g.shapes.get(scale)
        if s_shape is None or int(np.prod(s_shape or [1])) == 1:
            return  # per tensor
        rank = len(x_shape) if x_shape is not None else None
        if len(s_shape) == 1:
            axis = _attr(node, "axis")
            if axis is None:
                self.refuse(node, "per-axis scales without an axis attribute: ONNX means axis 1, TensorRT's importer "
                            "takes axis 0; state the axis")
                return
            if rank:
                axis = axis + rank if axis < 0 else axis
                dim = x_shape[axis] if 0 <= axis < rank else None
                if dim is not None and dim != s_shape[0]:
                    self.refuse(node, f"{s_shape[0]} scales for {dim} channels on axis {axis}")
            if quantize and not self.is_const(x):
                per_axis = R.QDQ_PER_AXIS_ACTIVATIONS[v]
                reason = "per-axis scales on an activation: TensorRT quantizes activations per tensor"
                if per_axis is None:
                    self.warn(node, reason + " up to 10.3; not confirmed for this release")
                elif not per_axis:
                    self.refuse(node, reason)
        elif rank is not None and len(s_shape) == rank and R.QDQ_BLOCKED[v]:
            pass  # blocked quantization (10.0+): one blocked axis, the others whole
        else:
            self.refuse(node, f"scale of rank {len(s_shape)}: TensorRT {v} takes a scalar or a 1-D per-axis scale"
                        + (" (blocked scales from 10.0)" if not R.QDQ_BLOCKED[v] else ""))


def run_check(path, prog: str = "drn-build-engine --check") -> int:
    """The command line's check: the report on stdout; 0 all versions accept, 1 some refuse, 2 bad file."""
    import sys

    try:
        report = check_model(path)
    except CheckError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print(f"{report.source}:")
    print(report.format())
    refused = report.refused_versions()
    if refused:
        print(f"{prog}: TensorRT {', '.join(refused)} would refuse {report.source}", file=sys.stderr)
        return 1
    return 0
