"""sensor_msgs <-> NumPy without needless copies.

Input side: ``image_view`` gives a zero-copy (H, W, C) view of an ``Image`` message's
buffer (rows addressed through ``step``, so padded rows cost nothing), after checking the
encoding, sizes and data length; ``to_rgb`` turns any supported message (``Image`` or
``CompressedImage``) into an RGB uint8 (H, W, 3) array, copying only when a colour
conversion or decode is needed. A frame that cannot be used raises ``FrameError`` whose
``reason`` is a short key the node counts drops under.

Output side: label masks, colour masks, overlays and confidence maps become ``Image``
messages whose ``data`` is filled from bytes (assigning a NumPy array to ``msg.data`` makes
rclpy convert element by element, ~80 ms for a 1024x512 frame).

Works on rclpy messages and on rosbags' deserialised messages alike (both expose
``height``, ``width``, ``encoding``, ``step``, ``data``; ``CompressedImage`` has ``format``).
"""
from __future__ import annotations

import array
import sys

import numpy as np

from drn_perception.model_info import IGNORE_LABEL

# encoding -> (channels, OpenCV's conversion to RGB by name, or None when already RGB)
ENCODINGS = {
    "rgb8": (3, None),
    "bgr8": (3, "COLOR_BGR2RGB"),
    "8UC3": (3, "COLOR_BGR2RGB"),  # OpenCV's untyped 3-channel images are BGR
    "rgba8": (4, "COLOR_RGBA2RGB"),
    "bgra8": (4, "COLOR_BGRA2RGB"),
    "8UC4": (4, "COLOR_BGRA2RGB"),
    "mono8": (1, "COLOR_GRAY2RGB"),
    "8UC1": (1, "COLOR_GRAY2RGB"),
}
SUPPORTED = ", ".join(ENCODINGS)


class OpenCVUnavailable(ImportError):
    """cv2 cannot be imported; the message says why and what to do."""


_cv2 = None


def opencv():
    """The cv2 module, imported on first use, not with this module: a robot whose OpenCV is broken
    (Ubuntu's and JetPack's are built for numpy 1.x, so a numpy 2 pulled in by pip breaks them)
    still gets ``seg_node --help`` and a one-line start-up error saying why."""
    global _cv2
    if _cv2 is None:
        try:
            import cv2
        except Exception as exc:  # noqa: BLE001 - ImportError, or numpy's ABI complaint from inside cv2
            reason = " ".join(str(exc).split())
            hint = ""
            if int(np.__version__.split(".")[0]) >= 2:
                hint = (f"; numpy {np.__version__} is installed: an OpenCV built for numpy 1.x (Ubuntu's "
                        "python3-opencv, JetPack's) needs numpy < 2 (pip install 'numpy<2', README \"On a robot\")")
            raise OpenCVUnavailable(f"OpenCV (cv2) cannot be imported: {type(exc).__name__}: {reason}{hint}") from None
        _cv2 = cv2
    return _cv2


def _inter_labels(cv2) -> int:
    """Label masks are resized with nearest neighbour; the _EXACT variant samples pixel centres
    the way INTER_LINEAR does, so an upsampled mask stays aligned with the frame it came from."""
    return getattr(cv2, "INTER_NEAREST_EXACT", cv2.INTER_NEAREST)


def __getattr__(name):  # INTER_LABELS on first use (it needs cv2)
    if name == "INTER_LABELS":
        return _inter_labels(opencv())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class FrameError(ValueError):
    """A frame the node cannot use; ``reason`` is the counter it is dropped under."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _buffer(data) -> np.ndarray:
    """uint8 view of a message's data (array.array, bytes, list or ndarray)."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, np.uint8)
    except TypeError:  # a plain list (only when someone built the message by hand)
        return np.asarray(data, np.uint8)


def image_view(msg) -> np.ndarray:
    """Zero-copy (H, W, C) uint8 view of a sensor_msgs/Image in one of ``ENCODINGS``.

    is_bigendian only matters for multi-byte channels, so it is accepted either way here.
    """
    encoding = msg.encoding
    if encoding not in ENCODINGS:
        raise FrameError("unsupported_encoding", f"unsupported encoding {encoding!r} (supported: {SUPPORTED})")
    channels = ENCODINGS[encoding][0]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h == 0 or w == 0:
        raise FrameError("empty", f"empty image ({w}x{h})")
    if step < w * channels:
        raise FrameError("bad_step", f"step {step} is smaller than width*channels = {w}*{channels}")
    buf = _buffer(msg.data)
    if buf.size < step * h:
        raise FrameError("short_data", f"data has {buf.size} bytes, step*height needs {step * h}")
    return np.ndarray((h, w, channels), np.uint8, buffer=buf, strides=(step, channels, 1))


