"""The body of seg_node shared by the plain and the managed node: parameters, model, cameras,
the frame pipeline (take the newest frame, decode, run, publish mask + camera_info + optional
outputs) and /diagnostics. node.py puts it on an rclpy Node or LifecycleNode."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from builtin_interfaces.msg import Time as StampMsg
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from drn_perception.default_model import default_model_path
from drn_perception.inference import BACKENDS, BackendUnavailable, open_segmenter
from drn_perception.inference.base import auto_backend, fit_size
from drn_perception.model_info import IGNORE_LABEL, ClassConfig, cityscapes
from drn_perception.ros import bagio
from drn_perception.ros import conversions as conv
from drn_perception.ros import label_info, params
from drn_perception.ros.cameras import (INFO_KEPT, Camera, Job, camera_info_topic, camera_name_from_topic, network_size,
                                        sanitize_name, stamp_ns)
from drn_perception.ros.diagnostics import camera_status
from drn_perception.ros.param_service import SafeParameterService
from drn_perception.ros.params import StartupError
from drn_perception.ros.semantic_cloud import SemanticCloud, read_parameters as cloud_parameters

RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}
_WARN_EVERY_S = 5.0
DEMO_WARNING = ("demo model trained on generated street scenes; not for a real camera — see docs/training.md "
                "(set model_path to your own model)")


class SegCore:
    """Everything of seg_node that does not depend on whether it is a plain or a managed node."""

    # ---------------------------------------------------------------- set-up steps
    def _init_core(self):
        self._cond = threading.Condition()
        self._stopping = True
        self._warned: dict = {}
        self._worker = None
        self._diag_timer = None
        self._diag_pub = None
        self.cameras: list[Camera] = []
        self.segmenter = None
        self.model_file = None
        self._parameter_service = SafeParameterService(self)
        with startup_errors(self):
            values = params.declare_all(self)
            params.check_unknown_overrides(self)
            params.validate(values)
            self._read_parameters(values)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _read_parameters(self, v: dict):
        self.model_path, self.backend, self.device = v["model_path"], v["backend"], v["device"]
        self.precision = v["precision"]
        self.build_engine, self.onnx_path, self.class_config = v["build_engine"], v["onnx_path"], v["class_config"]
        self.compressed, self.decode_warnings = v["compressed"], v["decode_warnings"]
        self.input_reliability, self.output_reliability = v["input_reliability"], v["output_reliability"]
        self.output_depth, self.publish_camera_info = v["output_depth"], v["publish_camera_info"]
        self.max_input_pixels = int(v["max_input_pixels"])
        self.diagnostics_period = v["diagnostics_period"]
        self.depth_values = {k: v[k] for k in ("depth_topics", "depth_info_topics", "obstacle_classes")}
        self.depth_tolerance_ns = int(round(v["depth_stamp_tolerance"] * 1e9))
        if self.backend not in ("auto", *BACKENDS):
            raise StartupError(f"unknown backend {self.backend!r}: set backend to auto, {', '.join(BACKENDS)}")
        size = v["input_size"]
        self.input_size = tuple(int(s) for s in size) if max(size) > 0 else None
        topics = [t for t in v["image_topics"] if t.strip()]
        if not topics:
            raise StartupError("image_topics is empty: give at least one camera topic")
        if len(set(topics)) != len(topics):
            raise StartupError(f"image_topics lists a topic twice: {topics}")
        self.image_topics = topics
        names = v["camera_names"]
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
        cloud_parameters(self.depth_values, topics, None)  # list lengths, before the model loads

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        # Read-only parameters and the declared ranges/types are refused by rclpy before this runs.
        for param in parameters:
            check = params.RUNTIME_CHECKS.get(param.name)
            reason = check(param.value) if check else ""
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _load_model(self):
        """Open the model, check its classes against class_config, warm it up (StartupError on any problem)."""
        try:  # frames are converted and resized with OpenCV: a broken one is named now, not per frame
            conv.opencv()
        except conv.OpenCVUnavailable as exc:
            raise StartupError(str(exc)) from None
        if self.model_path:
            path = Path(self.model_path).expanduser()
        else:
            path = default_model_path()
            if not path.is_file():
                raise StartupError(f"no model_path given and the default model {path} is not installed: "
                                   "pass model_path:=<model.onnx|.engine|.pt> (drn-export makes one)")
        options = {}
        if self.precision != "auto":
            try:
                chosen = self.backend if self.backend != "auto" else auto_backend(path, self.device)
            except ValueError as exc:  # a suffix no backend loads
                raise StartupError(f"cannot load model {path}: {exc}") from None
            if chosen != "openvino":
                raise StartupError(f"precision {self.precision} applies to backend openvino only; {chosen} runs "
                                   f"{path.name} at the file's own precision (set backend:=openvino, or precision:=auto)")
            options["precision"] = self.precision
        try:  # a TensorRT engine still to be built: served on ONNX Runtime meanwhile (SwitchingSegmenter)
            segmenter = open_segmenter(path, self.backend, self.device, build_engine=self.build_engine,
                                       onnx=self.onnx_path or None, logger=self.get_logger(), **options)
        except FileNotFoundError:
            raise StartupError(f"model file not found: {path}; set model_path to an existing "
                               ".onnx/.engine/.pt file") from None
        except (ValueError, BackendUnavailable) as exc:
            raise StartupError(f"cannot load model {path}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - a backend's own error type: still one line
            raise StartupError(f"cannot load model {path} with backend {self.backend}: "
                               f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
        info = segmenter.info
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
        h, w = self.input_size or (64, 64)
        try:  # first-frame costs (thread pools, arenas, kernels) before the first camera frame
            segmenter.infer(np.zeros((1, h, w, 3), np.uint8))
        except Exception as exc:  # noqa: BLE001 - e.g. an engine profile without this size: frames will tell
            self.get_logger().warning(f"warm-up on a {h}x{w} frame failed ({type(exc).__name__}: "
                                      f"{str(exc).splitlines()[0] if str(exc) else ''}); serving anyway")
        self.class_names = config.classes
        self.lut = conv.palette_lut(config.palette)
        self.model_file, self.segmenter = path, segmenter
        if getattr(segmenter, "auto_note", ""):
            self.get_logger().warning(segmenter.auto_note)
        if path.resolve() == default_model_path().resolve():
            self.get_logger().warning(DEMO_WARNING)

    def _create_cameras(self):
        """Publishers of every camera (the model must be loaded); inputs come with _start_inputs."""
        try:  # frames are read with rosbags' deserialiser; load its message definitions now
            bagio.typestore()
        except ImportError as exc:
            raise StartupError(f"the node reads camera frames with the rosbags package, which cannot be "
                               f"imported ({exc}): pip install rosbags") from None
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.output_depth,
                             reliability=RELIABILITY[self.output_reliability])
        single = len(self.image_topics) == 1
        depths = cloud_parameters(self.depth_values, self.image_topics, self.class_names)
        self.cameras = []
        for topic, name, depth in zip(self.image_topics, self.camera_names, depths):
            # The remapped name decides the type too (image_topic:=/cam/image_raw/compressed).
            resolved = self.resolve_topic_name(topic)
            compressed = self.compressed or any(t.rstrip("/").rsplit("/", 1)[-1] == "compressed"
                                                for t in (topic, resolved))
            cam = Camera(name=name, topic=topic, compressed=compressed, prefix="drn" if single else f"drn/{name}",
                         info_topic=camera_info_topic(resolved) if self.publish_camera_info else "")
            cam.pub_mask = self.create_publisher(Image, f"{cam.prefix}/mask", out_qos)
            cam.pub_color = self.create_publisher(Image, f"{cam.prefix}/color_mask", out_qos)
            cam.pub_overlay = self.create_publisher(Image, f"{cam.prefix}/overlay", out_qos)
            cam.pub_confidence = self.create_publisher(Image, f"{cam.prefix}/confidence", out_qos)
            if cam.info_topic:
                cam.pub_info = self.create_publisher(CameraInfo, f"{cam.prefix}/camera_info", out_qos)
            if depth is not None:
                cam.cloud = SemanticCloud(self, cam.prefix, out_qos=out_qos, **depth)
            self.cameras.append(cam)
        label_info.publish(self, self.cameras, self.class_names)
        if any(c.compressed for c in self.cameras):
            try:
                import simplejpeg  # noqa: F401 - the strict JPEG decoder of conversions.decode_compressed
            except ImportError as exc:
                raise StartupError(f"compressed inputs are decoded with simplejpeg, which cannot be imported "
                                   f"({exc}): pip install simplejpeg") from None
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(self.diagnostics_period, self._publish_diagnostics)

    def _start_inputs(self):
        in_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, durability=DurabilityPolicy.VOLATILE,
                            reliability=RELIABILITY[self.input_reliability])
        info_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=INFO_KEPT, durability=DurabilityPolicy.VOLATILE,
                              reliability=RELIABILITY[self.input_reliability])
        for cam in self.cameras:
            cam.subscription = self.create_subscription(
                CompressedImage if cam.compressed else Image, cam.topic,
                lambda raw, cam=cam: self._on_frame(raw, cam), in_qos, raw=True)
            if cam.info_topic:  # small messages: keep several, so none is lost between two callbacks
                cam.info_subscription = self.create_subscription(
                    CameraInfo, cam.info_topic, lambda msg, cam=cam: self._on_camera_info(msg, cam), info_qos)
            if cam.cloud is not None:
                cam.cloud.subscribe(self, RELIABILITY[self.input_reliability])
        with self._cond:
            self._stopping = False
        self._worker = threading.Thread(target=self._work, name="seg_worker", daemon=True)
        self._worker.start()

    def _stop_inputs(self):
        """Stop taking frames (waits for the frame in flight); frames still waiting are dropped."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=30.0)
        self._worker = None
        for cam in self.cameras:
            if cam.cloud is not None:
                cam.cloud.unsubscribe(self)
            for attr in ("subscription", "info_subscription"):
                sub = getattr(cam, attr)
                if sub is not None:
                    self.destroy_subscription(sub)
                    setattr(cam, attr, None)
            cam.pending = None

    def _release(self):
        """Drop publishers, timer and model (after _stop_inputs)."""
        for cam in self.cameras:
            if cam.cloud is not None:
                cam.cloud.destroy_publishers(self)
            for attr in ("pub_mask", "pub_color", "pub_overlay", "pub_confidence", "pub_info", "pub_label_info"):
                pub = getattr(cam, attr)
                if pub is not None:
                    self.destroy_publisher(pub)
                    setattr(cam, attr, None)
        self.cameras = []
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None
        self._close_model()
        self.segmenter = None

    def _close_model(self):
        """Stop what the model still runs in the background (a TensorRT engine build)."""
        closer = getattr(self.segmenter, "close", None)
        if callable(closer):
            closer()

    def _started_line(self) -> str:
        """What serves: backend, precision in use (and whether its labels are fp32's), size, topics."""
        size = "native" if self.input_size is None else f"{self.input_size[0]}x{self.input_size[1]}"
        seg = self.segmenter
        return (f"{seg.describe()}, {seg.info.num_classes} classes, input size {size}, {seg.labels_note()}; "
                + "; ".join(f"{self.resolve_topic_name(c.topic)} -> {c.pub_mask.topic_name}" for c in self.cameras))

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

    def _on_camera_info(self, msg, cam: Camera):
        with self._cond:
            cam.stats.camera_info_in += 1
            cam.infos.append((stamp_ns(msg.header.stamp), msg))

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
        self._warn_limited(cam, reason, f"dropped a frame from {cam.topic} ({reason}): {detail}")

    def _note(self, cam: Camera, note: str, detail: str):
        with self._cond:
            cam.stats.notes[note] += 1
        self._warn_limited(cam, note, f"frame from {cam.topic} ({note}): {detail}")

    def _warn_limited(self, cam: Camera, key: str, text: str):
        now = time.monotonic()
        if now - self._warned.get((cam.name, key), -1e9) >= _WARN_EVERY_S:
            self._warned[(cam.name, key)] = now
            self.get_logger().warning(text)

    def process(self, batch):
        """Decode, run and publish a list of (camera, (serialised message, receipt time)); one
        inference per network size."""
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
            warnings = [] if self.decode_warnings == "publish" else None
            try:
                rgb = conv.to_rgb(msg, warnings)
            except conv.FrameError as exc:
                self._drop(cam, exc.reason, str(exc))
                continue
            if warnings:
                self._note(cam, "decode_warning", warnings[0])
            h, w = rgb.shape[:2]
            nh, nw = network_size(h, w, self.input_size, self.max_input_pixels)
            if self.input_size is None and (nh, nw) != (h, w):
                self._note(cam, "downscaled", f"{w}x{h} is over max_input_pixels={self.max_input_pixels}: "
                           f"run at {nw}x{nh}, mask scaled back")
            fh, fw = fit_size(nh, nw, self.segmenter.size_range)
            if (fh, fw) != (nh, nw):  # a TensorRT engine runs its profile's sizes only
                (lo_h, lo_w), (hi_h, hi_w) = self.segmenter.size_range
                self._note(cam, "resized_to_profile", f"{nw}x{nh} is outside the engine's profile ({lo_w}x{lo_h} to "
                           f"{hi_w}x{hi_h}): run at {fw}x{fh}, mask scaled back; build the engine for this camera "
                           f"(drn-build-engine --sizes {nh}x{nw}) to run it at its own size")
                nh, nw = fh, fw
            net = conv.resize_image(rgb, nh, nw)
            jobs.append(Job(cam, header, received, rgb, net, (time.perf_counter() - start) * 1e3))
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
        want_points = self.get_parameter("publish_points").value
        points_rgb = self.get_parameter("points_rgb").value
        need_conf = (want_conf and any(j.cam.pub_confidence.get_subscription_count() for j in jobs)) or any(
            j.cam.cloud is not None and j.cam.cloud.wanted(want_points) for j in jobs)
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
            self._publish_camera_info(cam, job.header)
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
            self._publish_optional(job, mask, result.confidence, i, want_color, want_overlay, alpha, want_conf,
                                   conf_encoding, want_points, points_rgb)

    def _publish_camera_info(self, cam: Camera, header):
        """The camera_info stamped like the frame (else the newest), re-stamped with the mask's header."""
        if cam.pub_info is None:
            return
        want = stamp_ns(header.stamp)
        with self._cond:
            if not cam.infos:
                return
            exact = next((m for s, m in reversed(cam.infos) if s == want), None)
            src = exact if exact is not None else cam.infos[-1][1]
            cam.stats.camera_info_out += 1
            cam.stats.camera_info_exact += exact is not None
        cam.pub_info.publish(CameraInfo(
            header=header, height=src.height, width=src.width, distortion_model=src.distortion_model, d=src.d,
            k=src.k, r=src.r, p=src.p, binning_x=src.binning_x, binning_y=src.binning_y, roi=src.roi))

    def _publish_optional(self, job, mask, confidence, i, want_color, want_overlay, alpha, want_conf, conf_encoding,
                          want_points, points_rgb):
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
        if confidence is None:  # computed only for a confidence or cloud subscriber
            return
        conf = conv.resize_image(confidence[i], h, w)
        if want_conf and cam.pub_confidence.get_subscription_count():
            cam.pub_confidence.publish(conv.confidence_to_image(conf, job.header, conf_encoding))
            cam.stats.optional_outputs["confidence"] += 1
        cloud = cam.cloud
        if cloud is not None and cloud.wanted(want_points):
            skipped = cloud.publish(job.header, mask, conf, job.rgb if points_rgb else None, self.depth_tolerance_ns)
            if skipped:
                self._warn_limited(cam, skipped[0], f"no cloud for a frame from {cam.topic}: {skipped[1]}")

    # ---------------------------------------------------------------- health
    def stats_snapshot(self) -> dict:
        """{camera name: copy of its counters} (for tools and tests)."""
        with self._cond:
            return {c.name: c.stats.snapshot() for c in self.cameras}

    def serving(self) -> dict:
        """What serves the frames now: backend, device, precision, model, arch (+ model switch state)."""
        seg = self.segmenter
        if seg is None:
            return {}
        out = {"backend": seg.backend, "device": seg.device, "precision": getattr(seg, "precision", "fp32"),
               "model": str(self.model_file), "arch": seg.info.arch}
        status = getattr(seg, "status", None)
        if callable(status):  # a model being produced in another process (TensorRT engine build)
            st = status()
            out.update(model_switch_state=st["state"], model_switch=st["message"])
        return out

    def _publish_diagnostics(self):
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        serving = self.serving()
        for cam in self.cameras:
            topics = {"input_topic": cam.subscription.topic_name if cam.subscription else self.resolve_topic_name(cam.topic),
                      "mask_topic": cam.pub_mask.topic_name}
            if cam.info_topic:
                topics["camera_info_topic"] = cam.info_topic
            with self._cond:
                status = camera_status(f"{self.get_name()}: {cam.name}", cam.stats, topics, serving,
                                       cam.info_topic or None)
            if cam.cloud is not None:
                cam.cloud.add_to_status(status)
            msg.status.append(status)
        self._diag_pub.publish(msg)


class startup_errors:
    """Context manager: rclpy's parameter / name errors during set-up become one-line StartupErrors."""

    def __init__(self, node):
        self.node = node

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None or issubclass(exc_type, StartupError):
            return False
        if issubclass(exc_type, ParameterException):
            raise StartupError(f"bad parameter: {exc}") from None
        if issubclass(exc_type, NameValidationException):
            raise StartupError(f"invalid topic name in image_topics {getattr(self.node, 'image_topics', '')}: "
                               f"{str(exc).splitlines()[0].rstrip(':')}") from None
        return False
