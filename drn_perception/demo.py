"""drn-demo: the main job end to end on this machine, no GPU and no ROS install needed.

    drn-demo [--out out/demo] [--frames 30] [--size 256x512] [--model M]

1. drn-make-bag: generated street scenes with their ground-truth labels -> OUT/scenes (rosbag2)
2. drn-replay: seg_node (started as a process, default model, ONNX Runtime on the CPU) gets
   every frame over DDS; its masks go to OUT/masks (rosbag2), overlays to OUT/overlays/ and
   OUT/overlays.mp4, the report (drops, latency, throughput, IoU against the ground truth)
   to OUT/report.json.

The demo owns OUT: running it again replaces what it wrote there. DDS traffic stays on this
machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST unless you set it).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def build_parser():
    from drn_perception.ros.make_bag import _size_arg

    from drn_perception.cli import Parser  # one-line errors, exit 2

    p = Parser(prog="drn-demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")
    p.add_argument("--frames", type=int, default=30, help="generated frames (default 30)")
    p.add_argument("--size", type=_size_arg, default=(256, 512), help="HxW (default 256x512)")
    p.add_argument("--model", type=Path, help="model file (default: the package's default model)")
    p.add_argument("--seed", type=int, default=20_000_000,
                   help="first scene seed (default 20000000: the synthetic test split, never trained on)")
    p.add_argument("--rate-factor", type=float,
                   help="replay at the bag's 10 Hz timing times this factor instead of as fast as the node answers")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error(f"argument --frames: must be >= 1, got {args.frames}")
    if args.rate_factor is not None and args.rate_factor <= 0:
        parser.error(f"argument --rate-factor: must be positive, got {args.rate_factor:g}")
    from drn_perception.ros.make_bag import SCENE_SIDES

    if not all(SCENE_SIDES[0] <= v <= SCENE_SIDES[1] for v in args.size):
        parser.error(f"argument --size: generated scenes are {SCENE_SIDES[0]}..{SCENE_SIDES[1]} pixels a side")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    from drn_perception.ros import bagio
    from drn_perception.ros.make_bag import make_bag
    from drn_perception.cli import fail
    from drn_perception.ros.replay import ReplayError, ReplayFailed, ReplayOptions, default_model, format_summary, \
        replay

    out: Path = args.out
    try:
        model = args.model or default_model()
    except ReplayError as exc:
        return fail("drn-demo", exc)
    if not Path(model).is_file():
        return fail("drn-demo", f"model file not found: {model}"
                    + ("" if args.model else " (the default model is not installed; pass --model <model.onnx>)"))
    t0 = time.perf_counter()
    try:
        out.mkdir(parents=True, exist_ok=True)
        bag = make_bag(out / "scenes", "synthetic", frames=args.frames, size=args.size, seed=args.seed,
                       rate=10.0, overwrite=True, progress=not args.quiet)
        print(f"1/2 wrote {bag['path']}: {bag['frames']} generated street scenes {args.size[0]}x{args.size[1]} "
              f"+ ground-truth labels")
        video = out / "overlays.mp4"
        result = replay(ReplayOptions(
            in_bag=out / "scenes", out_bag=out / "masks", model=Path(model),
            as_fast_as_node=args.rate_factor is None, rate_factor=args.rate_factor or 1.0,
            overlays=out / "overlays", overlay_video=video, report=out / "report.json",
            overwrite=True, progress=not args.quiet,
        ))
    except (ReplayFailed, OSError) as exc:
        return fail("drn-demo", exc, status=1)
    except (ReplayError, bagio.BagError, ValueError) as exc:
        return fail("drn-demo", exc)
    except KeyboardInterrupt:
        print("drn-demo: interrupted", file=sys.stderr)
        return 130
    print("2/2 " + format_summary(result))
    print(f"done in {time.perf_counter() - t0:.0f} s: masks bag {out / 'masks'}, overlays {out / 'overlays'}/ "
          f"and {video}, report {out / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