def decode_compressed(msg, warnings: list | None = None) -> np.ndarray:
    """RGB (H, W, 3) uint8 from a sensor_msgs/CompressedImage (JPEG, PNG, anything OpenCV reads).

    JPEG is decoded strictly (simplejpeg, libjpeg-turbo): libjpeg repairs corrupt entropy data
    silently apart from a line on stderr, which OpenCV's decoder cannot report. A frame that only
    decodes after such a repair raises FrameError('decode_error'), or, when a ``warnings`` list is
    given, is returned with the decoder's complaint appended to that list.
    """
    fmt = str(getattr(msg, "format", ""))
    if "compressedDepth" in fmt:
        raise FrameError("unsupported_encoding", f"compressed depth images are not supported (format {fmt!r})")
    buf = _buffer(msg.data)
    if buf.size == 0:
        raise FrameError("empty", "compressed image with no data")
    if buf.size > 2 and buf[0] == 0xFF and buf[1] == 0xD8:  # JPEG start-of-image marker
        rgb = _decode_jpeg(buf, fmt, warnings)
        if rgb is not None:
            return rgb
    cv2 = opencv()
    try:
        if hasattr(cv2, "IMREAD_COLOR_RGB"):  # OpenCV >= 4.11 decodes straight to RGB
            rgb = cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB)
        else:
            rgb = cv2.imdecode(buf, cv2.IMREAD_COLOR)
            rgb = None if rgb is None else cv2.cvtColor(rgb, cv2.COLOR_BGR2RGB)
    except cv2.error as exc:  # some decoders raise instead of returning None
        raise FrameError("decode_error", f"cannot decode {buf.size}-byte compressed image (format {fmt!r}): "
                         f"{str(exc).strip().splitlines()[-1]}") from None
    if rgb is None or rgb.size == 0:
        raise FrameError("decode_error", f"cannot decode {buf.size}-byte compressed image (format {fmt!r})")
    return rgb


def _decode_jpeg(buf: np.ndarray, fmt: str, warnings: list | None) -> np.ndarray | None:
    """Strict JPEG decode; None for a JPEG libjpeg-turbo cannot read at all (OpenCV then tries)."""
    import simplejpeg

    data = np.ascontiguousarray(buf)
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError as exc:
        complaint = str(exc).strip() or type(exc).__name__
    try:
        rgb = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=False)
    except ValueError:
        return None
    if warnings is None:
        raise FrameError("decode_error", f"corrupt {buf.size}-byte JPEG (format {fmt!r}): {complaint}; the decoder "
                         "could only repair it (decode_warnings:=publish publishes such frames)")
    warnings.append(f"corrupt {buf.size}-byte JPEG (format {fmt!r}) repaired by the decoder: {complaint}")
    return rgb


def to_rgb(msg, warnings: list | None = None) -> np.ndarray:
    """RGB (H, W, 3) uint8 from an Image or CompressedImage message.

    For rgb8 the result is a view of the message's buffer (rows may be padded: it is
    C-contiguous only when step == width*3); other encodings and compressed frames are converted.
    ``warnings``: see decode_compressed.
    """
    if hasattr(msg, "format"):
        return decode_compressed(msg, warnings)
    view = image_view(msg)
    code = ENCODINGS[msg.encoding][1]
    if code is None:
        return view
    cv2 = opencv()
    return cv2.cvtColor(view, getattr(cv2, code))


def labels_to_mask(labels: np.ndarray) -> np.ndarray:
    """int labels (..., H, W) -> uint8 mask; anything outside 0..254 becomes 255 (unknown)."""
    labels = np.asarray(labels)
    if labels.dtype == np.uint8:
        return labels
    if labels.dtype.kind == "i":  # read as unsigned, negative ids are huge and clip to 255 below
        labels = labels.view(f"u{labels.dtype.itemsize}")
    if labels.dtype.kind == "u":  # per frame in the node: one pass, the minimum written as uint8
        return np.minimum(labels, IGNORE_LABEL, out=np.empty(labels.shape, np.uint8), casting="unsafe")
    ok = (labels >= 0) & (labels < IGNORE_LABEL)
    return np.where(ok, labels, IGNORE_LABEL).astype(np.uint8)


