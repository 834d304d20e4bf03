"""drn-quantize: exported fp32 graph -> int8 graph for ONNX Runtime or OpenVINO, fp16/int8 graph for TensorRT.

``--out model.int8.onnx`` writes the ONNX Runtime graph described here; ``--out model.xml``
writes an OpenVINO int8 IR with NNCF instead (deploy/openvino_quantize.py: the same float
layers, the same calibration frames); ``--target tensorrt --quantize fp16|int8`` writes the
strongly typed fp16 graph or the symmetric int8 Q/DQ graph TensorRT builds, with NVIDIA ModelOpt
(deploy/tensorrt_graphs.py), and prints its label agreement with the fp32 model. ``--calibration SPEC`` takes the frames drn-build-engine
reads (an image folder, DATASET:SPLIT, a .txt list, a rosbag2, synthetic[:N]; see
deploy/calibration.py), fitted to ``--calibration-size``; without it, generated scenes.

Static quantisation with ONNX Runtime's own tool (``onnxruntime.quantization.quantize_static``):
QDQ format, weights int8 per output channel (symmetric), activations uint8 (asymmetric) with
ranges calibrated on generated street scenes (each frame's min/max, averaged over the frames). ONNX Runtime fuses each
DequantizeLinear -> Conv -> QuantizeLinear group into an integer convolution, which on x86
cores with AVX512-VNNI (or AVX-VNNI / AMX) runs several times faster than fp32.

Only the network's Conv, Relu and Add nodes are quantised, and of those only the layers that
work at 1/4 of the input resolution or coarser (``float_stride=2``): the stem and levels 1-2
(full and half resolution, 16-32 channels) stay in float. They hold 3% of DRN-C-26's
multiply-accumulates, but quantising the normalised image and those narrow layers moved more
labels than all deeper layers together (a trained DRN-C-26 x0.25 at 256x512: 98.6% of labels
equal to fp32 with everything quantised, 99.4% with them in float, same speed). The
uint8 -> float normalisation, the bilinear upsampling (ConvTranspose), ArgMax and Softmax stay
in float too, so the graph keeps the exported interface (uint8 NHWC in, int32 labels and float
confidence out) and the same sidecar metadata, with a ``quantization`` record added. The result loads with the
onnxruntime backend like any exported model. This uint8 asymmetric graph is for the CPU path;
TensorRT's explicit quantization takes symmetric int8 (``--target tensorrt``).

Calibration scenes come from ``generate_scene`` with seeds from 1,000,000 up, disjoint from
the seeds benchmarks and tests evaluate on.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from drn_perception.deploy.calibration import CALIBRATION_SEED0, calibration_frames, user_calibration_frames
from drn_perception.deploy.graph_files import (
    QUANTIZED_OPS,
    classifier_layers,
    fine_layers,
    input_name,
    parse_size,
    read_sidecar,
)
from drn_perception.model_info import ModelInfo, sha256_file, sidecar_path

__all__ = ["CALIBRATION_SEED0", "calibration_frames", "classifier_layers", "fine_layers", "labels_only", "main",
           "parse_size", "quantize_int8", "user_calibration_frames"]

# How each activation's 8-bit range is set from the calibration frames (ONNX Runtime's calibrators).
# mean-minmax: each frame's min and max, averaged over the frames (ORT's CalibMovingAverage);
# values beyond clip. minmax: the extremes over all frames, so one unusual frame sets the range
# and every other frame gets coarser steps. Full-width DRN-C-26 at 512x1024, labels equal to
# float: under-trained, mean-minmax 97.6%, minmax 96.3%, percentile 96.7%, entropy 96.3%;
# fine-tuned, mean-minmax 99.38%, minmax 99.17% (benchmarks/README.md).
CALIBRATION_METHODS = ("mean-minmax", "minmax", "entropy", "percentile")


def quantize_int8(model: str | Path, out: str | Path, calibration_count: int = 16,
                  calibration_size: tuple[int, int] = (256, 512), exclude: tuple[str, ...] = (),
                  method: str = "mean-minmax", frames=None, float_stride: int = 2, labels_only: bool = False,
                  quantize_classifier: bool = False, calibration_note: str | None = None) -> Path:
    """Write the int8 version of the exported ``model`` (.onnx) to ``out`` and its sidecar.

    ``frames``: optional iterable of uint8 (1, H, W, 3) calibration arrays replacing the
    generated scenes (e.g. frames from the user's own camera). ``exclude``: more node names
    kept in float. ``float_stride``: layers whose output is at this stride or finer stay in
    float (0: quantise every Conv/Relu/Add). ``method``: how activation ranges are set (see
    CALIBRATION_METHODS).
    ``labels_only``: drop the confidence output and the softmax behind it (see labels_only()).
    ``quantize_classifier``: quantise the last Conv (the classifier) too; by default it stays
    in float (see classifier_layers()).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    model, out = Path(model), Path(out)
    if not model.is_file():
        raise FileNotFoundError(f"model file not found: {model}")
    if model.suffix != ".onnx" or out.suffix != ".onnx":
        raise ValueError(f"quantisation reads and writes .onnx files (got {model.name} -> {out.name})")
    methods = {"mean-minmax": (CalibrationMethod.MinMax, {"CalibMovingAverage": True}),
               "minmax": (CalibrationMethod.MinMax, {}), "entropy": (CalibrationMethod.Entropy, {}),
               "percentile": (CalibrationMethod.Percentile, {})}
    if method not in methods:
        raise ValueError(f"unknown calibration method {method!r}: choose {', '.join(methods)}")
    if calibration_count < 1:
        raise ValueError("calibration needs at least one frame")
    if float_stride < 0:
        raise ValueError("float_stride must be 0 or more")
    info = read_sidecar(model)
    image_input = input_name(model)
    float_head = [] if quantize_classifier else classifier_layers(model)
    exclude = tuple(dict.fromkeys([*fine_layers(model, float_stride), *float_head, *exclude]))
    source = frames if frames is not None else calibration_frames(calibration_count, calibration_size)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.frames = iter(source)

        def get_next(self):
            frame = next(self.frames, None)
            if frame is None:
                return None
            frame = np.ascontiguousarray(frame, dtype=np.uint8)
            return {image_input: frame if frame.ndim == 4 else frame[None]}

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".onnx", dir=out.parent)
    os.close(fd)
    try:
        source_model = model
        if labels_only:
            source_model = _labels_only_graph(model, Path(tmp).with_suffix(".labels.onnx"))
        source_model = _unshare_initializers(source_model, Path(tmp).with_suffix(".src.onnx"))
        quantize_static(str(source_model), tmp, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=list(QUANTIZED_OPS), nodes_to_exclude=list(exclude),
                        calibrate_method=methods[method][0], extra_options=methods[method][1])
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
        Path(tmp).with_suffix(".src.onnx").unlink(missing_ok=True)
        Path(tmp).with_suffix(".labels.onnx").unlink(missing_ok=True)
    extra = {k: v for k, v in info.items() if k not in ModelInfo.__dataclass_fields__}
    if labels_only:
        extra["outputs"] = ["labels"]
    extra.update(
        onnx_sha256=sha256_file(out),
        quantization={
            "format": "QDQ", "weights": "int8 per-channel symmetric", "activations": "uint8 asymmetric",
            "ops": list(QUANTIZED_OPS), "float_stride": float_stride, "excluded_nodes": list(exclude),
            "calibration_method": method,
            "calibration": calibration_note or ("user frames" if frames is not None else
                            f"{calibration_count} generated scenes at {calibration_size[0]}x{calibration_size[1]}, "
                            f"seeds {CALIBRATION_SEED0}+"),
            "source_onnx_sha256": info.get("onnx_sha256") or sha256_file(model),
        },
    )
    ModelInfo.from_dict(info).write_json(sidecar_path(out), **extra)
    return out


