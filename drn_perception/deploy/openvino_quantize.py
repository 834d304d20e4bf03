"""Exported fp32 .onnx -> OpenVINO int8 IR (.xml + .bin) with NNCF post-training quantisation.

Called by ``drn-quantize MODEL.onnx --out MODEL.xml`` (the output suffix picks OpenVINO) and by
drn-bench's ``openvino-int8`` path. The same choices as the ONNX Runtime int8 graph
(deploy/quantize.py), for the same reasons:

* the layers at 1/2 of the input resolution or finer (``float_stride=2``: the stem and levels
  1-2) stay in float, found by shape inference on a probe size, whatever the node names;
* the classifier (the last Convolution, whose outputs are the logits) stays in float unless
  ``quantize_classifier``;
* the bilinear upsampling (a transposed grouped convolution), ArgMax and Softmax stay in float,
  so the IR keeps the exported interface: uint8 NHWC in, int32 labels and float confidence out.

Weights are int8 per output channel; activations 8-bit with ranges from the calibration frames
(NNCF's ``performance`` preset: symmetric, which the CPU plugin's VNNI/AMX kernels take
directly). The float parts run at the precision the backend is opened with (bf16 or f32).

The metadata travels twice: a sidecar model.json like every exported model (with a
``quantization`` record) and the IR's own rt_info, so the .xml/.bin pair loads on its own.
NNCF's usage telemetry is switched off (nothing leaves the machine at run time).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from drn_perception.model_info import ModelInfo, sha256_file, sidecar_path

PRESETS = ("performance", "mixed")


def fine_convolutions(model, float_stride: int, probe: tuple[int, int] = (64, 128)) -> list[str]:
    """Friendly names of the Convolution ops whose output is at ``float_stride`` or finer (an ov.Model)."""
    if not float_stride:
        return []
    probed = model.clone()
    probed.reshape({probed.input(0): [1, *probe, 3]})
    names = []
    for op in probed.get_ordered_ops():
        if op.get_type_name() == "Convolution":
            shape = op.get_output_partial_shape(0)
            if shape.is_static and shape[2].get_length() * float_stride >= probe[0]:
                names.append(op.get_friendly_name())
    return names


def classifier_convolution(model) -> list[str]:
    """The last Convolution op (the 1x1 classifier: its outputs are the logits)."""
    convs = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    return convs[-1:]


def quantize_openvino_int8(model: str | Path, out: str | Path, calibration_count: int = 16,
                           calibration_size: tuple[int, int] = (256, 512), frames: Iterable[np.ndarray] | None = None,
                           float_stride: int = 2, quantize_classifier: bool = False, preset: str = "performance",
                           exclude: tuple[str, ...] = (), calibration_note: str | None = None) -> Path:
    """Write the OpenVINO int8 IR of the exported ``model`` (.onnx) to ``out`` (.xml, with .bin and sidecar).

    ``frames``: uint8 (H, W, 3) or (1, H, W, 3) calibration frames replacing the generated
    scenes (deploy/quantize.py calibration_frames). Raises ValueError/FileNotFoundError for bad
    arguments (before any slow work) and ImportError naming the package when openvino or nncf
    is missing.
    """
    model, out = Path(model), Path(out)
    if not model.is_file():
        raise FileNotFoundError(f"model file not found: {model}")
    if model.suffix != ".onnx" or out.suffix != ".xml":
        raise ValueError(f"OpenVINO quantisation reads an .onnx and writes an IR .xml (got {model.name} -> {out.name})")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: choose {', '.join(PRESETS)}")
    if calibration_count < 1:
        raise ValueError("calibration needs at least one frame")
    if float_stride < 0:
        raise ValueError("float_stride must be 0 or more")
    try:
        import openvino as ov
    except ImportError:
        raise ImportError("OpenVINO int8 needs the openvino package (pip install openvino nncf)") from None
    os.environ.setdefault("NNCF_CI", "1")  # its only effect: NNCF sends no usage telemetry
    try:
        import nncf
    except ImportError:
        raise ImportError("OpenVINO int8 needs the nncf package (pip install nncf)") from None
    import logging

    from drn_perception.deploy.calibration import calibration_frames
    from drn_perception.deploy.graph_files import read_sidecar
    from drn_perception.inference.openvino_backend import error_reason, read_model

    nncf.set_log_level(logging.WARNING)  # not a line per float layer

    info = read_sidecar(model)
    try:
        ov_model = read_model(ov.Core(), model)
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses of its own
        raise ValueError(f"OpenVINO cannot read {model}: {error_reason(exc)}") from None
    head = [] if quantize_classifier else classifier_convolution(ov_model)
    ignored = list(dict.fromkeys([*fine_convolutions(ov_model, float_stride), *head, *exclude]))
    source = frames if frames is not None else calibration_frames(calibration_count, calibration_size)
    batch = [np.ascontiguousarray(f, dtype=np.uint8) for f in source]
    batch = [f if f.ndim == 4 else f[None] for f in batch]
    if not batch:
        raise ValueError("no calibration frames")
    t0 = time.perf_counter()
    quantized = nncf.quantize(
        ov_model, nncf.Dataset(batch), subset_size=len(batch),
        preset=nncf.QuantizationPreset.PERFORMANCE if preset == "performance" else nncf.QuantizationPreset.MIXED,
        ignored_scope=nncf.IgnoredScope(names=ignored, types=["GroupConvolutionBackpropData"], validate=False),
    )
    seconds = time.perf_counter() - t0
    extra = {k: v for k, v in info.items() if k not in ModelInfo.__dataclass_fields__}
    record = {
        "format": "OpenVINO IR, NNCF FakeQuantize", "tool": f"nncf {nncf.__version__}, openvino {ov.get_version()}",
        "weights": "int8 per-channel symmetric", "activations": f"8-bit, preset {preset}",
        "float_stride": float_stride, "float_convolutions": ignored, "classifier_in_float": not quantize_classifier,
        "calibration": calibration_note or (f"{len(batch)} user frames" if frames is not None else
                                            f"{calibration_count} generated scenes at {calibration_size[0]}x"
                                            f"{calibration_size[1]}, seeds 1000000+"),
        "quantise_seconds": round(seconds, 1),
        "source_onnx_sha256": info.get("onnx_sha256") or sha256_file(model),
    }
    meta = {**ModelInfo.from_dict(info).to_dict(), **extra, "quantization": record}
    quantized.set_rt_info(json.dumps(meta), ["drn_perception"])
    out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    ModelInfo.from_dict(info).write_json(sidecar_path(out), **{**extra, "quantization": record})
    return out
