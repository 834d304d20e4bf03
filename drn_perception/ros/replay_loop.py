"""drn-replay, steps 3-4: connect, warm up, play the frames over DDS, record the masks (scored
and summed up by replay_report). ``ReplayOptions`` is what a replay is asked to do; ``Replay``
does it. The modules of the replay import one way: replay (the CLI) -> replay_loop ->
replay_plan, replay_node, replay_report, overlay."""
from __future__ import annotations

import dataclasses
import os
import queue
import sys
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

from drn_perception.ros import bagio
from drn_perception.ros.overlay import OverlayWriter
from drn_perception.ros.replay_node import NodeProcess, default_model, started_node_params, use_large_image_profile
from drn_perception.ros.replay_plan import ReplayError, ReplayFailed, inspect_bag
from drn_perception.ros.replay_report import Scorer, add_notes, frame_sizes, is_demo_model, mask_array, percentiles

OUTPUTS = ("mask", "color_mask", "overlay", "confidence")
WARMUP_FRAME_ID = "drn_replay_warmup"
RESEND_LIMIT = 3  # --in-flight 2: times a frame the node replaced in its slot is sent again


@dataclasses.dataclass
class ReplayOptions:
    in_bag: Path
    out_bag: Path
    rate_factor: float = 1.0
    as_fast_as_node: bool = False
    in_flight: int = 1  # --as-fast-as-node: frames sent and not yet answered (1: wait for each mask)
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


def _ros_name(topic: str) -> str:
    return topic if topic.startswith("/") else "/" + topic


