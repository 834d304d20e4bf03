"""Graphs for TensorRT's precisions, written with NVIDIA ModelOpt (``nvidia-modelopt``) on the CPU.

TensorRT 11 has no BuilderFlag.FP16/INT8 and no implicit calibration: a network is strongly
typed and its precision comes from the graph. These writers make those graphs from an exported
fp32 model (uint8 NHWC in, int32 labels + float confidence out; the interface is kept):

* ``fp16``: ModelOpt AutoCast (``modelopt.onnx.autocast.convert_to_mixed_precision``): fp16
  weights and activations, with the nodes in :data:`FP16_KEEP_FP32_OPS` kept in fp32 (the
  uint8 -> float normalisation and the softmax/confidence tail: measured, see
  benchmarks/README.md) and any node whose activations leave fp16's safe range on the reference
  frames kept in fp32 by AutoCast itself. keep_io_types: the uint8 input feeds a Cast as before.
* ``int8``: explicit Q/DQ (``modelopt.onnx.quantization.quantize``, quantize_mode int8):
  symmetric int8 (zero point 0) as TensorRT's explicit quantization takes it, weights per output
  channel, activation ranges calibrated on the CPU from the frames drn-quantize reads
  (deploy/calibration.py). As for the ONNX Runtime int8 graph (deploy/quantize.py), the layers
  at 1/2 of the input resolution or finer and the classifier stay in float (``float_stride``,
  ``quantize_classifier``), and so does the bilinear upsampling after the classifier
  (:data:`FLOAT_OP_TYPES`): the argmax reads float logits. The float parts are fp16 (``high_precision="fp16"``, opset 19:
  TensorRT 10.x/11) or fp32 (``"fp32"``, opset 17: also TensorRT 8.6, whose parser documents
  opsets up to 17 and which then picks fp16 itself under BuilderFlag.FP16).

Each graph gets the exported model's sidecar with a ``tensorrt_graph`` record (precision, tool,
what stayed in float, calibration), which drn-build-engine reads to build it strongly typed.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np

from drn_perception.deploy.graph_files import input_name, read_sidecar
from drn_perception.model_info import ModelInfo, sha256_file, sidecar_path

if TYPE_CHECKING:
    from drn_perception.inference.trt_versions import BuildPlan

GRAPH_PRECISIONS = ("fp16", "int8")
HIGH_PRECISIONS = ("fp16", "fp32")
# What AutoCast keeps in fp32 besides what it finds out of range. Shipped model, 256x512, 8 scenes:
# labels equal to fp32 99.986% with AutoCast's own choice, the same with these in fp32 (the
# confidence then matches fp32 to 1e-6 instead of 1e-3); see benchmarks/README.md.
FP16_KEEP_FP32_OPS = ("Softmax", "ReduceMax", "ArgMax", "Div", "Sub")
# ModelOpt's calibrators: max (the largest |activation| over the frames) kept more labels than
# entropy on the shipped model (99.64% vs 99.50%, benchmarks/README.md).
INT8_METHODS = ("max", "entropy")
# The fixed bilinear upsampling stays float, as in the ONNX Runtime int8 graph: quantising its input
# quantises the logits the argmax reads (shipped model, 8 scenes: 99.667% with it in float, 99.636% without).
FLOAT_OP_TYPES = ("ConvTranspose",)
TRT86_OPSET = 17  # the newest opset onnx-tensorrt 8.6-GA documents


class ModelOptMissing(ImportError):
    """nvidia-modelopt is not importable; the message says how to install it."""


def _modelopt():
    import logging

    try:
        import modelopt
        import modelopt.onnx.autocast  # noqa: F401
        import modelopt.onnx.quantization  # noqa: F401
    except ImportError as exc:
        raise ModelOptMissing(
            f"TensorRT graphs are written with NVIDIA ModelOpt, which is not importable here ({exc}): "
            "make setup installs it (requirements-modelopt.txt, then pip install --no-deps nvidia-modelopt==0.47.0)"
        ) from None
    from modelopt.onnx.autocast import configure_logging

    configure_logging("WARNING")  # AutoCast logs every node it keeps at INFO
    for name in ("modelopt", "modelopt.onnx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return modelopt


def _quiet_onnxruntime() -> None:
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # ModelOpt's sessions warn per folded constant


@contextlib.contextmanager
def _ort_quantization_restored():
    """ModelOpt's quantize() patches ONNX Runtime's calibrators and quantizers for good
    (modelopt/onnx/quantization/ort_patching.py); afterwards ORT's own quantize_static, which
    drn-quantize's CPU int8 graph uses, fails in the same process. Put them back."""
    from onnxruntime.quantization import base_quantizer, calibrate, qdq_quantizer

    owners = [calibrate, calibrate.MinMaxCalibrater, calibrate.HistogramCalibrater, calibrate.HistogramCollector,
              calibrate.CalibraterBase, qdq_quantizer.QDQQuantizer, base_quantizer.BaseQuantizer]
    saved = [(owner, dict(vars(owner))) for owner in owners]
    try:
        yield
    finally:
        for owner, before in saved:
            for name, value in list(vars(owner).items()):
                if name not in before:
                    delattr(owner, name)
                elif before[name] is not value:
                    setattr(owner, name, before[name])


