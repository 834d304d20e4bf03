"""Semantic point clouds from a mask and a registered depth image, vectorised with NumPy/OpenCV.

``CloudBuilder.organized`` makes the pixel-aligned cloud Nav2's semantic segmentation layer reads:
one point per mask pixel (row-major, the mask's width and height), x, y, z in metres in the
camera's optical frame (x right, y down, z forward), the pixel's class id and mono8 confidence,
optionally its colour; NaN coordinates where the depth is invalid (0 in 16UC1, NaN/inf/<= 0 in
32FC1). ``CloudBuilder.selected`` makes the unorganized cloud of only some classes (valid depth
only), for Nav2's obstacle and voxel layers.

Point layout (little-endian, what rviz2 and PCL read):
  x float32 @0, y float32 @4, z float32 @8, label uint8 @12, confidence uint8 @13,
  [rgb float32 @16, PCL's packed bytes b, g, r, 255]; point_step 16, or 20 with rgb.

Speed: x, y, z and the packed label/confidence word are computed as planes into scratch arrays
kept between frames, then interleaved by one cv2.merge straight into the message's array.array
(rclpy takes an array.array as it is and copies it once when publishing), which is reused while
the size stays the same: per frame about the cost of writing the cloud's bytes twice
(benchmarks/README.md, "Semantic point cloud").
"""
from __future__ import annotations

import array
import sys

import numpy as np

from drn_perception.ros.conversions import opencv  # cv2 on first use (a broken OpenCV must not stop the node saying why)

from drn_perception.ros.depth import to_metres as depth_to_metres

FLOAT32, UINT8 = 7, 2  # sensor_msgs/PointField datatypes
# (name, offset, datatype)
FIELDS = (("x", 0, FLOAT32), ("y", 4, FLOAT32), ("z", 8, FLOAT32), ("label", 12, UINT8), ("confidence", 13, UINT8))
RGB_FIELD = ("rgb", 16, FLOAT32)
_LITTLE = sys.byteorder == "little"
_FIELD_MSGS: dict = {}  # (PointCloud2 class, rgb) -> its PointField list
BAND_PIXELS = 65536  # pixels per band of CloudBuilder.organized: ~1.3 MiB of planes (fastest of 8k-256k here)


def point_step(rgb: bool) -> int:
    return 20 if rgb else 16


def fields(rgb: bool) -> tuple:
    return FIELDS + ((RGB_FIELD,) if rgb else ())


