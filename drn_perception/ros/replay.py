"""drn-replay: play a rosbag2 through the segmentation node, record its masks, measure.

    drn-replay IN_BAG --out OUT_BAG [--rate-factor F | --as-fast-as-node] [--no-start-node]
               [--model M] [--overlays DIR] [--overlay-video FILE] [--report FILE.json]

1. The input bag is checked completely before anything starts: the camera topic exists and is
   sensor_msgs/Image or CompressedImage, every message deserialises, the storage file holds as
   many messages as metadata.yaml lists, header stamps are unique (masks are matched to frames
   by stamp), and the optional ground-truth topic holds mono8 labels.
2. Unless --no-start-node, seg_node is started as its own process the way ``ros2 run`` starts
   it, in a private namespace (so it cannot cross-talk with a node already running), with
   reliable input QoS. With --no-start-node the replay talks to a node someone else started
   (``ros2 launch drn_perception seg.launch.py``) on the usual topics.
3. A warm-up frame (the first frame under a stamp that is not in the bag) is sent until its
   mask comes back: that proves both directions are connected and loads the model; its
   masks are never recorded.
4. The camera messages are published over DDS as the bag's raw CDR bytes: at the bag's own
   timing (default), scaled by --rate-factor, or --as-fast-as-node (the next frame goes out
   when the previous mask arrived, or after --timeout). Every mask (and any output chosen
   with --record) is written to OUT_BAG with the input frame's bag time; the node keeps its
   header, so stamps match one to one. In timed modes the node may drop frames (the newest
   pending frame wins): those are counted and listed, never matched to another frame's mask.
5. The report (printed, and saved with --report): frames published, masks received, dropped,
   end-to-end latency (publish -> mask received) p50/p95/p99, throughput, and, when the bag
   has a ground-truth labels topic, per-class IoU and mIoU of the received masks.

OUT_BAG is built under a temporary name and renamed into place only after a run that got at
least one mask; on any error nothing is left at OUT_BAG.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

from drn_perception.ros import bagio

DEFAULT_IMAGE_TOPIC = "/camera/image_raw"
DEFAULT_LABELS_TOPIC = "/camera/labels"
OUTPUTS = ("mask", "color_mask", "overlay", "confidence")
WARMUP_FRAME_ID = "drn_replay_warmup"
NODE_MODULE = "drn_perception.ros.node"


class ReplayError(Exception):
    """A replay that cannot run or cannot finish; the message says why in one line."""


@dataclasses.dataclass
class ReplayOptions:
    in_bag: Path
    out_bag: Path
    rate_factor: float = 1.0
    as_fast_as_node: bool = False
    start_node: bool = True
    model: Path | None = None
    backend: str = "auto"
    class_config: Path | None = None
    node_params: dict = dataclasses.field(default_factory=dict)
    image_topic: str | None = None
    labels_topic: str | None = None
    publish_topic: str | None = None  # --no-start-node: where the node listens (default: the bag topic)
    output_prefix: str = "/drn"  # --no-start-node: where the node publishes (<prefix>/mask, ...)
    record: tuple = ("mask",)
    overlays: Path | None = None
    overlay_video: Path | None = None
    overlay_alpha: float = 0.5
    report: Path | None = None
    storage: str | None = None  # default: the input bag's
    timeout: float = 10.0
    startup_timeout: float = 60.0
    overwrite: bool = False
    progress: bool = True
    node_log: Path | None = None


# --------------------------------------------------------------------------- input checks


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
    size: tuple | None
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
    size = None
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
                size = (int(msg.height), int(msg.width))
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
    return BagPlan(image_topic, image_type, labels_topic, frames, size, storage, label_stamps, first_raw)


# --------------------------------------------------------------------------- the node process


def default_model() -> Path:
    """The package's default model (drn_perception/assets); ReplayError if none is installed."""
    try:
        from drn_perception.default_model import default_model_path
    except ImportError:
        raise ReplayError("this installation has no default model (drn_perception.default_model); "
                          "pass --model <model.onnx>") from None
    return Path(default_model_path())


def _death_signal_setter():
    """A function for Popen's preexec_fn that makes the child get SIGTERM when the replay dies,
    even by SIGKILL (Linux PR_SET_PDEATHSIG), or None where prctl is not available.

    libc is looked up here, in the parent: the child of a threaded process (the overlay writer
    runs on a thread) must not import or dlopen between fork and exec.
    """
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def started_node_params(model: str | Path, backend: str = "auto", compressed: bool = False) -> dict:
    """seg_node parameters for a node that serves a replay: it listens on ``camera/image_raw`` in
    its namespace, and both directions are reliable with room for 50 masks, so a replay loses
    nothing to QoS (drops then mean the node's own newest-frame policy)."""
    return {"model_path": str(model), "backend": backend, "input_reliability": "reliable",
            "output_reliability": "reliable", "output_depth": 50, "image_topics": "[camera/image_raw]",
            "compressed": str(compressed).lower()}


