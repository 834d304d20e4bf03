"""The TensorRT versions drn_perception supports, and how each one builds each precision.

Plain Python (no tensorrt): the one place that knows the version rules. drn-build-engine asks
:func:`build_plan` and branches on its answer once; the backend asks :func:`check_tensorrt_version`.

The matrix (docs/tensorrt.md):

============  ==================  ==============================================================
TensorRT      JetPack / platform  how fp16 and int8 are built
============  ==================  ==============================================================
8.6           6.0 (CUDA 12.2)     weakly typed: fp16 = fp32 graph + BuilderFlag.FP16; int8 =
                                  Q/DQ graph (fp32 elsewhere, opset 17) + BuilderFlag.INT8/FP16
10.3          6.1 / 6.2 (12.6)    strongly typed network (NetworkDefinitionCreationFlag.STRONGLY_TYPED)
10.13-10.16   7.x (CUDA 13)       from the fp16 graph or the int8 Q/DQ graph (fp16 elsewhere);
11.x          7.2.2+, x86         precision comes from the graph, no builder precision flags
============  ==================  ==============================================================

Strongly typed from 10.x on: the builder flags FP16/INT8 and EXPLICIT_BATCH are deprecated in 10
and gone in 11, and implicit INT8 calibration (IInt8EntropyCalibrator2) is deprecated since 10.1
and gone in 11, so none of them is used at all on 10 or 11; int8 is always explicit (Q/DQ).
TensorRT 8.5 (JetPack 5) is outside the matrix: JetPack 5 is Python 3.8, drn_perception needs
3.10+ (and its parser lacks what 8.6 fixed for these graphs). 9.x was never a JetPack release.
"""
from __future__ import annotations

from dataclasses import dataclass

from drn_perception.inference.base import BackendUnavailable

PRECISIONS = ("fp32", "fp16", "int8")
# (name, first version, first version after) of each supported line, oldest first.
SUPPORTED = (
    ("8.6", (8, 6), (8, 7), "JetPack 6.0"),
    ("10.3", (10, 3), (10, 4), "JetPack 6.1/6.2"),
    ("10.13-10.16", (10, 13), (10, 17), "JetPack 7.x"),
    ("11.x", (11, 0), (12, 0), "JetPack 7.2.2+ / x86"),
)
STRONGLY_TYPED_FROM = (10, 0)


class UnsupportedTensorRT(BackendUnavailable):
    """The installed TensorRT is outside the supported matrix or cannot do what was asked."""


def parse_trt_version(text: str) -> tuple[int, ...]:
    """"10.3.0.30" -> (10, 3, 0, 30). Raises ValueError for anything else."""
    parts = str(text).strip().split(".")
    try:
        version = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"not a TensorRT version: {text!r}") from None
    if len(version) < 2:
        raise ValueError(f"not a TensorRT version: {text!r}")
    return version


def matrix_line(version: tuple[int, ...]) -> str | None:
    """The supported line ``version`` belongs to ('8.6', '10.3', '10.13-10.16', '11.x'), or None."""
    for name, first, after, _ in SUPPORTED:
        if first <= tuple(version[:2]) < after:
            return name
    return None


def supported_text() -> str:
    return ", ".join(f"{name} ({platform})" for name, _, _, platform in SUPPORTED)


def check_tensorrt_version(text: str) -> tuple[int, ...]:
    """The parsed version, or UnsupportedTensorRT (one line: which versions, what to do) outside the matrix."""
    version = parse_trt_version(text)
    if matrix_line(version) is None:
        why = ""
        if version[:2] < (8, 6):
            why = (" (JetPack 5 ships TensorRT 8.5 with Python 3.8; drn_perception needs Python 3.10+: "
                   "upgrade to JetPack 6, or run the .onnx model with the onnxruntime backend)")
        raise UnsupportedTensorRT(
            f"TensorRT {text} is not supported: drn_perception builds and runs engines on TensorRT "
            f"{supported_text()}{why}"
        )
    return version


def strongly_typed(version: tuple[int, ...]) -> bool:
    return tuple(version[:2]) >= STRONGLY_TYPED_FROM


@dataclass(frozen=True)
class BuildPlan:
    """How one TensorRT version builds one precision."""

    precision: str
    strongly_typed: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED (10+), else EXPLICIT_BATCH (8.6)
    graph: str  # the graph it parses: "fp32" (exported), "fp16" (AutoCast) or "int8" (Q/DQ)
    builder_flags: tuple[str, ...]  # BuilderFlag names (8.6 only)
    float_precision: str | None = None  # int8 graphs: fp16 (10+) or fp32 (8.6: opset 17, fp32 Q/DQ scales)

    def describe(self) -> str:
        typing = "strongly typed" if self.strongly_typed else "weakly typed"
        flags = f", BuilderFlag {'+'.join(self.builder_flags)}" if self.builder_flags else ""
        graph = {"fp32": "the exported fp32 graph", "fp16": "the fp16 graph",
                 "int8": f"the int8 Q/DQ graph ({self.float_precision} elsewhere)"}[self.graph]
        return f"{self.precision}: {typing}, from {graph}{flags}"


def build_plan(version: tuple[int, ...], precision: str) -> BuildPlan:
    """How ``version`` builds ``precision``: the one version branch of the build."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: choose {', '.join(PRECISIONS)}")
    if matrix_line(version) is None:
        check_tensorrt_version(".".join(map(str, version)))
    if strongly_typed(version):
        return BuildPlan(precision, True, precision, (), "fp16" if precision == "int8" else None)
    flags = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16")}[precision]
    return BuildPlan(precision, False, "int8" if precision == "int8" else "fp32", flags,
                     "fp32" if precision == "int8" else None)


def graph_problem(plan: BuildPlan, graph: str, float_precision: str | None, version_text: str) -> str | None:
    """Why a graph of kind ``graph`` (fp32/fp16/int8; int8 with ``float_precision`` elsewhere)
    cannot be built as ``plan`` by TensorRT ``version_text``, or None."""
    if graph == plan.graph or (graph == "fp16" == plan.precision and not plan.strongly_typed):
        if graph == "int8" and not plan.strongly_typed and float_precision != "fp32":
            return (f"TensorRT {version_text} reads Q/DQ scales in fp32 and parses opsets up to 17: write the int8 "
                    "graph with drn-quantize ... --target tensorrt --quantize int8 --float-precision fp32")
        return None
    if graph != "fp32":
        return (f"this is a {graph} graph (written by drn-quantize --target tensorrt), which builds as {graph}, "
                f"not {plan.precision}: pass --precision {graph}, or the exported fp32 model")
    return None  # an exported fp32 graph: drn-build-engine writes the graph the plan needs first
