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
import resource
import shlex
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from drn_perception.bench import machine

# First seed of the synthetic "test" split (data/synthetic_dataset.SPLIT_SEEDS): never trained
# or calibrated on.
EVAL_SEED0 = 20_000_000


DEFAULT_PATHS = "torch,onnxruntime,onnxruntime-int8"
DEFAULT_ONNX_PATHS = "onnxruntime,onnxruntime-int8"


@dataclass(frozen=True)
class PathSpec:
    backend: str  # create_segmenter backend
    source: str  # which model file it loads: pt, onnx, int8, engine
    precision: str
    about: str
    options: dict = field(default_factory=dict)


PATHS: dict[str, PathSpec] = {
    "torch": PathSpec("torch", "pt", "fp32", "PyTorch eager, as the torch backend runs it"),
    "torch-cl": PathSpec("torch", "pt", "fp32", "PyTorch eager, channels_last weights", {"channels_last": True}),
    "torch-bf16": PathSpec("torch", "pt", "bf16", "PyTorch eager, bfloat16 weights+activations, channels_last",
                           {"bf16": True, "channels_last": True}),
    "torch-fp16": PathSpec("torch", "pt", "fp16", "PyTorch eager fp16, channels_last (GPU)",
                           {"half": True, "channels_last": True}),
    "onnxruntime": PathSpec("onnxruntime", "onnx", "fp32", "ONNX Runtime, the exported graph"),
    "onnxruntime-int8": PathSpec("onnxruntime", "int8", "int8", "ONNX Runtime, static int8 QDQ graph (drn-quantize)"),
    "openvino": PathSpec("openvino", "onnx", "auto", "OpenVINO reading the exported .onnx, precision auto "
                         "(bf16 where the cores have AMX/AVX512-BF16, else f32)"),
    "openvino-f32": PathSpec("openvino", "onnx", "f32", "OpenVINO, the exported .onnx in f32 (labels = ONNX Runtime fp32)",
                             {"precision": "f32"}),
    "openvino-int8": PathSpec("openvino", "ov-int8", "auto", "OpenVINO, int8 IR from NNCF (drn-quantize --out "
                              "model.xml), float parts at precision auto"),
    "tensorrt": PathSpec("tensorrt", "engine", "engine", "TensorRT engine given with --engine"),
}


class BenchError(ValueError):
    """A user mistake (bad option, missing file): one line, exit status 2."""


# ----------------------------------------------------------------------------- statistics


def summarise(times: list[float]) -> dict[str, float]:
    """Median, 10th/90th percentiles, min, max and mean of ``times`` (seconds)."""
    if not times:
        raise ValueError("no timings to summarise")
    a = np.asarray(times, dtype=np.float64)
    p10, med, p90 = np.percentile(a, [10, 50, 90])
    return {"median": float(med), "p10": float(p10), "p90": float(p90), "min": float(a.min()),
            "max": float(a.max()), "mean": float(a.mean()), "n": int(a.size)}


def label_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of pixels whose labels are equal in ``a`` and ``b`` (same shape)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"label maps differ in shape: {a.shape} vs {b.shape}")
    if a.size == 0:
        raise ValueError("empty label maps")
    return float(np.count_nonzero(a == b)) / a.size


def paired_speedup(ref: list[float], other: list[float]) -> float:
    """Median over rounds of ref_time / other_time: both measured in the same round."""
    n = min(len(ref), len(other))
    return float(np.median(np.asarray(ref[:n]) / np.asarray(other[:n])))


# ----------------------------------------------------------------------------- memory


def current_rss() -> int:
    """Resident set size of this process in bytes (Linux /proc; else the peak so far)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss()


def peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc), so RSS drops."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class RssPeak:
    """Samples this process's RSS every few ms in a thread; ``.peak`` after the block."""

    def __init__(self, interval: float = 0.003):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self):
        self.start = current_rss()
        self.peak = self.start
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, current_rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss())

    @property
    def added_mib(self) -> float:
        return (self.peak - self.start) / 2**20


# ----------------------------------------------------------------------------- models


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise BenchError(f"size {text!r} is not HxW, e.g. 512x1024") from None
    if h < 8 or w < 8:
        raise BenchError(f"size {text!r} is too small (at least 8x8)")
    return h, w


