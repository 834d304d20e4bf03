"""drn-make-bag: write a rosbag2 of camera frames to replay through the node.

Sources: ``synthetic`` (generated street scenes, with their exact ground-truth labels as a
mono8 Image on a second topic carrying the same stamps), a video file (anything OpenCV's
VideoCapture opens, e.g. vtest.avi from Debian's opencv-doc package), or a folder of images
(read in sorted file-name order). Frames go out as sensor_msgs/Image (rgb8 or bgr8) or as
sensor_msgs/CompressedImage (jpeg or png), at the chosen rate, size and frame_id, into a
sqlite3 or mcap bag that ``ros2 bag play`` on Humble or later accepts (see bagio).

    drn-make-bag out/scenes --source synthetic --frames 30 --size 256x512
    drn-make-bag out/vtest --source /usr/share/doc/opencv-doc/examples/data/vtest.avi --compressed jpeg
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from drn_perception.cli import fail
from drn_perception.ros import bagio

DEFAULT_TOPIC = "/camera/image_raw"
DEFAULT_LABELS_TOPIC = "/camera/labels"
SCENE_SIDES = (16, 8192)  # what data/synthetic.generate_scene draws
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size must look like HEIGHTxWIDTH (e.g. 256x512), got {text!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive, got {text!r}")
    return h, w


def _resize(rgb: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    import cv2

    if size is None or rgb.shape[:2] == size:
        return rgb
    h, w = size
    shrink = h * w < rgb.shape[0] * rgb.shape[1]
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def synthetic_frames(frames: int, size: tuple[int, int], seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    from drn_perception.data.synthetic import generate_scene

    for i in range(frames):
        yield generate_scene(seed + i, *size)


def video_frames(path: Path, frames: int | None, size) -> Iterator[tuple[np.ndarray, None]]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"cannot open video {path} (not a video file OpenCV can read)")
    try:
        n = 0
        while frames is None or n < frames:
            ok, bgr = cap.read()
            if not ok:
                break
            yield _resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size), None
            n += 1
        if n == 0:
            raise ValueError(f"video {path} has no readable frames")
    finally:
        cap.release()


def folder_frames(path: Path, frames: int | None, size) -> Iterator[tuple[np.ndarray, None]]:
    import cv2

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {path}")
    for f in files[:frames]:
        bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot read image {f}")
        yield _resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size), None


def video_rate(path: Path) -> float | None:
    import cv2

    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    cap.release()
    return fps if fps and 0 < fps < 1000 else None


def make_bag(
    out: str | Path,
    source: str = "synthetic",
    frames: int | None = None,
    rate: float | None = None,
    size: tuple[int, int] | None = None,
    frame_id: str = "camera",
    topic: str | None = None,
    compressed: str | None = None,
    encoding: str = "rgb8",
    storage: str = "sqlite3",
    labels_topic: str | None = None,
    seed: int = 0,
    start_time: float | None = None,
    jpeg_quality: int = 90,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Write the bag; returns a summary dict (path, frames, topics, size, storage, rate)."""
    import cv2

    if compressed not in (None, "jpeg", "png"):
        raise ValueError(f"--compressed must be jpeg or png, got {compressed!r}")
    if encoding not in ("rgb8", "bgr8"):
        raise ValueError(f"--encoding must be rgb8 or bgr8, got {encoding!r}")
    if frames is not None and frames <= 0:
        raise ValueError(f"--frames must be positive, got {frames}")
    if not 0 <= jpeg_quality <= 100:
        raise ValueError(f"--jpeg-quality must be in 0..100, got {jpeg_quality}")
    if start_time is not None and start_time < 0:
        raise ValueError(f"--start-time must be >= 0 (seconds since the epoch), got {start_time:g}")
    if topic is None:
        topic = DEFAULT_TOPIC + ("/compressed" if compressed else "")
    synthetic = source == "synthetic"
    if synthetic:
        frames = 30 if frames is None else frames
        size = size or (512, 1024)
        if not all(SCENE_SIDES[0] <= v <= SCENE_SIDES[1] for v in size):
            raise ValueError(f"--size {size[0]}x{size[1]}: generated scenes are {SCENE_SIDES[0]}..{SCENE_SIDES[1]} "
                             "pixels a side")
        labels_topic = DEFAULT_LABELS_TOPIC if labels_topic is None else labels_topic
        frame_iter = synthetic_frames(frames, size, seed)
        rate = rate or 10.0
    else:
        path = Path(source)
        if labels_topic:
            raise ValueError("--labels-topic needs --source synthetic (videos and image folders carry no labels)")
        if not path.exists():
            raise ValueError(f"source {source} does not exist (use synthetic, a video file or an image folder)")
        if path.is_dir():
            frame_iter = folder_frames(path, frames, size)
            rate = rate or 10.0
        else:
            frame_iter = video_frames(path, frames, size)
            rate = rate or video_rate(path) or 10.0
    if rate <= 0:
        raise ValueError(f"--rate must be positive, got {rate}")
    if labels_topic and labels_topic == topic:
        raise ValueError(f"the labels topic must differ from the image topic ({topic})")

    t0 = int(round((time.time() if start_time is None else start_time) * 1e9))
    period = 1e9 / rate
    msgtype = bagio.COMPRESSED_IMAGE if compressed else bagio.IMAGE
    n = 0
    sizes: dict[tuple, int] = {}
    bar = None
    with bagio.BagWriter(out, storage, overwrite=overwrite) as writer:
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=frames, unit="frame", desc="drn-make-bag", file=sys.stderr)
        writer.add_topic(topic, msgtype)
        if labels_topic:
            writer.add_topic(labels_topic, bagio.IMAGE)
        for rgb, labels in frame_iter:
            stamp = t0 + int(round(n * period))
            if compressed:
                ext, params = (".jpg", [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]) if compressed == "jpeg" else (".png", [])
                ok, data = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
                if not ok:
                    raise ValueError(f"OpenCV could not encode frame {n} as {compressed}")
                msg = bagio.make_compressed(stamp, frame_id, data.tobytes(), compressed)
            else:
                msg = bagio.make_image(stamp, frame_id, rgb if encoding == "rgb8" else rgb[..., ::-1], encoding)
            writer.write(topic, stamp, bagio.serialize(msg, msgtype))
            if labels_topic:
                lab = bagio.make_image(stamp, frame_id, labels, "mono8")
                writer.write(labels_topic, stamp, bagio.serialize(lab, bagio.IMAGE))
            sizes[rgb.shape[:2]] = sizes.get(rgb.shape[:2], 0) + 1
            n += 1
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    return {
        "path": str(out), "frames": n, "topic": topic, "type": msgtype, "labels_topic": labels_topic or None,
        # size: the one size of every frame (None when they differ); sizes: {"HxW": frames}
        "size": list(next(iter(sizes))) if len(sizes) == 1 else None,
        "sizes": {f"{h}x{w}": k for (h, w), k in sizes.items()}, "storage": storage, "rate": rate,
    }


