"""The long version of test_node_faults: seg_node as its own process, at default parameters, under

1. fuzz: N fuzzed frames (test/fuzz_frames.py: valid and bad raw/compressed frames of every kind),
   sent at a fixed rate on two inputs; every frame must be accounted for (a mask or a counted drop),
   no mask may carry a bad frame's frame_id, every mask must be its frame's size, stamp and frame_id;
2. soak: N valid frames in lock step (next frame when the mask is in), RSS sampled along the way;
3. huge: 4000x3000 JPEGs and raw frames over max_input_pixels (scaled down for the network, mask at
   full size), RSS before and after.

RSS (VmRSS, and the peak VmHWM) is read from /proc/<node pid>/status. Results go to
benchmarks/results/<time>-node-stress.md with the CPU and ISA.

    python benchmarks/node_stress.py                      # 10,000 fuzzed + 10,000 soak frames (~10 min)
    python benchmarks/node_stress.py --fuzz 500 --soak 500 --huge 2   # a quick look
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "test"), str(REPO)]
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 50))
from drn_perception.ros.distros import dds_profile_environment  # noqa: E402 - Fast DDS 2.x or 3.x's variable

os.environ.update(dds_profile_environment(os.environ, str(REPO / "config" / "fastdds_large_images.xml")))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from drn_perception.bench import machine  # noqa: E402
from fuzz_frames import frames  # noqa: E402
from ros_helpers import Probe, SpinThread, compressed_msg, diagnostics_values, image_msg, node_env, random_rgb  # noqa: E402

AFTER_HUGE = 20  # small frames after the huge ones, before the last memory reading


def reliable(depth):
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE)


def memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    get = lambda key: int(status.split(key + ":")[1].split()[0]) // 1024  # noqa: E731
    return get("VmRSS"), get("VmHWM")


def latest(probe, name):
    for msg in reversed(probe.messages("/diagnostics")):
        values = diagnostics_values(msg).get(name)
        if values is not None:
            return values
    return {}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fuzz", type=int, default=10_000, help="fuzzed frames (default 10000)")
    ap.add_argument("--rate", type=float, default=200.0, help="fuzzed frames per second (default 200)")
    ap.add_argument("--soak", type=int, default=10_000, help="soak frames in lock step (default 10000)")
    ap.add_argument("--soak-size", default="128x256", help="soak frame HxW (default 128x256)")
    ap.add_argument("--huge", type=int, default=4, help="4000x3000 frames of each kind, JPEG and raw (default 4)")
    ap.add_argument("--model", default="", help="model_path for the node (default: the shipped model)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="results folder")
    args = ap.parse_args(argv)
    sh, sw = (int(v) for v in args.soak_size.split("x"))

    params = {"image_topics": "[raw/image_raw, jpg/image_raw/compressed]", "input_reliability": "reliable",
              "diagnostics_period": 0.5}
    if args.model:
        params["model_path"] = args.model
    cmd = [sys.executable, "-m", "drn_perception.ros.node", "--ros-args"]
    for k, v in params.items():
        cmd += ["-p", f"{k}:={v}"]
    node = subprocess.Popen(cmd, env=node_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(iter(node.stdout.readline, "")), daemon=True).start()
    rclpy.init()
    ctx = rclpy.get_default_context()
    probe = Probe(ctx, "stress_probe")
    pubs = {"raw": probe.node.create_publisher(Image, "raw/image_raw", reliable(50)),
            "compressed": probe.node.create_publisher(CompressedImage, "jpg/image_raw/compressed", reliable(50))}
    names = {"raw": "seg_node: raw", "compressed": "seg_node: jpg"}
    for t in ("drn/raw/mask", "drn/jpg/mask"):
        probe.listen(t, Image, reliable(100))
    probe.listen("/diagnostics", DiagnosticArray)
    rows, problems = [], []
    load_before = machine.load_average()
    try:
        with SpinThread(ctx, probe.node):
            for p in pubs.values():
                probe.wait_matched(p, timeout=120)
            probe.wait(lambda: any("->" in line for line in log), 120, "node start-up line")
            rows.append(("after start-up", *memory(node.pid), ""))

            # 1. fuzz
            t0, sent, bad_ids, valid = time.monotonic(), {"raw": 0, "compressed": 0}, set(), {}
            for i, (kind, reason, payload) in enumerate(frames(args.fuzz, seed=11)):
                fid = f"fuzz{i}"
                if not isinstance(payload, bytes):
                    payload.header.frame_id = fid
                    payload.header.stamp.sec, payload.header.stamp.nanosec = 2000 + i, i
                (bad_ids.add(fid) if reason else valid.__setitem__(fid, payload))
                pubs[kind].publish(payload)
                sent[kind] += 1
                time.sleep(max(0.0, t0 + (i + 1) / args.rate - time.monotonic()))
            # Frames the reader's keep-last-1 queue replaced before the node took them never reach it
            # (DDS, not the node); every frame the node took must be a mask or a counted drop.
            seen = {"last": None, "since": time.monotonic()}

            def accounted():
                d = {k: latest(probe, n) for k, n in names.items()}
                if not all(d.values()):
                    return False
                key = tuple(int(d[k]["frames_in"]) for k in d)
                if key != seen["last"]:
                    seen.update(last=key, since=time.monotonic())
                settled = time.monotonic() - seen["since"] > 2.0
                return settled and all(int(d[k]["masks_out"]) + int(d[k]["dropped"]) == int(d[k]["frames_in"])
                                       for k in d) and d
            d = probe.wait(accounted, 120, "every fuzzed frame the node took accounted for")
            for k in d:
                if int(d[k]["frames_in"]) > sent[k]:
                    problems.append(f"{k}: {d[k]['frames_in']} frames in, {sent[k]} sent")
            masks = {m.header.frame_id: m for t in ("drn/raw/mask", "drn/jpg/mask") for m in probe.messages(t)
                     if m.header.frame_id.startswith("fuzz")}
            if masks.keys() & bad_ids:
                problems.append(f"{len(masks.keys() & bad_ids)} masks for bad frames")
            for fid, m in masks.items():
                src = valid.get(fid)
                if src is None:
                    continue
                if hasattr(src, "format"):
                    h, w = cv2.imdecode(np.frombuffer(bytes(src.data), np.uint8), cv2.IMREAD_UNCHANGED).shape[:2]
                else:
                    h, w = src.height, src.width
                if (m.height, m.width) != (h, w) or (m.header.stamp.sec, m.header.stamp.nanosec) != (
                        src.header.stamp.sec, src.header.stamp.nanosec):
                    problems.append(f"mask {fid} is {m.width}x{m.height} stamp {m.header.stamp.sec}")
            counts = {k: {key: v for key, v in d[k].items() if key.startswith(("dropped", "masks_out", "frames_in",
                                                                               "decode_warning", "downscaled"))
                          and v != "0"} for k in d}
            rows.append((f"after fuzz ({args.fuzz} frames sent at {args.rate:g}/s, {time.monotonic() - t0:.0f} s, "
                         f"{len(valid)} valid, {len(masks)} masks; taken by the node: "
                         f"{sum(int(v['frames_in']) for v in d.values())}"
                         ")", *memory(node.pid), f"{counts}"))
            probe.clear()

            # 2. soak, in lock step
            t0 = time.monotonic()
            frame = image_msg(random_rgb(sh, sw, seed=1, smooth=True))
            for i in range(args.soak):
                frame.header.frame_id = f"soak{i}"
                probe.send_until_answered(pubs["raw"], frame, "drn/raw/mask", f"soak{i}", timeout=30)
                if i % 200 == 0:
                    probe.clear()
                if (i + 1) % max(1, args.soak // 4) == 0:
                    rows.append((f"soak {i + 1}/{args.soak} ({time.monotonic() - t0:.0f} s)", *memory(node.pid), ""))

            # 3. huge frames (over max_input_pixels): scaled down for the network, masks at full size
            before = memory(node.pid)
            big = random_rgb(3000, 4000, seed=2, smooth=True)
            jpg, raw = compressed_msg(big, "jpeg"), image_msg(big)
            sizes = []
            for i in range(args.huge):
                for kind, msg, topic in (("compressed", jpg, "drn/jpg/mask"), ("raw", raw, "drn/raw/mask")):
                    m = probe.send_until_answered(pubs[kind], msg, topic, f"huge-{kind}-{i}", timeout=120, resend=30)
                    sizes.append((m.width, m.height))
            after = memory(node.pid)
            for i in range(AFTER_HUGE):  # enough for a backend to give a burst's memory back
                frame.header.frame_id = f"after-huge{i}"
                small = probe.send_until_answered(pubs["raw"], frame, "drn/raw/mask", f"after-huge{i}")
            d = latest(probe, names["raw"])
            rows.append((f"before huge frames", *before, ""))
            rows.append((f"after {2 * args.huge} frames of 4000x3000 (masks {sorted(set(sizes))})", *after,
                         f"downscaled raw {d.get('downscaled')}, jpg {latest(probe, names['compressed']).get('downscaled')}"))
            rows.append((f"after {AFTER_HUGE} small frames more", *memory(node.pid), f"mask {small.width}x{small.height}"))
    finally:
        probe.destroy()
        node.send_signal(2)
        try:
            code = node.wait(timeout=60)
        except subprocess.TimeoutExpired:
            node.kill()
            code = "killed"
        rclpy.try_shutdown()
    crashed = code != 0 or any("Traceback" in line for line in log)
    desc = machine.describe()
    desc["load"] = load_before
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    lines = [f"# seg_node stress: {args.fuzz} fuzzed, {args.soak} soak ({args.soak_size}), {2 * args.huge} huge frames",
             "", f"`python benchmarks/node_stress.py --fuzz {args.fuzz} --soak {args.soak} --huge {args.huge}`"
             + (f" --model {args.model}" if args.model else ""), "",
             f"- CPU: {desc.get('cpu')}, {desc.get('cores')} cores; ISA: {' '.join(desc.get('isa', []))}",
             f"- load before: {desc.get('load')}; model: {args.model or 'shipped default'}; node exit code {code}"
             f"{', traceback in its log' if crashed else ''}",
             f"- problems: {problems or 'none'}", "", "| when | RSS MiB | peak RSS MiB | counts |", "|---|---|---|---|"]
    lines += [f"| {w} | {r} | {p} | {c} |" for w, r, p, c in rows]
    out = Path(args.out) / f"{stamp}-node-stress.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwritten to {out}")
    return 1 if problems or crashed else 0


if __name__ == "__main__":
    sys.exit(main())