class Replay:
    def __init__(self, opts: ReplayOptions, ros_args: list | None = None):
        self.o = opts
        self.ros_args = list(ros_args or [])
        if opts.rate_factor <= 0:
            raise ReplayError(f"--rate-factor must be positive, got {opts.rate_factor}")
        if opts.in_flight not in (1, 2):
            raise ReplayError(f"--in-flight must be 1 or 2, got {opts.in_flight} (the node keeps one waiting "
                              "frame per camera, so a third in flight would replace it)")
        if opts.in_flight > 1 and not opts.as_fast_as_node:
            raise ReplayError("--in-flight applies to --as-fast-as-node (timed replays send at the bag's timing)")
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
        # The cheap checks first: reading every message of a large bag takes a while.
        classes = self._class_config()
        model = None
        if o.start_node:
            model = Path(o.model) if o.model else default_model()
            if not model.is_file():
                raise ReplayError(
                    f"model file not found: {model}" + ("" if o.model else " (the default model is not installed; "
                                                             "pass --model <model.onnx>)"))
        with bagio.BagReader(o.in_bag) as reader:
            plan = inspect_bag(reader, o.image_topic, o.labels_topic)
        storage = o.storage or plan.storage
        frames = plan.frames
        span = (frames[-1].bag_time - frames[0].bag_time) / 1e9 if len(frames) > 1 else 0.0
        bag_rate = (len(frames) - 1) / span if span > 0 else 10.0
        overlays = None
        if o.overlays or o.overlay_video:
            overlays = OverlayWriter(o.overlays, o.overlay_video, classes.palette, o.overlay_alpha,
                                     fps=min(max(bag_rate, 1.0), 120.0), overwrite=o.overwrite, names=classes.classes)
        node_proc = None
        try:
            try:
                import rclpy
            except ImportError as exc:
                raise ReplayFailed(f"drn-replay needs rclpy and the ROS message packages ({exc}): source your ROS 2 "
                                  "install (README 'On a robot'); on a development machine, `make setup`") from None

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
            self._wait_connected(node, pub, subs, node_proc, publish_topic, output_prefix)
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
                    raise ReplayFailed(
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
            **frame_sizes(plan, result.pop("mask_sizes")), "bag_rate_hz": bag_rate,
            "mode": "as_fast_as_node" if o.as_fast_as_node else "timed",
            "rate_factor": None if o.as_fast_as_node else o.rate_factor,
            "in_flight": o.in_flight if o.as_fast_as_node else None,
            "node": {"started": node_proc is not None, "model": str(model) if model else None,
                     "demo_model": is_demo_model(model),
                     "input_topic": publish_topic, "output_prefix": output_prefix,
                     "diagnostics": dict(diagnostics)},
        })
        add_notes(result)
        return result

    def _wait_connected(self, node, pub, subs, node_proc, publish_topic, output_prefix):
        """Wait for the node's subscription and publishers; then a warm-up frame round trip.
        (Node.count_publishers: Subscription.get_publisher_count is Jazzy's and later, not Humble's.)"""
        end = time.monotonic() + self.o.startup_timeout
        what = "seg_node" if node_proc else f"a node listening on {publish_topic}"
        while True:
            if node_proc:
                node_proc.check_alive("while starting")
            if pub.get_subscription_count() >= 1 and all(node.count_publishers(s.topic_name) >= 1 for s in subs.values()):
                return
            if time.monotonic() > end:
                missing = [publish_topic] if pub.get_subscription_count() < 1 else []
                missing += [s.topic_name for s in subs.values() if node.count_publishers(s.topic_name) < 1]
                raise ReplayFailed(
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
        raise ReplayFailed(f"the node did not answer a warm-up frame within {self.o.startup_timeout:g} s")

    def _loop(self, reader, writer, plan, pub, received, node_proc, classes, overlays) -> dict:
        o = self.o
        for kind in o.record:
            writer.add_topic(f"/drn/{kind}", bagio.IMAGE)
        warm = self._warmup(plan, pub, received, node_proc)

        frames_by_stamp = {f.stamp: f for f in plan.frames}
        published: dict[int, float] = {}  # stamp -> publish time (perf_counter)
        order: list[int] = []  # published stamps in order (a frame sent again appears again)
        # --as-fast-as-node --in-flight 2: a frame the node replaced in its one-frame slot (a later
        # frame's mask came first) goes again, up to RESEND_LIMIT times, so every frame is answered.
        again: deque = deque()  # stamps waiting to be sent again
        raw_of: dict[int, bytes] = {}  # the frames sent and not answered yet (for sending again)
        tries: dict[int, int] = {}
        resent = 0
        got_mask: dict[int, float] = {}  # stamp -> receive time
        superseded: set[int] = set()
        outputs_seen: dict[str, set] = {k: set() for k in o.record}
        mask_sizes: dict[tuple, int] = {}  # (height, width) of the received masks (= of their frames)
        stamp_age: list[float] = []  # wall clock at publish minus the frame's header stamp, seconds
        pending_labels: dict[int, bytes] = {}
        pending_inputs: dict[int, bytes] = {}
        late = duplicates = unexpected = 0
        rtt = [float("inf")]  # shortest publish -> mask so far (s)
        last_mask = [float("-inf")]  # when the latest mask arrived (s)
        last_activity = [time.perf_counter()]
        scorer = Scorer(classes, plan.labels_topic) if plan.labels_topic else None
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
            raw_of.pop(stamp, None)
            if stamp in again:  # judged replaced, but answered after all
                again.remove(stamp)
                late += 1
            rtt[0] = min(rtt[0], t_recv - published[stamp])
            last_mask[0] = max(last_mask[0], t_recv)
            key = (int(msg.height), int(msg.width))
            mask_sizes[key] = mask_sizes.get(key, 0) + 1
            outputs_seen["mask"].add(stamp)
            if stamp in superseded:
                superseded.discard(stamp)
                late += 1
            else:
                # Frames published before this one without a mask were dropped by the node.
                pos = frame_pos[stamp]
                for s in order[last_done[0]:pos]:
                    if s in got_mask or s in superseded or s in again:
                        continue
                    if s in raw_of and tries.get(s, 0) < RESEND_LIMIT:
                        again.append(s)
                        continue
                    superseded.add(s)
                    raw_of.pop(s, None)
                    pending_labels.pop(s, None)
                    pending_inputs.pop(s, None)
                last_done[0] = max(last_done[0], pos + 1)
            # Recording and scoring wait until the next frame is out (drain runs them).
            deferred.append((frame, stamp, raw, msg))

        def finish(frame, stamp, raw, msg):
            """Record a received mask, score it against the bag's labels, queue its overlay."""
            writer.write("/drn/mask", frame.bag_time, raw)
            mask = None
            if stamp in pending_labels and scorer is not None:
                mask = mask_array(msg)
                scorer.add(frame.index, mask, pending_labels.pop(stamp))
            if overlays is not None and stamp in pending_inputs:
                overlays.put(frame.index, bagio.deserialize(pending_inputs.pop(stamp), plan.image_type),
                             mask if mask is not None else mask_array(msg).copy())
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

        def unanswered() -> int:
            # at the node: sent, no mask, neither superseded by a later frame's mask nor waiting to
            # go again (got_mask, superseded and again are disjoint sets of the distinct stamps sent)
            return len(order) - resent - len(got_mask) - len(superseded) - len(again)

        def opens_at() -> float:
            """When the next frame may go (--as-fast-as-node): at once with nothing unanswered,
            not while --in-flight are; else (one unanswered, --in-flight 2) once it is being
            worked on, not waiting in the node's one-frame slot, where the next frame would
            replace it. It is taken from the slot when the frame before it is done, so that is
            half the shortest round trip after both its publishing and the latest mask's arrival
            (a frame sent while the one before ran waits in the slot until that mask is out)."""
            n = unanswered()
            if n == 0:
                return float("-inf")
            if n >= o.in_flight:
                return float("inf")
            return max(published[order[-1]], last_mask[0]) + rtt[0] / 2

        def may_send() -> bool:
            return time.perf_counter() >= opens_at()

        def wait_to_send(deadline: float) -> None:
            """Until opens_at(), or the deadline (--timeout): the next frame goes anyway."""
            while not may_send() and time.perf_counter() < deadline:
                drain(min(deadline, max(opens_at(), time.perf_counter())), done=may_send)

        def send(stamp: int, raw) -> None:
            frame_pos[stamp] = len(order)
            order.append(stamp)
            published[stamp] = time.perf_counter()
            if o.as_fast_as_node and o.in_flight > 1:  # only there can a frame wait in the node's slot
                raw_of[stamp] = raw
            pub.publish(raw)

        def wait_for_window() -> None:
            """Until the next frame may go (each wait ends after --timeout at the latest); frames
            the node replaced go again first, each when the window opens."""
            nonlocal resent
            while True:
                wait_to_send(time.perf_counter() + o.timeout)
                if not again:
                    return
                stamp = again.popleft()
                tries[stamp] = tries.get(stamp, 0) + 1
                resent += 1
                send(stamp, raw_of[stamp])

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
                wait_for_window()
            else:
                drain(t_start + (bag_time - t0_bag) / 1e9 / o.rate_factor)
            if overlays is not None:
                pending_inputs[frame.stamp] = bytes(raw)
            stamp_age.append(time.time() - frame.stamp / 1e9)
            send(frame.stamp, bytes(raw))
            if bar is not None:
                bar.update()
        t_last_pub = time.perf_counter()
        last_activity[0] = max(last_activity[0], t_last_pub)

        def complete() -> bool:
            # Every frame answered or superseded (the last one can only be answered), and every
            # recorded output of every answered frame in.
            return (not again and order[-1] in got_mask and len(got_mask) + len(superseded) >= len(order) - resent
                    and all(got_mask.keys() <= outputs_seen[k] for k in o.record))

        # Wait for the outstanding masks/outputs until nothing has arrived for --timeout seconds.
        while not complete() and time.perf_counter() - last_activity[0] < o.timeout:
            if again:
                wait_for_window()
                last_activity[0] = max(last_activity[0], time.perf_counter())
            drain(time.perf_counter() + 0.1)
        while deferred:
            finish(*deferred.popleft())
        if bar is not None:
            bar.close()

        sent = list(dict.fromkeys(order))  # each frame once, in its first sending's order
        dropped = [s for s in sent if s not in got_mask]
        latencies = [got_mask[s] - published[s] for s in sent if s in got_mask]
        t_end = max(got_mask.values()) if got_mask else t_last_pub
        result = {
            "frames_published": len(sent),
            "frames_resent": resent,
            "masks_received": len(got_mask),
            "dropped": len(dropped),
            "dropped_frames": [frames_by_stamp[s].index for s in dropped],  # all of them, in order
            "late_masks": late,
            "duplicate_masks": duplicates,
            "unexpected_masks": unexpected,
            "outputs_recorded": {f"/drn/{k}": len(v) for k, v in outputs_seen.items()},
            "latency_ms": percentiles(latencies),
            "throughput_fps": len(got_mask) / (t_end - t_start) if got_mask and t_end > t_start else None,
            "publish_rate_hz": (len(order) - 1) / (t_last_pub - t_start) if len(order) > 1 and t_last_pub > t_start else None,
            "duration_s": t_end - t_start,
            "metrics": scorer.metrics() if scorer is not None else None,
            "mask_sizes": mask_sizes,
            "stamp_age_s": float(np.median(stamp_age)) if stamp_age else None,
        }
        return result