def _size_arg(text: str) -> tuple[int, int]:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    from drn_perception.cli import Parser  # one-line errors, exit 2

    p = Parser(
        prog="drn-make-bag",
        description="Write a rosbag2 (sqlite3 or mcap) of camera frames from generated street scenes "
        "(with ground-truth labels), a video file or a folder of images.",
    )
    p.add_argument("out", type=Path, help="bag directory to create")
    p.add_argument("--source", default="synthetic", help="synthetic (default), a video file or an image folder")
    p.add_argument("--frames", type=int, help="number of frames (synthetic: 30; video/folder: all)")
    p.add_argument("--rate", type=float, help="frame rate in Hz (default: the video's, else 10)")
    p.add_argument("--size", type=_size_arg, help="HxW; synthetic default 512x1024, others keep their size")
    p.add_argument("--frame-id", default="camera", help="header.frame_id (default camera)")
    p.add_argument("--topic", help=f"image topic (default {DEFAULT_TOPIC}, or .../compressed with --compressed)")
    p.add_argument("--compressed", choices=["jpeg", "png"], help="write sensor_msgs/CompressedImage")
    p.add_argument("--jpeg-quality", type=int, default=90)
    p.add_argument("--encoding", choices=["rgb8", "bgr8"], default="rgb8", help="raw Image encoding")
    p.add_argument("--storage", choices=list(bagio.STORAGES), default="sqlite3")
    p.add_argument("--labels-topic", help=f"ground-truth mono8 labels topic for synthetic scenes "
                   f"(default {DEFAULT_LABELS_TOPIC}; '' for none)")
    p.add_argument("--seed", type=int, default=0, help="first scene seed (synthetic)")
    p.add_argument("--start-time", type=float, help="first stamp in seconds since the epoch (default now)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bag at OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = make_bag(
            args.out, args.source, frames=args.frames, rate=args.rate, size=args.size,
            frame_id=args.frame_id, topic=args.topic, compressed=args.compressed, encoding=args.encoding,
            storage=args.storage, labels_topic=args.labels_topic, seed=args.seed,
            start_time=args.start_time, jpeg_quality=args.jpeg_quality, overwrite=args.overwrite,
            progress=not args.quiet,
        )
    except (bagio.BagError, ValueError) as exc:  # the options, the source or the destination
        return fail("drn-make-bag", exc)
    except OSError as exc:
        return fail("drn-make-bag", exc, status=1)
    except KeyboardInterrupt:
        print("drn-make-bag: interrupted; nothing written", file=sys.stderr)
        return 130
    sizes = ", ".join(f"{k} ({n})" for k, n in summary["sizes"].items()) if len(summary["sizes"]) > 1 \
        else next(iter(summary["sizes"]))
    extra = f" + labels on {summary['labels_topic']}" if summary["labels_topic"] else ""
    print(f"wrote {summary['path']}: {summary['frames']} frames of {sizes} (HxW) at {summary['rate']:g} Hz "
          f"on {summary['topic']} ({summary['type']}){extra}, {summary['storage']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
