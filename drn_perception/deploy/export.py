"""drn-export: checkpoint -> one ONNX graph (uint8 NHWC in, int32 labels out) + JSON sidecar.

The graph holds the whole per-frame computation (see models/pipeline.py), opset 17, dynamic
N, H, W. The export is checked before the file is kept: TensorRT's ONNX parser must take it on
every supported TensorRT version (deploy/trt_check.py, no TensorRT needed), and ONNX Runtime's
labels are compared with PyTorch's on generated frames.
"""
from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from drn_perception.model_info import ModelInfo, sha256_file, sidecar_path

OPSET = 17
INPUT = "images"
OUTPUTS = ("labels", "confidence")
METADATA_KEY = "drn_perception"


class ExportError(RuntimeError):
    pass


def load_model(checkpoint: str | Path, arch: str | None = None):
    """(DRNSeg in eval mode, ModelInfo) from one of our or the authors' checkpoints."""
    from drn_perception.models.checkpoints import load_checkpoint

    model, info = load_checkpoint(checkpoint, arch=arch)
    info = ModelInfo.from_checkpoint_info(info)
    info.checkpoint_sha256 = sha256_file(checkpoint)
    return model, info


def export_onnx(checkpoint: str | Path, out: str | Path, confidence: bool = True, arch: str | None = None,
                check: bool = True, extra: dict | None = None) -> Path:
    """Export ``checkpoint`` to ``out`` (.onnx) and its sidecar; returns the ONNX path.

    extra: extra fields for the sidecar (e.g. the held-out mIoU a training run measured).
    """
    import onnx
    import torch

    from drn_perception.deploy.trt_check import check_model
    from drn_perception.models.pipeline import SegmentationPipeline

    out = Path(out)
    model, info = load_model(checkpoint, arch)
    pipeline = SegmentationPipeline(model, info.mean, info.std, confidence=confidence).eval()
    outputs = list(OUTPUTS if confidence else OUTPUTS[:1])
    dynamic = {name: {0: "N", 1: "H", 2: "W"} for name in [INPUT, *outputs]}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")  # same folder, so the rename is atomic
    try:
        dummy = torch.zeros(1, 64, 64, 3, dtype=torch.uint8)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(pipeline, (dummy,), tmp, dynamo=False, opset_version=OPSET,
                              input_names=[INPUT], output_names=outputs, dynamic_axes=dynamic,
                              do_constant_folding=True)
        graph = onnx.load(tmp)
        onnx.checker.check_model(graph)
        trt_problem = check_model(graph, source=out.name).problem()
        if trt_problem:
            raise ExportError(trt_problem)
        meta = graph.metadata_props.add()
        meta.key, meta.value = METADATA_KEY, json.dumps(info.to_dict())
        graph.producer_name = "drn_perception"
        onnx.save(graph, tmp)
        if check:
            agreement = compare_with_torch(pipeline, tmp, sizes=((64, 96), (120, 160), (61, 97)))
            if agreement < 0.9999:
                raise ExportError(f"ONNX Runtime labels agree with PyTorch on only {agreement:.4%} of pixels")
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    info.write_json(sidecar_path(out), onnx_sha256=sha256_file(out), opset=OPSET, input=INPUT,
                    outputs=outputs, input_layout="NHWC uint8 RGB", output_layout="NHW int32",
                    accepted_sizes="any N, H, W; labels and confidence at input size",
                    exported_with={"torch": torch.__version__, "onnx": onnx.__version__}, **(extra or {}))
    return out


def compare_with_torch(pipeline, onnx_path, sizes, seeds=(0, 1)) -> float:
    """Fraction of pixels whose ONNX Runtime label equals PyTorch's, over generated frames."""
    import onnxruntime as ort
    import torch

    from drn_perception.data.synthetic import generate_scene

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    same = total = 0
    for h, w in sizes:
        batch = np.stack([generate_scene(seed, h, w)[0] for seed in seeds])
        ref = pipeline(torch.from_numpy(batch))
        ref = (ref[0] if isinstance(ref, tuple) else ref).numpy()
        got = sess.run(["labels"], {INPUT: batch})[0]
        same += int((ref == got).sum())
        total += ref.size
    return same / total


def build_parser():
    from drn_perception import cli

    p = cli.Parser(prog="drn-export", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path, help="our .pt checkpoint, or the authors' segmentation checkpoint")
    p.add_argument("--out", type=Path, required=True, help="output .onnx path (model.json is written beside it)")
    p.add_argument("--arch", help="architecture of an authors' checkpoint (default: recognised from its tensors)")
    p.add_argument("--no-confidence", action="store_true", help="export labels only")
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                   help="extra sidecar field (VALUE parsed as JSON when it is JSON), e.g. held_out_miou=0.81")
    return p


def main(argv=None) -> int:
    from drn_perception import cli
    from drn_perception.models.checkpoints import read_checkpoint

    p = build_parser()
    args = p.parse_args(argv)
    extra = {}
    for item in args.meta:
        key, sep, value = item.partition("=")
        if not sep or not key:
            p.error(f"--meta takes KEY=VALUE, got {item!r}")
        try:
            extra[key] = json.loads(value)
        except json.JSONDecodeError:
            extra[key] = value
    if args.out.suffix != ".onnx":
        p.error("--out must end in .onnx")
    if args.arch is not None:
        from drn_perception.models.drn import ARCHS

        if args.arch not in ARCHS:
            p.error(f"argument --arch: invalid choice: {args.arch!r} (choose from {', '.join(ARCHS)})")
    try:
        run_args = read_checkpoint(args.checkpoint).get("args") or {}
    except ValueError as exc:  # CheckpointError: missing or unreadable file
        return cli.fail("drn-export", exc)
    if run_args.get("dataset") in (None, "synthetic") and not run_args.get("data_dir") \
            and run_args.get("synthetic_size"):
        # drn-eval scores an ONNX model at the size it was trained at unless told otherwise.
        extra.setdefault("trained_synthetic_size", list(run_args["synthetic_size"]))
    try:
        out = export_onnx(args.checkpoint, args.out, confidence=not args.no_confidence, arch=args.arch,
                          check=not args.no_check, extra=extra)
    except ValueError as exc:  # a checkpoint that is not a DRN segmentation model
        return cli.fail("drn-export", exc)
    except (ExportError, OSError) as exc:
        return cli.fail("drn-export", exc, status=1)
    print(f"wrote {out} and {sidecar_path(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
