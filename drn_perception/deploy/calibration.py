"""Calibration frames for every int8 graph the toolchain writes (drn-quantize for ONNX Runtime,
OpenVINO and TensorRT; drn-build-engine's ``--calibration``), from one ``--calibration SPEC``.

Where the frames come from (``--calibration SPEC``):

* ``synthetic`` or ``synthetic:N`` - the first N built-in synthetic street scenes (the training split's seeds);
* ``DATASET:SPLIT`` - a labelled dataset folder, in the authors' list layout (``SPLIT_images.txt``) or the
  Cityscapes layout (``leftImg8bit/SPLIT/<city>/``); only the images are used;
* ``LIST.txt`` - one image path per line, relative to the list's folder;
* an image folder (searched recursively for .png/.jpg/.jpeg/.bmp);
* a rosbag2 (its folder, or its .db3/.mcap file): ``sensor_msgs/Image`` (rgb8, bgr8) or
  ``sensor_msgs/CompressedImage`` frames, from ``--calibration-topic`` or the bag's only image topic.

At most ``max_frames`` frames are used, spread evenly over the source. Each frame is scaled to
cover the calibration size and centre-cropped (:func:`fit_frame`). Plain Python, no TensorRT:
TensorRT gets int8 by explicit quantization only (a Q/DQ graph written with NVIDIA ModelOpt,
deploy/tensorrt_graphs.py), so there is no implicit calibrator and no calibration cache.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
CITYSCAPES_IMAGE_SUFFIX = "_leftImg8bit.png"
IMAGE_MSG = "sensor_msgs/msg/Image"
COMPRESSED_MSG = "sensor_msgs/msg/CompressedImage"
DEFAULT_MAX_FRAMES = 256
# Generated calibration scenes use seeds from here up, disjoint from the seeds benchmarks and tests evaluate on.
CALIBRATION_SEED0 = 1_000_000


class CalibrationError(ValueError):
    """Calibration data that cannot be used, with the file, topic or field and the reason."""


# ---------------------------------------------------------------------------------------------
# Frames


def sample_evenly(total: int, count: int) -> list[int]:
    """``count`` indices spread evenly over ``range(total)`` (all of them when count >= total)."""
    if total <= 0 or count <= 0:
        return []
    if count >= total:
        return list(range(total))
    return [(i * total) // count for i in range(count)]


def fit_frame(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale ``rgb`` to cover height x width (aspect ratio kept) and centre-crop it to exactly that size."""
    import cv2

    h0, w0 = rgb.shape[:2]
    scale = max(height / h0, width / w0)
    nh, nw = max(height, round(h0 * scale)), max(width, round(w0 * scale))
    if (nh, nw) != (h0, w0):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        rgb = cv2.resize(rgb, (nw, nh), interpolation=interp)
    top, left = (nh - height) // 2, (nw - width) // 2
    return np.ascontiguousarray(rgb[top : top + height, left : left + width])


class FrameSource:
    """Iterable of RGB uint8 (H, W, 3) frames; ``dropped`` counts frames that could not be decoded."""

    description = ""
    dropped = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        raise NotImplementedError


class ImageFiles(FrameSource):
    def __init__(self, paths: Sequence[Path], description: str, max_frames: int):
        if not paths:
            raise CalibrationError(f"no images in {description}")
        self.paths = [paths[i] for i in sample_evenly(len(paths), max_frames)]
        self.description = f"{len(self.paths)} of {len(paths)} images from {description}"

    def __iter__(self) -> Iterator[np.ndarray]:
        import cv2

        for path in self.paths:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise CalibrationError(f"cannot read calibration image {path}")
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class SyntheticFrames(FrameSource):
    def __init__(self, count: int, height: int, width: int):
        self.count, self.height, self.width = count, height, width
        self.description = f"{count} synthetic scenes"

    def __iter__(self) -> Iterator[np.ndarray]:
        from drn_perception.data.synthetic import generate_scene

        for seed in range(self.count):
            yield generate_scene(seed, self.height, self.width)[0]


class BagFrames(FrameSource):
    """Image frames of one topic of a rosbag2, read with the ``rosbags`` library."""

    def __init__(self, path: Path, topic: str | None, max_frames: int):
        self.path, self.topic, self.max_frames = path, topic, max_frames
        self.description = f"bag {path}"

    def _reader(self):
        try:
            from rosbags.highlevel import AnyReader
            from rosbags.typesys import Stores, get_typestore
        except ImportError:
            raise CalibrationError("reading calibration frames from a bag needs the rosbags package (pip install rosbags)") from None
        return AnyReader([self.path], default_typestore=get_typestore(Stores.ROS2_HUMBLE))

    def __iter__(self) -> Iterator[np.ndarray]:
        reader = self._reader()
        try:
            reader.open()
        except Exception as exc:  # noqa: BLE001 - rosbags raises several reader error types
            raise CalibrationError(f"cannot open bag {self.path}: {exc}") from None
        try:
            images = [c for c in reader.connections if c.msgtype in (IMAGE_MSG, COMPRESSED_MSG)]
            topics = sorted({c.topic for c in images})
            if self.topic is not None:
                conns = [c for c in images if c.topic == self.topic]
                if not conns:
                    raise CalibrationError(
                        f"bag {self.path} has no Image/CompressedImage topic {self.topic}; image topics: {topics or 'none'}"
                    )
            elif len(topics) == 1:
                conns = images
            elif not topics:
                raise CalibrationError(f"bag {self.path} has no sensor_msgs/Image or CompressedImage topic")
            else:
                raise CalibrationError(
                    f"bag {self.path} has several image topics ({', '.join(topics)}): choose one with --calibration-topic"
                )
            total = sum(c.msgcount for c in conns)
            keep = set(sample_evenly(total, self.max_frames))
            self.description = f"{len(keep)} of {total} frames of {conns[0].topic} in bag {self.path}"
            for index, (conn, _stamp, raw) in enumerate(reader.messages(connections=conns)):
                if index not in keep:
                    continue
                msg = reader.deserialize(raw, conn.msgtype)
                frame = decode_image_message(msg, conn.msgtype, conn.topic)
                if frame is None:
                    self.dropped += 1
                    continue
                yield frame
        finally:
            reader.close()