def reference_checkpoint(path: Path, arch: str, width: float = 1.0, seed: int = 0, num_classes: int = 19) -> Path:
    """A random-weight DRNSeg with the authors' initialisation (seeded), saved as our checkpoint."""
    import torch

    from drn_perception.model_info import ModelInfo, cityscapes
    from drn_perception.models.checkpoints import save_checkpoint
    from drn_perception.models.segmentation import DRNSeg

    torch.manual_seed(seed)
    try:
        model = DRNSeg(arch, num_classes, width=width).eval()
    except (KeyError, ValueError) as exc:
        raise BenchError(f"cannot build {arch} at width {width}: {exc}") from None
    cs = cityscapes()
    info = ModelInfo(arch=arch, classes=cs.classes, palette=cs.palette, width=width)
    return save_checkpoint(path, model, info.to_dict(), random_weights=True, seed=seed)


class ModelFiles:
    """The files one model needs on each path, made on first use in a temporary folder."""

    def __init__(self, workdir: Path, *, arch: str | None = None, width: float = 1.0, seed: int = 0,
                 model: Path | None = None, int8: Path | None = None, engine: Path | None = None,
                 ov_int8: Path | None = None,
                 calibration: tuple[int, tuple[int, int]] = (16, (256, 512)), labels_only: bool = False):
        self.workdir = workdir
        self.calibration = calibration
        self.labels_only = labels_only
        self.random = model is None
        self.files: dict[str, Path] = {}
        self.notes: list[str] = []
        if model is None:
            self.name = f"{arch} x{width:g} (random weights, seed {seed})"
            self.stem = f"{arch}-w{width:g}-random"
            self._make_pt = lambda: reference_checkpoint(workdir / f"{self.stem}.pt", arch, width, seed)
        else:
            model = Path(model)
            if not model.is_file():
                raise BenchError(f"model file not found: {model}")
            self.name, self.stem = model.name, model.stem
            self._make_pt = None
            if model.suffix == ".pt":
                self.files["pt"] = model
            elif model.suffix == ".onnx":
                self.files["onnx"] = model
                if labels_only:
                    from drn_perception.deploy.quantize import labels_only as strip

                    self.files["onnx"] = strip(model, workdir / f"{model.stem}.labels.onnx")
                if model.with_suffix(".pt").is_file():
                    self.files["pt"] = model.with_suffix(".pt")
                sibling = model.with_name(f"{model.stem}.int8.onnx")
                if sibling.is_file() and int8 is None and not labels_only:
                    int8 = sibling
            elif model.suffix in (".engine", ".plan"):
                self.files["engine"] = model
            else:
                raise BenchError(f"--model {model}: expected a .pt checkpoint, an .onnx graph or a TensorRT engine")
        for key, given in (("int8", int8), ("engine", engine), ("ov-int8", ov_int8)):
            if given is not None:
                if not Path(given).is_file():
                    raise BenchError(f"{key} model file not found: {given}")
                self.files[key] = Path(given)

    def get(self, kind: str) -> Path:
        if kind in self.files:
            return self.files[kind]
        if kind == "pt":
            if self._make_pt is None:
                raise BenchError(f"the torch paths need a .pt checkpoint: none next to {self.name}")
            self.files["pt"] = self._make_pt()
        elif kind == "onnx":
            from drn_perception.deploy.export import export_onnx

            if "pt" not in self.files and self._make_pt is None:
                raise BenchError(f"no .onnx for {self.name}: give --model model.onnx")
            self.files["onnx"] = export_onnx(self.get("pt"), self.workdir / f"{self.stem}.onnx", check=False,
                                             confidence=not self.labels_only)
        elif kind == "int8":
            from drn_perception.deploy.quantize import quantize_int8

            count, size = self.calibration
            t0 = time.perf_counter()
            self.files["int8"] = quantize_int8(self.get("onnx"), self.workdir / f"{self.stem}.int8.onnx", count, size)
            self.notes.append(f"int8 graph quantised here: {count} generated scenes at {size[0]}x{size[1]} "
                              f"({time.perf_counter() - t0:.0f} s)")
        elif kind == "ov-int8":
            from drn_perception.deploy.openvino_quantize import quantize_openvino_int8

            count, size = self.calibration
            t0 = time.perf_counter()
            self.files[kind] = quantize_openvino_int8(self.get("onnx"), self.workdir / f"{self.stem}.ov-int8.xml",
                                                      count, size)
            self.notes.append(f"OpenVINO int8 IR quantised here with NNCF: {count} generated scenes at "
                              f"{size[0]}x{size[1]} ({time.perf_counter() - t0:.0f} s)")
        elif kind == "engine":
            raise BenchError("the tensorrt path needs --engine FILE (build it with drn-build-engine)")
        else:
            raise KeyError(kind)
        return self.files[kind]


