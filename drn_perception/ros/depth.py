"""Registered depth images for the semantic cloud: read, match to a mask by stamp, put on its grid.

A depth image registered to the colour camera (RealSense ``aligned_depth_to_color/image_raw``,
ZED ``depth/depth_registered``, OAK ``stereo/depth`` aligned to RGB) shares the colour image's
optical frame and intrinsics; when its size differs from the colour frame it is sampled onto the
mask's grid (nearest pixel centre) and the intrinsics are scaled the same way.
"""
from __future__ import annotations

import numpy as np

from drn_perception.ros.conversions import FrameError, _buffer, _inter_labels, opencv

ENCODINGS = {"16UC1": np.dtype(np.uint16), "mono16": np.dtype(np.uint16), "32FC1": np.dtype(np.float32)}
_NAN_BITS = np.uint32(0x7FC00000)  # a float32's exponent all ones and a mantissa bit: NaN


def depth_view(msg) -> np.ndarray:
    """Zero-copy (H, W) view of a 16UC1/mono16 (mm) or 32FC1 (m) sensor_msgs/Image; FrameError otherwise."""
    dtype = ENCODINGS.get(msg.encoding)
    if dtype is None:
        raise FrameError("depth_encoding", f"depth encoding {msg.encoding!r} is not supported (16UC1 in mm, "
                         "32FC1 in m)")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h == 0 or w == 0 or step < w * dtype.itemsize:
        raise FrameError("depth_size", f"depth image {w}x{h} with step {step} is malformed")
    buf = _buffer(msg.data)
    if buf.size < step * h:
        raise FrameError("depth_size", f"depth data has {buf.size} bytes, step*height needs {step * h}")
    dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    return np.ndarray((h, w), dtype, buffer=buf, strides=(step, dtype.itemsize))


def to_metres(depth: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float32 metres (into ``out`` when given), NaN where there is no measurement (0 mm; NaN, inf
    or <= 0 m)."""
    z = np.empty(depth.shape, np.float32) if out is None else out
    z[...] = depth  # native byte order, ours to write into
    if depth.dtype.kind == "u":
        np.multiply(z, np.float32(0.001), out=z)
        bad = depth == 0
    else:
        bad = ~((z > 0) & (z < np.inf))  # NaN, inf, <= 0
    # NaN by its bits (any float OR-ed with them is a NaN): 3 cheap passes instead of a masked write
    np.bitwise_or(z.view(np.uint32), np.multiply(bad, _NAN_BITS, dtype=np.uint32), out=z.view(np.uint32))
    return z


def on_grid(depth: np.ndarray, height: int, width: int) -> np.ndarray:
    """The depth image sampled onto a height x width grid (nearest pixel centre); as is at that size."""
    if depth.shape == (height, width):
        return depth
    native = depth.astype(depth.dtype.newbyteorder("="), copy=False)
    cv2 = opencv()
    return cv2.resize(native, (width, height), interpolation=_inter_labels(cv2))


def intrinsics(info, height: int, width: int, depth_shape: tuple) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of the height x width grid from a CameraInfo of the depth image (its K, for
    info.width x info.height, or the depth image's size where those are 0), pixel centres kept."""
    k = info.k
    fx, fy, cx, cy = float(k[0]), float(k[4]), float(k[2]), float(k[5])
    if fx <= 0 or fy <= 0:
        raise FrameError("depth_info", f"camera_info K has no focal length (fx={fx}, fy={fy})")
    ih, iw = (int(info.height), int(info.width)) if info.width and info.height else depth_shape
    sx, sy = width / iw, height / ih
    return fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5


def nearest(frames, want_ns: int, tolerance_ns: int):
    """The (stamp, message) in ``frames`` closest to ``want_ns`` within the tolerance, else None."""
    best = None
    for stamp, msg in frames:
        gap = abs(stamp - want_ns)
        if gap <= tolerance_ns and (best is None or gap < best[0]):
            best = (gap, stamp, msg)
    return None if best is None else best[1:]
