"""Fuzzed camera frames with what seg_node must do with each: the test suite sends a few hundred,
benchmarks/node_stress.py ten thousand.

Every frame is (kind, expected, payload): ``expected`` is None for a frame that must come back as
a mask of its own size, or the drop reason it must be counted under (and then produce no mask).
``kind`` says on which of the node's two inputs it goes: "raw" (sensor_msgs/Image) or
"compressed" (sensor_msgs/CompressedImage). ``payload`` is an rclpy message, or bytes that are
not a valid serialised message (published as they are). Built with NumPy/OpenCV, independently of
drn_perception.ros.conversions.
"""
from __future__ import annotations

import cv2
import numpy as np

from ros_helpers import compressed_msg, image_msg, random_rgb

ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1", "8UC3", "8UC4")
UNSUPPORTED = ("16UC1", "yuv422", "bayer_rggb8", "32FC1", "rgb16", "", "nonsense")
# Serialised bytes no Image/CompressedImage deserialises from: a bad encapsulation, a cut buffer, a
# string length past the end (Fast DDS pads cut samples with zeros to a multiple of 4: all still fail).
BAD_CDR = (b"\x07\x07\x07\x07", b"\x00\x01\x00\x00" + b"\xff" * 8,
           b"\x00\x01\x00\x00" + b"\x00" * 8 + b"\xff\xff\xff\x7f" + b"\x00" * 8)


def _jpeg(rgb: np.ndarray) -> bytes:
    ok, enc = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]))
    assert ok
    return enc.tobytes()


def corrupt_jpeg(rgb: np.ndarray, rng: np.random.Generator) -> bytes:
    """A JPEG whose entropy-coded data stops short, then the end-of-image marker: libjpeg fills the
    missing blocks (grey) and says so only on stderr. (Flipped bytes are no sure test: they can form
    valid codes that decode without complaint, seen on small frames.)"""
    data = _jpeg(rgb)
    sos = data.find(b"\xff\xda")  # start of scan; its header's length follows
    start = sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big")
    end = len(data) - 2  # the end-of-image marker
    cut = start + int((end - start) * rng.uniform(0.2, 0.7))
    return data[:cut] + b"\xff\xd9"


def frames(n: int, seed: int = 0, max_side: int = 72):
    """``n`` fuzzed frames, a fixed mix of every category, in a seeded random order."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        c = i % 12
        h, w = (int(v) for v in rng.integers(8, max_side + 1, 2))
        rgb = random_rgb(h, w, seed=int(rng.integers(1 << 30)), smooth=c >= 6)
        if c <= 2:  # valid raw, any encoding, padded rows
            out.append(("raw", None, image_msg(rgb, ENCODINGS[int(rng.integers(len(ENCODINGS)))],
                                               pad=int(rng.integers(0, 9)))))
        elif c == 3:
            msg = image_msg(rgb, "rgb8")
            msg.encoding = UNSUPPORTED[int(rng.integers(len(UNSUPPORTED)))]
            out.append(("raw", "unsupported_encoding", msg))
        elif c == 4:
            msg = image_msg(rgb, "rgb8", pad=int(rng.integers(0, 5)))
            msg.data = msg.data[: int(rng.integers(0, len(msg.data) - 1))]
            out.append(("raw", "short_data", msg))
        elif c == 5:
            msg = image_msg(rgb, "bgr8")
            msg.step = int(rng.integers(0, w * 3))
            out.append(("raw", "bad_step", msg))
        elif c == 6:
            msg = image_msg(rgb, "rgb8")
            msg.height, msg.width = (0, w) if rng.integers(2) else (h, 0)
            out.append(("raw", "empty", msg))
        elif c == 7:  # valid compressed
            out.append(("compressed", None, compressed_msg(rgb, "jpeg" if rng.integers(2) else "png")))
        elif c == 8:
            msg = compressed_msg(rgb, "jpeg")
            msg.data = corrupt_jpeg(rgb, rng)
            out.append(("compressed", "decode_error", msg))
        elif c == 9:  # garbage, or a JPEG cut in half
            msg = compressed_msg(rgb, "jpeg")
            msg.data = (bytes(rng.integers(0, 256, int(rng.integers(1, 300)), dtype=np.uint8)) if rng.integers(2)
                        else _jpeg(rgb)[: len(_jpeg(rgb)) // 2])
            out.append(("compressed", "decode_error", msg))
        elif c == 10:
            msg = compressed_msg(rgb, "jpeg")
            msg.data = b""
            out.append(("compressed", "empty", msg))
        else:
            out.append(("raw" if rng.integers(2) else "compressed", "bad_message",
                        BAD_CDR[int(rng.integers(len(BAD_CDR)))]))
    order = rng.permutation(n)
    return [out[i] for i in order]


def expected_view(msg) -> np.ndarray:
    """The RGB frame the node must segment for a valid message (grey encodings replicate channel 0)."""
    if hasattr(msg, "format"):
        bgr = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
        return np.ascontiguousarray(bgr[..., ::-1])
    ch = {"rgb8": 3, "bgr8": 3, "8UC3": 3, "rgba8": 4, "bgra8": 4, "8UC4": 4, "mono8": 1, "8UC1": 1}[msg.encoding]
    raw = np.frombuffer(bytes(msg.data), np.uint8)[: msg.step * msg.height].reshape(msg.height, msg.step)
    px = raw[:, : msg.width * ch].reshape(msg.height, msg.width, ch)
    if ch == 1:
        return np.repeat(px, 3, axis=2)
    rgb = px[..., :3]
    return np.ascontiguousarray(rgb if msg.encoding in ("rgb8", "rgba8") else rgb[..., ::-1])
