"""drn-bench: how fast each inference path runs a model, and how far its labels move.

One command measures one or more models at one or more sizes on several *paths* (a backend
plus precision/layout choices), interleaved round by round so background load hits every
path alike, and writes a markdown table (machine, versions, load, date) under runs/bench/
(the project's recorded results go to benchmarks/results/ with --results-dir):

    drn-bench --arch drn_c_26 --size 512x1024 --paths torch,torch-bf16,onnxruntime,onnxruntime-int8
    drn-bench --model drn_perception/assets/drn_c_26_w025_synthetic.onnx --compare onnxruntime,onnxruntime-int8
    drn-bench --arch drn_c_26 --size 512x1024 --paths torch,onnxruntime --cameras 3
    drn-bench --model model.onnx --engine model.engine --paths tensorrt,onnxruntime   # on a Jetson

Per path: median latency of one ``Segmenter.infer`` call with its 10th/90th percentiles and
min/max, frames per second, the speed-up over the first (reference) path taken per round
(so both sides of each ratio saw the same load), memory the path added (peak RSS during
loading and warm-up minus RSS before), the share of pixels whose label equals the reference
path's on generated street scenes, and (for trained models) mIoU against the scenes' exact
labels. A row "fp32, input +-1 grey level" shows how far labels move under the smallest
possible input change: random-weight models have tiny argmax margins, so their agreement
figures understate what a trained model keeps.

Models: ``--arch`` builds a random-weight reference model in-process (the authors'
initialisation, seeded); ``--model`` takes a .pt checkpoint or an exported .onnx (a .pt of the
same stem next to it enables the torch paths). ONNX and int8 files are made on demand in a
temporary folder (drn-export's and drn-quantize's code).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from drn_perception.bench import machine
from drn_perception.bench.paths import (DEFAULT_ONNX_PATHS, DEFAULT_PATHS, EVAL_SEED0, PATHS, BenchError, ModelFiles,
                                        PathResult, PathSpec, open_path, parse_size, reference_checkpoint)
from drn_perception.bench.report import report_markdown, section_markdown, sections_json
from drn_perception.bench.stats import (RssPeak, current_rss, label_agreement, paired_speedup, peak_rss,
                                        release_memory, summarise)

# The parts: paths.py (what is measured and its model files), stats.py (numbers, memory),
# report.py (tables); this module measures and is the command line. It names the parts' public
# objects as before the split.
__all__ = ["DEFAULT_ONNX_PATHS", "DEFAULT_PATHS", "EVAL_SEED0", "PATHS", "BenchError", "ModelFiles", "PathResult",
           "PathSpec", "RssPeak", "build_parser", "current_rss", "label_agreement", "main", "open_path",
           "paired_speedup", "parse_size", "peak_rss", "reference_checkpoint", "release_memory", "report_markdown",
           "run", "section_markdown", "sections_json", "summarise"]


# ----------------------------------------------------------------------------- measuring


def scenes(count: int, size: tuple[int, int]):
    from drn_perception.data.synthetic import generate_scene

    pairs = [generate_scene(EVAL_SEED0 + i, *size) for i in range(count)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def predict(seg, images: np.ndarray, batch: int = 1) -> np.ndarray:
    return np.concatenate([seg.infer(images[i:i + batch]).labels for i in range(0, len(images), batch)])


def noisy(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """``images`` with every value moved by -1, 0 or +1 grey level (clipped)."""
    rng = np.random.default_rng(seed)
    step = rng.integers(-1, 2, size=images.shape, dtype=np.int16)
    return np.clip(images.astype(np.int16) + step, 0, 255).astype(np.uint8)


def miou(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> float:
    from drn_perception.data.synthetic import SYNTHETIC_CLASS_IDS
    from drn_perception.training.metrics import confusion_matrix, mean_iou

    return mean_iou(confusion_matrix(pred, gt, num_classes), SYNTHETIC_CLASS_IDS)


def measure(segs: dict, frames: np.ndarray, repeats: int, results: dict[str, PathResult],
            cameras: int = 0, log=print) -> None:
    """Time every path on ``frames`` round by round (the order rotates each round)."""
    names = list(segs)
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            seg = segs[name]
            t0 = time.perf_counter()
            seg.infer(frames)
            results[name].times.append(time.perf_counter() - t0)
            if cameras:
                cams = frames[:1].repeat(cameras, 0) if len(frames) < cameras else frames[:cameras]
                t0 = time.perf_counter()
                for i in range(cameras):
                    seg.infer(cams[i:i + 1])
                t1 = time.perf_counter()
                seg.infer(cams)
                t2 = time.perf_counter()
                results[name].seq_times.append(t1 - t0)
                results[name].batch_times.append(t2 - t1)
        log(f"  round {r + 1}/{repeats}: " + ", ".join(f"{n} {results[n].times[-1] * 1e3:.0f} ms" for n in names))


def bench_one(files: ModelFiles, size: tuple[int, int], path_names: list[str], args, log=print) -> dict:
    """Load, check and time every path on one model at one size; returns a section dict."""
    images, gt = scenes(max(args.scenes, 1), size)  # at least one frame to time
    batch = args.batch
    frames = images[:batch] if len(images) >= batch else images[:1].repeat(batch, 0)
    results = {n: PathResult(n) for n in path_names}
    segs = {}
    for name in path_names:
        log(f"[{files.stem} {size[0]}x{size[1]}] loading {name}")
        try:
            files.get(PATHS[name].source)  # make files outside the memory window
            with RssPeak() as mem:
                t0 = time.perf_counter()
                seg = open_path(name, files, args.device, args.threads)
                results[name].load_s = time.perf_counter() - t0
                for _ in range(args.warmup):
                    seg.infer(frames)
        except BenchError as exc:
            if not args.skip_unavailable:
                raise
            results[name].error = str(exc)
            log(f"  skipped: {exc}")
            continue
        results[name].added_mib = mem.added_mib
        results[name].describe = seg.describe()
        results[name].precision = seg.precision if PATHS[name].precision == "auto" else PATHS[name].precision
        segs[name] = seg
    if not segs:
        raise BenchError("no path could be opened")
    ref_name = next(iter(segs))
    ref_labels = None
    noise_agreement = None
    if args.scenes:
        images, gt = images[:args.scenes], gt[:args.scenes]
        for name, seg in segs.items():
            labels = predict(seg, images)
            if ref_labels is None:
                ref_labels = labels
                noise_agreement = label_agreement(ref_labels, predict(seg, noisy(images)))
            results[name].agreement = label_agreement(ref_labels, labels)
            if not files.random:
                results[name].miou = miou(labels, gt, seg.info.num_classes)
    if args.repeats:
        measure(segs, frames, args.repeats, results, args.cameras, log)
    replay = None
    if args.replay:
        replay = node_path(files, segs, size, args, log)
    segs.clear()
    release_memory()  # so the next section's "added MiB" starts from a clean heap
    return {"model": files.name, "random": files.random, "size": size, "batch": batch, "reference": ref_name,
            "noise_agreement": noise_agreement, "results": results, "notes": list(files.notes),
            "replay": replay, "scenes": args.scenes, "labels_only": files.labels_only}


def node_path(files: ModelFiles, segs: dict, size: tuple[int, int], args, log=print) -> dict:
    """Frames through the running node (bag -> DDS -> seg_node -> DDS -> bag) with drn-replay,
    against the same backend called directly on the same frames.

    For every path the node can run as is (no layout/precision options), one seg_node process
    is started the way drn-replay starts it and kept running, as a node on a robot is: one
    untimed ``drn-replay --no-start-node`` pass warms it up (the direct calls are warm too),
    then ``--replay-rounds`` timed passes (``--as-fast-as-node --in-flight N``: the next frame
    goes out when fewer than N are unanswered; N = 2 by default, so a frame waits at the node
    while the one before runs and the DDS round trip is not in the node's throughput, as with a
    camera that streams; N = 1 is lockstep, latency-bound), each between two direct passes over the bag's frames in this
    process. Each round's ratio is the node's masks/s over the mean of the direct frames/s just
    before and just after it, so a slow patch of a shared machine hits both sides; the median
    ratio is reported. drn-replay records the masks but does not score them (``--labels-topic
    ''``): scoring a 512x1024 mask costs ~6 ms of CPU, which on a small machine runs beside the
    node's next inference and is no part of the node path.
    """
    import subprocess

    try:
        from drn_perception.ros.make_bag import make_bag
        from drn_perception.ros.replay import NodeProcess, ReplayError, started_node_params, use_large_image_profile
    except ImportError as exc:
        return {"error": f"the ROS tools are not importable here ({exc})"}
    use_large_image_profile()  # for the node started here (0.5 MiB masks); drn-replay sets it for itself
    out = {}
    bag = files.workdir / f"replay-in-{size[0]}x{size[1]}"
    if not bag.exists():
        make_bag(bag, frames=args.replay_frames, size=size, seed=EVAL_SEED0)
    frames = scenes(args.replay_frames, size)[0]  # the bag's frames (same seeds)

    def direct_fps(seg) -> float:
        t0 = time.perf_counter()
        for frame in frames:
            seg.infer(frame[None])
        return len(frames) / (time.perf_counter() - t0)

    for name, seg in segs.items():
        spec = PATHS[name]
        if spec.options:
            out[name] = {"error": "the node has no parameter for this path's options"}
            continue
        report = files.workdir / f"replay-{name}.json"
        namespace = f"/drn_bench_{os.getpid()}_{name.replace('-', '_')}"
        params = started_node_params(files.get(spec.source), spec.backend)
        params["device"] = args.device
        cmd = [sys.executable, "-m", "drn_perception.ros.replay", str(bag), "--out",
               str(files.workdir / f"replay-out-{name}"), "--no-start-node", "--publish-topic",
               f"{namespace}/camera/image_raw", "--output-prefix", f"{namespace}/drn", "--as-fast-as-node",
               "--in-flight", str(args.replay_in_flight), "--report", str(report), "--overwrite", "--quiet", "--labels-topic", ""]
        node_proc = NodeProcess(namespace, params, files.workdir / f"node-{name}.log")
        log(f"  node path {name}: {shlex.join(node_proc.command)}")
        log(f"    warm-up pass, then {args.replay_rounds} rounds of: {shlex.join(cmd)}")
        direct, node_fps, rep = [], [], None
        try:
            for i in range(args.replay_rounds + 1):
                report.unlink(missing_ok=True)
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if proc.returncode != 0 or not report.is_file():
                    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                    try:
                        node_proc.check_alive("during the node path")
                        rep = {"error": f"drn-replay exited {proc.returncode}: {tail[0]}"}
                    except ReplayError as exc:
                        rep = {"error": str(exc)}
                    break
                rep = json.loads(report.read_text())
                direct.append(direct_fps(seg))
                if i:  # pass 0 warms the node up
                    node_fps.append(rep["throughput_fps"] or 0.0)
                    log(f"    node {node_fps[-1]:.2f} masks/s, direct {direct[-2]:.2f} / {direct[-1]:.2f} frames/s")
        finally:
            node_proc.stop()
        if "error" not in rep:
            rep["rounds"] = {"node_fps": node_fps, "direct_fps": direct,
                             "ratios": [n / ((a + b) / 2) for n, a, b in zip(node_fps, direct, direct[1:])]}
        out[name] = rep
    return out



# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    from drn_perception.cli import Parser  # one-line errors, exit 2

    p = Parser(prog="drn-bench", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="paths:\n" + "\n".join(f"  {n:18s} {s.about}" for n, s in PATHS.items()))
    src = p.add_argument_group("model")
    src.add_argument("--arch", default="drn_c_26",
                     help="random-weight reference model(s), comma-separated (default drn_c_26)")
    src.add_argument("--width", type=float, default=1.0, help="width multiplier of --arch models (default 1.0)")
    src.add_argument("--seed", type=int, default=0, help="weight seed of --arch models")
    src.add_argument("--model", type=Path, help="a .pt checkpoint or exported .onnx instead of --arch")
    src.add_argument("--int8-model", type=Path, help="an already quantised .onnx for onnxruntime-int8")
    src.add_argument("--engine", type=Path, help="TensorRT engine for the tensorrt path")
    src.add_argument("--openvino-int8-model", type=Path, help="an already quantised OpenVINO IR .xml for openvino-int8")
    run = p.add_argument_group("what to run")
    run.add_argument("--paths",
                     help="comma-separated paths to time; the first is the reference (default "
                          f"{DEFAULT_PATHS}; for an .onnx --model without a .pt of the same name beside it "
                          f"{DEFAULT_ONNX_PATHS})")
    run.add_argument("--compare", help="comma-separated paths: labels and mIoU only, no timing")
    run.add_argument("--size", default="512x1024", help="HxW, comma-separated for several (default 512x1024)")
    run.add_argument("--batch", type=int, default=1, help="frames per timed call (default 1)")
    run.add_argument("--repeats", type=int, default=5, help="timed rounds per path (default 5)")
    run.add_argument("--warmup", type=int, default=1, help="untimed calls per path first (default 1)")
    run.add_argument("--scenes", type=int, default=2, help="generated scenes for label agreement (default 2)")
    run.add_argument("--cameras", type=int, default=0, help="also time N sequential calls vs one batch of N")
    run.add_argument("--replay", action="store_true", help="also run frames through the node with drn-replay")
    run.add_argument("--replay-frames", type=int, default=30)
    run.add_argument("--replay-rounds", type=int, default=3,
                     help="node-path runs, each between two direct passes over the same frames (default 3)")
    run.add_argument("--replay-in-flight", type=int, default=2, metavar="N",
                     help="frames sent to the node and not yet answered, 1 or 2 (default 2: the node never waits "
                          "for the DDS round trip, as with a streaming camera; 1: lockstep, latency-bound)")
    run.add_argument("--threads", type=int, default=0, help="CPU threads for torch and ONNX Runtime (default: all usable cores)")
    run.add_argument("--device", default="cpu", help="cpu (default), cuda[:i] or auto")
    run.add_argument("--calibration-frames", type=int, default=16, help="scenes for int8 calibration (default 16)")
    run.add_argument("--calibration-size", default="256x512")
    run.add_argument("--labels-only", action="store_true",
                     help="ONNX paths run graphs without the confidence output (as the torch paths compute "
                          "labels only when no confidence is asked for)")
    run.add_argument("--skip-unavailable", action="store_true", help="note a path that cannot open instead of failing")
    out = p.add_argument_group("output")
    out.add_argument("--out", type=Path, help="markdown file (default <results-dir>/<date>-<model>-<size>.md)")
    out.add_argument("--results-dir", type=Path, default=Path("runs/bench"),
                     help="folder of the tables (default runs/bench; the project's recorded results are "
                          "written to benchmarks/results/ with --results-dir benchmarks/results)")
    out.add_argument("--json", type=Path, help="also write every timing as JSON")
    out.add_argument("--no-write", action="store_true", help="print the table only")
    out.add_argument("--quiet", action="store_true")
    return p


def _names(text: str, what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PATHS]
    if unknown or not names:
        raise BenchError(f"unknown {what} {', '.join(unknown) or '(none)'}: choose from {', '.join(PATHS)}")
    if len(set(names)) != len(names):
        raise BenchError(f"{what} named twice: {text}")
    return names


def default_paths(model: Path | None) -> str:
    """The timed paths when --paths is not given: an exported .onnx alone has no torch path."""
    if model is not None and model.suffix == ".onnx" and not model.with_suffix(".pt").is_file():
        return DEFAULT_ONNX_PATHS
    return DEFAULT_PATHS


def run(args, argv: list[str], log=print) -> tuple[str, list[dict]]:
    if args.model is not None and not args.model.is_file():
        raise BenchError(f"model file not found: {args.model}")
    if args.model is None:
        from drn_perception.models.drn import ARCHS

        unknown = [a.strip() for a in args.arch.split(",") if a.strip() and a.strip() not in ARCHS]
        if unknown:
            raise BenchError(f"unknown --arch {', '.join(unknown)}: choose from {', '.join(ARCHS)}")
    if args.paths is None:
        args.paths = default_paths(args.model)
    if args.compare:
        path_names = _names(args.compare, "compare path")
        args.repeats, args.cameras = 0, 0
        args.scenes = max(args.scenes, 1)
    else:
        path_names = _names(args.paths, "path")
    sizes = [parse_size(s) for s in args.size.split(",") if s.strip()]
    positive = ("batch", "calibration_frames", "replay_frames", "replay_rounds", "replay_in_flight")
    for key in ("repeats", "warmup", "scenes", "cameras", *positive):
        if getattr(args, key) < (1 if key in positive else 0):
            raise BenchError(f"--{key.replace('_', '-')} must be {'positive' if key in positive else 'zero or more'}")
    if args.cameras == 1:
        raise BenchError("--cameras needs at least 2 (one camera has nothing to batch)")
    if args.replay_in_flight > 2:
        raise BenchError("--replay-in-flight must be 1 or 2 (the node keeps one waiting frame per camera)")
    threads = args.threads or machine.usable_cores()
    args.threads = threads
    if any(PATHS[n].backend == "torch" for n in path_names):
        import torch

        torch.set_num_threads(threads)
    calibration = (args.calibration_frames, parse_size(args.calibration_size))
    load_before, busy = machine.load_average(), machine.busy_processes()
    sections = []
    with tempfile.TemporaryDirectory(prefix="drn-bench-") as tmp:
        if args.model is not None:
            models = [ModelFiles(Path(tmp), model=args.model, int8=args.int8_model, engine=args.engine,
                                 ov_int8=args.openvino_int8_model, calibration=calibration, labels_only=args.labels_only)]
        else:
            models = [ModelFiles(Path(tmp), arch=a.strip(), width=args.width, seed=args.seed, int8=args.int8_model,
                                 engine=args.engine, ov_int8=args.openvino_int8_model, calibration=calibration, labels_only=args.labels_only)
                      for a in args.arch.split(",") if a.strip()]
        for files in models:
            for size in sizes:
                sec = bench_one(files, size, path_names, args, log)
                sec["cameras"] = args.cameras
                sections.append(sec)
    info = machine.describe()
    text = report_markdown(sections, info, argv, threads, load_before, machine.load_average(), busy)
    return text, sections


def default_out(args, sections) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    first = sections[0]
    model = args.model.stem if args.model else args.arch.replace(",", "+")
    kind = "compare" if args.compare else "bench"
    return args.results_dir / f"{stamp}-{kind}-{model}-{first['size'][0]}x{first['size'][1]}.md"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    log = (lambda *a, **k: None) if args.quiet else (lambda *a, **k: print(*a, **k, file=sys.stderr, flush=True))
    try:
        text, sections = run(args, argv, log)
    except (BenchError, FileNotFoundError, ValueError) as exc:  # bad options or model files
        print(f"drn-bench: error: {exc}", file=sys.stderr)
        return 2
    print(text)
    if not args.no_write:
        out = args.out or default_out(args, sections)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"argv": argv, "machine": machine.describe(),
                                         "sections": sections_json(sections)}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

