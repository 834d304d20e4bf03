"""seg_node: camera frames in, per-pixel class masks out.

Subscribes to one or more camera topics (sensor_msgs/Image or CompressedImage), runs the
segmentation model on a worker thread and publishes, per camera, a mono8 label mask at the
input resolution with the input's header (stamp and frame_id), plus optional colour mask,
overlay and confidence images that are only computed while someone subscribes to them.
Health and latency go to /diagnostics about once a second.

Frames arrive as their serialised (CDR) bytes and are read in place with rosbags' deserialiser:
the pixels are a view of the received buffer (rclpy's own conversion copies them into an
array.array, 3.7 ms per 1024x512 rgb8 frame). Subscription callbacks only keep the newest
frame per camera (an older one still waiting is dropped and counted), so DDS never backs up
behind a slow model; frames of equal network size
from several cameras that are pending together run as one batch.

Run: ``ros2 run drn_perception seg_node --ros-args -p model_path:=model.onnx`` or
``ros2 launch drn_perception seg.launch.py`` (see docs/node.md for topics and parameters).
"""
from __future__ import annotations

import re
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from builtin_interfaces.msg import Time as StampMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from drn_perception.default_model import default_model_path
from drn_perception.inference import BACKENDS, BackendUnavailable, create_segmenter
from drn_perception.model_info import IGNORE_LABEL, ClassConfig, cityscapes
from drn_perception.ros import bagio
from drn_perception.ros import conversions as conv

NODE_NAME = "seg_node"
DROP_REASONS = ("superseded", "bad_message", "unsupported_encoding", "short_data", "bad_step", "empty",
                "decode_error", "inference_error")
RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}
CONFIDENCE_ENCODINGS = ("mono8", "32FC1")
BUILD_POLICIES = ("never", "if_missing", "if_stale")  # TensorRT engine rebuild policy (deploy/engine_meta.py)
# Last topic-name components that name the image rather than the camera.
_IMAGE_SUFFIXES = {"image_raw", "image", "image_rect", "image_rect_color", "image_color", "image_mono",
                   "compressed"}
_WARN_EVERY_S = 5.0
_WINDOW = 200  # latency samples kept per camera for the percentiles


class StartupError(RuntimeError):
    """A configuration problem the node cannot run with; its message names the fix."""


@dataclass
class CameraStats:
    frames_in: int = 0
    masks_out: int = 0
    drops: Counter = field(default_factory=Counter)
    receipt_ms: deque = field(default_factory=lambda: deque(maxlen=_WINDOW))
    stamp_ms: deque = field(default_factory=lambda: deque(maxlen=_WINDOW))
    inference_ms: deque = field(default_factory=lambda: deque(maxlen=_WINDOW))
    # the node's own work on a frame: decode/resize before inference, mask conversion,
    # resize and publish after it (receipt latency minus inference minus the wait for the worker)
    overhead_ms: deque = field(default_factory=lambda: deque(maxlen=_WINDOW))
    max_batch: int = 0
    optional_outputs: Counter = field(default_factory=Counter)  # outputs computed, by kind
    reported_in: int = 0  # frames_in / bad drops at the previous diagnostics report
    reported_bad: int = 0


@dataclass
class Camera:
    name: str
    topic: str
    compressed: bool
    prefix: str
    pub_mask: object = None
    pub_color: object = None
    pub_overlay: object = None
    pub_confidence: object = None
    subscription: object = None
    pending: tuple | None = None  # (serialised message, receipt time on time.perf_counter)
    stats: CameraStats = field(default_factory=CameraStats)


@dataclass
class _Job:
    cam: Camera
    header: object
    received: float
    rgb: np.ndarray  # input resolution
    net: np.ndarray  # network input (resized when input_size is set)
    prep_ms: float = 0.0  # decode + resize of this frame


def camera_name_from_topic(topic: str, index: int) -> str:
    """'/front/camera/image_raw' -> 'front_camera'; falls back to 'camera<index>'."""
    parts = [p for p in topic.strip("/").split("/") if p and p != "~"]
    while parts and parts[-1] in _IMAGE_SUFFIXES:
        parts.pop()
    return sanitize_name("_".join(parts)) or f"camera{index}"