def _frames_array(frames: Iterable[np.ndarray]) -> np.ndarray:
    batch = [np.ascontiguousarray(f, dtype=np.uint8) for f in frames]
    batch = [f if f.ndim == 4 else f[None] for f in batch]
    if not batch:
        raise ValueError("no calibration frames")
    shapes = {f.shape[1:] for f in batch}
    if len(shapes) != 1:
        raise ValueError(f"calibration frames differ in size: {sorted(shapes)}")
    return np.concatenate(batch)


def _check_paths(model: Path, out: Path) -> None:
    if not model.is_file():
        raise FileNotFoundError(f"model file not found: {model}")
    if model.suffix != ".onnx" or out.suffix != ".onnx":
        raise ValueError(f"TensorRT graphs are read from and written to .onnx files (got {model.name} -> {out.name})")
    if model.resolve() == out.resolve():
        raise ValueError(f"--out {out} is the input model: choose another file")


def _private_copy(model: Path, folder: str) -> str:
    """A copy of ``model`` in ``folder`` for ModelOpt to read: its loader writes ONNX shape inference
    back into the file it is given (onnx.shape_inference.infer_shapes_path(path) in
    modelopt.onnx.trt_utils.load_onnx_model), which would change the user's model and its sha256."""
    import shutil

    copy = Path(folder) / f"input-{model.name}"
    shutil.copyfile(model, copy)
    return str(copy)


def write_fp16(model: str | Path, out: str | Path, frames: Iterable[np.ndarray],
               keep_fp32_ops: Sequence[str] = FP16_KEEP_FP32_OPS, calibration_note: str = "") -> Path:
    """Write the strongly typed fp16 graph of the exported ``model`` to ``out`` (+ sidecar).

    ``frames``: uint8 (1, H, W, 3) frames AutoCast runs the fp32 graph on to find activations
    beyond fp16's range (a few are enough).
    """
    model, out = Path(model), Path(out)
    _check_paths(model, out)
    info = read_sidecar(model)
    name = input_name(model)
    data = _frames_array(frames)
    modelopt = _modelopt()
    _quiet_onnxruntime()
    import onnx
    from modelopt.onnx.autocast import convert_to_mixed_precision

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        npz = Path(tmp) / "frames.npz"
        np.savez(npz, **{name: data})
        t0 = time.perf_counter()
        graph = convert_to_mixed_precision(_private_copy(model, tmp), low_precision_type="fp16", keep_io_types=True,
                                           op_types_to_exclude=list(keep_fp32_ops), calibration_data=str(npz),
                                           providers=["cpu"])
        seconds = time.perf_counter() - t0
        tmp_out = Path(tmp) / out.name
        onnx.save(graph, str(tmp_out))
        os.replace(tmp_out, out)
    fp32 = sorted({n.op_type for n in graph.graph.node if n.op_type in keep_fp32_ops})
    record = {"precision": "fp16", "tool": f"nvidia-modelopt {modelopt.__version__} AutoCast",
              "fp32_op_types": fp32, "reference_frames": calibration_note or f"{len(data)} frames",
              "opset": _opset(graph), "seconds": round(seconds, 1)}
    return _write_sidecar(model, out, info, record)


