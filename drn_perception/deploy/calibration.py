"""INT8 calibration for drn-build-engine: frames, batches, the calibration cache, the entropy calibrator.

Where the frames come from (``--calibration SPEC``):

* ``synthetic`` or ``synthetic:N`` - the first N built-in synthetic street scenes (the training split's seeds);
* ``DATASET:SPLIT`` - a labelled dataset folder, in the authors' list layout (``SPLIT_images.txt``) or the
  Cityscapes layout (``leftImg8bit/SPLIT/<city>/``); only the images are used;
* ``LIST.txt`` - one image path per line, relative to the list's folder;
* an image folder (searched recursively for .png/.jpg/.jpeg/.bmp);
* a rosbag2 (its folder, or its .db3/.mcap file): ``sensor_msgs/Image`` (rgb8, bgr8) or
  ``sensor_msgs/CompressedImage`` frames, from ``--calibration-topic`` or the bag's only image topic.

At most ``max_frames`` frames are used, spread evenly over the source. Each frame is scaled to
cover the calibration size (the profile's OPT height and width) and centre-cropped, and the frames
are grouped into full batches (a last partial batch is dropped: TensorRT calibrates on one fixed
shape). All of this is plain Python and tested without TensorRT; only
:func:`create_entropy_calibrator` needs TensorRT and CUDA.

The calibration cache written by TensorRT is kept in a file named after the ONNX model's sha256
(``model.<sha12>.calib``), so a changed model is never calibrated from a stale cache; with a cache
present TensorRT skips calibration and no frames are needed.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from drn_perception.deploy.engine_meta import (
    INPUT,
    UnsupportedTensorRT,
    atomic_write,
    parse_trt_version,
    precision_problem,
)

if TYPE_CHECKING:
    import tensorrt

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
CITYSCAPES_IMAGE_SUFFIX = "_leftImg8bit.png"
IMAGE_MSG = "sensor_msgs/msg/Image"
COMPRESSED_MSG = "sensor_msgs/msg/CompressedImage"
DEFAULT_MAX_FRAMES = 256


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


# ---------------------------------------------------------------------------------------------
# Batches


class CalibrationBatches:
    """Full uint8 (batch_size, height, width, 3) batches of fitted frames."""

    def __init__(self, frames: Iterable[np.ndarray], batch_size: int, height: int, width: int):
        if batch_size < 1:
            raise CalibrationError(f"--calibration-batch must be at least 1, got {batch_size}")
        self.frames = frames
        self.batch_size, self.height, self.width = batch_size, height, width
        self.frames_used = 0
        self.batches = 0

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.batch_size, self.height, self.width, 3)

    @property
    def batch_nbytes(self) -> int:
        return self.batch_size * self.height * self.width * 3

    def __iter__(self) -> Iterator[np.ndarray]:
        batch = np.empty(self.shape, np.uint8)
        filled = 0
        for frame in self.frames:
            frame = np.asarray(frame)
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise CalibrationError(f"calibration frame {frame.shape} {frame.dtype} is not RGB uint8 (H, W, 3)")
            batch[filled] = fit_frame(frame, self.height, self.width)
            filled += 1
            if filled == self.batch_size:
                self.frames_used += filled
                self.batches += 1
                yield batch
                batch = np.empty(self.shape, np.uint8)
                filled = 0


# ---------------------------------------------------------------------------------------------
# The calibration cache


def default_cache_path(onnx_path: str | Path, onnx_sha256: str) -> Path:
    """model.onnx -> model.<first 12 hex of its sha256>.calib beside it."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(f"{onnx_path.stem}.{onnx_sha256[:12]}.calib")


@dataclass
class CalibrationCache:
    path: Path

    def read(self) -> bytes | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return data or None

    def write(self, data: bytes) -> None:
        atomic_write(self.path, bytes(data))

    def exists(self) -> bool:
        return self.read() is not None


# ---------------------------------------------------------------------------------------------
# Feeding TensorRT


class CalibrationFeed:
    """What TensorRT's calibrator hands out: one device pointer per input name for each batch, then
    None. ``alloc(nbytes)`` makes the buffer the batches are uploaded into (a CUDA DeviceBuffer in
    the builder: anything with ``ptr``, ``upload(array)`` and ``close()``). Exceptions are kept in
    ``error`` instead of unwinding through TensorRT, which would only see "no more batches"."""

    def __init__(self, batches: Iterable[np.ndarray] | None, alloc: Callable[[int], Any]):
        self._batches = iter(batches) if batches is not None else iter(())
        self._alloc = alloc
        self._buffer: Any = None
        self._lock = threading.Lock()
        self.error: BaseException | None = None
        self.fed = 0

    def next_pointers(self, names: Sequence[str]) -> list[int] | None:
        with self._lock:
            if self.error is not None:
                return None
            try:
                batch = next(self._batches, None)
                if batch is None:
                    return None
                unknown = [n for n in names if n != INPUT]
                if unknown:
                    raise CalibrationError(f"the network has inputs {list(names)}; calibration feeds only {INPUT!r}")
                if self._buffer is None:
                    self._buffer = self._alloc(batch.nbytes)
                self._buffer.upload(batch)
                self.fed += 1
                return [int(self._buffer.ptr) for _ in names]
            except BaseException as exc:  # noqa: BLE001 - must not unwind through TensorRT
                self.error = exc
                return None

    def close(self) -> None:
        with self._lock:
            if self._buffer is not None:
                self._buffer.close()
                self._buffer = None


def create_entropy_calibrator(feed: CalibrationFeed, cache: CalibrationCache,
                              batch_size: int) -> "tensorrt.IInt8EntropyCalibrator2":
    """TensorRT's IInt8EntropyCalibrator2 over ``feed``, keeping its table in ``cache`` (needs tensorrt < 11)."""
    import tensorrt as trt

    TRT_VERSION = parse_trt_version(trt.__version__)
    if TRT_VERSION >= (11, 0) or not hasattr(trt, "IInt8EntropyCalibrator2"):
        raise UnsupportedTensorRT(precision_problem("int8", TRT_VERSION, False) or "no implicit INT8 calibration")

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self) -> int:
            return batch_size

        # TensorRT documents None as "no more batches", which the stubs' list[int] leaves out.
        def get_batch(self, names: list[str]) -> list[int] | None:  # type: ignore[override]
            return feed.next_pointers(names)

        def read_calibration_cache(self) -> bytes | None:
            return cache.read()

        def write_calibration_cache(self, data: Any) -> None:
            try:
                cache.write(bytes(memoryview(data)))
            except OSError as exc:
                feed.error = exc

    return EntropyCalibrator()
