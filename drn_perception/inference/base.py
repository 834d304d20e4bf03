"""The one small interface every backend implements, and the factory that picks a backend.

``Segmenter.infer(images)`` takes a uint8 (N, H, W, 3) RGB batch of any size and returns
int32 labels (N, H, W) at that size, plus an optional float32 confidence (max softmax
probability). Frames run at their own size, as in the authors' code (no padding: padding
would move labels far from the border, the receptive field spans the frame); graphs made by
drn-export crop to the input size themselves. A graph exported before that crop (e.g. an
engine built from one) returns the authors' whole up-sampled map, 8*ceil(H/8) x 8*ceil(W/8)
aligned top-left, which ``infer`` crops to [:H, :W]; any other output shape is an error.
"""
from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drn_perception.model_info import ModelInfo

OUTPUT_STRIDE = 8  # of every DRN: an un-cropped graph returns 8*ceil(H/8) x 8*ceil(W/8)

# backend name -> (module, class, file suffixes it loads, pip package to install)
BACKENDS = {
    "tensorrt": ("drn_perception.inference.tensorrt_backend", "TensorRTSegmenter", (".engine", ".plan"), "tensorrt (ships with JetPack; on x86 `pip install tensorrt`) and cuda-python"),
    "onnxruntime": ("drn_perception.inference.onnxruntime_backend", "OnnxRuntimeSegmenter", (".onnx",), "onnxruntime (or onnxruntime-gpu)"),
    "torch": ("drn_perception.inference.torch_backend", "TorchSegmenter", (".pt", ".pth"), "torch"),
    "openvino": ("drn_perception.inference.openvino_backend", "OpenVinoSegmenter", (".onnx", ".xml"), "openvino"),
}


class BackendUnavailable(RuntimeError):
    """The chosen backend needs a library that is not installed, or cannot open the model."""


@dataclass
class SegmentationResult:
    labels: np.ndarray  # int32 (N, H, W)
    confidence: np.ndarray | None = None  # float32 (N, H, W) in [0, 1]


class Segmenter(abc.ABC):
    """A loaded model on one backend."""

    backend: str = ""
    auto_note: str = ""  # why backend auto is not on its first choice (create_segmenter), else empty
    precision: str = "fp32"  # what the backend computes in (each backend sets its own; in describe())
    # ((min_h, min_w), (max_h, max_w)) of the frames it runs, or None for any size (the exported
    # graph runs every size; a TensorRT engine only its optimisation profile's)
    size_range: tuple[tuple[int, int], tuple[int, int]] | None = None

    def __init__(self, path: str | Path, info: ModelInfo, device: str):
        self.path = Path(path)
        self.info = info
        self.device = device

    @abc.abstractmethod
    def _run(self, images: np.ndarray, want_confidence: bool) -> SegmentationResult:
        """Run on a contiguous uint8 (N, H, W, 3) batch of any H and W."""

    def infer(self, images: np.ndarray, want_confidence: bool = False) -> SegmentationResult:
        images = check_batch(images)
        res = self._run(np.ascontiguousarray(images), want_confidence)
        return SegmentationResult(
            crop_to_input(res.labels, images.shape, "labels", self.path.name),
            None if res.confidence is None else crop_to_input(res.confidence, images.shape, "confidence", self.path.name),
        )

    def describe(self) -> str:
        return f"{self.backend}:{self.device} {self.precision} {self.info.arch} ({self.path.name})"

    def labels_note(self) -> str:
        """Whether this precision's labels are fp32's (the reference's), and what gives those if not."""
        precision = str(self.precision or "fp32")
        if precision in ("fp32", "f32"):
            return "labels computed in fp32 (the reference's, up to float ties)"
        # bf16 / fp16 / int8 move a few labels (docs/node.md, precision)
        exact = {"openvino": "precision:=f32", "tensorrt": "an fp32 engine"}.get(self.backend, "an fp32 model")
        return f"labels computed in {precision}, not bit-exact to fp32 ({exact} gives fp32 labels)"


def fit_size(h: int, w: int, size_range) -> tuple[int, int]:
    """(h, w) brought into ``size_range`` (see Segmenter.size_range): scaled down, aspect kept, to
    fit the maximum, then each side clamped to [min, max]; unchanged when it fits already."""
    if size_range is None:
        return h, w
    (lo_h, lo_w), (hi_h, hi_w) = size_range
    scale = min(1.0, hi_h / h, hi_w / w)
    h, w = max(1, round(h * scale)), max(1, round(w * scale))
    return min(max(h, lo_h), hi_h), min(max(w, lo_w), hi_w)


