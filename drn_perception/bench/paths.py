"""drn-bench's paths: the ways of running a model it measures (a backend plus precision and
layout choices), the model files each one needs (made on first use) and how a path is opened."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

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



# ----------------------------------------------------------------------------- models


def parse_size(text: str) -> tuple[int, int]:
    """"HxW" -> (H, W) as every tool reads it (deploy/graph_files.py), a BenchError when it is not one."""
    from drn_perception.deploy.graph_files import parse_size as parse

    try:
        return parse(text)
    except ValueError as exc:
        raise BenchError(str(exc)) from None


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

