#!/usr/bin/env python3
"""The TensorRT graphs (fp32, fp16, int8 Q/DQ) on ONNX Runtime's CUDA provider, and torch CUDA eager fp32/fp16.

For a GPU machine with PyTorch+CUDA, onnx and onnxruntime but no TensorRT, no ModelOpt and no
package registry. Two steps:

    # here (ModelOpt installed): write the graphs into a folder the run carries (gitignored out/)
    .venv/bin/python benchmarks/gpu_trt_graphs.py --prepare out/gpu_trt_graphs
    # on the GPU machine (writes the table to $OUT or --out)
    python benchmarks/gpu_trt_graphs.py --graphs out/gpu_trt_graphs [--size 512x1024] [--iters 50]

The graphs are those of the shipped model (drn_perception/assets/drn_c_26_w025_synthetic, the
trained checkpoint the torch rows run too): fp32 as exported, fp16 (AutoCast), int8 Q/DQ with
fp16 elsewhere and with fp32 elsewhere (deploy/tensorrt_graphs.py, 16 calibration scenes at the
size). For each: labels against ONNX Runtime CPU fp32 on generated scenes (seeds 0..N-1), and the
median ms per frame (uint8 in, labels out, host to host: what a caller of session.run sees) on
CUDAExecutionProvider. ONNX Runtime's CUDA provider runs Q/DQ by dequantising (it has no int8
convolution kernels of TensorRT's kind), so its int8 ms say nothing of TensorRT int8 speed; the
labels do show what the Q/DQ graph computes. With an onnxruntime that has no CUDA provider the
table says so and the torch rows still run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
ASSET = REPO / "drn_perception/assets/drn_c_26_w025_synthetic"
GRAPHS = {"fp32": "fp32.onnx", "fp16": "fp16.onnx", "int8 Q/DQ (fp16 elsewhere)": "int8-qdq.onnx",
          "int8 Q/DQ (fp32 elsewhere)": "int8-qdq-fp32.onnx"}


def parse_size(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def prepare(folder: Path, size: tuple[int, int]) -> int:
    import shutil

    from drn_perception.deploy import tensorrt_graphs as tg
    from drn_perception.deploy.calibration import calibration_frames

    folder.mkdir(parents=True, exist_ok=True)
    src = ASSET.with_suffix(".onnx")
    shutil.copy(src, folder / GRAPHS["fp32"])
    shutil.copy(ASSET.with_suffix(".json"), folder / "fp32.json")
    frames = list(calibration_frames(16, size))
    tg.write_fp16(src, folder / GRAPHS["fp16"], frames[:4])
    tg.write_int8_qdq(src, folder / GRAPHS["int8 Q/DQ (fp16 elsewhere)"], frames, high_precision="fp16")
    tg.write_int8_qdq(src, folder / GRAPHS["int8 Q/DQ (fp32 elsewhere)"], frames, high_precision="fp32")
    total = sum(f.stat().st_size for f in folder.iterdir())
    print(f"wrote {len(list(folder.iterdir()))} files, {total / 2**20:.1f} MiB, to {folder}")
    return 0


def timed(fn, iters: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def run(folder: Path, size: tuple[int, int], scenes: int, iters: int, out_dir: Path | None) -> int:
    import onnxruntime as ort

    from drn_perception.data.synthetic import generate_scene

    xs = [generate_scene(seed, *size)[0][None] for seed in range(scenes)]
    cpu = ort.InferenceSession(str(folder / GRAPHS["fp32"]), providers=["CPUExecutionProvider"])
    refs = [cpu.run(["labels"], {"images": x})[0] for x in xs]
    rows = []
    cuda_ok = "CUDAExecutionProvider" in ort.get_available_providers()
    for name, file in GRAPHS.items():
        path = folder / file
        if not path.is_file():
            rows.append(f"| ORT CUDA, {name} | missing {file} (run --prepare) | |")
            continue
        if not cuda_ok:
            rows.append(f"| ORT CUDA, {name} | onnxruntime {ort.__version__} has no CUDAExecutionProvider | |")
            continue
        try:
            sess = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider"])
            if sess.get_providers()[0] != "CUDAExecutionProvider":
                raise RuntimeError(f"session fell back to {sess.get_providers()}")
            agree = np.mean([(sess.run(["labels"], {"images": x})[0] == r).mean() for x, r in zip(xs, refs)])
            ms = timed(lambda: sess.run(["labels"], {"images": xs[0]}), iters)
            rows.append(f"| ORT CUDA, {name} | {100 * agree:.3f}% | {ms:.2f} |")
        except Exception as exc:  # noqa: BLE001 - one graph failing must not hide the others
            rows.append(f"| ORT CUDA, {name} | failed: {str(exc).splitlines()[0][:120]} | |")
        print(rows[-1], flush=True)
    try:
        import torch

        from drn_perception.inference.torch_backend import TorchSegmenter

        if not torch.cuda.is_available():
            raise RuntimeError("torch has no CUDA here")
        for name, kwargs in (("torch CUDA eager fp32", {}), ("torch CUDA eager fp16 channels_last",
                                                              {"half": True, "channels_last": True})):
            seg = TorchSegmenter(ASSET.with_suffix(".pt"), device="cuda", **kwargs)
            agree = np.mean([(seg.infer(x[0]).labels == r[0]).mean() for x, r in zip(xs, refs)])

            def once(seg=seg):
                seg.infer(xs[0][0])
                torch.cuda.synchronize()

            rows.append(f"| {name} | {100 * agree:.3f}% | {timed(once, iters):.2f} |")
            print(rows[-1], flush=True)
        gpu = torch.cuda.get_device_name(0)
    except Exception as exc:  # noqa: BLE001
        rows.append(f"| torch CUDA | not run: {str(exc).splitlines()[0][:120]} | |")
        gpu = "?"
    stamp = datetime.now(timezone.utc)
    text = "\n".join([
        f"# TensorRT graphs on ONNX Runtime CUDA and torch CUDA, shipped model at {size[0]}x{size[1]}",
        "",
        f"{stamp:%Y-%m-%d %H:%M} UTC, GPU {gpu}, onnxruntime {ort.__version__} (providers "
        f"{', '.join(ort.get_available_providers())}). Command: `python benchmarks/gpu_trt_graphs.py "
        f"{' '.join(sys.argv[1:])}`",
        f"Labels against ONNX Runtime CPU fp32 on {scenes} generated scenes; ms: median of {iters} frames, uint8 in, "
        "labels out, host to host. ORT CUDA runs Q/DQ by dequantising: its int8 ms are not TensorRT int8's.",
        "",
        "| path | labels = CPU fp32 | ms/frame |",
        "| --- | --- | --- |",
        *rows, "",
    ])
    out_dir = out_dir or (Path(os.environ["OUT"]) if os.environ.get("OUT") else REPO / "benchmarks/results")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stamp:%Y%m%d-%H%M%S}-gpu-trt-graphs-{size[0]}x{size[1]}.md"
    path.write_text(text)
    print(text)
    print(f"wrote {path}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prepare", type=Path, metavar="DIR", help="write the graphs into DIR (needs ModelOpt) and exit")
    p.add_argument("--graphs", type=Path, default=REPO / "out/gpu_trt_graphs", help="folder --prepare wrote")
    p.add_argument("--size", default="512x1024", help="HxW (default 512x1024, i.e. 1024x512 frames)")
    p.add_argument("--scenes", type=int, default=8)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--out", type=Path, help="folder for the .md (default $OUT, else benchmarks/results)")
    args = p.parse_args(argv)
    size = parse_size(args.size)
    if args.prepare is not None:
        return prepare(args.prepare, size)
    return run(args.graphs, size, args.scenes, args.iters, args.out)


if __name__ == "__main__":
    sys.exit(main())
