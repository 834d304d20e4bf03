"""One camera of seg_node: its topics, publishers and pending frame, and the naming rules
(camera names from topics, image_transport's camera_info sibling, the network size of a frame)."""
from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from drn_perception.ros.diagnostics import CameraStats

# Last topic-name components that name the image rather than the camera.
_IMAGE_SUFFIXES = {"image_raw", "image", "image_rect", "image_rect_color", "image_color", "image_mono",
                   "compressed"}
_TRANSPORTS = {"compressed", "theora", "zstd", "ffmpeg"}  # image_transport suffixes after the base topic
INFO_KEPT = 30  # camera_info messages kept per camera, to find the one stamped like the frame


@dataclass
class Camera:
    name: str
    topic: str
    compressed: bool
    prefix: str
    info_topic: str = ""  # sibling camera_info (resolved), "" when not republished
    pub_mask: object = None
    pub_color: object = None
    pub_overlay: object = None
    pub_confidence: object = None
    pub_info: object = None
    pub_label_info: object = None  # vision_msgs/LabelInfo, where vision_msgs is installed
    cloud: object = None  # semantic_cloud.SemanticCloud when a depth topic is configured
    subscription: object = None
    info_subscription: object = None
    pending: tuple | None = None  # (serialised message, receipt time on time.perf_counter)
    infos: deque = field(default_factory=lambda: deque(maxlen=INFO_KEPT))  # (stamp ns, CameraInfo)
    stats: CameraStats = field(default_factory=CameraStats)


@dataclass
class Job:
    cam: Camera
    header: object
    received: float
    rgb: np.ndarray  # input resolution
    net: np.ndarray  # network input (resized when input_size is set or the frame is too large)
    prep_ms: float = 0.0  # decode + resize of this frame


def camera_name_from_topic(topic: str, index: int) -> str:
    """'/front/camera/image_raw' -> 'front_camera'; falls back to 'camera<index>'."""
    parts = [p for p in topic.strip("/").split("/") if p and p != "~"]
    while parts and parts[-1] in _IMAGE_SUFFIXES:
        parts.pop()
    return sanitize_name("_".join(parts)) or f"camera{index}"


def camera_info_topic(image_topic: str) -> str:
    """image_transport's sibling: '/cam/image_raw' and '/cam/image_raw/compressed' -> '/cam/camera_info'."""
    parts = image_topic.rstrip("/").split("/")
    if len(parts) > 1 and parts[-1] in _TRANSPORTS:
        parts.pop()
    return "/".join(parts[:-1] + ["camera_info"])


def sanitize_name(name: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", name.strip()).strip("_")
    if name and name[0].isdigit():
        name = "cam_" + name
    return name


def network_size(h: int, w: int, input_size, max_pixels: int) -> tuple[int, int]:
    """The size a frame runs at: input_size, else its own size scaled down to max_pixels (aspect kept)."""
    if input_size is not None:
        return input_size
    if not max_pixels or h * w <= max_pixels:
        return h, w
    scale = (max_pixels / (h * w)) ** 0.5
    return max(8, min(h, int(h * scale))), max(8, min(w, int(w * scale)))


def stamp_ns(stamp) -> int:
    return int(stamp.sec) * 10**9 + int(stamp.nanosec)
