"""One camera's semantic cloud in seg_node: its registered depth input, the matching by stamp, the
cloud outputs (drn[/<camera>]/points, drn[/<camera>]/obstacle_points) and their health.

The depth subscription only keeps the last few depth frames as they came (serialised; only the one a
mask uses is read); nothing is computed unless someone subscribes to a cloud. A mask gets the depth frame whose stamp
is nearest its own within ``depth_stamp_tolerance``, else no cloud (counted): never a cloud from a
stale depth frame. seg_core.py calls this; pointcloud.py and depth.py do the arithmetic.
"""
from __future__ import annotations

import struct
import threading
from collections import Counter, deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from drn_perception.ros import bagio
from drn_perception.ros import depth as dp
from drn_perception.ros.cameras import camera_info_topic, stamp_ns
from drn_perception.ros.conversions import FrameError, confidence_to_mono8
from drn_perception.ros.params import StartupError
from drn_perception.ros.pointcloud import CloudBuilder, cloud_msg

DEPTH_KEPT = 8  # depth frames kept per camera to find the one stamped like the mask
# Why a mask got no cloud: no depth frame within the tolerance, no depth camera_info yet, a depth
# frame the node cannot read (encoding, size, CDR) or camera_info without a focal length.
SKIP_REASONS = ("no_depth", "no_depth_info", "depth_encoding", "depth_size", "depth_info", "bad_message")


def read_parameters(values: dict, image_topics: list[str], class_names) -> list[dict | None]:
    """Per camera: None (no depth) or {depth_topic, info_topic, keep (256,) bool or None}; StartupError
    for lists whose length does not match image_topics or an obstacle class the model does not have
    (not checked while ``class_names`` is None: before the model is loaded)."""
    def per_camera(name):
        items = [t.strip() for t in values[name]]
        if not any(items):
            return [""] * len(image_topics)
        if len(items) != len(image_topics):
            raise StartupError(f"{name} has {len(items)} entries for {len(image_topics)} image_topics: give one "
                               "per image topic ('' for a camera without depth)")
        return items

    depth_topics, info_topics = per_camera("depth_topics"), per_camera("depth_info_topics")
    keep = None
    wanted = [n.strip() for n in values["obstacle_classes"] if n.strip()]
    if wanted and class_names is not None:
        unknown = [n for n in wanted if n not in class_names]
        if unknown:
            raise StartupError(f"obstacle_classes names {', '.join(map(repr, unknown))}, not a class of the model "
                               f"({', '.join(class_names)})")
        keep = np.zeros(256, bool)
        keep[[list(class_names).index(n) for n in wanted]] = True
    return [None if not d else {"depth_topic": d, "info_topic": i or camera_info_topic(d), "keep": keep}
            for d, i in zip(depth_topics, info_topics)]


def cdr_stamp(raw) -> int | None:
    """header.stamp (ns) of a serialised message whose first field is a std_msgs/Header: after the 4-byte
    CDR encapsulation header (its second byte 1: little-endian), int32 sec and uint32 nanosec."""
    if len(raw) < 12 or raw[0] != 0 or raw[1] not in (0, 1):
        return None
    sec, nanosec = struct.unpack_from("<iI" if raw[1] else ">iI", raw, 4)
    return sec * 10**9 + nanosec