def decode_image_message(msg, msgtype: str, topic: str) -> np.ndarray | None:
    """RGB uint8 (H, W, 3) from a deserialised Image (rgb8/bgr8) or CompressedImage; None for a
    compressed frame that does not decode. Unsupported encodings and inconsistent fields raise."""
    import cv2

    if msgtype == COMPRESSED_MSG:
        bgr = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
        return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    encoding = str(msg.encoding).lower()
    if encoding not in ("rgb8", "bgr8"):
        raise CalibrationError(f"{topic}: encoding {msg.encoding!r} is not supported for calibration (rgb8 or bgr8)")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(msg.data, np.uint8)
    if h <= 0 or w <= 0 or step < w * 3 or data.size < step * h:
        raise CalibrationError(
            f"{topic}: Image fields do not fit (height {h}, width {w}, step {step}, {data.size} data bytes)"
        )
    rgb = data[: step * h].reshape(h, step)[:, : w * 3].reshape(h, w, 3)
    if encoding == "bgr8":
        rgb = rgb[..., ::-1]
    return np.ascontiguousarray(rgb)


def dataset_images(root: Path, split: str) -> list[Path]:
    """Image paths of a labelled dataset split (list layout or Cityscapes layout)."""
    list_file = root / f"{split}_images.txt"
    if list_file.is_file():
        return list_file_images(list_file, root)
    city = root / "leftImg8bit" / split
    if city.is_dir():
        return sorted(city.glob(f"*/*{CITYSCAPES_IMAGE_SUFFIX}"))
    raise CalibrationError(f"{root} has neither {list_file.name} (list layout) nor leftImg8bit/{split}/ (Cityscapes layout)")


def list_file_images(list_file: Path, root: Path | None = None) -> list[Path]:
    root = list_file.parent if root is None else root
    paths = []
    for number, line in enumerate(list_file.read_text().splitlines(), 1):
        entry = line.strip()
        if not entry:
            continue
        path = root / entry
        if not path.is_file():
            raise CalibrationError(f"{list_file}:{number}: image not found: {path}")
        paths.append(path)
    return paths


def open_frames(spec: str, *, height: int, width: int, topic: str | None = None,
                max_frames: int = DEFAULT_MAX_FRAMES) -> FrameSource:
    """The frame source that ``spec`` names (see the module docstring)."""
    if max_frames < 1:
        raise CalibrationError(f"--calibration-frames must be at least 1, got {max_frames}")
    spec = str(spec)
    if spec == "synthetic" or spec.startswith("synthetic:"):
        count_text = spec.partition(":")[2] or str(max_frames)
        try:
            count = int(count_text)
        except ValueError:
            raise CalibrationError(f"--calibration {spec!r}: expected synthetic or synthetic:N") from None
        if count < 1:
            raise CalibrationError(f"--calibration {spec!r}: N must be at least 1")
        return SyntheticFrames(min(count, max_frames), height, width)
    path = Path(spec)
    if path.is_dir() and (path / "metadata.yaml").is_file():
        return BagFrames(path, topic, max_frames)
    if path.is_file() and path.suffix in (".db3", ".mcap"):
        return BagFrames(path.parent if (path.parent / "metadata.yaml").is_file() else path, topic, max_frames)
    if path.is_file() and path.suffix == ".txt":
        return ImageFiles(list_file_images(path), f"list {path}", max_frames)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        return ImageFiles(files, f"folder {path}", max_frames)
    root, sep, split = spec.rpartition(":")
    if sep and root and Path(root).is_dir():
        return ImageFiles(dataset_images(Path(root), split), f"{root} split {split}", max_frames)
    raise CalibrationError(
        f"calibration data {spec!r} not found: give an image folder, DATASET:SPLIT, a .txt list, "
        "a rosbag2 folder, or synthetic[:N]"
    )


def calibration_frames(count: int, size: tuple[int, int], seed0: int = CALIBRATION_SEED0) -> Iterator[np.ndarray]:
    """Yield ``count`` generated uint8 (1, H, W, 3) scenes (the default when no ``--calibration`` is given)."""
    from drn_perception.data.synthetic import generate_scene

    for i in range(count):
        yield generate_scene(seed0 + i, *size)[0][None]


def user_calibration_frames(spec: str, size: tuple[int, int], max_frames: int,
                            topic: str | None = None) -> tuple[list[np.ndarray], str]:
    """The frames ``spec`` names (:func:`open_frames`), each fitted to ``size`` as uint8 (1, H, W, 3),
    and a line saying where they came from. Raises CalibrationError (a ValueError)."""
    source = open_frames(spec, height=size[0], width=size[1], topic=topic, max_frames=max_frames)
    frames = [fit_frame(f, *size)[None] for f in source]
    if not frames:
        raise CalibrationError(f"no usable calibration frames in {spec} ({source.dropped} could not be decoded)")
    dropped = f", {source.dropped} undecodable skipped" if source.dropped else ""
    return frames, f"{source.description}{dropped}, fitted to {size[0]}x{size[1]}"