class NodeProcess:
    """seg_node started the way ``ros2 run drn_perception seg_node --ros-args ...`` starts it."""

    def __init__(self, namespace: str, params: dict, log_path: Path | None = None):
        self.command = [sys.executable, "-m", NODE_MODULE, "--ros-args", "-r", f"__ns:={namespace}"]
        for k, v in params.items():
            self.command += ["-p", f"{k}:={v}"]
        env = dict(os.environ)
        pkg_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pkg_root, env.get("PYTHONPATH", "")]))
        env["PYTHONUNBUFFERED"] = "1"
        self.lines: deque[str] = deque(maxlen=40)
        self._log = open(log_path, "w") if log_path else None  # noqa: SIM115 - closed in stop()
        # Own session: a terminal Ctrl-C reaches only the replay, which then stops the node itself.
        self.proc = subprocess.Popen(
            self.command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True, preexec_fn=_death_signal_setter(),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if self._log:
                self._log.write(line)

    def check_alive(self, when: str) -> None:
        code = self.proc.poll()
        if code is not None:
            self._reader.join(timeout=2.0)
            last = next((ln for ln in reversed(self.lines) if ln.strip()), "no output")
            raise ReplayError(f"seg_node exited with code {code} {when}: {last}")

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=2.0)
        if self._log:
            self._log.close()
        return self.proc.returncode


# --------------------------------------------------------------------------- overlays


class OverlayWriter:
    """Blends frames with their colour masks on a worker thread: PNG files and/or one video."""

    def __init__(self, directory: Path | None, video: Path | None, palette, alpha: float, fps: float,
                 overwrite: bool = False):
        from drn_perception.ros import conversions as conv

        self.conv = conv
        self.lut = conv.palette_lut(palette)
        self.alpha = alpha
        self.fps = fps
        self.video = None
        self.video_size = None
        self.error: BaseException | None = None
        self.written = 0
        self.overwrite = overwrite
        # Written under temporary names, renamed by commit() after a successful replay.
        self.final_dir, self.final_video = directory, video
        self.directory = self.video_path = None
        if directory:
            if directory.exists() and not overwrite and (not directory.is_dir() or any(directory.iterdir())):
                raise ReplayError(f"overlay folder {directory} already exists; remove it or pass --overwrite")
            self.directory = directory.parent / f".{directory.name}.partial-{os.getpid()}"
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory.mkdir(parents=True)
        if video:
            if video.suffix.lower() not in (".avi", ".mp4"):
                raise ReplayError(f"--overlay-video {video}: use a .avi (MJPG) or .mp4 (mp4v) file name")
            if video.exists() and not overwrite:
                raise ReplayError(f"overlay video {video} already exists; remove it or pass --overwrite")
            video.parent.mkdir(parents=True, exist_ok=True)
            self.video_path = video.parent / f".{video.stem}.partial-{os.getpid()}{video.suffix}"
        self.queue: queue.Queue = queue.Queue(maxsize=64)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def put(self, index: int, image_msg, mask: np.ndarray) -> None:
        if self.error is not None:
            raise ReplayError(f"writing overlays failed: {self.error}")
        self.queue.put((index, image_msg, mask))

    def _run(self):
        import cv2

        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is not None:
                continue
            try:
                index, msg, mask = item
                rgb = self.conv.to_rgb(msg)
                bgr = cv2.cvtColor(self.conv.blend(rgb, self.conv.colorize(mask, self.lut), self.alpha),
                                   cv2.COLOR_RGB2BGR)
                if self.directory:
                    path = self.directory / f"frame_{index:06d}.png"
                    if not cv2.imwrite(str(path), bgr):
                        raise OSError(f"cannot write {path}")
                if self.video_path:
                    self._video_frame(bgr)
                self.written += 1
            except BaseException as exc:  # noqa: BLE001 - reported by put()/close()
                self.error = exc

    def _video_frame(self, bgr):
        import cv2

        if self.video is None:
            h, w = bgr.shape[:2]
            self.video_size = (w, h)
            fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self.video_path.suffix.lower() == ".avi" else "mp4v"))
            self.video = cv2.VideoWriter(str(self.video_path), fourcc, self.fps, self.video_size)
            if not self.video.isOpened():
                raise OSError(f"OpenCV cannot write video {self.video_path}")
        if bgr.shape[1::-1] != self.video_size:
            bgr = cv2.resize(bgr, self.video_size, interpolation=cv2.INTER_AREA)
        self.video.write(bgr)

    def close(self) -> int:
        """Finish the queued overlays; ReplayError if any failed."""
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        if self.video is not None:
            self.video.release()
            self.video = None
        if self.error is not None:
            raise ReplayError(f"writing overlays failed: {self.error}")
        return self.written

    def commit(self) -> None:
        if self.directory:
            if self.final_dir.exists():
                shutil.rmtree(self.final_dir) if self.final_dir.is_dir() else self.final_dir.unlink()
            os.replace(self.directory, self.final_dir)
            self.directory = None
        if self.video_path:
            if self.video_path.exists():
                os.replace(self.video_path, self.final_video)
            self.video_path = None

    def discard(self) -> None:
        try:
            self.close()
        except ReplayError:
            pass
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
        if self.video_path:
            self.video_path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- the replay


