"""seg_node's parameters: one table, declared from it, checked from it, printed by ``seg_node --help``.

Every parameter is a row of ``PARAMETERS`` (name, default, description, whether it can change at
run time, and a declared range where there is one). The node declares them all, then refuses an
override that names none of them (rclpy silently drops those), so ``-p model:=x.onnx`` — the launch
argument's name — is a start-up error that suggests ``model_path`` instead of a start on the
default model.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

BUILD_POLICIES = ("never", "if_missing", "if_stale")  # TensorRT engine rebuild policy (deploy/engine_meta.py)
RELIABILITIES = ("best_effort", "reliable")
CONFIDENCE_ENCODINGS = ("mono8", "32FC1")
DECODE_WARNING_POLICIES = ("drop", "publish")
PRECISIONS = ("auto", "f32", "bf16", "f16")  # OpenVINO's (inference/openvino_backend.py)
# 2 Mpx: 1920x1080 and Cityscapes' 2048x1024 run at their own size; 12 Mpx stills are scaled down
# (measured RSS: benchmarks/results/*-node-memory.md; the reasoning is in docs/node.md).
DEFAULT_MAX_INPUT_PIXELS = 2048 * 1024


class StartupError(RuntimeError):
    """A configuration problem the node cannot run with; its message names the fix."""


@dataclass(frozen=True)
class Param:
    name: str
    default: object
    description: str
    runtime: bool = False  # may change while the node runs (else read-only, fixed at start-up)
    int_range: tuple | None = None
    float_range: tuple | None = None
    dynamic_typing: bool = False

    def descriptor(self) -> ParameterDescriptor:
        extra = {}
        if self.int_range:
            extra["integer_range"] = [IntegerRange(from_value=self.int_range[0], to_value=self.int_range[1], step=1)]
        if self.float_range:
            extra["floating_point_range"] = [FloatingPointRange(
                from_value=self.float_range[0], to_value=self.float_range[1], step=0.0)]
        return ParameterDescriptor(name=self.name, description=self.description, read_only=not self.runtime,
                                   dynamic_typing=self.dynamic_typing, **extra)


PARAMETERS = (
    Param("model_path", "", "Model file: .onnx (ONNX Runtime or OpenVINO), .xml (OpenVINO IR), .engine/.plan "
          "(TensorRT) or .pt (PyTorch). Empty: the package's default model (a demo trained on generated scenes)."),
    Param("backend", "auto", "auto (from the file suffix; for .onnx the fastest CPU backend installed), or a "
          "backend name: tensorrt, onnxruntime, openvino, torch."),
    Param("device", "auto", "auto, cpu, cuda or cuda:N (OpenVINO: CPU, GPU, NPU)."),
    Param("precision", "auto", "OpenVINO only: auto (bf16 where the cores have AMX or AVX512-BF16, else f32), "
          "f32 (fp32 labels: ONNX Runtime's up to float ties, 2 of 26 M pixels differed), bf16 or f16 (labels not exactly fp32's). Other backends run the model file's own "
          "precision (drn-quantize makes int8 graphs); what runs is in the start-up line and /diagnostics."),
    Param("build_engine", "never", "TensorRT only: never (a missing or stale engine is an error naming the fix), "
          "if_missing (build it from the ONNX model once) or if_stale (also rebuild after a TensorRT/GPU/model "
          "change). While it builds, in a separate process, the node serves on ONNX Runtime."),
    Param("onnx_path", "", "TensorRT only: the ONNX model to build the engine from when it is not beside the "
          "engine or named in its metadata."),
    Param("class_config", "", "YAML with the class names and colours the model predicts. Empty: the installed "
          "config/cityscapes.yaml."),
    Param("image_topics", ["camera/image_raw"], "Input camera topics. A name ending in /compressed (or "
          "compressed:=true) is read as sensor_msgs/CompressedImage."),
    Param("camera_names", "", "Camera names, a list or comma-separated, one per image topic; they name the "
          "outputs drn/<camera>/... when there are several. Empty: derived from the topics.", dynamic_typing=True),
    Param("compressed", False, "Read every input topic as sensor_msgs/CompressedImage."),
    Param("input_size", [0, 0], "Network input [height, width]; frames are resized to it (bilinear) and masks "
          "back to the frame size (nearest). [0, 0]: each frame's own size (up to max_input_pixels)."),
    Param("max_input_pixels", DEFAULT_MAX_INPUT_PIXELS, "With input_size [0, 0]: frames with more pixels are "
          "scaled down (aspect kept) for the network and the mask scaled back to the frame size, counted as "
          "'downscaled' in /diagnostics; bounds the node's memory. 0: no limit.",
          int_range=(0, 2**31 - 1)),
    Param("decode_warnings", "drop", "A compressed frame the JPEG decoder had to repair (corrupt data): drop it "
          "(counted as decode_error) or publish its mask (counted as decode_warning)."),
    Param("input_reliability", "best_effort", "Input QoS reliability: best_effort (sensor data, keep last 1; "
          "connects to best-effort and reliable cameras) or reliable."),
    Param("output_reliability", "reliable", "Output QoS reliability: reliable or best_effort."),
    Param("output_depth", 5, "Output QoS history depth (keep last N).", int_range=(1, 1000)),
    Param("publish_camera_info", True, "Republish each camera's sibling camera_info (<ns>/camera_info of "
          "<ns>/image_raw[/compressed]) as drn[/<camera>]/camera_info with the header of every mask."),
    Param("publish_color", True, "Publish the colour mask (rgb8) while someone subscribes.", runtime=True),
    Param("publish_overlay", True, "Publish the frame blended with the colour mask (rgb8) while someone "
          "subscribes.", runtime=True),
    Param("publish_confidence", True, "Publish the per-pixel confidence while someone subscribes.", runtime=True),
    Param("overlay_alpha", 0.5, "Weight of the colour mask in the overlay, 0..1.", runtime=True,
          float_range=(0.0, 1.0)),
    Param("confidence_encoding", "mono8", "Confidence image encoding: mono8 (0-255) or 32FC1 (probability).",
          runtime=True),
    Param("depth_topics", [""], "Depth images registered to each camera (one per image topic, '' for none), "
          "e.g. camera/aligned_depth_to_color/image_raw; 16UC1 (mm) or 32FC1 (m). With one, the node publishes "
          "drn[/<camera>]/points: the mask as an organized PointCloud2 (x, y, z, label, confidence) while "
          "someone subscribes."),
    Param("depth_info_topics", [""], "camera_info of each depth image (one per image topic); '': the depth "
          "topic's sibling camera_info."),
    Param("depth_stamp_tolerance", 0.02, "Seconds a depth frame's stamp may differ from the mask's; a mask "
          "without such a depth frame gets no cloud (counted in /diagnostics). 0: identical stamps only.",
          float_range=(0.0, 1.0)),
    Param("publish_points", True, "Publish the semantic clouds while someone subscribes.", runtime=True),
    Param("points_rgb", False, "Add the frame's colour (PCL's packed rgb float) to the clouds.", runtime=True),
    Param("obstacle_classes", [""], "Class names for drn[/<camera>]/obstacle_points, an unorganized cloud of "
          "only those classes (valid depth only) for Nav2's obstacle and voxel layers, e.g. [person, car]. "
          "['']: no such cloud."),
    Param("diagnostics_period", 1.0, "Seconds between /diagnostics reports.", float_range=(0.1, 60.0)),
)
BY_NAME = {p.name: p for p in PARAMETERS}
# Parameters every rclpy node declares itself.
_RCLPY_OWN = ("use_sim_time", "start_type_description_service")


def declare_all(node) -> dict:
    """Declare every parameter on ``node``; {name: value} after the overrides."""
    for p in PARAMETERS:
        node.declare_parameter(p.name, p.default, p.descriptor())
    return {p.name: node.get_parameter(p.name).value for p in PARAMETERS}


def check_unknown_overrides(node) -> None:
    """StartupError for an override (command line or params file) that matches no declared parameter."""
    declared = set(BY_NAME) | set(_RCLPY_OWN) | set(getattr(node, "_parameters", {}))
    unknown = sorted(n for n in getattr(node, "_parameter_overrides", {}) if n not in declared)
    if not unknown:
        return
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, BY_NAME, n=1, cutoff=0.5)
        if not close:  # 'model' is a prefix of 'model_path': difflib scores it below the cut-off
            close = [n for n in BY_NAME if n.startswith(name) or name.startswith(n)][:1]
        parts.append(f"'{name}'" + (f": did you mean '{close[0]}'?" if close else ""))
    raise StartupError(f"unknown parameter {'; '.join(parts)} (seg_node --help lists them all)")


def validate(values: dict) -> None:
    """StartupError naming the parameter and the accepted values, for the first bad one."""
    def one_of(name, choices):
        if values[name] not in choices:
            raise StartupError(f"parameter {name} is {values[name]!r}: use {', '.join(choices)}")

    one_of("build_engine", BUILD_POLICIES)
    one_of("input_reliability", RELIABILITIES)
    one_of("output_reliability", RELIABILITIES)
    one_of("decode_warnings", DECODE_WARNING_POLICIES)
    one_of("precision", PRECISIONS)
    for reason in (check_alpha(values["overlay_alpha"]), check_conf_encoding(values["confidence_encoding"])):
        if reason:
            raise StartupError(f"bad parameter: {reason}")
    size = values["input_size"]
    if len(size) != 2 or min(size) < 0 or (0 in size and max(size) > 0):
        raise StartupError(f"input_size must be [height, width] (both > 0) or [0, 0], got {list(size)}")


def check_alpha(value) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        return f"overlay_alpha must be a number in [0, 1], got {value!r}"
    return ""


def check_conf_encoding(value) -> str:
    if value not in CONFIDENCE_ENCODINGS:
        return f"confidence_encoding must be one of {', '.join(CONFIDENCE_ENCODINGS)}, got {value!r}"
    return ""


RUNTIME_CHECKS = {"overlay_alpha": check_alpha, "confidence_encoding": check_conf_encoding}


def help_text(prog: str = "seg_node") -> str:
    """Usage with every parameter, its default and description (``seg_node --help``)."""
    lines = [
        f"usage: {prog} [--lifecycle] [--help] [--ros-args -p NAME:=VALUE ... --params-file FILE -r FROM:=TO]",
        "",
        "Camera frames in (sensor_msgs/Image or CompressedImage), one class id per pixel out (drn/mask, mono8,",
        "the input's resolution and header). Topics, QoS and diagnostics: docs/node.md.",
        "",
        "options:",
        "  --help, -h     show this message and exit",
        "  --lifecycle    run as a managed (lifecycle) node: configure loads the model, activate starts serving",
        "",
        "parameters (--ros-args -p NAME:=VALUE; 'run time' ones also change with ros2 param set):",
    ]
    for p in PARAMETERS:
        when = "run time" if p.runtime else "start-up"
        lines.append(f"  {p.name} (default {p.default!r}, {when})")
        lines.extend(f"      {chunk}" for chunk in _wrap(p.description, 94))
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width)