class SemanticCloud:
    def __init__(self, node, prefix: str, depth_topic: str, info_topic: str, keep, out_qos):
        self.depth_topic = node.resolve_topic_name(depth_topic)
        self.info_topic = node.resolve_topic_name(info_topic)
        self.keep = keep
        self.lock = threading.Lock()
        self.frames: deque = deque(maxlen=DEPTH_KEPT)  # (stamp ns, serialised Image)
        self.info = None
        self.builder = CloudBuilder()
        self.subs = []
        self.depth_in = self.clouds_out = self.obstacle_clouds_out = 0
        self.skipped: Counter = Counter()
        self.reported_in = 0
        self.pub_points = node.create_publisher(PointCloud2, f"{prefix}/points", out_qos)
        self.pub_obstacles = node.create_publisher(PointCloud2, f"{prefix}/obstacle_points", out_qos) \
            if keep is not None else None

    # ---------------------------------------------------------------- node life
    def subscribe(self, node, reliability):
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, durability=DurabilityPolicy.VOLATILE,
                         reliability=reliability)
        info_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, durability=DurabilityPolicy.VOLATILE,
                              reliability=reliability)
        self.subs = [node.create_subscription(Image, self.depth_topic, self._on_depth, qos, raw=True),
                     node.create_subscription(CameraInfo, self.info_topic, self._on_info, info_qos)]

    def unsubscribe(self, node):
        for sub in self.subs:
            node.destroy_subscription(sub)
        self.subs = []
        with self.lock:
            self.frames.clear()

    def destroy_publishers(self, node):
        for pub in (self.pub_points, self.pub_obstacles):
            if pub is not None:
                node.destroy_publisher(pub)
        self.pub_points = self.pub_obstacles = None

    def _on_depth(self, raw: bytes):
        """Keep the serialised frame under its stamp; it is only deserialised if a mask uses it."""
        with self.lock:
            self.depth_in += 1
            stamp = cdr_stamp(raw)
            if stamp is None:
                self.skipped["bad_message"] += 1
            else:
                self.frames.append((stamp, raw))

    def _on_info(self, msg):
        with self.lock:
            self.info = msg

    # ---------------------------------------------------------------- frames
    def wanted(self, enabled: bool) -> bool:
        """Someone listens to one of the clouds (and publish_points is on)."""
        return enabled and self.pub_points is not None and (
            self.pub_points.get_subscription_count() > 0
            or (self.pub_obstacles is not None and self.pub_obstacles.get_subscription_count() > 0))

    def publish(self, header, mask: np.ndarray, confidence: np.ndarray, rgb: np.ndarray | None,
                tolerance_ns: int) -> tuple[str, str] | None:
        """Publish the cloud(s) of one mask to whoever subscribes (float confidence 0..1 at the mask's
        size, published as mono8: the values of drn/confidence); (skip reason, detail) when there is none."""
        organized = self.pub_points.get_subscription_count() > 0
        selected = self.pub_obstacles is not None and self.pub_obstacles.get_subscription_count() > 0
        with self.lock:
            found = dp.nearest(self.frames, stamp_ns(header.stamp), tolerance_ns)
            info = self.info
        try:
            if found is None:
                raise FrameError("no_depth", f"no depth frame on {self.depth_topic} within "
                                 f"{tolerance_ns / 1e9:g} s of the mask's stamp")
            if info is None:
                raise FrameError("no_depth_info", f"no camera_info on {self.info_topic} yet")
            try:
                depth_msg = bagio.deserialize(found[1], bagio.IMAGE)
            except Exception as exc:  # noqa: BLE001 - rosbags raises several kinds on bad CDR
                raise FrameError("bad_message", f"cannot read a depth frame from {self.depth_topic}: "
                                 f"{type(exc).__name__}: {exc}") from None
            points, obstacles = self.make(header, depth_msg, info, mask, confidence, rgb, organized, selected)
        except FrameError as exc:
            with self.lock:
                self.skipped[exc.reason] += 1
            return exc.reason, str(exc)
        if points is not None:
            self.pub_points.publish(points)
        if obstacles is not None:
            self.pub_obstacles.publish(obstacles)
        with self.lock:
            self.clouds_out += points is not None
            self.obstacle_clouds_out += obstacles is not None
        return None

    def make(self, header, depth_msg, info, mask, confidence, rgb, organized=True, selected=False):
        """(organized cloud or None, class-filtered cloud or None) of one mask and its depth frame;
        FrameError for a depth image or camera_info the node cannot use."""
        h, w = mask.shape
        view = dp.depth_view(depth_msg)
        k = dp.intrinsics(info, h, w, view.shape)
        depth = dp.on_grid(view, h, w)
        confidence = confidence_to_mono8(confidence)  # drn/confidence's values
        points = obstacles = None
        if organized:
            points = cloud_msg(header, h, w, self.builder.organized(depth, k, mask, confidence, rgb), rgb is not None)
        if selected:
            z = dp.to_metres(depth, out=self.builder.z_buffer(h, w))
            data, n = self.builder.selected(z, k, mask, confidence, self.keep, rgb)
            obstacles = cloud_msg(header, 1, n, data, rgb is not None)
        return points, obstacles

    # ---------------------------------------------------------------- health
    def add_to_status(self, status: DiagnosticStatus) -> None:
        """Depth keys into a camera's status; WARN naming the depth topic when nothing came since the last report."""
        with self.lock:
            values = {"depth_topic": self.depth_topic, "depth_camera_info_topic": self.info_topic,
                      "depth_in": self.depth_in, "points_out": self.clouds_out,
                      "obstacle_points_out": self.obstacle_clouds_out,
                      **{f"points_skipped_{r}": self.skipped.get(r, 0) for r in SKIP_REASONS}}
            new_in, self.reported_in = self.depth_in - self.reported_in, self.depth_in
            no_info = self.info is None
        status.values.extend(KeyValue(key=k, value=str(v)) for k, v in values.items())
        notes = []
        if not new_in:
            notes.append(f"no depth on {self.depth_topic} since the last report: no points published")
        if no_info:
            notes.append(f"no camera_info on {self.info_topic}: no points published")
        if notes:
            status.level = max(status.level, DiagnosticStatus.WARN)
            status.message = "; ".join([status.message, *notes])