def _percentiles(values) -> dict:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    v = np.asarray(values, np.float64) * 1e3
    return {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)),
            "p99": float(np.percentile(v, 99)), "mean": float(v.mean()), "max": float(v.max())}


def _ros_name(topic: str) -> str:
    return topic if topic.startswith("/") else "/" + topic


class Replay:
    def __init__(self, opts: ReplayOptions, ros_args: list | None = None):
        self.o = opts
        self.ros_args = list(ros_args or [])
        if opts.rate_factor <= 0:
            raise ReplayError(f"--rate-factor must be positive, got {opts.rate_factor}")
        if opts.timeout <= 0:
            raise ReplayError(f"--timeout must be positive, got {opts.timeout}")
        unknown = [r for r in opts.record if r not in OUTPUTS]
        if unknown or "mask" not in opts.record:
            raise ReplayError(f"--record takes a comma-separated subset of {','.join(OUTPUTS)} including mask")
        bagio.check_destination(Path(opts.out_bag), opts.overwrite)
        if opts.report and Path(opts.report).resolve() == Path(opts.out_bag).resolve():
            raise ReplayError("--report must not be the OUT_BAG path")

    # ------------------------------------------------------------------ set-up
    def _class_config(self):
        from drn_perception.model_info import ClassConfig, cityscapes

        try:
            return ClassConfig.from_yaml(self.o.class_config) if self.o.class_config else cityscapes()
        except ValueError as exc:
            raise ReplayError(str(exc)) from None

    def run(self) -> dict:
        o = self.o
        with bagio.BagReader(o.in_bag) as reader:
            plan = inspect_bag(reader, o.image_topic, o.labels_topic)
        classes = self._class_config()
        storage = o.storage or plan.storage
        model = None
        if o.start_node:
            model = Path(o.model) if o.model else default_model()
            if not model.is_file():
                raise ReplayError(
                    f"model file not found: {model}" + ("" if o.model else " (the default model is not installed; "
                                                             "pass --model <model.onnx>)"))
        frames = plan.frames
        span = (frames[-1].bag_time - frames[0].bag_time) / 1e9 if len(frames) > 1 else 0.0
        bag_rate = (len(frames) - 1) / span if span > 0 else 10.0
        overlays = None
        if o.overlays or o.overlay_video:
            overlays = OverlayWriter(o.overlays, o.overlay_video, classes.palette, o.overlay_alpha,
                                     fps=min(max(bag_rate, 1.0), 120.0), overwrite=o.overwrite)
        node_proc = None
        try:
            try:
                import rclpy
            except ImportError as exc:
                raise ReplayError(f"drn-replay needs rclpy and the ROS message packages ({exc}): source a ROS 2 "
                                  "install or pip install -r requirements.txt") from None

            from rclpy.signals import SignalHandlerOptions

            use_large_image_profile()
            context = rclpy.Context()
            # No rclpy signal handlers: Ctrl-C must raise KeyboardInterrupt here, so the node is
            # stopped and the partial OUT_BAG removed by the finally blocks.
            rclpy.init(args=sys.argv[:1] + self.ros_args, context=context,
                       signal_handler_options=SignalHandlerOptions.NO)
            try:
                if o.start_node:
                    namespace = f"/drn_replay_{os.getpid()}"
                    params = started_node_params(model, o.backend, plan.image_type == bagio.COMPRESSED_IMAGE)
                    params["overlay_alpha"] = repr(float(o.overlay_alpha))
                    if o.class_config:
                        params["class_config"] = str(o.class_config)
                    params.update(o.node_params)
                    node_proc = NodeProcess(namespace, params, o.node_log)
                    publish_topic = f"{namespace}/camera/image_raw"
                    output_prefix = f"{namespace}/drn"
                else:
                    publish_topic = o.publish_topic or plan.image_topic
                    output_prefix = o.output_prefix.rstrip("/")
                result = self._replay(context, plan, storage, _ros_name(publish_topic), _ros_name(output_prefix),
                                      node_proc, model, classes, overlays, bag_rate)
            finally:
                context.try_shutdown()
            if overlays is not None:
                overlays.commit()
                result["overlays"] = str(o.overlays) if o.overlays else None
                result["overlay_video"] = str(o.overlay_video) if o.overlay_video else None
            return result
        finally:
            if node_proc is not None:
                node_proc.stop()
            if overlays is not None:
                overlays.discard()

    # ------------------------------------------------------------------ main loop
    def _replay(self, context, plan, storage, publish_topic, output_prefix, node_proc, model, classes,
                overlays, bag_rate) -> dict:
        from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image

        o = self.o
        import rclpy.node

        node = rclpy.node.Node(f"drn_replay_{os.getpid()}", context=context, start_parameter_services=False)
        received: queue.Queue = queue.Queue()
        pub_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.VOLATILE)
        sub_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=200, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.VOLATILE)
        msg_cls = CompressedImage if plan.image_type == bagio.COMPRESSED_IMAGE else Image
        pub = node.create_publisher(msg_cls, publish_topic, pub_qos)
        subs = {}
        for kind in o.record:
            topic = f"{output_prefix}/{kind}"
            subs[kind] = node.create_subscription(
                Image, topic, lambda raw, kind=kind: received.put((kind, raw, time.perf_counter())), sub_qos,
                raw=True)
        diagnostics: dict = {}
        diag_count = [0]

        def on_diag(msg):
            for st in msg.status:
                values = {kv.key: kv.value for kv in st.values}
                if values.get("mask_topic") == f"{output_prefix}/mask":
                    diagnostics.clear()
                    diagnostics.update(values, status=st.message, name=st.name)
                    diag_count[0] += 1

        from diagnostic_msgs.msg import DiagnosticArray

        node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)

        def spin():
            try:
                executor.spin()
            except ExternalShutdownException:
                pass

        spinner = threading.Thread(target=spin, daemon=True)
        spinner.start()
        try:
            self._wait_connected(pub, subs, node_proc, publish_topic, output_prefix)
            with bagio.BagReader(o.in_bag) as reader, bagio.BagWriter(o.out_bag, storage, o.overwrite) as writer:
                result = self._loop(reader, writer, plan, pub, received, node_proc, classes, overlays)
                # The node reports about once a second: wait for one report covering the whole run.
                seen, end = diag_count[0], time.monotonic() + 2.5
                while diag_count[0] == seen and time.monotonic() < end:
                    time.sleep(0.05)
                if overlays is not None:
                    result["overlays_written"] = overlays.close()
                if result["masks_received"] == 0:
                    hint = "" if node_proc else (
                        "; a node with best-effort input loses frames over 512 KiB unless this process uses "
                        "config/fastdds_large_images.xml (FASTDDS_DEFAULT_PROFILES_FILE) or the node runs with "
                        "input_reliability:=reliable")
                    raise ReplayError(
                        f"no masks came back on {output_prefix}/mask within {o.timeout:g} s for "
                        f"{result['frames_published']} published frames{hint}")
            # OUT_BAG is now committed (renamed into place).
        finally:
            executor.shutdown(timeout_sec=2.0)
            spinner.join(timeout=5.0)
            node.destroy_node()
        result.update({
            "in_bag": str(o.in_bag), "out_bag": str(o.out_bag), "storage": storage,
            "image_topic": plan.image_topic, "image_type": plan.image_type, "labels_topic": plan.labels_topic,
            "frame_size": list(plan.size) if plan.size else None, "bag_rate_hz": bag_rate,
            "mode": "as_fast_as_node" if o.as_fast_as_node else "timed",
            "rate_factor": None if o.as_fast_as_node else o.rate_factor,
            "node": {"started": node_proc is not None, "model": str(model) if model else None,
                     "input_topic": publish_topic, "output_prefix": output_prefix,
                     "diagnostics": dict(diagnostics)},
        })
        return result

    def _wait_connected(self, pub, subs, node_proc, publish_topic, output_prefix):
        """Wait for the node's subscription and publishers; then a warm-up frame round trip."""
        end = time.monotonic() + self.o.startup_timeout
        what = "seg_node" if node_proc else f"a node listening on {publish_topic}"
        while True:
            if node_proc:
                node_proc.check_alive("while starting")
            if pub.get_subscription_count() >= 1 and all(s.get_publisher_count() >= 1 for s in subs.values()):
                return
            if time.monotonic() > end:
                missing = [publish_topic] if pub.get_subscription_count() < 1 else []
                missing += [s.topic_name for s in subs.values() if s.get_publisher_count() < 1]
                raise ReplayError(
                    f"{what} did not connect within {self.o.startup_timeout:g} s (nobody on "
                    f"{', '.join(missing)}); is it running with the same ROS_DOMAIN_ID?")
            time.sleep(0.02)

    def _warmup(self, plan, pub, received, node_proc):
        """Send the first frame under an unused stamp until its mask returns (model loaded, paths open)."""
        msg = bagio.deserialize(plan.first_raw, plan.image_type)
        stamps = {f.stamp for f in plan.frames}
        warm = 1
        while warm in stamps:
            warm += 1
        header = dataclasses.replace(msg.header, frame_id=WARMUP_FRAME_ID,
                                     stamp=dataclasses.replace(msg.header.stamp, sec=0, nanosec=warm))
        data = bagio.serialize(dataclasses.replace(msg, header=header), plan.image_type)
        end = time.monotonic() + self.o.startup_timeout
        while time.monotonic() < end:
            pub.publish(data)
            resend = time.monotonic() + 1.0
            while time.monotonic() < resend:
                if node_proc:
                    node_proc.check_alive("before the replay started")
                try:
                    kind, raw_out, _ = received.get(timeout=0.05)
                except queue.Empty:
                    continue
                if kind == "mask" and bagio.header_stamp(bagio.deserialize(raw_out, bagio.IMAGE)) == warm:
                    return warm  # later copies and its optional outputs are ignored by stamp
        raise ReplayError(f"the node did not answer a warm-up frame within {self.o.startup_timeout:g} s")

    def _loop(self, reader, writer, plan, pub, received, node_proc, classes, overlays) -> dict:
        o = self.o
        num_classes = len(classes.classes)
        for kind in o.record:
            writer.add_topic(f"/drn/{kind}", bagio.IMAGE)
        warm = self._warmup(plan, pub, received, node_proc)

        frames_by_stamp = {f.stamp: f for f in plan.frames}
        published: dict[int, float] = {}  # stamp -> publish time (perf_counter)
        order: list[int] = []  # published stamps in order
        got_mask: dict[int, float] = {}  # stamp -> receive time
        superseded: set[int] = set()
        outputs_seen: dict[str, set] = {k: set() for k in o.record}
        pending_labels: dict[int, bytes] = {}
        pending_inputs: dict[int, bytes] = {}
        late = duplicates = unexpected = 0
        last_activity = [time.perf_counter()]
        # One extra class for the mask's 255 (unknown): such pixels count as misses of the true class.
        conf = np.zeros((num_classes + 1, num_classes + 1), np.int64) if plan.labels_topic else None
        gt_classes = np.zeros(num_classes, bool)
        evaluated = 0
        from drn_perception.training.metrics import confusion_matrix

        bar = None
        if o.progress:
            from tqdm import tqdm

            bar = tqdm(total=len(plan.frames), unit="frame", desc="drn-replay", file=sys.stderr)

        def handle(kind, raw, t_recv):
            nonlocal late, duplicates, unexpected
            msg = bagio.deserialize(raw, bagio.IMAGE)
            stamp = bagio.header_stamp(msg)
            if stamp == warm:
                return
            last_activity[0] = t_recv
            frame = frames_by_stamp.get(stamp)
            if frame is None or stamp not in published:
                unexpected += 1
                return
            if kind != "mask":
                if stamp not in outputs_seen[kind]:
                    outputs_seen[kind].add(stamp)
                    writer.write(f"/drn/{kind}", frame.bag_time, raw)
                return
            if stamp in got_mask:
                duplicates += 1
                return
            got_mask[stamp] = t_recv
            outputs_seen["mask"].add(stamp)
            if stamp in superseded:
                superseded.discard(stamp)
                late += 1
            else:
                # Frames published before this one without a mask were dropped by the node.
                pos = frame_pos[stamp]
                for s in order[last_done[0]:pos]:
                    if s not in got_mask:
                        superseded.add(s)
                        pending_labels.pop(s, None)
                        pending_inputs.pop(s, None)
                last_done[0] = max(last_done[0], pos + 1)
            # Recording and scoring wait until the next frame is out (drain runs them).
            deferred.append((frame, stamp, raw, msg))

        def finish(frame, stamp, raw, msg):
            """Record a received mask, score it against the bag's labels, queue its overlay."""
            nonlocal evaluated, conf
            writer.write("/drn/mask", frame.bag_time, raw)
            mask = None
            if stamp in pending_labels:
                lab = bagio.deserialize(pending_labels.pop(stamp), bagio.IMAGE)
                gt = np.asarray(lab.data, np.uint8)[: lab.step * lab.height].reshape(lab.height, lab.step)[:, : lab.width]
                mask = _mask_array(msg)
                if mask.shape != gt.shape:
                    raise ReplayError(f"mask for frame {frame.index} is {mask.shape[1]}x{mask.shape[0]} but its "
                                      f"labels are {gt.shape[1]}x{gt.shape[0]}")
                bad = gt[(gt >= num_classes) & (gt != 255)]
                if bad.size:
                    raise ReplayError(f"labels of frame {frame.index} on {plan.labels_topic} hold class "
                                      f"{int(bad[0])}, but the class config has {num_classes} classes")
                pred = np.where(mask >= num_classes, num_classes, mask)
                conf += confusion_matrix(pred, gt, num_classes + 1)
                present = np.unique(gt)
                gt_classes[present[present < num_classes]] = True
                evaluated += 1
            if overlays is not None and stamp in pending_inputs:
                overlays.put(frame.index, bagio.deserialize(pending_inputs.pop(stamp), plan.image_type),
                             mask if mask is not None else _mask_array(msg).copy())
            if bar is not None:
                bar.set_postfix_str(f"masks {len(got_mask)}", refresh=False)

        frame_pos: dict[int, int] = {}
        last_done = [0]
        deferred: deque = deque()

        def drain(until: float, done=None) -> None:
            """Process received messages until perf_counter() reaches ``until``, or until
            ``done()`` holds after a message (then at once: the next frame is waiting for it).
            Received masks are recorded and scored while nothing else is queued."""
            while True:
                if done is not None and done():
                    return
                now = time.perf_counter()
                if now >= until:
                    break
                try:
                    if deferred:
                        kind, raw, t = received.get_nowait()
                    else:
                        kind, raw, t = received.get(timeout=min(0.05, until - now))
                except queue.Empty:
                    if deferred:
                        finish(*deferred.popleft())
                    elif node_proc:
                        node_proc.check_alive("during the replay")
                    continue
                handle(kind, raw, t)
            while True:  # whatever is already queued
                try:
                    kind, raw, t = received.get_nowait()
                except queue.Empty:
                    break
                handle(kind, raw, t)
            while deferred:
                finish(*deferred.popleft())

        t_start = time.perf_counter()
        t0_bag = plan.frames[0].bag_time
        idx = 0
        for topic, bag_time, raw in reader.messages([plan.image_topic] + ([plan.labels_topic] if plan.labels_topic else [])):
            if topic != plan.image_topic:
                lab_stamp = bagio.header_stamp(bagio.deserialize(raw, bagio.IMAGE))
                if lab_stamp in frames_by_stamp and lab_stamp not in published:
                    pending_labels[lab_stamp] = bytes(raw)
                elif lab_stamp in published and lab_stamp not in got_mask and lab_stamp not in superseded:
                    pending_labels[lab_stamp] = bytes(raw)  # labels logged after their frame
                continue
            frame = plan.frames[idx]
            idx += 1
            if o.as_fast_as_node:
                if order:
                    prev = order[-1]
                    drain(time.perf_counter() + o.timeout, done=lambda: prev in got_mask)
            else:
                drain(t_start + (bag_time - t0_bag) / 1e9 / o.rate_factor)
            if overlays is not None:
                pending_inputs[frame.stamp] = bytes(raw)
            frame_pos[frame.stamp] = len(order)
            order.append(frame.stamp)
            published[frame.stamp] = time.perf_counter()
            pub.publish(bytes(raw))
            if bar is not None:
                bar.update()
        t_last_pub = time.perf_counter()
        last_activity[0] = max(last_activity[0], t_last_pub)

        def complete() -> bool:
            # Every frame answered or superseded (the last one can only be answered), and every
            # recorded output of every answered frame in.
            return (order[-1] in got_mask and len(got_mask) + len(superseded) >= len(order)
                    and all(got_mask.keys() <= outputs_seen[k] for k in o.record))

        # Wait for the outstanding masks/outputs until nothing has arrived for --timeout seconds.
        while not complete() and time.perf_counter() - last_activity[0] < o.timeout:
            drain(time.perf_counter() + 0.1)
        while deferred:
            finish(*deferred.popleft())
        if bar is not None:
            bar.close()

        dropped = [s for s in order if s not in got_mask]
        latencies = [got_mask[s] - published[s] for s in order if s in got_mask]
        t_end = max(got_mask.values()) if got_mask else t_last_pub
        result = {
            "frames_published": len(order),
            "masks_received": len(got_mask),
            "dropped": len(dropped),
            "dropped_frames": [frames_by_stamp[s].index for s in dropped][:100],
            "late_masks": late,
            "duplicate_masks": duplicates,
            "unexpected_masks": unexpected,
            "outputs_recorded": {f"/drn/{k}": len(v) for k, v in outputs_seen.items()},
            "latency_ms": _percentiles(latencies),
            "throughput_fps": len(got_mask) / (t_end - t_start) if got_mask and t_end > t_start else None,
            "publish_rate_hz": (len(order) - 1) / (t_last_pub - t_start) if len(order) > 1 and t_last_pub > t_start else None,
            "duration_s": t_end - t_start,
            "metrics": None,
        }
        if conf is not None:
            from drn_perception.training.metrics import mean_iou, per_class_iou, pixel_accuracy

            ids = [int(c) for c in np.flatnonzero(gt_classes)]
            iou = per_class_iou(conf)[:num_classes]
            result["metrics"] = {
                "frames_evaluated": evaluated,
                "miou": mean_iou(conf, ids) if ids else None,
                "miou_classes": [classes.classes[c] for c in ids],
                "pixel_accuracy": pixel_accuracy(conf),
                "per_class_iou": {classes.classes[c]: (None if np.isnan(iou[c]) else float(iou[c])) for c in ids},
                "note": "mIoU over the classes present in the labels; unknown (255) mask pixels count as misses",
            }
        return result


