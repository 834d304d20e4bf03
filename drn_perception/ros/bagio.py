"""rosbag2 bags (sqlite3 or mcap) read and written with the pure-Python ``rosbags`` library.

Everything written here is a normal rosbag2 directory that ``ros2 bag info/play`` accept:

* the bag is written under a hidden temporary name next to the destination and renamed into
  place only after it was closed successfully, so an interrupted or failed run never leaves
  something at the destination that looks like a complete result;
* its ``metadata.yaml`` is rosbag2 format version 5, the version ROS 2 Humble writes and
  every later distribution reads. ``rosbags`` writes version 8 or 9; version 9 stores the QoS
  profiles as a YAML list, which Humble's metadata parser rejects ("bad conversion"), and
  versions 6-8 only add fields Humble does not know. So we write version 8 and then reduce
  metadata.yaml to the version 5 fields (QoS profiles stay the string Humble expects);
* every topic carries an offered QoS profile (reliable, volatile, keep last 10): Humble's
  ``ros2 bag play`` cannot parse an empty profile list.

Reading goes through :class:`BagReader`, which turns every way a bag can be broken (missing
directory, no metadata, truncated or corrupt storage file, fewer messages than the metadata
promises, wrong message types) into :class:`BagError` with a one-line message naming the
bag, file or topic.
"""
from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import yaml

from drn_perception.ros.conversions import image_view

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
HUMBLE_METADATA_VERSION = 5
STORAGES = ("sqlite3", "mcap")
# Fields of rosbag2 metadata version 5 (rosbag2_storage BagMetadata as of Humble).
_V5_KEYS = (
    "version", "storage_identifier", "duration", "starting_time", "message_count",
    "topics_with_message_count", "compression_format", "compression_mode",
    "relative_file_paths", "files",
)
_V5_TOPIC_KEYS = ("name", "type", "serialization_format", "offered_qos_profiles")


class BagError(Exception):
    """A bag cannot be read or written; the message names the bag, file or topic."""