def write_int8_qdq(model: str | Path, out: str | Path, frames: Iterable[np.ndarray], method: str = "max",
                   float_stride: int = 2, quantize_classifier: bool = False, exclude: Sequence[str] = (),
                   high_precision: str = "fp16", calibration_note: str = "") -> Path:
    """Write the explicit-quantization (symmetric int8 Q/DQ) graph of ``model`` to ``out`` (+ sidecar)."""
    from drn_perception.deploy.graph_files import classifier_layers, fine_layers

    model, out = Path(model), Path(out)
    _check_paths(model, out)
    if method not in INT8_METHODS:
        raise ValueError(f"unknown calibration method {method!r} for TensorRT int8: choose {', '.join(INT8_METHODS)}")
    if high_precision not in HIGH_PRECISIONS:
        raise ValueError(f"high_precision must be one of {', '.join(HIGH_PRECISIONS)}, got {high_precision!r}")
    if float_stride < 0:
        raise ValueError("float_stride must be 0 or more")
    info = read_sidecar(model)
    name = input_name(model)
    data = _frames_array(frames)
    modelopt = _modelopt()
    _quiet_onnxruntime()
    import modelopt.onnx.quantization as moq

    head = [] if quantize_classifier else classifier_layers(model)
    floats = list(dict.fromkeys([*fine_layers(model, float_stride), *head, *exclude]))
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as folder:
        tmp = str(Path(folder) / out.name)
        with _ort_quantization_restored():
            moq.quantize(_private_copy(model, folder), quantize_mode="int8", calibration_data={name: data},
                         calibration_method=method,
                         calibration_eps=["cpu"], nodes_to_exclude=floats or None, output_path=tmp,
                         op_types_to_exclude=list(FLOAT_OP_TYPES),
                         high_precision_dtype=high_precision, log_level="CRITICAL")
        if high_precision == "fp32":  # ModelOpt writes opset 19; 8.6's parser documents up to 17
            import onnx
            from onnx import version_converter

            onnx.save(version_converter.convert_version(onnx.load(tmp), TRT86_OPSET), tmp)
        os.replace(tmp, out)
    seconds = time.perf_counter() - t0
    import onnx

    opset = _opset(onnx.load(str(out), load_external_data=False))
    record = {"precision": "int8", "tool": f"nvidia-modelopt {modelopt.__version__} quantize (int8, explicit Q/DQ)",
              "weights": "int8 per-channel symmetric", "activations": f"int8 symmetric, calibration {method}",
              "float_nodes": floats, "float_op_types": list(FLOAT_OP_TYPES), "float_precision": high_precision,
              "float_stride": float_stride,
              "classifier_in_float": not quantize_classifier,
              "calibration": calibration_note or f"{len(data)} frames", "opset": opset, "seconds": round(seconds, 1)}
    return _write_sidecar(model, out, info, record)


