"""The trtexec command line equivalent to a drn-build-engine build (printed before every build).

trtexec follows the same plan (inference/trt_versions.py): from TensorRT 10 ``--stronglyTyped``
on the graph that carries the precision; on 8.6 ``--fp16`` / ``--int8 --fp16`` (the int8 graph
is the Q/DQ one, so trtexec needs no calibration data). An engine built this way is registered
for the node with ``drn-build-engine MODEL.onnx --adopt ENGINE``.
"""
from __future__ import annotations

import shlex
from pathlib import Path

from drn_perception.inference.trt_profile import Profile, shape_str
from drn_perception.inference.trt_versions import BuildPlan

INPUT = "images"
PROG = "drn-build-engine"


def trtexec_command(graph: Path, engine: Path, plan: BuildPlan, profile: Profile, workspace_mb: int | None = None,
                    timing_cache: Path | None = None, dla_core: int | None = None) -> list[str]:
    """The trtexec invocation that builds ``graph`` (the graph ``plan`` parses) like drn-build-engine."""
    cmd = [
        "trtexec",
        f"--onnx={graph}",
        f"--saveEngine={engine}",
        f"--minShapes={INPUT}:{shape_str(profile.min)}",
        f"--optShapes={INPUT}:{shape_str(profile.opt)}",
        f"--maxShapes={INPUT}:{shape_str(profile.max)}",
    ]
    if plan.strongly_typed:
        cmd.append("--stronglyTyped")
    else:
        cmd += [f"--{flag.lower()}" for flag in plan.builder_flags]
    if workspace_mb is not None:
        cmd.append(f"--memPoolSize=workspace:{workspace_mb}")
    if timing_cache is not None:
        cmd.append(f"--timingCacheFile={timing_cache}")
    if dla_core is not None:
        cmd += [f"--useDLACore={dla_core}", "--allowGPUFallback"]
    return cmd


def describe_trtexec(onnx: Path, graph: Path | None, engine: Path, plan: BuildPlan, profile: Profile,
                     workspace_mb: int | None = None, timing_cache: Path | None = None,
                     dla_core: int | None = None) -> str:
    """The trtexec line for ``plan``, how to write the graph it needs (``graph`` None: written by
    drn-build-engine from ``onnx``), and the --adopt line."""
    lines = []
    if graph is None:
        graph = onnx.with_name(f"{onnx.stem}.trt-{plan.graph}.onnx")
        extra = "" if plan.graph == "fp16" else " --calibration DATA"
        if plan.graph == "int8" and plan.float_precision == "fp32":
            extra += " --float-precision fp32"
        lines += [f"first write the {plan.graph} graph it parses:",
                  f"  drn-quantize {shlex.quote(str(onnx))} --target tensorrt --quantize {plan.graph}{extra} "
                  f"--out {shlex.quote(str(graph))}"]
    lines += [f"equivalent trtexec command ({plan.describe()}):",
              "  " + shlex.join(trtexec_command(graph, engine, plan, profile, workspace_mb, timing_cache, dla_core)),
              f"  then register its engine for the node: {PROG} {shlex.quote(str(onnx))} --adopt "
              f"{shlex.quote(str(engine))} --precision {plan.precision}"]
    return "\n".join(lines)