def _mask_array(msg) -> np.ndarray:
    if msg.encoding not in ("mono8", "8UC1"):
        raise ReplayError(f"the node published a {msg.encoding} mask; expected mono8")
    return np.asarray(msg.data, np.uint8)[: msg.step * msg.height].reshape(msg.height, msg.step)[:, : msg.width]


# --------------------------------------------------------------------------- CLI


def format_summary(r: dict) -> str:
    lat = r["latency_ms"]
    lines = [
        f"replayed {r['in_bag']} ({r['image_topic']}, {r['mode']}"
        + (f" x{r['rate_factor']:g}" if r["rate_factor"] else "") + f") -> {r['out_bag']}",
        f"frames published {r['frames_published']}, masks received {r['masks_received']}, dropped {r['dropped']}"
        + (f" (late {r['late_masks']})" if r["late_masks"] else ""),
    ]
    if lat["p50"] is not None:
        lines.append(f"latency publish->mask ms: p50 {lat['p50']:.1f}  p95 {lat['p95']:.1f}  p99 {lat['p99']:.1f}  "
                     f"max {lat['max']:.1f}")
    if r["throughput_fps"]:
        lines.append(f"throughput {r['throughput_fps']:.2f} masks/s")
    diag = (r.get("node") or {}).get("diagnostics") or {}
    if "inference_p50_ms" in diag:
        lines.append(f"node ({diag.get('backend', '?')}): inference p50 {diag['inference_p50_ms']} ms, "
                     f"its own work per frame (decode, resize, mask, publish) p50 {diag.get('overhead_p50_ms', '?')} "
                     f"ms, p95 {diag.get('overhead_p95_ms', '?')} ms")
    m = r.get("metrics")
    if m and m["miou"] is not None:
        per = ", ".join(f"{k} {v:.3f}" for k, v in m["per_class_iou"].items() if v is not None)
        lines.append(f"mIoU {m['miou']:.4f} over {len(m['miou_classes'])} classes ({m['frames_evaluated']} frames); "
                     f"pixel accuracy {m['pixel_accuracy']:.4f}")
        lines.append(f"IoU: {per}")
    if r.get("overlays_written"):
        lines.append(f"overlays written: {r['overlays_written']}")
    return "\n".join(lines)