def labels_only(model: str | Path, out: str | Path) -> Path:
    """Write ``model`` without its confidence output, and its sidecar; returns ``out``.

    ONNX Runtime runs every node of a graph whatever outputs are fetched, so the softmax
    behind the confidence costs time (7% of DRN-C-26's fp32 time, 13% of int8) even when the
    node publishes labels only. The labels are unchanged.
    """
    model, out = Path(model), Path(out)
    if not model.is_file():
        raise FileNotFoundError(f"model file not found: {model}")
    info = read_sidecar(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    _labels_only_graph(model, out)
    extra = {k: v for k, v in info.items() if k not in ModelInfo.__dataclass_fields__}
    extra.update(outputs=["labels"], onnx_sha256=sha256_file(out),
                 source_onnx_sha256=info.get("onnx_sha256") or sha256_file(model))
    ModelInfo.from_dict(info).write_json(sidecar_path(out), **extra)
    return out


def _labels_only_graph(model: Path, out: Path) -> Path:
    import onnx

    from drn_perception.inference.onnxruntime_backend import labels_only_model

    onnx.save(labels_only_model(model), str(out))
    return out


def _unshare_initializers(model: Path, out: Path) -> Path:
    """Give every Conv its own weight and bias tensors; returns the path to quantise.

    The exporter stores equal constants once (e.g. the all-zero biases of untrained layers),
    but a Conv's int32 bias scale depends on that Conv's input and weight scales: a shared
    bias leaves ONNX Runtime unable to fuse the group into an integer convolution.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(model))
    inits = {t.name: t for t in graph.graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.graph.node:
        for name in node.input:
            if name in inits:
                uses[name] = uses.get(name, 0) + 1
    changed = False
    for node in graph.graph.node:
        if node.op_type != "Conv":
            continue
        for i, name in enumerate(node.input):
            if i and name in inits and uses[name] > 1:
                copy = numpy_helper.from_array(numpy_helper.to_array(inits[name]), f"{name}__{node.name}")
                graph.graph.initializer.append(copy)
                node.input[i] = copy.name
                uses[name] -= 1
                changed = True
    if not changed:
        return model
    onnx.save(graph, str(out))
    return out


TARGETS = ("onnxruntime", "openvino", "tensorrt")


def build_parser():
    from drn_perception import cli

    p = cli.Parser(prog="drn-quantize", description=__doc__.splitlines()[0])
    p.add_argument("model", help="exported fp32 .onnx (with its .json sidecar)")
    p.add_argument("--out", required=True, help="output .onnx (ONNX Runtime QDQ graph, or a TensorRT graph with "
                   "--target tensorrt) or .xml (OpenVINO IR, with NNCF); sidecar written beside it")
    p.add_argument("--target", choices=TARGETS,
                   help="runtime the graph is for (default: openvino for an .xml --out, else onnxruntime); "
                        "tensorrt: a strongly typed fp16 graph or a symmetric int8 Q/DQ graph written with "
                        "NVIDIA ModelOpt (docs/tensorrt.md)")
    p.add_argument("--quantize", choices=["int8", "fp16"], default="int8",
                   help="target precision (default int8; fp16 with --target tensorrt only)")
    p.add_argument("--calibration-frames", type=int, default=16, help="generated scenes to calibrate on (default 16)")
    p.add_argument("--calibration-size", default="256x512", help="HxW of the calibration scenes (default 256x512)")
    p.add_argument("--calibration", metavar="SPEC",
                   help="calibration frames instead of generated scenes: image folder, DATASET:SPLIT, list .txt, "
                        "rosbag2, synthetic[:N] (at most --calibration-frames, spread evenly)")
    p.add_argument("--calibration-topic", help="image topic of a --calibration bag with several")
    p.add_argument("--preset", choices=["performance", "mixed"], default="performance",
                   help="OpenVINO (.xml) only: NNCF preset, symmetric (performance, default) or asymmetric "
                        "(mixed) activations")
    p.add_argument("--method", choices=CALIBRATION_METHODS + ("max",),
                   help="how activation ranges are set. ONNX Runtime: mean-minmax (default: per-frame min/max "
                        "averaged over the frames), minmax (extremes over all frames), entropy, percentile; "
                        "TensorRT: max (default) or entropy")
    p.add_argument("--float-stride", type=int, default=2,
                   help="keep layers at this output stride or finer in float (default 2; 0 quantises all)")
    p.add_argument("--float-precision", choices=["fp16", "fp32"], default="fp16",
                   help="TensorRT int8 only: precision of the layers left in float (default fp16, opset 19, for "
                        "TensorRT 10/11; fp32 writes opset 17, which TensorRT 8.6 / JetPack 6.0 also parses)")
    p.add_argument("--exclude", default="", help="comma-separated node names to keep in float as well")
    p.add_argument("--labels-only", action="store_true",
                   help="drop the confidence output (faster: ONNX Runtime computes every output)")
    p.add_argument("--quantize-classifier", action="store_true",
                   help="quantise the last Conv (the classifier) too; by default it stays in float")
    p.add_argument("--check-frames", type=int, default=8,
                   help="TensorRT graphs: generated scenes (seeds 0..N-1, at --calibration-size) on which the "
                        "labels are compared with the fp32 model on ONNX Runtime and printed (default 8; 0: skip)")
    return p


def _target(args) -> str:
    if args.target is not None:
        return args.target
    return "openvino" if Path(args.out).suffix == ".xml" else "onnxruntime"


def _misuse(args, target: str) -> str | None:
    """The first option that does not fit ``target`` (checked before any slow work)."""
    out_suffix = Path(args.out).suffix
    if Path(args.model).suffix != ".onnx" or out_suffix not in (".onnx", ".xml"):
        return (f"quantisation reads an .onnx and writes .onnx (ONNX Runtime, TensorRT) or .xml (OpenVINO) files "
                f"(got {args.model} -> {args.out})")
    if (target == "openvino") != (out_suffix == ".xml"):
        return f"--target {target} writes {'an .xml IR' if target == 'openvino' else 'an .onnx graph'}, got --out {args.out}"
    if args.quantize == "fp16" and target != "tensorrt":
        return "--quantize fp16 is for --target tensorrt (ONNX Runtime and OpenVINO run the fp32 graph, or bf16)"
    if target == "openvino" and (args.labels_only or args.method is not None):
        return "--labels-only and --method are for the ONNX Runtime graph (.onnx); NNCF sets OpenVINO's ranges itself"
    if target == "tensorrt":
        from drn_perception.deploy.tensorrt_graphs import INT8_METHODS

        if args.labels_only:
            return "--labels-only is for ONNX Runtime (TensorRT computes only the outputs it is asked for)"
        if args.method is not None and args.method not in INT8_METHODS:
            return f"--method {args.method} is an ONNX Runtime calibrator; TensorRT graphs take {' or '.join(INT8_METHODS)}"
        if args.quantize == "fp16" and (args.method or args.exclude or args.quantize_classifier):
            return "--method, --exclude and --quantize-classifier are for --quantize int8"
    elif args.method == "max":
        return "--method max is ModelOpt's calibrator (--target tensorrt); ONNX Runtime takes mean-minmax, minmax, ..."
    if args.check_frames < 0:
        return f"--check-frames must be >= 0, got {args.check_frames}"
    return None


def _tensorrt_graph(args, size, frames, note) -> Path:
    from drn_perception.deploy import tensorrt_graphs as tg

    frames = frames if frames is not None else list(calibration_frames(args.calibration_frames, size))
    note = note or f"{len(frames)} generated scenes at {size[0]}x{size[1]}, seeds {CALIBRATION_SEED0}+"
    if args.quantize == "fp16":
        out = tg.write_fp16(args.model, args.out, frames[:4], calibration_note=note)
    else:
        exclude = tuple(n for n in args.exclude.split(",") if n)
        out = tg.write_int8_qdq(args.model, args.out, frames, method=args.method or "max",
                                float_stride=args.float_stride, quantize_classifier=args.quantize_classifier,
                                exclude=exclude, high_precision=args.float_precision, calibration_note=note)
    if args.check_frames:
        from drn_perception.data.synthetic import generate_scene

        scenes = (generate_scene(seed, *size)[0][None] for seed in range(args.check_frames))
        agree, count = tg.label_agreement(args.model, out, scenes)
        print(f"labels equal to the fp32 model (ONNX Runtime CPU, {count} generated scenes at {size[0]}x{size[1]}): "
              f"{100 * agree:.3f}%")
    tg.parser_check(out)
    return out


def main(argv=None) -> int:
    from drn_perception import cli

    p = build_parser()
    args = p.parse_args(argv)
    # Everything the user can get wrong is checked before calibration starts.
    try:
        size = parse_size(args.calibration_size)
    except ValueError as exc:
        p.error(f"argument --calibration-size: {exc}")
    if args.calibration_frames < 1:
        p.error(f"argument --calibration-frames: must be >= 1, got {args.calibration_frames}")
    if args.float_stride < 0:
        p.error(f"argument --float-stride: must be >= 0, got {args.float_stride}")
    if not Path(args.model).is_file():
        return cli.fail("drn-quantize", f"model file not found: {args.model}")
    target = _target(args)
    problem = _misuse(args, target)
    if problem:
        return cli.fail("drn-quantize", problem)
    exclude = tuple(n for n in args.exclude.split(",") if n)
    try:
        frames, note = None, None
        if args.calibration is not None:
            frames, note = user_calibration_frames(args.calibration, size, args.calibration_frames,
                                                   args.calibration_topic)
        if target == "tensorrt":
            out = _tensorrt_graph(args, size, frames, note)
        elif target == "openvino":
            from drn_perception.deploy.openvino_quantize import quantize_openvino_int8

            out = quantize_openvino_int8(args.model, args.out, args.calibration_frames, size, frames,
                                         float_stride=args.float_stride, quantize_classifier=args.quantize_classifier,
                                         preset=args.preset, exclude=exclude, calibration_note=note)
        else:
            out = quantize_int8(args.model, args.out, args.calibration_frames, size, exclude,
                                args.method or "mean-minmax", frames=frames, float_stride=args.float_stride,
                                labels_only=args.labels_only, quantize_classifier=args.quantize_classifier,
                                calibration_note=note)
    except ImportError as exc:  # openvino / nncf / modelopt not installed: the message names the package
        return cli.fail("drn-quantize", exc)
    except (ValueError, FileNotFoundError) as exc:  # a graph that is not an exported DRN model, bad frames
        return cli.fail("drn-quantize", exc)
    except OSError as exc:
        return cli.fail("drn-quantize", exc, status=1)
    print(f"wrote {out} and {sidecar_path(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