def check_batch(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 images shaped (N, H, W, 3), got {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {images.dtype}")
    if min(images.shape[:3]) == 0:
        raise ValueError(f"empty image batch {images.shape}")
    return images


def crop_to_input(out: np.ndarray, shape: tuple[int, ...], name: str, model: str) -> np.ndarray:
    """``out`` (N, H', W') cut to the batch's (N, H, W).

    H' = H (drn-export's graphs), or H' = 8*ceil(H/8) from a graph exported before the crop was
    in the graph: the authors' up-sampled map, top-left aligned, so [:H, :W] is their output.
    Any other shape would misalign the mask and is refused.
    """
    n, h, w = shape[:3]
    exact, uncropped = output_shapes(shape)
    if out.shape == exact:
        return out
    if out.shape == uncropped:
        return np.ascontiguousarray(out[:, :h, :w])
    raise ValueError(f"{model}: output {name} has shape {out.shape} for input {tuple(shape)}; expected "
                     f"{exact} (re-export the model with drn-export)")


def output_shapes(shape: tuple[int, ...]) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """The (N, H, W) an output may have for an (N, H, W, 3) input: cropped, or un-cropped (old graphs)."""
    n, h, w = (int(d) for d in shape[:3])
    return (n, h, w), (n, -(-h // OUTPUT_STRIDE) * OUTPUT_STRIDE, -(-w // OUTPUT_STRIDE) * OUTPUT_STRIDE)


def backend_for_path(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    for name, (_, _, suffixes, _) in BACKENDS.items():
        if suffix in suffixes:
            return name
    known = ", ".join(s for *_, sfx, _ in BACKENDS.values() for s in sfx)
    raise ValueError(f"cannot tell the backend of {path}: expected one of {known}")


def auto_backend(path: str | Path, device: str = "auto") -> str:
    """What ``backend: auto`` opens ``path`` with on ``device``: the first backend of the rule's
    order that loads the file's suffix and is importable here (else the first that loads the
    suffix, whose error names the package).

    The measured rule for an .onnx (benchmarks/README.md, "backend: auto"): on the CPU,
    OpenVINO where it is installed, ONNX Runtime otherwise. OpenVINO's precision auto runs bf16
    on cores with AMX or AVX512-BF16 (a Xeon with AMX: 4-7x ONNX Runtime fp32 on the shipped
    model and full-width DRN-C-26, 99.87% of a trained model's labels = fp32, the shipped
    model's mIoU within 0.1; Zen 4: ~2x) and f32 elsewhere (never slower than ONNX Runtime fp32
    in any of our measurements: a tie at full width, 1.2-1.7x on the shipped model). For a CUDA
    device (``cuda[:i]``, or ``auto`` where onnxruntime-gpu has CUDA) it is ONNX Runtime, which
    runs there; OpenVINO has no CUDA. The choice and its precision are in describe(), the
    node's start-up line, and in /diagnostics.
    """
    first = backend_for_path(path)
    suffix = Path(path).suffix.lower()
    order = list(BACKENDS)
    if suffix == ".onnx" and not _wants_cuda(device):
        order.remove("openvino")
        order.insert(order.index("onnxruntime"), "openvino")
    for name in order:
        module, _, suffixes, _ = BACKENDS[name]
        if suffix in suffixes:
            try:
                importlib.import_module(module)
            except ImportError:
                continue
            return name
    return first


def _wants_cuda(device: str) -> bool:
    """``device`` names a CUDA device, or is ``auto`` on a machine where ONNX Runtime has CUDA."""
    if device.lower().startswith("cuda"):
        return True
    if device != "auto":
        return False
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def create_segmenter(path: str | Path, backend: str = "auto", device: str = "auto", **options) -> Segmenter:
    """Open ``path`` with ``backend`` ("auto" picks by file type).

    device: "auto" (CUDA where the backend and machine have it, else CPU), "cpu" or "cuda[:i]".
    options: passed to the backend's constructor (e.g. tensorrt's build_engine/onnx, which may
    build a missing engine file from the ONNX model).
    Raises FileNotFoundError, ValueError (unknown backend / bad file) or BackendUnavailable
    (library missing), each with a message that names the fix. Where auto chose openvino for an
    .onnx that OpenVINO cannot open, ONNX Runtime opens it, and the segmenter's ``auto_note``
    says why (the node logs it as a warning).
    """
    path = Path(path)
    may_build = options.get("build_engine", "never") != "never"
    if not path.is_file() and not may_build:
        raise FileNotFoundError(f"model file not found: {path}")
    if backend == "auto":
        backend = auto_backend(path, device)
        if backend == "openvino" and path.suffix.lower() == ".onnx" and device in ("auto", "cpu") and not options:
            try:
                return _open(path, backend, device)
            except Exception as exc:  # noqa: BLE001 - any OpenVINO failure: ONNX Runtime may still open it
                try:
                    seg = _open(path, "onnxruntime", "cpu")
                except BackendUnavailable:
                    raise exc from None
                # otherwise the file is bad for both: ONNX Runtime's error (ONNX's own checks) propagates
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                seg.auto_note = (f"backend auto: openvino could not open {path.name} ({type(exc).__name__}: "
                                 f"{first_line}); serving on onnxruntime instead")
                return seg
    return _open(path, backend, device, **options)


def _open(path: Path, backend: str, device: str, **options) -> Segmenter:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose auto, {', '.join(BACKENDS)}")
    module, cls_name, suffixes, pip_name = BACKENDS[backend]
    if path.suffix.lower() not in suffixes:
        raise ValueError(
            f"backend {backend} loads {'/'.join(suffixes)} files, not {path.name}"
            + ("; export it with drn-export first" if backend == "onnxruntime" and path.suffix == ".pt" else "")
        )
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(
            f"backend {backend} needs {pip_name}, which is not importable here ({exc})"
        ) from None
    return getattr(mod, cls_name)(path, device=device, **options)