def _param_arg(text: str) -> tuple[str, str]:
    if ":=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME:=VALUE, got {text!r}")
    k, v = text.split(":=", 1)
    return k, v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="drn-replay",
        description="Replay a rosbag2 through seg_node over DDS, record its masks into a new bag and report "
        "drops, latency, throughput and (with ground truth in the bag) IoU.",
    )
    p.add_argument("in_bag", type=Path, help="input rosbag2 directory (sqlite3 or mcap)")
    p.add_argument("--out", dest="out_bag", type=Path, required=True, help="output bag directory to create")
    timing = p.add_mutually_exclusive_group()
    timing.add_argument("--rate-factor", type=float, default=1.0,
                        help="play at this multiple of the bag's own timing (default 1.0)")
    timing.add_argument("--as-fast-as-node", action="store_true",
                        help="send the next frame when the previous mask arrived (or after --timeout)")
    p.add_argument("--start-node", action=argparse.BooleanOptionalAction, default=True,
                   help="start seg_node as a process (default), or use one started separately")
    p.add_argument("--model", type=Path, help="model for the started node (default: the package's default model)")
    p.add_argument("--backend", default="auto", help="backend for the started node (default auto)")
    p.add_argument("--class-config", type=Path, help="class names/colours YAML (default config/cityscapes.yaml)")
    p.add_argument("--node-param", type=_param_arg, action="append", default=[], metavar="NAME:=VALUE",
                   help="extra seg_node parameter for the started node (repeatable)")
    p.add_argument("--image-topic", help=f"camera topic in the bag (default {DEFAULT_IMAGE_TOPIC} or the only image topic)")
    p.add_argument("--labels-topic", help=f"ground-truth mono8 labels topic (default {DEFAULT_LABELS_TOPIC} if present; "
                   "'' for none)")
    p.add_argument("--publish-topic", help="--no-start-node: topic the node listens on (default: the bag's camera topic)")
    p.add_argument("--output-prefix", default="/drn", help="--no-start-node: the node's output prefix (default /drn)")
    p.add_argument("--record", default="mask",
                   help=f"outputs to record, comma-separated subset of {','.join(OUTPUTS)} (default mask)")
    p.add_argument("--overlays", type=Path, help="write one overlay PNG per mask into this folder")
    p.add_argument("--overlay-video", type=Path, help="write the overlays as a video (.avi MJPG or .mp4 mp4v)")
    p.add_argument("--overlay-alpha", type=float, default=0.5)
    p.add_argument("--report", type=Path, help="save the report as JSON here")
    p.add_argument("--storage", choices=list(bagio.STORAGES), help="OUT_BAG storage (default: the input's)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for a mask (per frame with --as-fast-as-node; at the end otherwise)")
    p.add_argument("--startup-timeout", type=float, default=60.0, help="seconds to wait for the node to connect")
    p.add_argument("--node-log", type=Path, help="write the started node's output here")
    p.add_argument("--fail-on-drop", action="store_true", help="exit 3 when any frame got no mask")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bag at OUT_BAG")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def options_from_args(args) -> ReplayOptions:
    return ReplayOptions(
        in_bag=args.in_bag, out_bag=args.out_bag, rate_factor=args.rate_factor,
        as_fast_as_node=args.as_fast_as_node, start_node=args.start_node, model=args.model,
        backend=args.backend, class_config=args.class_config, node_params=dict(args.node_param),
        image_topic=args.image_topic, labels_topic=args.labels_topic, publish_topic=args.publish_topic,
        output_prefix=args.output_prefix, record=tuple(r.strip() for r in args.record.split(",") if r.strip()),
        overlays=args.overlays, overlay_video=args.overlay_video, overlay_alpha=args.overlay_alpha,
        report=args.report, storage=args.storage, timeout=args.timeout, startup_timeout=args.startup_timeout,
        overwrite=args.overwrite, progress=not args.quiet, node_log=args.node_log,
    )


