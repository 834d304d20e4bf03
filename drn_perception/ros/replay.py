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
   when the previous mask arrived, or after --timeout; with --in-flight 2 when at most one
   frame is unanswered and it is being worked on). Every mask (and any output chosen
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
import json
import signal
import sys
from pathlib import Path

from drn_perception.cli import fail
from drn_perception.ros import bagio
from drn_perception.ros.overlay import OverlayWriter
from drn_perception.ros.replay_loop import OUTPUTS, WARMUP_FRAME_ID, Replay, ReplayOptions
from drn_perception.ros.replay_node import (NODE_MODULE, NodeProcess, default_model, started_node_params,
                                            use_large_image_profile)
from drn_perception.ros.replay_plan import (DEFAULT_IMAGE_TOPIC, DEFAULT_LABELS_TOPIC, BagPlan, Frame, ReplayError,
                                            ReplayFailed, inspect_bag)
from drn_perception.ros.replay_report import format_summary

# The replay in parts, imported one way: this module (the CLI and the library entry point
# replay()) -> replay_loop (the options; connect, play, record) -> replay_node (the node process),
# replay_report (scores, notes, the summary), overlay (the overlay writer) -> replay_plan (input
# checks, the errors). No part imports this module; it names the parts' public objects as before.
__all__ = ["DEFAULT_IMAGE_TOPIC", "DEFAULT_LABELS_TOPIC", "NODE_MODULE", "OUTPUTS", "WARMUP_FRAME_ID", "BagPlan",
           "Frame", "NodeProcess", "OverlayWriter", "Replay", "ReplayError", "ReplayFailed", "ReplayOptions", "default_model",
           "format_summary", "inspect_bag", "main", "replay", "started_node_params", "use_large_image_profile"]


# --------------------------------------------------------------------------- CLI


def _param_arg(text: str) -> tuple[str, str]:
    if ":=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME:=VALUE, got {text!r}")
    k, v = text.split(":=", 1)
    return k, v


def build_parser() -> argparse.ArgumentParser:
    from drn_perception.cli import Parser  # one-line errors, exit 2

    p = Parser(
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
    p.add_argument("--in-flight", type=int, default=1, metavar="N",
                   help="with --as-fast-as-node: keep N (1 or 2) frames sent and not yet answered (default 1: "
                        "wait for each mask; 2: a frame waits at the node while the one before runs, so the node "
                        "never idles between frames: throughput without the DDS round trip)")
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
        as_fast_as_node=args.as_fast_as_node, in_flight=args.in_flight, start_node=args.start_node, model=args.model,
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
    except ReplayFailed as exc:  # the run itself failed (node, DDS, disk)
        return fail("drn-replay", exc, status=1)
    except (ReplayError, bagio.BagError) as exc:  # the options or the input bag
        return fail("drn-replay", exc)
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