@functools.lru_cache(maxsize=1)
def typestore():
    """The ROS 2 Kilted message definitions (sensor_msgs/Image is unchanged since Humble)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def default_qos():
    """Reliable, volatile, keep last 10: what a camera driver or recorder typically offers."""
    from rosbags.interfaces import (
        Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime,
    )

    unspecified = QosTime(0, 0)
    return Qos(
        QosHistory.KEEP_LAST, 10, QosReliability.RELIABLE, QosDurability.VOLATILE,
        unspecified, unspecified, QosLiveliness.AUTOMATIC, unspecified, False,
    )


# --------------------------------------------------------------------------- messages


def stamp_ns(sec: int, nanosec: int) -> int:
    return int(sec) * 1_000_000_000 + int(nanosec)


def make_image(stamp: int, frame_id: str, array: np.ndarray, encoding: str):
    """A rosbags sensor_msgs/Image from a uint8 (H, W) or (H, W, C) array (rows unpadded)."""
    ts = typestore()
    Image = ts.types[IMAGE]
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    array = np.ascontiguousarray(array, dtype=np.uint8)
    h, w = array.shape[:2]
    return Image(
        header=Header(stamp=Time(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000), frame_id=frame_id),
        height=h, width=w, encoding=encoding, is_bigendian=0,
        step=array.strides[0], data=array.reshape(-1),
    )


def make_compressed(stamp: int, frame_id: str, data: bytes, fmt: str):
    ts = typestore()
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    return ts.types[COMPRESSED_IMAGE](
        header=Header(stamp=Time(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000), frame_id=frame_id),
        format=fmt, data=np.frombuffer(data, np.uint8),
    )


def serialize(msg, msgtype: str) -> bytes:
    return bytes(typestore().serialize_cdr(msg, msgtype))


def deserialize(raw, msgtype: str):
    return typestore().deserialize_cdr(raw, msgtype)


def header_stamp(msg) -> int:
    return stamp_ns(msg.header.stamp.sec, msg.header.stamp.nanosec)


# --------------------------------------------------------------------------- writing


class BagWriter:
    """Writes a rosbag2 bag under a temporary name; ``commit()`` renames it into place.

    Use as a context manager: leaving the block normally commits; an exception removes the
    temporary directory and leaves the destination untouched.
    """

    def __init__(self, path: str | Path, storage: str = "sqlite3", overwrite: bool = False):
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise BagError(f"unknown storage {storage!r}: choose {' or '.join(STORAGES)}")
        self.path = Path(path)
        self.overwrite = overwrite
        check_destination(self.path, overwrite)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The bag is built as <parent>/.<name>.partial-<pid>/<name>, so the storage file and
        # the metadata embedded in it carry the final name, and the rename is atomic.
        self.tmp_parent = self.path.parent / f".{self.path.name}.partial-{os.getpid()}"
        shutil.rmtree(self.tmp_parent, ignore_errors=True)
        self.tmp_parent.mkdir()
        self.tmp = self.tmp_parent / self.path.name
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self.tmp, version=8, storage_plugin=plugin)
        self._writer.open()
        self._connections: dict[str, object] = {}
        self._done = False

    def add_topic(self, topic: str, msgtype: str) -> None:
        if topic not in self._connections:
            self._connections[topic] = self._writer.add_connection(
                topic, msgtype, typestore=typestore(), offered_qos_profiles=[default_qos()]
            )

    def write(self, topic: str, timestamp: int, raw: bytes | memoryview) -> None:
        self._writer.write(self._connections[topic], int(timestamp), raw)

    def write_msg(self, topic: str, timestamp: int, msg, msgtype: str) -> None:
        self.add_topic(topic, msgtype)
        self.write(topic, timestamp, serialize(msg, msgtype))

    def commit(self) -> Path:
        """Close, write Humble-readable metadata and move the bag to its destination."""
        if self._done:
            return self.path
        self._writer.close()
        self._done = True
        write_humble_metadata(self.tmp)
        if self.path.exists():  # only reached with overwrite=True, checked in __init__
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
        shutil.rmtree(self.tmp_parent, ignore_errors=True)
        return self.path

    def abort(self) -> None:
        if not self._done:
            self._done = True
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - the partial bag is deleted anyway
                pass
        shutil.rmtree(self.tmp_parent, ignore_errors=True)

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()
        return False


def check_destination(path: Path, overwrite: bool) -> None:
    """Refuse to write over anything but an existing bag (and that only with overwrite)."""
    if not path.exists():
        return
    if not overwrite:
        raise BagError(f"{path} already exists; remove it or pass --overwrite")
    if not path.is_dir() or not ((path / "metadata.yaml").exists() or not any(path.iterdir())):
        raise BagError(f"{path} exists and is not a rosbag2 directory; refusing to replace it")


def write_humble_metadata(bag_dir: Path) -> None:
    """Reduce the metadata.yaml rosbags wrote (version 8) to rosbag2 format version 5."""
    meta_path = bag_dir / "metadata.yaml"
    info = yaml.safe_load(meta_path.read_text())["rosbag2_bagfile_information"]
    out = {k: info[k] for k in _V5_KEYS if k in info}
    out["version"] = HUMBLE_METADATA_VERSION
    out["topics_with_message_count"] = [
        {
            "topic_metadata": {k: t["topic_metadata"][k] for k in _V5_TOPIC_KEYS},
            "message_count": t["message_count"],
        }
        for t in info["topics_with_message_count"]
    ]
    meta_path.write_text(
        yaml.safe_dump({"rosbag2_bagfile_information": out}, sort_keys=False, default_flow_style=False)
    )


# --------------------------------------------------------------------------- reading


class BagReader:
    """A rosbags Reader whose every failure is a one-line :class:`BagError`."""

    def __init__(self, path: str | Path):
        from rosbags.rosbag2 import Reader

        path = Path(path)
        if path.is_file() and path.suffix in (".db3", ".mcap", ".yaml"):
            path = path.parent  # a storage file or metadata.yaml of the bag was given
        self.path = path
        if not path.exists():
            raise BagError(f"bag {path} does not exist")
        if not path.is_dir() or not (path / "metadata.yaml").is_file():
            raise BagError(f"{path} is not a rosbag2 bag directory (no metadata.yaml in it)")
        try:
            info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
            self.storage = str(info["storage_identifier"])
            self.files = [str(path / Path(f).name) for f in info["relative_file_paths"]]
        except Exception as exc:  # noqa: BLE001 - unreadable, not YAML, or keys missing
            raise BagError(f"bag {path}: metadata.yaml is not rosbag2 metadata: {_one_line(exc)}") from None
        try:
            self._reader = Reader(path)
            self._reader.open()
        except Exception as exc:  # noqa: BLE001 - any failure inside the bag library is a bad bag
            raise BagError(
                f"cannot open bag {path} ({', '.join(self.files)}; truncated or corrupt?): {_one_line(exc)}"
            ) from None
        self.topics: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        for c in self._reader.connections:
            self.topics[c.topic] = c.msgtype
            self.counts[c.topic] = self.counts.get(c.topic, 0) + c.msgcount

    def require(self, topic: str, types: Iterable[str], what: str = "") -> str:
        """The msgtype of ``topic``; BagError if it is absent or of another type."""
        types = tuple(types)
        if topic not in self.topics:
            have = ", ".join(f"{t} ({m})" for t, m in sorted(self.topics.items())) or "none"
            raise BagError(f"topic {topic} is not in bag {self.path}{what}; topics there: {have}")
        msgtype = self.topics[topic]
        if msgtype not in types:
            raise BagError(
                f"topic {topic} in bag {self.path} has type {msgtype}; expected {' or '.join(types)}"
            )
        return msgtype

    def messages(self, topics: Iterable[str]) -> Iterator[tuple[str, int, memoryview]]:
        """(topic, bag timestamp ns, raw CDR) in time order; checks the message counts."""
        topics = set(topics)
        conns = [c for c in self._reader.connections if c.topic in topics]
        seen = dict.fromkeys(topics, 0)
        it = self._reader.messages(connections=conns)
        while True:
            try:
                conn, timestamp, raw = next(it)
            except StopIteration:
                break
            except Exception as exc:  # noqa: BLE001 - storage file truncated or corrupt
                raise BagError(
                    f"bag {self.path}: cannot read {', '.join(self.files)} "
                    f"(truncated or corrupt?): {_one_line(exc)}"
                ) from None
            seen[conn.topic] += 1
            yield conn.topic, timestamp, raw
        for topic in topics:
            if seen[topic] != self.counts.get(topic, 0):
                raise BagError(
                    f"bag {self.path}: metadata.yaml lists {self.counts.get(topic, 0)} messages on "
                    f"{topic} but {', '.join(self.files)} holds {seen[topic]} (truncated?)"
                )

    def close(self) -> None:
        try:
            self._reader.close()
        except Exception:  # noqa: BLE001
            pass

    def __enter__(self) -> "BagReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def decode_checked(raw, msgtype: str, topic: str, index: int, bag: Path):
    """Deserialize one message, turning a malformed payload into a BagError naming the topic."""
    try:
        msg = deserialize(raw, msgtype)
        if msgtype == IMAGE:
            image_view(msg)  # encoding supported, sizes and step consistent with the data
        elif msgtype == COMPRESSED_IMAGE and len(msg.data) == 0:
            raise ValueError("empty payload")
    except Exception as exc:  # noqa: BLE001 - any decoding failure means a bad message
        raise BagError(
            f"bag {bag}: message {index} on {topic} is not a valid {msgtype}: {_one_line(exc)}"
        ) from None
    return msg


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__).rstrip(".")