def replay(opts: ReplayOptions, ros_args: list | None = None) -> dict:
    """Run one replay; returns the report (also saved to opts.report). Raises ReplayError/BagError."""
    result = Replay(opts, ros_args).run()
    if opts.report:
        Path(opts.report).parent.mkdir(parents=True, exist_ok=True)
        Path(opts.report).write_text(json.dumps(result, indent=2) + "\n")
    return result


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def use_large_image_profile() -> None:
    """Let large best-effort images through Fast DDS, as seg.launch.py does for the node.

    A node started with the default best-effort input only gets frames over 512 KiB when the
    publishing process (this one) uses config/fastdds_large_images.xml. Replay.run calls it
    before rclpy.init; Fast DDS reads the file when the process creates its first participant,
    so a caller that created one earlier must set FASTDDS_DEFAULT_PROFILES_FILE itself. A
    profile the user set already is kept.
    """
    from drn_perception.model_info import _config_path

    profile = _config_path("fastdds_large_images.xml")
    if profile.is_file():
        os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    ros_args: list[str] = []
    if "--ros-args" in argv:  # `ros2 run drn_perception replay ... --ros-args ...`
        i = argv.index("--ros-args")
        argv, ros_args = argv[:i], argv[i:]
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = replay(options_from_args(args), ros_args)
    except (ReplayError, bagio.BagError) as exc:
        print(f"drn-replay: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("drn-replay: interrupted; nothing written to OUT_BAG", file=sys.stderr)
        return 130
    print(format_summary(result))
    if args.report:
        print(f"report: {args.report}")
    if args.fail_on_drop and result["dropped"]:
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