def ray_factors(fx: float, fy: float, cx: float, cy: float, height: int, width: int):
    """Per column (u - cx) / fx and per row (v - cy) / fy, float32: x = z * cols[u], y = z * rows[v]."""
    cols = ((np.arange(width, dtype=np.float64) - cx) / fx).astype(np.float32)
    rows = ((np.arange(height, dtype=np.float64) - cy) / fy).astype(np.float32)
    return cols, rows


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) uint32 0xFFRRGGBB, PCL's packed rgb (bytes b, g, r, a=255, what
    pcl::PointXYZRGB holds; rviz2 and PCL read the float32 field by its bits), in one pass."""
    cv2 = opencv()
    bgra = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGRA)
    return bgra.view(np.uint32 if _LITTLE else "<u4")[..., 0]


class CloudBuilder:
    """One camera's cloud maker: scratch planes and the output buffer are kept between frames of
    the same size (only the node's worker thread calls it)."""

    def __init__(self):
        self._key = None
        self._planes = None
        self._out = None
        self._factors_key = None
        self._factors = None
        self._z = None
        self._zeros = None

    def z_buffer(self, height: int, width: int) -> np.ndarray:
        """A float32 (height, width) scratch plane for the depth in metres, kept between frames."""
        if self._z is None or self._z.shape != (height, width):
            self._z = np.empty((height, width), np.float32)
        return self._z

    def _factors_for(self, intrinsics, height, width):
        key = (tuple(float(v) for v in intrinsics), height, width)
        if key != self._factors_key:
            self._factors_key, self._factors = key, ray_factors(*intrinsics, height, width)
        return self._factors

    def organized(self, depth: np.ndarray, intrinsics, labels: np.ndarray, confidence: np.ndarray,
                  rgb: np.ndarray | None = None) -> array.array:
        """Point bytes of the organized cloud: ``depth`` (H, W) on the mask's grid (uint16 mm or float32
        m, as depth.to_metres reads), the (fx, fy, cx, cy) of that grid, uint8 labels and confidence
        (H, W), optional RGB (H, W, 3). Made in bands of rows whose planes stay in the CPU's cache, so
        memory sees little more than the depth read and the cloud written once."""
        h, w = depth.shape
        cols, rows = self._factors_for(intrinsics, h, w)
        channels = 5 if rgb is not None else 4
        band = max(1, min(h, BAND_PIXELS // w))
        key = (h, w, channels)
        if key != self._key:
            self._key = key
            self._planes = [np.empty((band, w), np.float32) for _ in range(3)] + [
                np.empty((band, w), np.uint32) for _ in range(channels - 3)]
            self._zeros = np.zeros((band, w), np.uint8)
            # array.array * n allocates and fills n bytes with memcpy; every byte is rewritten below
            self._out = array.array("B", b"\0") * (h * w * 4 * channels)
        out = np.frombuffer(self._out, np.int32).reshape(h, w, channels)
        cv2 = opencv()
        for r0 in range(0, h, band):
            r1 = min(h, r0 + band)
            n = r1 - r0
            x, y, z, *words = (p[:n] for p in self._planes)
            depth_to_metres(depth[r0:r1], out=z)
            np.multiply(z, cols[None, :], out=x)
            np.multiply(z, rows[r0:r1, None], out=y)
            packed = words[0]
            if _LITTLE:  # the word's bytes: label, confidence, 0, 0 (one interleave of four uint8 planes)
                zeros = self._zeros[:n]
                cv2.merge([labels[r0:r1], confidence[r0:r1], zeros, zeros], dst=packed.view(np.uint8).reshape(n, w, 4))
            else:
                packed[...] = (confidence[r0:r1].astype(np.uint32) << 8) | labels[r0:r1]
            planes = [x, y, z, packed]
            if rgb is not None:
                words[1][...] = pack_rgb(rgb[r0:r1])
                planes.append(words[1])
            cv2.merge([p.view(np.int32) for p in planes], dst=out[r0:r1])
        return self._out

    def selected(self, z: np.ndarray, intrinsics, labels: np.ndarray, confidence: np.ndarray,
                 keep_class: np.ndarray, rgb: np.ndarray | None = None) -> tuple[array.array, int]:
        """Point bytes and count of the unorganized cloud of pixels whose class is in ``keep_class``
        ((256,) bool) and whose depth is valid; same layout as ``organized``."""
        h, w = z.shape
        cols, rows = self._factors_for(intrinsics, h, w)
        keep = np.take(keep_class, labels)
        keep &= z > 0  # False for NaN
        idx = np.flatnonzero(keep)
        n = idx.size
        zs = z.reshape(-1)[idx]
        v, u = np.divmod(idx, w)
        planes = [zs * cols[u], zs * rows[v], zs,
                  (confidence.reshape(-1)[idx].astype(np.uint32) << 8) | labels.reshape(-1)[idx]]
        if rgb is not None:
            planes.append(pack_rgb(rgb.reshape(-1, 1, 3)[idx]).reshape(-1))
        out = array.array("B", b"\0") * (n * 4 * len(planes))
        if n:
            opencv().merge([np.ascontiguousarray(p).view(np.int32).reshape(n, 1) for p in planes],
                      dst=np.frombuffer(out, np.int32).reshape(n, 1, len(planes)))
        return out, n


def cloud_msg(header, height: int, width: int, data: array.array, rgb: bool, cloud_cls=None, field_cls=None):
    """sensor_msgs/PointCloud2 around ``data`` (not copied); header (stamp, frame_id) copied."""
    if cloud_cls is None:
        from sensor_msgs.msg import PointCloud2 as cloud_cls
        from sensor_msgs.msg import PointField as field_cls
    step = point_step(rgb)
    key = (cloud_cls, rgb)
    if key not in _FIELD_MSGS:  # made once: building PointField messages costs more than the header
        _FIELD_MSGS[key] = [field_cls(name=n, offset=o, datatype=t, count=1) for n, o, t in fields(rgb)]
    # check_fields=True (rosidl_generator_py >= 0.22: Jazzy, Kilted) takes an array.array as it is; without
    # it those versions copy it into a new array.array (0.13 ms at 640x480). Older ones always take it.
    msg = cloud_cls(check_fields=True) if "_check_fields" in cloud_cls.__slots__ else cloud_cls()
    msg.header.stamp = header.stamp
    msg.header.frame_id = header.frame_id
    msg.height, msg.width = height, width
    msg.fields = _FIELD_MSGS[key]
    msg.is_bigendian = not _LITTLE
    msg.point_step, msg.row_step = step, step * width
    msg.is_dense = False
    msg.data = data
    return msg
