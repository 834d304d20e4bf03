"""Label agreement and CPU speed of the TensorRT graphs (drn-quantize --target tensorrt) against fp32.

    .venv/bin/python benchmarks/trt_graphs_cpu.py [--model drn_perception/assets/drn_c_26_w025_synthetic.onnx]
        [--size 256x512] [--scenes 16] [--calibration-frames 16] [--repeats 5] [--out benchmarks/results]

Writes, with the same code drn-quantize runs (deploy/tensorrt_graphs.py), into a scratch folder:
the fp16 graph, the int8 Q/DQ graph with fp16 elsewhere (TensorRT 10/11) and with fp32 elsewhere
(TensorRT 8.6), and today's ONNX Runtime int8 graph (drn-quantize, uint8 asymmetric) for
comparison. Every graph runs on ONNX Runtime CPU (and on OpenVINO where it reads the graph) over
generated scenes (seeds 0..N-1, disjoint from the calibration seeds 1,000,000+); labels are
compared pixel by pixel with the fp32 graph on ONNX Runtime. Speed: median ms per frame at the
size, 2 threads, after one warm-up. A dated .md table goes to --out, with the command, CPU and ISA.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def cpu_line() -> str:
    model, flags = platform.processor() or "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("?", "x86_64", ""):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "avx_vnni") if f in flags]
    return f"{model}; ISA: {', '.join(isa) or 'unknown'}"


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ov_model(path: Path, threads: int):
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                    "INFERENCE_PRECISION_HINT": "f32"})
    return compiled


def run_labels(runner, kind: str, x: np.ndarray) -> np.ndarray:
    if kind == "ort":
        return runner.run(["labels"], {"images": x})[0]
    return runner({0: x})[runner.output("labels")]


def measure(runner, kind, scenes, refs, repeats) -> tuple[float, float]:
    equal = total = 0
    for x, ref in zip(scenes, refs):
        labels = run_labels(runner, kind, x)
        equal += int((labels == ref).sum())
        total += ref.size
    run_labels(runner, kind, scenes[0])
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run_labels(runner, kind, scenes[0])
        times.append(1000 * (time.perf_counter() - t0))
    return equal / total, statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=REPO / "drn_perception/assets/drn_c_26_w025_synthetic.onnx")
    p.add_argument("--size", default="256x512")
    p.add_argument("--scenes", type=int, default=16)
    p.add_argument("--calibration-frames", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results")
    args = p.parse_args(argv)

    from drn_perception.data.synthetic import generate_scene
    from drn_perception.deploy import tensorrt_graphs as tg
    from drn_perception.deploy.calibration import calibration_frames
    from drn_perception.deploy.graph_files import parse_size
    from drn_perception.deploy.quantize import quantize_int8

    size = parse_size(args.size)
    scenes = [generate_scene(seed, *size)[0][None] for seed in range(args.scenes)]
    calib = list(calibration_frames(args.calibration_frames, size))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        graphs = {"fp32 (exported)": (args.model, 0.0)}
        t0 = time.perf_counter()
        graphs["fp16 (AutoCast)"] = (tg.write_fp16(args.model, folder / "m.fp16.onnx", calib[:4]), time.perf_counter() - t0)
        for hp in ("fp16", "fp32"):
            t0 = time.perf_counter()
            path = tg.write_int8_qdq(args.model, folder / f"m.qdq-{hp}.onnx", calib, high_precision=hp)
            graphs[f"int8 Q/DQ, {hp} elsewhere (ModelOpt)"] = (path, time.perf_counter() - t0)
        t0 = time.perf_counter()
        graphs["int8 ORT today (drn-quantize, uint8 asym.)"] = (
            quantize_int8(args.model, folder / "m.int8.onnx", frames=calib), time.perf_counter() - t0)
        ref_session = ort_session(args.model, args.threads)
        refs = [run_labels(ref_session, "ort", x) for x in scenes]
        for name, (path, seconds) in graphs.items():
            checked = tg.parser_check(path, log=lambda _line: None)
            parsers = ", ".join(v for v, ok in checked.items() if ok) or "none"
            agree, ms = measure(ort_session(path, args.threads), "ort", scenes, refs, args.repeats)
            try:
                ov_agree, ov_ms = measure(ov_model(path, args.threads), "ov", scenes, refs, args.repeats)
                ov_text = f"{100 * ov_agree:.3f}% | {ov_ms:.1f}"
            except Exception as exc:  # noqa: BLE001 - OpenVINO refuses some graphs: say which
                ov_text = f"not read: {str(exc).splitlines()[0][:60]} | "
            rows.append(f"| {name} | {100 * agree:.3f}% | {ms:.1f} | {ov_text} | {parsers} | {seconds:.1f} |")
            print(rows[-1], flush=True)
    stamp = datetime.now(timezone.utc)
    command = "python benchmarks/trt_graphs_cpu.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = "\n".join([
        f"# TensorRT graphs on the CPU: labels vs fp32 and speed, {args.model.name} at {args.size}",
        "",
        f"{stamp:%Y-%m-%d %H:%M} UTC. Command: `{command.strip()}`",
        f"CPU: {cpu_line()}; {args.threads} threads; onnxruntime "
        f"{__import__('onnxruntime').__version__}, openvino {__import__('openvino').get_version()}, "
        f"nvidia-modelopt {__import__('modelopt').__version__}.",
        f"{args.scenes} generated scenes (seeds 0..{args.scenes - 1}) compared with the fp32 graph on ONNX Runtime; "
        f"calibration: {args.calibration_frames} generated scenes (seeds 1000000+). ms: median of {args.repeats} "
        "runs of one frame. OpenVINO f32 hint (it runs the graph's own fp16/int8 parts as it chooses).",
        "",
        "| graph | labels = fp32 (ORT) | ORT ms | labels = fp32 (OpenVINO) | OpenVINO ms | TensorRT parsers (check) | write s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows, "",
    ])
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"{stamp:%Y%m%d-%H%M%S}-trt-graphs-{args.model.stem}-{args.size}.md"
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