def resize_labels(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a label mask to (height, width); a no-op at that size."""
    if mask.shape[:2] == (height, width):
        return mask
    cv2 = opencv()
    return cv2.resize(mask, (width, height), interpolation=_inter_labels(cv2))


def resize_image(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an image (the network-input path); a no-op at that size."""
    if rgb.shape[:2] == (height, width):
        return rgb
    cv2 = opencv()
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)


def palette_lut(palette) -> np.ndarray:
    """(256, 3) uint8 lookup table: class id -> RGB colour; ids without a colour (255) are black."""
    lut = np.zeros((256, 3), np.uint8)
    pal = np.asarray(palette, np.uint8).reshape(-1, 3)[:IGNORE_LABEL]
    lut[: len(pal)] = pal
    return lut


def colorize(mask: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """uint8 mask (H, W) -> RGB colour image (H, W, 3) through ``lut``."""
    return np.take(lut, mask, axis=0)  # ~10x faster than lut[mask] for a 1024x512 mask


def blend(rgb: np.ndarray, color: np.ndarray, alpha: float) -> np.ndarray:
    """(1 - alpha) * frame + alpha * colour mask, rounded, uint8."""
    return opencv().addWeighted(np.ascontiguousarray(rgb), 1.0 - alpha, color, alpha, 0.0)


def confidence_to_mono8(conf: np.ndarray) -> np.ndarray:
    """float confidence in [0, 1] -> uint8 0..255, rounded half to even and saturated, in one pass
    (OpenCV's convertScaleAbs: the float32 product * 255, 3-5x faster than NumPy's clip(rint()))."""
    conf = np.asarray(conf, np.float32)
    flat = conf.reshape(1, -1) if conf.ndim != 2 else conf
    return opencv().convertScaleAbs(flat, alpha=255.0).reshape(conf.shape)


def _as_array_data(arr: np.ndarray) -> array.array:
    # array.array('B').frombytes copies once at memcpy speed; rclpy takes an array.array as is.
    data = array.array("B")
    data.frombytes(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))
    return data


def numpy_to_image(arr: np.ndarray, encoding: str, header, image_cls=None):
    """Image message from a (H, W) or (H, W, C) array; header (stamp and frame_id) copied."""
    if image_cls is None:
        from sensor_msgs.msg import Image as image_cls
    arr = np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    msg = image_cls()
    msg.header.stamp = header.stamp
    msg.header.frame_id = header.frame_id
    msg.height, msg.width = h, w
    msg.encoding = encoding
    msg.is_bigendian = int(arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and sys.byteorder == "big"))
    msg.step = arr.strides[0]
    msg.data = _as_array_data(arr)
    return msg


def mask_to_image(mask: np.ndarray, header, image_cls=None):
    """mono8 label mask message (one class id per pixel, 255 = unknown)."""
    if mask.dtype != np.uint8 or mask.ndim != 2:
        raise ValueError(f"mask must be uint8 (H, W), got {mask.dtype} {mask.shape}")
    return numpy_to_image(mask, "mono8", header, image_cls)


def rgb_to_image(rgb: np.ndarray, header, image_cls=None):
    """rgb8 message from an RGB uint8 (H, W, 3) array."""
    return numpy_to_image(rgb, "rgb8", header, image_cls)


def confidence_to_image(conf: np.ndarray, header, encoding: str = "mono8", image_cls=None):
    """Confidence map as mono8 (0..255) or 32FC1 (the raw float)."""
    if encoding == "mono8":
        return numpy_to_image(confidence_to_mono8(conf), "mono8", header, image_cls)
    if encoding == "32FC1":
        return numpy_to_image(conf.astype(np.float32, copy=False), "32FC1", header, image_cls)
    raise ValueError(f"confidence encoding must be mono8 or 32FC1, not {encoding!r}")


def image_to_numpy(msg) -> np.ndarray:
    """Read back a mono8/rgb8/32FC1 message this module wrote (for tests and tools)."""
    kinds = {"mono8": (np.uint8, 1), "rgb8": (np.uint8, 3), "32FC1": (np.float32, 1)}
    if msg.encoding not in kinds:
        raise FrameError("unsupported_encoding", f"cannot read encoding {msg.encoding!r}")
    dtype, ch = kinds[msg.encoding]
    dtype = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    buf = _buffer(msg.data)
    rows = buf[: msg.step * msg.height].reshape(msg.height, msg.step)[:, : msg.width * ch * dtype.itemsize]
    out = np.ascontiguousarray(rows).view(dtype).reshape(msg.height, msg.width, ch)
    return out[..., 0] if ch == 1 else out