def _opset(graph) -> int:
    return max((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _write_sidecar(model: Path, out: Path, info: dict, record: dict) -> Path:
    extra = {k: v for k, v in info.items() if k not in ModelInfo.__dataclass_fields__ and k != "quantization"}
    extra.update(onnx_sha256=sha256_file(out), tensorrt_graph={
        **record, "source_onnx_sha256": info.get("onnx_sha256") or sha256_file(model)})
    ModelInfo.from_dict(info).write_json(sidecar_path(out), **extra)
    return out


def graph_record(model: str | Path) -> dict | None:
    """The ``tensorrt_graph`` record of a graph written here (None for a plain exported model)."""
    try:
        record = read_sidecar(Path(model)).get("tensorrt_graph")
    except (ValueError, OSError):
        return None
    return record if isinstance(record, dict) else None


def label_agreement(reference: str | Path, candidate: str | Path, frames: Iterable[np.ndarray],
                    threads: int = 0) -> tuple[float, int]:
    """(share of labels ``candidate`` gives equal to ``reference``, frames compared), ONNX Runtime CPU."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    ref = ort.InferenceSession(str(reference), opts, providers=["CPUExecutionProvider"])
    cand = ort.InferenceSession(str(candidate), opts, providers=["CPUExecutionProvider"])
    equal = total = count = 0
    for frame in frames:
        x = np.ascontiguousarray(frame if frame.ndim == 4 else frame[None], dtype=np.uint8)
        a = ref.run(["labels"], {ref.get_inputs()[0].name: x})[0]
        b = cand.run(["labels"], {cand.get_inputs()[0].name: x})[0]
        equal += int((a == b).sum())
        total += a.size
        count += 1
    if not count:
        raise ValueError("no frames to compare labels on")
    return equal / total, count


def parser_check(path: str | Path, log: Callable[[str], None] = print) -> dict[str, bool]:
    """TensorRT's ONNX parser rules per supported version (deploy/trt_check.py) applied to ``path``:
    the report is logged; returns {version: accepted}."""
    from drn_perception.deploy.trt_check import check_model

    report = check_model(Path(path))
    log(f"TensorRT parser check of {path}:\n{report.format()}")
    return {v: report.accepted(v) for v in report.versions}


# ---------------------------------------------------------------------------------------------
# Which graph drn-build-engine parses


def graph_kind(onnx: Path) -> tuple[str, str | None]:
    """("fp32", None) for an exported model; ("fp16"|"int8", float precision) for a graph written here
    (its sidecar's ``tensorrt_graph`` record)."""
    record = read_sidecar(onnx).get("tensorrt_graph")
    if not isinstance(record, dict):
        return "fp32", None
    return str(record.get("precision")), record.get("float_precision")


def plan_for(onnx: Path, precision: str | None, calibration: str | None,
             version: tuple[int, ...]) -> tuple[BuildPlan, str]:
    """drn-build-engine's plan for ``onnx`` on TensorRT ``version`` (precision None: the graph's own,
    fp16 for an exported model), and the graph kind given. ValueError when they do not fit, before
    any slow work."""
    from drn_perception.deploy.calibration import CalibrationError
    from drn_perception.inference.trt_versions import build_plan, graph_problem

    kind, float_precision = graph_kind(onnx)
    precision = precision or (kind if kind != "fp32" else "fp16")
    plan = build_plan(version, precision)
    problem = graph_problem(plan, kind, float_precision, ".".join(map(str, version)))
    if problem:
        raise ValueError(problem)
    if kind == "fp32" and plan.graph == "int8" and calibration is None:
        raise CalibrationError(
            "--precision int8 builds from a symmetric int8 Q/DQ graph: give --calibration DATA (image folder, "
            "DATASET:SPLIT, list.txt, rosbag2, synthetic[:N]) to write it here, or build the graph written by "
            "drn-quantize MODEL.onnx --target tensorrt --quantize int8"
        )
    if kind != "fp32" and calibration is not None:
        raise ValueError(f"{onnx} is already a {kind} graph: --calibration is for an exported fp32 model")
    return plan, kind


def prepare_graph(onnx: Path, plan: BuildPlan, kind: str, size: tuple[int, int], folder: Path,
                  calibration: str | None, max_frames: int, topic: str | None,
                  log: Callable[[str], None] = print) -> tuple[Path, dict | None]:
    """The graph TensorRT parses for ``plan``: ``onnx`` itself, or the fp16 / Q/DQ graph written from
    it into ``folder`` at ``size`` (the profile's OPT). Returns it and the calibration record."""
    from drn_perception.deploy.calibration import calibration_frames, user_calibration_frames

    if kind != "fp32" or plan.graph == "fp32":
        return onnx, None
    out = folder / f"{onnx.stem}.trt-{plan.graph}.onnx"
    if plan.graph == "fp16":
        log("writing the fp16 graph to build strongly typed (ModelOpt AutoCast)")
        write_fp16(onnx, out, list(calibration_frames(4, size)), calibration_note=f"4 generated scenes at {size[0]}x{size[1]}")
        parser_check(out, log)
        return out, None
    frames, note = user_calibration_frames(str(calibration), size, max_frames, topic)
    log(f"writing the int8 Q/DQ graph (ModelOpt, {plan.float_precision} elsewhere) from {note}")
    write_int8_qdq(onnx, out, frames, high_precision=plan.float_precision or "fp16", calibration_note=note)
    parser_check(out, log)
    return out, {"source": calibration, "frames": len(frames), "note": note}