def open_path(name: str, files: ModelFiles, device: str, threads: int):
    """A Segmenter for path ``name`` (raises BenchError for user mistakes)."""
    from drn_perception.inference.base import BackendUnavailable, create_segmenter

    spec = PATHS[name]
    model = files.get(spec.source)
    try:
        if spec.backend == "onnxruntime":
            from drn_perception.inference.onnxruntime_backend import OnnxRuntimeSegmenter

            return OnnxRuntimeSegmenter(model, device=device, threads=threads)
        if spec.backend == "torch":
            from drn_perception.inference.torch_backend import TorchSegmenter

            return TorchSegmenter(model, device=device, **spec.options)
        if spec.backend == "openvino":
            from drn_perception.inference.openvino_backend import OpenVinoSegmenter

            return OpenVinoSegmenter(model, device=device, threads=threads, **spec.options)
        return create_segmenter(model, backend=spec.backend, device=device)
    except (ImportError, BackendUnavailable, ValueError) as exc:
        raise BenchError(f"path {name}: {exc}") from None


# ----------------------------------------------------------------------------- measuring


@dataclass
class PathResult:
    name: str
    describe: str = ""
    precision: str = ""  # what the opened segmenter reports (e.g. "bf16" for a path whose spec says "auto")
    load_s: float = 0.0
    added_mib: float = 0.0
    times: list[float] = field(default_factory=list)
    agreement: float | None = None
    miou: float | None = None
    seq_times: list[float] = field(default_factory=list)  # --cameras: N sequential calls
    batch_times: list[float] = field(default_factory=list)  # --cameras: one call with N frames
    error: str | None = None


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


