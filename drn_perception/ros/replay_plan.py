"""drn-replay, step 1: the input bag checked completely before anything starts.

The camera topic exists and is sensor_msgs/Image or CompressedImage, every message
deserialises, the storage file holds as many messages as metadata.yaml lists, header stamps
are unique (masks are matched to frames by stamp), and the optional ground-truth topic holds
mono8 labels. The result is a BagPlan the replay loop follows.
"""
from __future__ import annotations

import dataclasses

from drn_perception.ros import bagio

DEFAULT_IMAGE_TOPIC = "/camera/image_raw"
DEFAULT_LABELS_TOPIC = "/camera/labels"


class ReplayError(Exception):
    """A replay that cannot run: a mistake in the options or the files they name (one line, exit 2)."""


class ReplayFailed(ReplayError):
    """A replay that started but could not finish: the node, DDS or the disk failed (one line, exit 1)."""


@dataclasses.dataclass
class Frame:
    index: int
    bag_time: int
    stamp: int


@dataclasses.dataclass
class BagPlan:
    image_topic: str
    image_type: str
    labels_topic: str | None
    frames: list
    sizes: dict  # (height, width) -> number of frames; raw Image topics only (empty for compressed)
    storage: str
    label_stamps: set
    first_raw: bytes


def inspect_bag(reader: bagio.BagReader, image_topic: str | None, labels_topic: str | None) -> BagPlan:
    """Choose and check the topics, read every message once; BagError/ReplayError on problems."""
    images = {t: m for t, m in reader.topics.items() if m in bagio.IMAGE_TYPES}
    if image_topic is None:
        if DEFAULT_IMAGE_TOPIC in reader.topics:
            image_topic = DEFAULT_IMAGE_TOPIC
        else:
            candidates = [t for t in images if t != (labels_topic or DEFAULT_LABELS_TOPIC)]
            if len(candidates) != 1:
                have = ", ".join(f"{t} ({m})" for t, m in sorted(reader.topics.items())) or "none"
                raise ReplayError(
                    f"bag {reader.path}: cannot tell the camera topic ({len(candidates)} image topics besides "
                    f"the labels); choose one with --image-topic. Topics there: {have}"
                )
            image_topic = candidates[0]
    image_type = reader.require(image_topic, bagio.IMAGE_TYPES)
    if labels_topic is None:
        labels_topic = DEFAULT_LABELS_TOPIC if DEFAULT_LABELS_TOPIC in reader.topics else None
    elif labels_topic == "":
        labels_topic = None
    if labels_topic is not None:
        if labels_topic == image_topic:
            raise ReplayError(f"the labels topic must differ from the camera topic {image_topic}")
        reader.require(labels_topic, (bagio.IMAGE,), " (the ground-truth labels topic)")
    if reader.counts.get(image_topic, 0) == 0:
        raise ReplayError(f"topic {image_topic} in bag {reader.path} has no messages")

    frames: list[Frame] = []
    first_raw = b""
    stamps: dict[int, int] = {}
    label_stamps: set[int] = set()
    sizes: dict[tuple, int] = {}
    n_labels = 0
    topics = [image_topic] + ([labels_topic] if labels_topic else [])
    for topic, bag_time, raw in reader.messages(topics):
        if topic == image_topic:
            msg = bagio.decode_checked(raw, image_type, topic, len(frames), reader.path)
            stamp = bagio.header_stamp(msg)
            if stamp in stamps:
                raise ReplayError(
                    f"bag {reader.path}: messages {stamps[stamp]} and {len(frames)} on {topic} share the header "
                    f"stamp {stamp / 1e9:.9f}; masks are matched to frames by stamp, so stamps must be unique"
                )
            stamps[stamp] = len(frames)
            if not frames:
                first_raw = bytes(raw)
            frames.append(Frame(len(frames), bag_time, stamp))
            if image_type == bagio.IMAGE:
                key = (int(msg.height), int(msg.width))
                sizes[key] = sizes.get(key, 0) + 1
        else:
            msg = bagio.decode_checked(raw, bagio.IMAGE, topic, n_labels, reader.path)
            if msg.encoding not in ("mono8", "8UC1"):
                raise ReplayError(
                    f"bag {reader.path}: labels topic {topic} must hold mono8 class-id images, "
                    f"message {n_labels} is {msg.encoding}"
                )
            label_stamps.add(bagio.header_stamp(msg))
            n_labels += 1
    storage = reader.storage if reader.storage in bagio.STORAGES else "sqlite3"
    return BagPlan(image_topic, image_type, labels_topic, frames, sizes, storage, label_stamps, first_raw)