def sanitize_name(name: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", name.strip()).strip("_")
    if name and name[0].isdigit():
        name = "cam_" + name
    return name


def _percentile(values, q: float) -> str:
    return f"{np.percentile(np.fromiter(values, float), q):.2f}" if values else "nan"


class SegNode(Node):
    """The segmentation node. ``SegNode(**node_kwargs)``; call ``close()`` before destroy_node()."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        self._cond = threading.Condition()
        self._stopping = False
        self._warned: dict = {}
        self._worker = None
        try:
            self._declare_parameters()
            self._load_model()
            self._setup_cameras()
        except StartupError:
            self.destroy_node()
            raise
        except ParameterException as exc:
            self.destroy_node()
            raise StartupError(f"bad parameter: {exc}") from None
        except NameValidationException as exc:
            self.destroy_node()
            raise StartupError(f"invalid topic name in image_topics {self.image_topics}: "
                               f"{str(exc).splitlines()[0].rstrip(':')}") from None
        self.add_on_set_parameters_callback(self._on_set_parameters)
        period = self.get_parameter("diagnostics_period").value
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(period, self._publish_diagnostics)
        self._worker = threading.Thread(target=self._work, name="seg_worker", daemon=True)
        self._worker.start()
        size = "native" if self.input_size is None else f"{self.input_size[0]}x{self.input_size[1]}"
        self.get_logger().info(
            f"{self.segmenter.describe()}, {self.segmenter.info.num_classes} classes, input size {size}; "
            + "; ".join(f"{c.subscription.topic_name} -> {c.pub_mask.topic_name}" for c in self.cameras))

    # ---------------------------------------------------------------- parameters
    def _param(self, name, default, description, read_only=True, **descriptor):
        self.declare_parameter(name, default, ParameterDescriptor(
            name=name, description=description, read_only=read_only, **descriptor))
        return self.get_parameter(name).value

    def _declare_parameters(self):
        p = self._param
        self.model_path = p("model_path", "", "Model file: .onnx (ONNX Runtime), .engine/.plan (TensorRT) or .pt "
                            "(PyTorch). Empty: the package's default model.")
        self.backend = p("backend", "auto", "auto (from the file suffix), tensorrt, onnxruntime or torch.")
        self.device = p("device", "auto", "auto, cpu, cuda or cuda:N.")
        self.build_engine = p("build_engine", "never", "TensorRT only: never (a missing or stale engine is an "
                              "error naming the fix), if_missing (build it from the ONNX model once) or if_stale "
                              "(also rebuild after a TensorRT/GPU/model change, once per JetPack and GPU).")
        self.onnx_path = p("onnx_path", "", "TensorRT only: the ONNX model to build the engine from when it is "
                           "not beside the engine or named in its metadata.")
        self.class_config = p("class_config", "", "YAML with the class names and colours the model predicts. "
                              "Empty: the installed config/cityscapes.yaml.")
        self.image_topics = p("image_topics", ["camera/image_raw"], "Input camera topics. A name ending in "
                              "/compressed (or compressed:=true) is read as sensor_msgs/CompressedImage.")
        names = p("camera_names", "", "Camera names, a list or comma-separated, one per image topic; they name "
                  "the outputs drn/<camera>/... when there are several. Empty: derived from the topics.",
                  dynamic_typing=True)
        self.compressed = p("compressed", False, "Read every input topic as sensor_msgs/CompressedImage.")
        input_size = p("input_size", [0, 0], "Network input [height, width]; frames are resized to it "
                       "(bilinear) and masks back to the frame size (nearest). [0, 0]: each frame's own size.")
        self.input_reliability = p("input_reliability", "best_effort", "Input QoS reliability: best_effort "
                                   "(sensor data, keep last 1; connects to best-effort and reliable cameras) "
                                   "or reliable.")
        self.output_reliability = p("output_reliability", "reliable", "Output QoS reliability: reliable or "
                                    "best_effort.")
        self.output_depth = p("output_depth", 5, "Output QoS history depth (keep last N).",
                              integer_range=[IntegerRange(from_value=1, to_value=1000, step=1)])
        p("publish_color", True, "Publish the colour mask (rgb8) while someone subscribes.", read_only=False)
        p("publish_overlay", True, "Publish the frame blended with the colour mask (rgb8) while someone "
          "subscribes.", read_only=False)
        p("publish_confidence", True, "Publish the per-pixel confidence while someone subscribes.",
          read_only=False)
        alpha = p("overlay_alpha", 0.5, "Weight of the colour mask in the overlay, 0..1.", read_only=False,
                  floating_point_range=[FloatingPointRange(from_value=0.0, to_value=1.0, step=0.0)])
        conf_enc = p("confidence_encoding", "mono8", "Confidence image encoding: mono8 (0-255) or 32FC1 "
                     "(probability).", read_only=False)
        p("diagnostics_period", 1.0, "Seconds between /diagnostics reports.",
          floating_point_range=[FloatingPointRange(from_value=0.1, to_value=60.0, step=0.0)])

        if self.build_engine not in BUILD_POLICIES:
            raise StartupError(f"parameter build_engine is {self.build_engine!r}: use {', '.join(BUILD_POLICIES)}")
        if self.backend not in ("auto", *BACKENDS):
            raise StartupError(f"unknown backend {self.backend!r}: set backend to auto, {', '.join(BACKENDS)}")
        for name, value in (("input_reliability", self.input_reliability),
                            ("output_reliability", self.output_reliability)):
            if value not in RELIABILITY:
                raise StartupError(f"parameter {name} is {value!r}: use best_effort or reliable")
        for reason in (self._check_alpha(alpha), self._check_conf_encoding(conf_enc)):
            if reason:
                raise StartupError(f"bad parameter: {reason}")
        if len(input_size) != 2 or min(input_size) < 0 or (0 in input_size and max(input_size) > 0):
            raise StartupError(f"input_size must be [height, width] (both > 0) or [0, 0], got {list(input_size)}")
        self.input_size = tuple(int(v) for v in input_size) if max(input_size) > 0 else None
        topics = [t for t in self.image_topics if t.strip()]
        if not topics:
            raise StartupError("image_topics is empty: give at least one camera topic")
        if len(set(topics)) != len(topics):
            raise StartupError(f"image_topics lists a topic twice: {topics}")
        self.image_topics = topics
        if isinstance(names, str):
            names = [n for n in names.split(",") if n.strip()]
        elif not (isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names)):
            raise StartupError(f"camera_names must be a list of strings or a comma-separated string, got {names!r}")
        if names and len(names) != len(topics):
            raise StartupError(f"camera_names has {len(names)} names for {len(topics)} image_topics")
        self.camera_names = [sanitize_name(n) for n in names] if names else [
            camera_name_from_topic(t, i) for i, t in enumerate(topics)]
        if "" in self.camera_names or len(set(self.camera_names)) != len(self.camera_names):
            raise StartupError(f"camera names {self.camera_names} are not distinct, non-empty names; "
                               "set camera_names")

    @staticmethod
    def _check_alpha(value) -> str:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
            return f"overlay_alpha must be a number in [0, 1], got {value!r}"
        return ""

    @staticmethod
    def _check_conf_encoding(value) -> str:
        if value not in CONFIDENCE_ENCODINGS:
            return f"confidence_encoding must be one of {', '.join(CONFIDENCE_ENCODINGS)}, got {value!r}"
        return ""

    def _on_set_parameters(self, params) -> SetParametersResult:
        # Read-only parameters and the declared ranges/types are refused by rclpy before this runs.
        for param in params:
            reason = ""
            if param.name == "overlay_alpha":
                reason = self._check_alpha(param.value)
            elif param.name == "confidence_encoding":
                reason = self._check_conf_encoding(param.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    # ---------------------------------------------------------------- start-up
    def _load_model(self):
        if self.model_path:
            path = Path(self.model_path).expanduser()
        else:
            path = default_model_path()
            if not path.is_file():
                raise StartupError(f"no model_path given and the default model {path} is not installed: "
                                   "pass model_path:=<model.onnx|.engine|.pt> (drn-export makes one)")
        try:
            options = {}
            if (self.backend == "tensorrt" or path.suffix in BACKENDS["tensorrt"][2]) and (
                    self.build_engine != "never" or self.onnx_path):
                options = {"build_engine": self.build_engine, "onnx": self.onnx_path or None}
            self.segmenter = create_segmenter(path, self.backend, self.device, **options)
        except FileNotFoundError:
            raise StartupError(f"model file not found: {path}; set model_path to an existing "
                               ".onnx/.engine/.pt file") from None
        except (ValueError, BackendUnavailable) as exc:
            raise StartupError(f"cannot load model {path}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - a backend's own error type: still one line
            raise StartupError(f"cannot load model {path} with backend {self.backend}: "
                               f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
        info = self.segmenter.info
        try:
            config = ClassConfig.from_yaml(Path(self.class_config).expanduser()) if self.class_config else cityscapes()
        except ValueError as exc:
            raise StartupError(f"{exc}; set class_config to a class YAML like config/cityscapes.yaml") from None
        where = self.class_config or "the default config/cityscapes.yaml"
        if list(info.classes) != list(config.classes):
            raise StartupError(
                f"model {path.name} predicts {info.num_classes} classes ({', '.join(info.classes[:4])}, ...) but "
                f"class config {where} lists {len(config.classes)} ({', '.join(config.classes[:4])}, ...): set "
                "class_config to the YAML of the classes the model was trained on")
        if info.num_classes > IGNORE_LABEL:
            raise StartupError(f"model has {info.num_classes} classes; mono8 masks hold at most {IGNORE_LABEL}")
        self.class_names = config.classes
        self.lut = conv.palette_lut(config.palette)
        self.model_file = path

    def _setup_cameras(self):
        try:  # frames are read with rosbags' deserialiser; load its message definitions now
            bagio.typestore()
        except ImportError as exc:
            raise StartupError(f"the node reads camera frames with the rosbags package, which cannot be "
                               f"imported ({exc}): pip install rosbags") from None
        in_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, durability=DurabilityPolicy.VOLATILE,
                            reliability=RELIABILITY[self.input_reliability])
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.output_depth,
                             reliability=RELIABILITY[self.output_reliability])
        single = len(self.image_topics) == 1
        self.cameras = []
        for topic, name in zip(self.image_topics, self.camera_names):
            # The remapped name decides the type too (image_topic:=/cam/image_raw/compressed).
            resolved = self.resolve_topic_name(topic) if hasattr(self, "resolve_topic_name") else topic
            compressed = self.compressed or any(t.rstrip("/").rsplit("/", 1)[-1] == "compressed"
                                                for t in (topic, resolved))
            cam = Camera(name=name, topic=topic, compressed=compressed, prefix="drn" if single else f"drn/{name}")
            cam.pub_mask = self.create_publisher(Image, f"{cam.prefix}/mask", out_qos)
            cam.pub_color = self.create_publisher(Image, f"{cam.prefix}/color_mask", out_qos)
            cam.pub_overlay = self.create_publisher(Image, f"{cam.prefix}/overlay", out_qos)
            cam.pub_confidence = self.create_publisher(Image, f"{cam.prefix}/confidence", out_qos)
            cam.subscription = self.create_subscription(
                CompressedImage if compressed else Image, topic, lambda raw, cam=cam: self._on_frame(raw, cam), in_qos,
                raw=True)
            self.cameras.append(cam)

    # ---------------------------------------------------------------- frames
    def _on_frame(self, raw: bytes, cam: Camera):
        """Subscription callback (serialised message): keep only the newest frame per camera, wake the worker."""
        received = time.perf_counter()
        with self._cond:
            cam.stats.frames_in += 1
            if cam.pending is not None:
                cam.stats.drops["superseded"] += 1
            cam.pending = (raw, received)
            self._cond.notify()

    def _work(self):
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or any(c.pending for c in self.cameras))
                if self._stopping:
                    return
                batch = [(c, c.pending) for c in self.cameras if c.pending is not None]
                for c, _ in batch:
                    c.pending = None
            try:
                self.process(batch)
            except Exception as exc:  # noqa: BLE001 - keep serving; count and report
                if self._stopping or not self.context.ok():
                    return
                for cam, _ in batch:
                    self._drop(cam, "inference_error", f"{type(exc).__name__}: {exc}")

    def _drop(self, cam: Camera, reason: str, detail: str):
        with self._cond:
            cam.stats.drops[reason] += 1
        now = time.monotonic()
        key = (cam.name, reason)
        if now - self._warned.get(key, -1e9) >= _WARN_EVERY_S:
            self._warned[key] = now
            self.get_logger().warning(f"dropped a frame from {cam.topic} ({reason}): {detail}")

    def process(self, batch):
        """Decode, run and publish a list of (camera, (serialised message, receipt time)); one
        inference per size."""
        jobs = []
        for cam, (raw, received) in batch:
            start = time.perf_counter()
            msgtype = bagio.COMPRESSED_IMAGE if cam.compressed else bagio.IMAGE
            try:
                msg = bagio.deserialize(raw, msgtype)
            except Exception as exc:  # noqa: BLE001 - rosbags raises several kinds on bad CDR
                self._drop(cam, "bad_message", f"cannot read a {len(raw)}-byte {msgtype}: {type(exc).__name__}: {exc}")
                continue
            stamp = msg.header.stamp
            header = Header(stamp=StampMsg(sec=stamp.sec, nanosec=stamp.nanosec), frame_id=msg.header.frame_id)
            try:
                rgb = conv.to_rgb(msg)
            except conv.FrameError as exc:
                self._drop(cam, exc.reason, str(exc))
                continue
            net = rgb if self.input_size is None else conv.resize_image(rgb, *self.input_size)
            jobs.append(_Job(cam, header, received, rgb, net, (time.perf_counter() - start) * 1e3))
        groups: dict = {}
        for job in jobs:
            groups.setdefault(job.net.shape[:2], []).append(job)
        for group in groups.values():
            try:
                self._run_group(group)
            except Exception as exc:  # noqa: BLE001 - the other sizes still run; counted per camera
                if self._stopping or not self.context.ok():
                    raise
                for job in group:
                    self._drop(job.cam, "inference_error", f"{type(exc).__name__}: {exc}")

    def _run_group(self, jobs):
        want_color = self.get_parameter("publish_color").value
        want_overlay = self.get_parameter("publish_overlay").value
        want_conf = self.get_parameter("publish_confidence").value
        alpha = float(self.get_parameter("overlay_alpha").value)
        conf_encoding = self.get_parameter("confidence_encoding").value
        need_conf = want_conf and any(j.cam.pub_confidence.get_subscription_count() for j in jobs)
        images = jobs[0].net[None] if len(jobs) == 1 else np.stack([j.net for j in jobs])
        start = time.perf_counter()
        result = self.segmenter.infer(images, want_confidence=need_conf)
        inferred = time.perf_counter()
        inference_ms = (inferred - start) * 1e3
        masks = conv.labels_to_mask(result.labels)
        for i, job in enumerate(jobs):
            cam, (h, w) = job.cam, job.rgb.shape[:2]
            mask = conv.resize_labels(masks[i], h, w)
            cam.pub_mask.publish(conv.mask_to_image(mask, job.header))
            done = time.perf_counter()
            overhead_ms = job.prep_ms + (done - inferred) * 1e3
            stamp_ms = None
            if job.header.stamp.sec or job.header.stamp.nanosec:
                stamp_ms = (self.get_clock().now() - Time.from_msg(job.header.stamp)).nanoseconds / 1e6
            with self._cond:
                st = cam.stats
                st.masks_out += 1
                st.receipt_ms.append((done - job.received) * 1e3)
                if stamp_ms is not None:
                    st.stamp_ms.append(stamp_ms)
                st.inference_ms.append(inference_ms)
                st.overhead_ms.append(overhead_ms)
                st.max_batch = max(st.max_batch, len(jobs))
            self._publish_optional(job, mask, result.confidence, i, want_color, want_overlay, alpha, conf_encoding)

    def _publish_optional(self, job, mask, confidence, i, want_color, want_overlay, alpha, conf_encoding):
        cam, (h, w) = job.cam, job.rgb.shape[:2]
        color = None
        if want_color and cam.pub_color.get_subscription_count():
            color = conv.colorize(mask, self.lut)
            cam.pub_color.publish(conv.rgb_to_image(color, job.header))
            cam.stats.optional_outputs["color_mask"] += 1
        if want_overlay and cam.pub_overlay.get_subscription_count():
            color = conv.colorize(mask, self.lut) if color is None else color
            cam.pub_overlay.publish(conv.rgb_to_image(conv.blend(job.rgb, color, alpha), job.header))
            cam.stats.optional_outputs["overlay"] += 1
        if confidence is not None and cam.pub_confidence.get_subscription_count():
            conf = conv.resize_image(confidence[i], h, w)
            cam.pub_confidence.publish(conv.confidence_to_image(conf, job.header, conf_encoding))
            cam.stats.optional_outputs["confidence"] += 1

    # ---------------------------------------------------------------- health
    def stats_snapshot(self) -> dict:
        """{camera name: copy of its counters} (for tools and tests)."""
        with self._cond:
            return {c.name: {"frames_in": c.stats.frames_in, "masks_out": c.stats.masks_out,
                             "drops": dict(c.stats.drops), "max_batch": c.stats.max_batch,
                             "optional_outputs": dict(c.stats.optional_outputs)} for c in self.cameras}

    def _publish_diagnostics(self):
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        for cam in self.cameras:
            with self._cond:
                st = cam.stats
                drops = {r: st.drops.get(r, 0) for r in DROP_REASONS}
                bad = sum(v for r, v in drops.items() if r != "superseded")
                new_in, new_bad = st.frames_in - st.reported_in, bad - st.reported_bad
                st.reported_in, st.reported_bad = st.frames_in, bad
                values = {
                    "input_topic": cam.subscription.topic_name,
                    "mask_topic": cam.pub_mask.topic_name,
                    "frames_in": st.frames_in,
                    "masks_out": st.masks_out,
                    "dropped": sum(drops.values()),
                    **{f"dropped_{r}": v for r, v in drops.items()},
                    "latency_receipt_p50_ms": _percentile(st.receipt_ms, 50),
                    "latency_receipt_p95_ms": _percentile(st.receipt_ms, 95),
                    "latency_stamp_p50_ms": _percentile(st.stamp_ms, 50),
                    "latency_stamp_p95_ms": _percentile(st.stamp_ms, 95),
                    "inference_p50_ms": _percentile(st.inference_ms, 50),
                    "inference_p95_ms": _percentile(st.inference_ms, 95),
                    "overhead_p50_ms": _percentile(st.overhead_ms, 50),
                    "overhead_p95_ms": _percentile(st.overhead_ms, 95),
                    "max_batch": st.max_batch,
                    "backend": self.segmenter.backend,
                    "device": self.segmenter.device,
                    "model": str(self.model_file),
                    "arch": self.segmenter.info.arch,
                }
            if new_bad:
                level, text = DiagnosticStatus.WARN, f"{new_bad} bad frame(s) dropped since the last report"
            elif not new_in:
                level, text = DiagnosticStatus.WARN, f"no frames on {values['input_topic']} since the last report"
            else:
                level, text = DiagnosticStatus.OK, f"{new_in} frame(s) in since the last report"
            msg.status.append(DiagnosticStatus(
                level=level, name=f"{self.get_name()}: {cam.name}", message=text, hardware_id=cam.name,
                values=[KeyValue(key=k, value=str(v)) for k, v in values.items()]))
        self._diag_pub.publish(msg)

    # ---------------------------------------------------------------- shutdown
    def close(self):
        """Stop the worker (waits for the frame in flight)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=30.0)

    def destroy_node(self):
        self.close()
        return super().destroy_node()


def main(args=None) -> int:
    """Console script ``seg_node``: exit 0 on SIGINT/SIGTERM, 1 on a configuration error."""
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = SegNode()
        rclpy.spin(node)
    except StartupError as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(str(exc))
        code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