# ----------------------------------------------------------------------------- reporting


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f}" if seconds >= 0.1 else f"{seconds * 1e3:.1f}"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def section_markdown(sec: dict) -> str:
    h, w = sec["size"]
    res: dict[str, PathResult] = sec["results"]
    ref = res[sec["reference"]]
    onnx_note = ""
    if any(PATHS[n].backend == "onnxruntime" for n in res):
        onnx_note = ("; ONNX graphs labels-only" if sec.get("labels_only") else
                     "; ONNX Runtime runs the graph pruned to its labels output (no confidence asked)")
    lines = [f"### {sec['model']} — {h}x{w}, batch {sec['batch']}{onnx_note}", ""]
    lines.append("| path | precision | median ms | p10–p90 ms | min–max ms | frames/s | speed-up vs "
                 f"{ref.name} (paired) | labels = {ref.name} | mIoU (Δ) | added MiB |")
    lines.append("|:--|:--|--:|--:|--:|--:|--:|--:|--:|--:|")
    ref_miou = ref.miou
    for r in res.values():
        spec = PATHS[r.name]
        if r.error:
            lines.append(f"| {r.name} | {spec.precision} | not run: {r.error} | | | | | | | |")
            continue
        if r.times:
            s = summarise(r.times)
            timing = [_ms(s["median"]), f"{_ms(s['p10'])}–{_ms(s['p90'])}", f"{_ms(s['min'])}–{_ms(s['max'])}",
                      f"{sec['batch'] / s['median']:.2f}", f"{paired_speedup(ref.times, r.times):.2f}x"]
        else:
            timing = ["—"] * 5
        if r.miou is None:
            miou_txt = "—"
        else:
            miou_txt = f"{100 * r.miou:.1f}" + ("" if r is ref else f" ({100 * (r.miou - ref_miou):+.1f})")
        lines.append(f"| {r.name} | {r.precision or spec.precision} | " + " | ".join(timing)
                     + f" | {_pct(r.agreement)} | {miou_txt} | {r.added_mib:.0f} |")
    if sec["noise_agreement"] is not None:
        lines.append(f"| ({ref.name}, input ±1 grey level) | {PATHS[ref.name].precision} | | | | | | "
                     f"{_pct(sec['noise_agreement'])} | | |")
    lines.append("")
    if sec["scenes"]:
        lines.append(f"Labels compared on {sec['scenes']} generated scenes (seeds {EVAL_SEED0}+, the synthetic "
                     f"test split) at {h}x{w}" + (
                         "; random weights: tiny argmax margins, so agreement understates a trained model's "
                         "(see the ±1 grey level row)." if sec["random"] else
                         "; mIoU over the synthetic classes against the scenes' exact labels."))
    cams = [r for r in res.values() if r.seq_times]
    if cams:
        n = sec.get("cameras", 0)
        lines += ["", f"Several cameras ({n} frames pending): {n} sequential calls vs one call with a batch of {n}:",
                  "", "| path | sequential ms | batched ms | batched throughput gain |", "|:--|--:|--:|--:|"]
        for r in cams:
            seq, bat = np.median(r.seq_times), np.median(r.batch_times)
            gain = paired_speedup(r.seq_times, r.batch_times)
            lines.append(f"| {r.name} | {_ms(seq)} | {_ms(bat)} | {gain:.2f}x |")
    if sec.get("replay"):
        rep = sec["replay"]
        runs = {} if isinstance(rep.get("error"), str) else rep
        in_flight = next((r["in_flight"] for r in runs.values() if r.get("in_flight")), None)
        mode = "--as-fast-as-node" + (f" --in-flight {in_flight}: the next frame goes out when fewer than "
                                      f"{in_flight} are unanswered and the node is working on the one that is"
                                      if in_flight else "")
        lines += ["", f"Node path: bag -> DDS -> seg_node -> DDS -> recorder (drn-replay {mode}; one running "
                  "node per path, warmed up by an untimed pass) vs "
                  "the same backend called directly on the same frames in this process, in rounds "
                  "(direct, node, direct, ...; ratio per round against the direct passes either side; "
                  "masks recorded, not scored):", "",
                  "| path | node masks/s | direct frames/s | node/direct (median, min–max) | rounds "
                  "| latency p50 ms (node) | node's inference p50 ms | node's own work p50/p95 ms | dropped |",
                  "|:--|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for name, r in (runs or {"all": rep}).items():
            if "error" in r:
                lines.append(f"| {name} | not run: {r['error']} | | | | | | | |")
                continue
            rounds = r["rounds"]
            ratios, p50 = rounds["ratios"], (r.get("latency_ms") or {}).get("p50")
            diag = (r.get("node") or {}).get("diagnostics") or {}
            own = "/".join(diag.get(f"overhead_p{q}_ms", "—") for q in (50, 95))
            cells = [f"{np.median(rounds['node_fps']):.2f}", f"{np.median(rounds['direct_fps']):.2f}",
                     f"{np.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})", str(len(ratios)),
                     f"{p50:.1f}" if p50 is not None else "—", str(diag.get("inference_p50_ms", "—")), own,
                     str(r.get("dropped", "—"))]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for note in sec["notes"]:
        lines.append(f"\n{note}.")
    return "\n".join(lines) + "\n"


def report_markdown(sections: list[dict], info: dict, argv: list[str], threads: int, load_before: str,
                    load_after: str, busy: list[str]) -> str:
    v = info["versions"]
    lines = [f"# drn-bench {info['date']}", "",
             f"- command: `drn-bench {shlex.join(argv)}`",
             f"- machine: {info['cpu']}, {info['cores']} usable cores, {threads} threads; "
             f"ISA: {', '.join(info['isa']) or 'n/a'}; {info['os']}",
             "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
             f"- load average (1/5/15 min): {load_before} before, {load_after} after",
             "- other busy processes at start: " + ("; ".join(f"`{b}`" for b in busy) if busy else "none"),
             "- paths: " + "; ".join(f"{n}: {PATHS[n].about}" for n in dict.fromkeys(
                 n for s in sections for n in s["results"])),
             ""]
    for sec in sections:
        lines.append(section_markdown(sec))
    return "\n".join(lines)


def sections_json(sections: list[dict]) -> list[dict]:
    out = []
    for sec in sections:
        d = {k: v for k, v in sec.items() if k != "results"}
        d["results"] = {}
        for name, r in sec["results"].items():
            item = {k: getattr(r, k) for k in ("describe", "precision", "load_s", "added_mib", "agreement", "miou", "error")}
            item["times_s"] = r.times
            if r.times:
                item["summary"] = summarise(r.times)
            if r.seq_times:
                item["cameras_sequential_s"], item["cameras_batched_s"] = r.seq_times, r.batch_times
            d["results"][name] = item
        out.append(d)
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
