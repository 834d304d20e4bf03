"""Test helpers shared by the ROS tests: frames as messages, a probe node, node processes.

Messages are built here with plain NumPy/OpenCV, independently of drn_perception.ros.conversions,
so the conversion code is checked against something it did not produce.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from rosbags.typesys import Stores, get_typestore

REPO = Path(__file__).resolve().parent.parent
TS = get_typestore(Stores.ROS2_KILTED)  # rosbags' message types, for reading bags back


def stamp(msg) -> int:
    """A message's header stamp in nanoseconds."""
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def random_rgb(h: int, w: int, seed: int = 0, smooth: bool = False) -> np.ndarray:
    """An RGB uint8 frame; ``smooth`` gives low-frequency content (what JPEG keeps)."""
    rng = np.random.default_rng(seed)
    if not smooth:
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    small = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _fill_header(msg, stamp=None, frame_id=""):
    if stamp is not None:
        msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp[0]), int(stamp[1])
    msg.header.frame_id = frame_id
    return msg


def image_msg(rgb: np.ndarray, encoding: str = "rgb8", pad: int = 0, stamp=None, frame_id: str = ""):
    """sensor_msgs/Image carrying ``rgb`` in ``encoding`` (grey encodings take channel 0),
    each row followed by ``pad`` junk bytes."""
    from sensor_msgs.msg import Image

    channels = {
        "rgb8": rgb, "bgr8": rgb[..., ::-1], "8UC3": rgb[..., ::-1],
        "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)]),
        "bgra8": np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 7, np.uint8)]),
        "8UC4": np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 9, np.uint8)]),
        "mono8": rgb[..., :1], "8UC1": rgb[..., :1],
    }[encoding]
    h, w, c = channels.shape
    rows = np.full((h, w * c + pad), 0xAB, np.uint8)
    rows[:, : w * c] = channels.reshape(h, w * c)
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=0, step=w * c + pad)
    msg.data = rows.tobytes()
    return _fill_header(msg, stamp, frame_id)


def compressed_msg(rgb: np.ndarray, fmt: str = "jpeg", stamp=None, frame_id: str = ""):
    """sensor_msgs/CompressedImage of ``rgb`` encoded by OpenCV as jpeg or png."""
    from sensor_msgs.msg import CompressedImage

    ok, enc = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", np.ascontiguousarray(rgb[..., ::-1]))
    assert ok
    msg = CompressedImage(format=fmt)
    msg.data = enc.tobytes()
    return _fill_header(msg, stamp, frame_id)


def decoded(msg) -> np.ndarray:
    """What a CompressedImage decodes to, by OpenCV directly (the node must see the same)."""
    bgr = cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(bgr[..., ::-1])


def read_image(msg) -> np.ndarray:
    """Pixels of a mono8 / rgb8 / 32FC1 message as the ROS spec lays them out."""
    dtype, ch = {"mono8": (np.uint8, 1), "rgb8": (np.uint8, 3), "32FC1": (np.float32, 1)}[msg.encoding]
    dtype = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    raw = np.frombuffer(msg.data, np.uint8)
    assert raw.size >= msg.step * msg.height
    rows = raw[: msg.step * msg.height].reshape(msg.height, msg.step)[:, : msg.width * ch * dtype.itemsize]
    out = np.ascontiguousarray(rows).view(dtype).reshape(msg.height, msg.width, ch)
    return out[..., 0] if ch == 1 else out


def diagnostics_values(array_msg) -> dict:
    """{status name: {key: value}} from a DiagnosticArray."""
    return {s.name: {kv.key: kv.value for kv in s.values} | {"_level": s.level, "_message": s.message}
            for s in array_msg.status}


class Probe:
    """A test node: publishes frames, collects whatever arrives on the topics it listens to."""

    def __init__(self, context, name: str = "probe"):
        import rclpy.node

        self.node = rclpy.node.Node(name, context=context)
        self.received = defaultdict(list)
        self.lock = threading.Lock()
        self._subs = []

    def listen(self, topic: str, msg_type, qos=10):
        def cb(msg, topic=topic):
            with self.lock:
                self.received[topic].append(msg)

        self._subs.append(self.node.create_subscription(msg_type, topic, cb, qos))

    def publisher(self, topic: str, msg_type, reliable: bool = False, depth: int = 1):
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                         reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)
        return self.node.create_publisher(msg_type, topic, qos)

    def messages(self, topic: str) -> list:
        with self.lock:
            return list(self.received[topic])

    def clear(self):
        with self.lock:
            self.received.clear()

    def wait(self, predicate, timeout: float = 10.0, what: str = "condition"):
        """Wait (while an executor spins elsewhere) until ``predicate()`` is truthy."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            result = predicate()
            if result:
                return result
            time.sleep(0.01)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")

    def wait_matched(self, pub, count: int = 1, timeout: float = 10.0):
        self.wait(lambda: pub.get_subscription_count() >= count, timeout, f"{count} subscriber(s) on {pub.topic_name}")

    def wait_for_message(self, topic: str, predicate=lambda m: True, timeout: float = 10.0):
        """First message on ``topic`` satisfying ``predicate``."""
        def find():
            for m in self.messages(topic):
                if predicate(m):
                    return m
            return None
        return self.wait(find, timeout, f"a message on {topic}")

    def send_until_answered(self, pub, msg, answer_topic: str, frame_id: str, timeout: float = 10.0,
                            resend: float = 1.0):
        """Publish ``msg`` (header.frame_id = frame_id) and wait for the output carrying that
        frame_id; best-effort frames sent before discovery finishes can be lost, so resend."""
        msg.header.frame_id = frame_id
        end = time.monotonic() + timeout
        while True:
            pub.publish(msg)
            try:
                return self.wait_for_message(answer_topic, lambda m: m.header.frame_id == frame_id,
                                             timeout=min(resend, max(0.01, end - time.monotonic())))
            except AssertionError:
                if time.monotonic() >= end:
                    raise AssertionError(f"no answer on {answer_topic} for frame {frame_id!r}") from None

    def destroy(self):
        self.node.destroy_node()


class SpinThread:
    """Spin an executor with the given nodes in a background thread (context manager)."""

    def __init__(self, context, *nodes, multi_threaded: bool = False):
        from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor

        cls = MultiThreadedExecutor if multi_threaded else SingleThreadedExecutor
        self.executor = cls(context=context)
        for n in nodes:
            self.executor.add_node(n)
        self.thread = threading.Thread(target=self._spin, daemon=True)

    def _spin(self):
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.executor.shutdown(timeout_sec=2.0)
        self.thread.join(timeout=5.0)


def node_command(*ros_args: str, params: dict | None = None) -> list[str]:
    """The command ``ros2 run drn_perception seg_node`` amounts to, with -p name:=value args."""
    args = [sys.executable, "-m", "drn_perception.ros.node", "--ros-args"]
    for k, v in (params or {}).items():
        args += ["-p", f"{k}:={v}"]
    return args + list(ros_args)


def node_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def start_node(*ros_args: str, params: dict | None = None, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(node_command(*ros_args, params=params), env=env or node_env(), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop_node(proc: subprocess.Popen, sig=signal.SIGINT, timeout: float = 15.0) -> tuple[int, str]:
    """Send ``sig``, wait, return (exit code, everything it printed)."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"node did not exit within {timeout} s of {sig!r}:\n{out}") from None
    return proc.returncode, out
