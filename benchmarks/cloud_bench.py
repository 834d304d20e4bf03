"""Cost per frame of seg_node's semantic point cloud (drn/points) against the floor of writing its bytes.

For each size (default 640x480 and 1280x720), in one process, with real rclpy publishers:
  floor          np.copyto of a buffer the size of the cloud into another (one copy of its bytes)
  build          SemanticCloud.make, what the node does per frame before rclpy's publish: read the
                 depth image (16UC1 or 32FC1), metres, intrinsics, confidence to mono8, x/y/z,
                 interleave into the message's buffer, the PointCloud2 around it
  build+rgb      the same with the rgb field (points_rgb)
  selected       the class-filtered unorganized cloud (obstacle_points) of ~25% of the pixels
  rclpy publish  PointCloud2 publish to one subscriber of this process (rclpy's conversion to C,
                 serialisation, Fast DDS): not ours, shown for scale
  idle           per frame when nobody subscribes to a cloud (SemanticCloud.wanted), and per depth
                 frame on the executor thread (deserialise in place + keep), in microseconds

Paths take turns, one call each per round, order rotating; medians (and 10th-90th percentiles) over
the rounds. Results go to benchmarks/results/<time>-semantic-cloud.md.

    python benchmarks/cloud_bench.py                    # 640x480 and 1280x720, 200 rounds
    python benchmarks/cloud_bench.py --sizes 640x480 --rounds 50
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO)]
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 50))

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from sensor_msgs.msg import CameraInfo, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from drn_perception.bench import machine  # noqa: E402
from drn_perception.ros import bagio  # noqa: E402
from drn_perception.ros.pointcloud import point_step  # noqa: E402
from drn_perception.ros.semantic_cloud import SemanticCloud  # noqa: E402


def frame_inputs(h: int, w: int, encoding: str, seed: int = 0):
    """(serialised depth Image, mask, float confidence, rgb) like a camera's: depth 0.3-8 m with 5% holes."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.3, 8.0, (h, w))
    z[rng.random((h, w)) < 0.05] = 0.0
    arr = (np.rint(z * 1000).astype(np.uint16) if encoding == "16UC1" else z.astype(np.float32))
    image = bagio.make_image(10**9, "cam", arr.view(np.uint8).reshape(h, -1), "mono8")  # the bytes, then the type
    image.width, image.encoding = w, encoding
    raw = bagio.serialize(image, bagio.IMAGE)
    mask = rng.integers(0, 19, (h, w), dtype=np.uint8)
    conf = rng.random((h, w), dtype=np.float32)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return bytes(raw), mask, conf, rgb


def info_for(h: int, w: int) -> CameraInfo:
    f = 0.9 * w
    return CameraInfo(height=h, width=w, k=[f, 0.0, (w - 1) / 2, 0.0, f, (h - 1) / 2, 0.0, 0.0, 1.0])


def timed(fn, rounds: int) -> np.ndarray:
    return np.array([fn() for _ in range(rounds)])


def measure(node, h: int, w: int, encoding: str, rounds: int) -> dict:
    raw, mask, conf, rgb = frame_inputs(h, w, encoding)
    msg = bagio.deserialize(raw, bagio.IMAGE)
    info = info_for(h, w)
    header = Header(stamp=Time(sec=1), frame_id="cam")  # the node's: an rclpy Header copied from the frame
    keep = np.zeros(256, bool)
    keep[[0, 1, 2, 8, 11]] = True  # 5 of 19 random classes: ~26% of the pixels
    cloud_bytes = h * w * point_step(False)
    src, dst = np.ones(cloud_bytes, np.uint8), np.empty(cloud_bytes, np.uint8)
    pub = node.create_publisher(PointCloud2, f"bench_{w}x{h}_{encoding}", QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE))
    sub = node.create_subscription(PointCloud2, pub.topic_name, lambda m: None, QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE))
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1)
    cloud = SemanticCloud(node, f"bench_{w}x{h}_{encoding}", "idle/depth", "idle/camera_info", keep, qos)

    def build(with_rgb=False):
        return cloud.make(header, msg, info, mask, conf, rgb if with_rgb else None)[0]

    def selected():
        return cloud.make(header, msg, info, mask, conf, None, organized=False, selected=True)[1]

    ready = build()

    def clock(fn):
        def run():
            start = time.perf_counter()
            fn()
            return (time.perf_counter() - start) * 1e3
        return run

    paths = {
        "floor: one copy of the cloud's bytes": clock(lambda: np.copyto(dst, src)),
        "build (drn/points)": clock(build),
        "build with rgb": clock(lambda: build(True)),
        "selected classes (obstacle_points)": clock(selected),
        "rclpy publish to 1 subscriber": clock(lambda: pub.publish(ready)),
        "idle: wanted() per frame": clock(lambda: cloud.wanted(True)),
        "idle: depth callback per depth frame": clock(lambda: cloud._on_depth(raw)),
    }
    for fn in paths.values():  # warm up
        fn()
        fn()
    samples = {name: [] for name in paths}
    names = list(paths)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            samples[name].append(paths[name]())
    node.destroy_subscription(sub)
    node.destroy_publisher(pub)
    cloud.destroy_publishers(node)
    return {"bytes": cloud_bytes, "samples": {k: np.array(v) for k, v in samples.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="640x480,1280x720", help="WxH list")
    ap.add_argument("--encodings", default="16UC1,32FC1")
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    load_before = machine.load_average()
    rclpy.init()
    node = rclpy.create_node("cloud_bench")
    rows = []
    try:
        for w, h in sizes:
            for enc in args.encodings.split(","):
                res = measure(node, h, w, enc, args.rounds)
                floor = np.median(res["samples"]["floor: one copy of the cloud's bytes"])
                for name, s in res["samples"].items():
                    med, p10, p90 = np.median(s), np.percentile(s, 10), np.percentile(s, 90)
                    micro = name.startswith("idle")
                    value = f"{med * 1e3:.1f} µs" if micro else f"{med:.3f} ms"
                    spread = f"{p10 * 1e3:.1f}–{p90 * 1e3:.1f} µs" if micro else f"{p10:.3f}–{p90:.3f} ms"
                    ratio = "" if micro else f"{med / floor:.2f}x"
                    rows.append((f"{w}x{h}", enc, f"{res['bytes'] / 2**20:.1f} MiB", name, value, spread, ratio))
                    print(" | ".join(rows[-1]), flush=True)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    desc = machine.describe()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    cmd = "python benchmarks/cloud_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# Semantic point cloud cost per frame", "", f"`{cmd.strip()}`", "",
             f"- {desc['date']}; CPU: {desc.get('cpu')}, {desc.get('cores')} cores; load before: {load_before}",
             f"- versions: {', '.join(f'{k} {v}' for k, v in desc['versions'].items())}",
             f"- {args.rounds} rounds, paths in turn; median, 10th–90th percentile; x = median / floor's median", "",
             "| size | depth | cloud | path | median | p10–p90 | vs floor |", "|---|---|--:|---|--:|--:|--:|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    out = Path(args.out) / f"{stamp}-semantic-cloud.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
