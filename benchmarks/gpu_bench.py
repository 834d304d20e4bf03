#!/usr/bin/env python3
"""DRN-C-26 segmentation on one CUDA GPU with PyTorch: latency against the matrix-unit floor.

Prepared for an H100/H200 machine that has PyTorch with CUDA but no TensorRT and no package
registry. Run from the repository root (nothing to install; the package is imported from the
checkout):

    python benchmarks/gpu_bench.py                 # about 2-4 minutes on an H100
    python benchmarks/gpu_bench.py --no-compile    # skip torch.compile (its compile takes ~1 min)
    python benchmarks/gpu_bench.py --smoke         # seconds, on CPU: checks the script itself

Steps, each timed with CUDA events after warm-up (median and p10/p90 of --iters calls):
1. The model's multiply-accumulate count (conv hooks on a 1/8-size pass, scaled; 177.4 GMAC = 355 GFLOP per
   1024x512 frame for DRN-C-26) and the GPU's measured dense fp16 and bf16 matmul rates
   (8192^3 GEMMs): floor = FLOP / measured rate.
2. The network forward at batch 1: eager fp32 with TF32 off (true fp32), eager fp32 as torch
   runs it by default (TF32 convolutions), fp16 and bf16 channels_last, fp16 channels_last
   under a CUDA graph, and torch.compile (inductor, --compile-mode) fp16 channels_last.
3. The whole frame through the torch backend's CUDA path (TorchSegmenter(device="cuda",
   half=True, channels_last=True).infer: uint8 upload, normalise, network, argmax, labels
   download), timed with perf_counter around each call.
4. Label agreement of every variant with true fp32 on generated street scenes.

Prints a markdown table and writes it to benchmarks/results/gpu-<date>.md (and to $OUT/ when
that variable names a folder, as the remote runner sets it).
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from drn_perception.data.synthetic import generate_scene  # noqa: E402
from drn_perception.models.pipeline import SegmentationPipeline  # noqa: E402
from drn_perception.models.segmentation import DRNSeg  # noqa: E402

EVAL_SEED0 = 20_000_000  # the synthetic test split, as drn-bench uses


def count_macs(model: nn.Module, size: tuple[int, int]) -> int:
    """Multiply-accumulates of one forward pass at ``size`` (Conv2d and ConvTranspose2d)."""
    total = [0]

    def hook(mod, inp, out):
        k = mod.kernel_size[0] * mod.kernel_size[1]
        if isinstance(mod, nn.ConvTranspose2d):
            total[0] += inp[0].numel() * mod.out_channels // mod.groups * k
        else:
            total[0] += out.numel() * mod.in_channels // mod.groups * k

    probe = copy.deepcopy(model).float().cpu()
    handles = [m.register_forward_hook(hook) for m in probe.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    # every layer's work scales with the pixel count: count at 1/8 of each side, scale by 64
    h, w = size
    small = (h // 8 // 8 * 8 or 8, w // 8 // 8 * 8 or 8)
    with torch.no_grad():
        probe(torch.zeros(1, 3, *small))
    for hd in handles:
        hd.remove()
    return round(total[0] * (h * w) / (small[0] * small[1]))


class Timer:
    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __call__(self, fn, iters: int, warmup: int) -> list[float]:
        """Milliseconds per call of ``fn`` (CUDA events on GPU, perf_counter on CPU)."""
        for _ in range(warmup):
            fn()
        if self.cuda:
            torch.cuda.synchronize()
        times = []
        for _ in range(iters):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
        return times


def matmul_tflops(device, dtype, n: int, timer: Timer, iters: int) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = timer(lambda: a @ b, iters, 3)
    return 2 * n**3 / (np.median(times) / 1e3) / 1e12


def stats(times: list[float]) -> dict:
    a = np.asarray(times)
    p10, med, p90 = np.percentile(a, [10, 50, 90])
    return {"median": med, "p10": p10, "p90": p90}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny model and size on CPU: checks the script runs")
    p.add_argument("--size", default=None, help="HxW (default 512x1024; smoke 64x128)")
    p.add_argument("--iters", type=int, default=None, help="timed calls per variant (default 50; smoke 2)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    p.add_argument("--compile-mode", default="default",
                   help="torch.compile mode (default 'default'; 'max-autotune-no-cudagraphs' tunes for minutes)")
    p.add_argument("--scenes", type=int, default=4, help="generated scenes for label agreement")
    p.add_argument("--out", type=Path, default=None, help="markdown file (default benchmarks/results/gpu-<date>.md)")
    args = p.parse_args(argv)

    if args.smoke:
        device, width, size, iters = torch.device("cpu"), 0.25, (64, 128), args.iters or 2
        args.scenes = min(args.scenes, 2)
    else:
        if not torch.cuda.is_available():
            print("gpu_bench: no CUDA device visible to torch (use --smoke to check the script on CPU)", file=sys.stderr)
            return 1
        device, width, size, iters = torch.device("cuda"), 1.0, (512, 1024), args.iters or 50
    if args.size:
        size = tuple(int(v) for v in args.size.lower().split("x"))
    timer = Timer(device)
    warmup = 2 if args.smoke else 10
    t_start = time.perf_counter()

    torch.manual_seed(0)
    model = DRNSeg("drn_c_26", 19, width=width).eval()
    macs = count_macs(model, size)
    gflop = 2 * macs / 1e9
    print(f"DRN-C-26 x{width:g} at {size[0]}x{size[1]}: {macs / 1e9:.1f} GMAC = {gflop:.1f} GFLOP per frame", flush=True)

    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()})"
    n = 256 if args.smoke else 8192
    rates = {}
    for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        try:
            rates[name] = matmul_tflops(device, dtype, n, timer, 3 if args.smoke else 20)
        except Exception as exc:  # noqa: BLE001 - a dtype the device lacks: note it, go on
            print(f"matmul {name}: {exc}", file=sys.stderr)
    floor_ms = {k: gflop / v for k, v in rates.items()}  # GFLOP / (TFLOP/s) = ms
    print("measured dense matmul TFLOP/s: " + ", ".join(f"{k} {v:.3g}" for k, v in rates.items()), flush=True)

    images = np.stack([generate_scene(EVAL_SEED0 + i, *size)[0] for i in range(args.scenes)])
    x_u8 = torch.from_numpy(images).to(device)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

    def pipeline_for(dtype, channels_last):
        pipe = SegmentationPipeline(copy.deepcopy(model), mean, std, confidence=False).eval().to(device)
        pipe.model.to(dtype)
        if channels_last:
            pipe.model.to(memory_format=torch.channels_last)
        return pipe

    rows, labels = [], {}

    wall_timer = Timer(torch.device("cpu"))

    def variant(name, build, note="", wall=False):
        """build() -> (callable for batch-1 timing, callable(images u8) -> labels)."""
        t0 = time.perf_counter()
        try:
            run_one, run_labels = build()
            with torch.inference_mode():
                times = (wall_timer if wall else timer)(run_one, iters, warmup)
                labels[name] = torch.cat([run_labels(x_u8[i:i + 1]) for i in range(len(x_u8))]).cpu().numpy()
            rows.append((name, stats(times), note))
        except Exception as exc:  # noqa: BLE001 - one failing variant must not lose the others
            traceback.print_exc()
            rows.append((name, None, f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"))
        print(f"  {name}: {time.perf_counter() - t0:.0f} s", flush=True)

    def eager(dtype, channels_last, tf32):
        def build():
            if device.type == "cuda":
                torch.backends.cudnn.allow_tf32 = tf32
                torch.backends.cuda.matmul.allow_tf32 = tf32
            pipe = pipeline_for(dtype, channels_last)
            xb = x_u8[:1]
            return (lambda: pipe.logits(xb)), (lambda x: pipe(x))
        return build

    def graphed():
        pipe = pipeline_for(torch.float16, True)
        static_in = x_u8[:1].clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(3):
                pipe(static_in)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.inference_mode():
            static_out = pipe(static_in)

        def run_labels(x):
            static_in.copy_(x)
            graph.replay()
            return static_out.clone()
        return graph.replay, run_labels

    def compiled():
        pipe = pipeline_for(torch.float16, True)
        # smoke: the "eager" compile backend checks this wiring without a C++/Triton toolchain
        fn = torch.compile(pipe, backend="eager" if args.smoke else "inductor", dynamic=False,
                           **({} if args.smoke else {"mode": args.compile_mode}))
        xb = x_u8[:1]
        return (lambda: fn(xb)), (lambda x: fn(x))

    def backend_path():
        from drn_perception.inference.torch_backend import TorchSegmenter
        from drn_perception.model_info import ModelInfo, cityscapes
        from drn_perception.models.checkpoints import save_checkpoint

        cs = cityscapes()
        with tempfile.TemporaryDirectory(prefix="gpu-bench-") as tmp:
            ckpt = save_checkpoint(Path(tmp) / "drn_c_26.pt", model, ModelInfo(
                arch="drn_c_26", classes=cs.classes, palette=cs.palette, width=width).to_dict())
            seg = TorchSegmenter(ckpt, device=str(device), half=True, channels_last=True)
        frame = images[:1]
        return (lambda: seg.infer(frame)), (lambda x: torch.from_numpy(seg.infer(x.cpu().numpy()).labels))

    print("variants:", flush=True)
    variant("eager fp32 (TF32 off)", eager(torch.float32, False, False), "reference for agreement")
    variant("eager fp32 (torch default: TF32 convs)", eager(torch.float32, False, True))
    variant("eager fp16 channels_last", eager(torch.float16, True, True))
    variant("eager bf16 channels_last", eager(torch.bfloat16, True, True))
    if device.type == "cuda":
        variant("fp16 channels_last + CUDA graph", graphed)
    if not args.no_compile:
        variant("torch.compile fp16 channels_last " + ("(smoke: eager backend)" if args.smoke else
                                                       f"(inductor, mode {args.compile_mode})"), compiled)
    # the backend call returns numpy labels, so it synchronises itself: wall time per call
    variant("torch backend CUDA path: TorchSegmenter(half, channels_last).infer, uint8 in, labels out",
            backend_path, "whole frame incl. upload/download, perf_counter", wall=True)

    # several cameras: N pending frames in one call vs N calls of one frame (fp16 channels_last)
    cams = []
    for n_cam in (2, 3, 4):
        try:
            pipe = pipeline_for(torch.float16, True)
            frames = x_u8[:1].repeat(n_cam, 1, 1, 1)

            def sequential(pipe=pipe, frames=frames, n_cam=n_cam):
                for i in range(n_cam):
                    pipe(frames[i:i + 1])

            with torch.inference_mode():
                seq = np.median(timer(sequential, max(iters // 2, 2), warmup))
                bat = np.median(timer(lambda pipe=pipe, frames=frames: pipe(frames), max(iters // 2, 2), warmup))
            cams.append((n_cam, seq, bat))
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            cams.append((n_cam, None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"))
    print("  cameras: done", flush=True)

    ref_name = rows[0][0]
    ref = labels.get(ref_name)
    fp32_ms = rows[0][1]["median"] if rows[0][1] else None
    lines = [f"# gpu_bench {time.strftime('%Y-%m-%d %H:%M %Z')}", "",
             f"- device: {gpu}; torch {torch.__version__}"
             + (f", CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}" if device.type == "cuda" else "")
             + f"; python {platform.python_version()}{' (SMOKE RUN: tiny model on CPU, numbers mean nothing)' if args.smoke else ''}",
             f"- model: DRN-C-26 x{width:g}, 19 classes, random weights (authors' init, seed 0); {size[0]}x{size[1]}, "
             f"batch 1; {macs / 1e9:.1f} GMAC = {gflop:.1f} GFLOP per frame",
             "- measured dense matmul rate (n=%d): %s" % (n, ", ".join(f"{k} {v:.3g} TFLOP/s" for k, v in rates.items())),
             "- floor = GFLOP / measured rate: " + ", ".join(f"{k} {v:.3g} ms" for k, v in floor_ms.items()),
             f"- timing: median (p10–p90) of {iters} calls after {warmup} warm-up, CUDA events around the network "
             "forward (uint8 frame on the GPU -> logits) unless noted",
             "", "| variant | median ms | p10–p90 ms | vs fp32 (TF32 off) | x floor (fp16) | labels = fp32 | note |",
             "|:--|--:|--:|--:|--:|--:|:--|"]
    for name, st, note in rows:
        if st is None:
            lines.append(f"| {name} | — | — | — | — | — | {note} |")
            continue
        agree = "—" if ref is None or name not in labels else f"{100 * np.mean(labels[name] == ref):.2f}%"
        speed = f"{fp32_ms / st['median']:.2f}x" if fp32_ms else "—"
        over = f"{st['median'] / floor_ms['fp16']:.1f}" if "fp16" in floor_ms else "—"
        lines.append(f"| {name} | {st['median']:.2f} | {st['p10']:.2f}–{st['p90']:.2f} | {speed} | {over} | {agree} | {note} |")
    lines += ["", "Several cameras (eager fp16 channels_last, labels out): N sequential batch-1 calls vs one call "
              "with N frames:", "", "| N | sequential ms | batched ms | throughput gain |", "|--:|--:|--:|--:|"]
    for n_cam, seq, bat in cams:
        lines.append(f"| {n_cam} | failed: {bat} | | |" if seq is None else
                     f"| {n_cam} | {seq:.2f} | {bat:.2f} | {seq / bat:.2f}x |")
    lines += ["", f"Labels compared on {len(images)} generated scenes (seeds {EVAL_SEED0}+); random weights have tiny "
              "argmax margins, so agreement understates a trained model's.",
              f"Total run time {time.perf_counter() - t_start:.0f} s."]
    text = "\n".join(lines) + "\n"
    print(text)
    out = args.out or REPO / "benchmarks" / "results" / f"gpu-{'smoke-' if args.smoke else ''}{time.strftime('%Y%m%d-%H%M%S')}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")
    if os.environ.get("OUT") and Path(os.environ["OUT"]).is_dir():
        (Path(os.environ["OUT"]) / out.name).write_text(text)
    return 0 if all(st is not None for _, st, _ in rows) else 3


if __name__ == "__main__":
    sys.exit(main())
