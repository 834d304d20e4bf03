"""OpenVINO backend: runs the exported .onnx graph (read directly) or an OpenVINO IR (.xml + .bin).

Devices: ``cpu`` (the default; ``auto`` means CPU) and any device name OpenVINO itself lists
(``GPU``, ``GPU.1``, ``NPU``), passed through as given. Only the CPU plugin is installed and
tested here; the others are passed through by construction.

Precision (``precision``): ``f32``, ``bf16``, ``f16`` or ``auto``. OpenVINO's
INFERENCE_PRECISION_HINT decides the float type the plugin computes in:

* ``f32`` gives the same labels as ONNX Runtime's fp32 run of the same graph (on the shipped
  model and random-weight DRN-C-26 / DRN-D-22: 100% equal, benchmarks/README.md). Use it
  wherever labels must match another backend.
* ``bf16`` (cores with AMX or AVX512-BF16 only) is faster and moves a few labels (about 0.1%
  on the trained shipped model, 1-2% on random weights whose argmax margins are tiny).
* ``auto``: on CPU, bf16 where OpenVINO reports the cores can run it (AMX or AVX512-BF16),
  else f32; on other devices the device's own default. The choice is in ``precision`` and
  ``describe()``, so it is never silent.

An int8 IR written by ``drn-quantize --out model.xml`` (NNCF) runs its quantised layers in
int8 and the rest at the chosen float precision; ``precision`` then reads ``int8+bf16`` etc.

On CPU the labels come from the up-sampling and ArgMax rewritten in phase form
(openvino_graph.py: the same sums at the network's output resolution, in f32 whatever the
precision; DRN-C-26 int8 at 512x1024 on AMX: 35 -> 17 ms for that part), where the compiled
model confirms the head runs in f32; ``labels_head`` says which head the latest compiled model
has ("phase" or "graph").

OpenVINO computes every output of a compiled graph, so frames whose confidence nobody wants
run on a second compiled model without the confidence output (as the onnxruntime backend
does); the one with confidence is compiled on the first frame that asks for it.

Shapes: the graph's batch, height and width stay dynamic, and on CPU in f32 a frame size that
comes a second time gets a compiled model of its own (static shapes: DRN-C-26 int8 at 512x1024
on a Xeon with AMX 99 -> 85 ms; compiling takes ~0.25 s, once per camera size; not in bf16 or
int8, where a static model rounds differently from the dynamic one, so a frame's mask would
depend on the frames before it), so a camera's
stream runs static from its second frame while frames of ever new sizes stay on the dynamic
model, as do sizes whose compilation fails. A compiled model keeps its activation memory, so the
per-size models hold at most MAX_STATIC_PIXELS (4 Mpx) in all, the least recently used dropped
first. NPUs compile static shapes only, so there (or with ``static_shapes=True``) each frame
size is compiled on its first frame. Either way the latest MAX_STATIC_SHAPES are kept.

Memory: the dynamic-shape model keeps the activation memory of the largest batch it ran. Once
RELEASE_AFTER_RUNS runs in a row had at most half those pixels it gives that memory back
(``CompiledModel.release_memory``), so a burst of large frames is not held for good while a
stream that keeps sending them keeps its memory (``memory_releases`` counts the releases). The
CPU plugin's per-shape kernel cache is capped at RUNTIME_CACHE_CAPACITY entries, so frames of
ever new sizes cannot grow it without bound either.
"""
from __future__ import annotations

import json
import re
import threading
from collections import deque
from pathlib import Path

import numpy as np
import openvino as ov

from drn_perception.inference.base import BackendUnavailable, SegmentationResult, Segmenter
from drn_perception.inference.class_check import check_num_classes
from drn_perception.inference.openvino_graph import head_precision, rewrite_labels_head
from drn_perception.model_info import ModelInfo, sidecar_path

METADATA_KEY = "drn_perception"  # the key deploy/export.py writes into the ONNX metadata
PRECISIONS = ("auto", "f32", "bf16", "f16")
# OPTIMIZATION_CAPABILITIES entry that says a device can compute in each precision.
_CAPABILITY = {"f32": "FP32", "bf16": "BF16", "f16": "FP16"}
MAX_STATIC_SHAPES = 4  # compiled models kept per output set when compiling per frame size
# CPU: the per-size models hold at most this many pixels (N*H*W) in all (each keeps its activation
# memory: ~350 MiB for full-width DRN-C-26 int8 at 2 Mpx); larger batches stay on the dynamic model.
MAX_STATIC_PIXELS = 4 * 1024 * 1024
# A dynamic-shape model keeps the activation memory of the largest batch it has run (shipped
# model: +370 MiB after one 2 Mpx frame). Once this many runs in a row have needed at most half
# of that, it gives the memory back (CompiledModel.release_memory, ~25 ms; the next run
# allocates what it needs again), so one burst of large frames is not held for good.
RELEASE_AFTER_RUNS = 16
# The CPU plugin caches the kernels it makes for each input shape, 5000 entries by default: 300
# frames of new sizes (fuzzed input) took the shipped model from 131 to 763 MiB, kept. 500 holds
# a camera's sizes (8 sizes in turn ran as fast as with 5000) and kept 304 MiB there.
RUNTIME_CACHE_CAPACITY = 500


def _core() -> ov.Core:
    return ov.Core()


def read_model(core: ov.Core, path: str | Path) -> ov.Model:
    """The model in an .onnx (read by OpenVINO's ONNX frontend alone) or an IR .xml file.

    Core.read_model tries every frontend in turn, so a file that is no ONNX also reaches the
    TensorFlow one, which prints its own parse errors to stderr; ours is the one error raised.
    """
    if Path(path).suffix.lower() == ".onnx":
        frontend = ov.frontend.FrontEndManager().load_by_framework("onnx")
        return frontend.convert(frontend.load(str(path)))
    return core.read_model(str(path))


def resolve_device(device: str, available: list[str]) -> str:
    """Our device string -> an OpenVINO device name; ValueError/BackendUnavailable with the fix."""
    if device in ("auto", "cpu", "CPU"):
        return "CPU"
    if device.lower().startswith("cuda"):
        raise ValueError(f"device {device!r}: OpenVINO has no CUDA devices; use the onnxruntime, torch or tensorrt "
                         "backend for NVIDIA GPUs, or device CPU/GPU/NPU (Intel) with openvino")
    name = device.upper()
    if name.partition(".")[0] not in ("GPU", "NPU", "CPU"):
        raise ValueError(f"unknown device {device!r} for openvino: use auto, cpu, GPU[.i] or NPU")
    if name not in available and not (name == "GPU" and any(d.startswith("GPU") for d in available)):
        raise BackendUnavailable(f"OpenVINO has no device {name} here (it lists {', '.join(available) or 'none'}); "
                                 "Intel GPUs need the GPU driver (intel-opencl-icd), NPUs the NPU driver")
    return name


def resolve_precision(precision: str, device: str, capabilities: list[str]) -> str | None:
    """The INFERENCE_PRECISION_HINT for ``precision`` on ``device`` (None: the device's default)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} for openvino: choose {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device != "CPU":
            return None
        return "bf16" if "BF16" in capabilities else "f32"
    if _CAPABILITY[precision] not in capabilities:
        raise ValueError(f"precision {precision} is not available on OpenVINO {device} here "
                         f"(it reports {', '.join(capabilities)}); bf16 needs cores with AMX or AVX512-BF16")
    return precision


class OpenVinoSegmenter(Segmenter):
    backend = "openvino"

    def __init__(self, path: str | Path, device: str = "auto", precision: str = "auto", threads: int = 0,
                 static_shapes: bool | None = None):
        path = Path(path)
        if path.suffix.lower() not in (".onnx", ".xml"):
            raise ValueError(f"openvino loads .onnx or OpenVINO IR .xml files, not {path.name}")
        if precision not in PRECISIONS:  # before any slow work
            raise ValueError(f"unknown precision {precision!r} for openvino: choose {', '.join(PRECISIONS)}")
        core = _core()
        ov_device = resolve_device(device, core.available_devices)
        capabilities = list(core.get_property(ov_device, "OPTIMIZATION_CAPABILITIES"))
        hint = resolve_precision(precision, ov_device, capabilities)
        try:
            model = read_model(core, path)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses of its own
            raise ValueError(f"OpenVINO cannot read {path}: {error_reason(exc)}") from None
        super().__init__(path, _read_info(path, model), ov_device)
        check_num_classes(path, self.info.num_classes, _num_classes(model), "the OpenVINO model")
        names = [o.get_any_name() for o in model.outputs]
        if "labels" not in names:
            raise ValueError(f"{path} has no 'labels' output (outputs: {names}); export it with drn-export")
        self.config: dict = {"PERFORMANCE_HINT": "LATENCY"}
        if hint is not None:
            self.config["INFERENCE_PRECISION_HINT"] = hint
        if ov_device == "CPU":
            self.config["CPU_RUNTIME_CACHE_CAPACITY"] = RUNTIME_CACHE_CAPACITY
            if threads:
                self.config["INFERENCE_NUM_THREADS"] = int(threads)
        self._core, self._model, self.outputs = core, model, names
        self._lock = threading.Lock()
        # NPUs compile static shapes only: there each frame size gets its own compiled model. On
        # CPU (static_shapes None, f32) a frame size gets its own once it comes a second time.
        self.static_shapes = ov_device.startswith("NPU") if static_shapes is None else bool(static_shapes)
        self.per_size = False  # decided below, once the precision is known
        self._seen: dict[tuple, int] = {}  # frame shapes seen without a compiled model of their own
        self.labels_head = "graph"  # which labels head the latest compiled model has
        self._compiled: dict[tuple, tuple] = {}  # (labels only, shape or None) -> (compiled model, request)
        self._sized_for = 0  # batch pixels the dynamic models' memory has grown to since its last release
        self._recent: deque[int] = deque(maxlen=RELEASE_AFTER_RUNS)  # batch pixels of the latest runs
        self.memory_releases = 0
        self.compiled = None if self.static_shapes else self._request(True, None)[0]
        if ov_device == "CPU" and self.compiled is not None:  # what the plugin settled on (an ov.Type)
            compute = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        else:
            compute = hint or f"{ov_device.lower()} default"
        self.precision = f"int8+{compute}" if _is_quantized(model) else compute
        # Per-size models on CPU in f32 only: there they give the dynamic model's labels to the
        # pixel; in bf16 (and int8 with bf16 parts) they round differently (0.03% of the shipped
        # model's labels, 1% of a random one's), and a frame's mask must not depend on which
        # frames came before it (a replayed bag gives the same masks on a warm node).
        self.per_size = static_shapes is None and ov_device == "CPU" and self.precision == "f32"

    def _key(self, labels_only: bool, shape: tuple | None) -> tuple:
        """Which compiled model answers: the one for this shape (static shapes, or on CPU a
        shape seen before), else the dynamic-shape one."""
        if shape is None:
            return labels_only, None
        if self.static_shapes or (labels_only, shape) in self._compiled:
            return labels_only, shape
        if self.per_size and _pixels(shape) <= MAX_STATIC_PIXELS:
            if len(self._seen) > 64:  # frames of ever new sizes: forget them, never grow
                self._seen.clear()
            self._seen[shape] = self._seen.get(shape, 0) + 1
            if self._seen[shape] >= 2:
                del self._seen[shape]
                return labels_only, shape
        return labels_only, None

    def _request(self, labels_only: bool, shape: tuple | None):
        """The compiled model and infer request for labels only / all outputs (and, with static
        shapes or a per-size model, for this input shape; the least recently used of
        MAX_STATIC_SHAPES is dropped)."""
        key = self._key(labels_only, shape)
        if key in self._compiled:
            self._compiled[key] = self._compiled.pop(key)  # the most recently used is dropped last
            return self._compiled[key]
        if key[1] is not None and not self.static_shapes:  # a per-size model: on failure, the dynamic one
            try:
                return self._build(key)
            except ValueError:
                self.per_size = False
                return self._request(labels_only, None)
        return self._build(key)

    def _build(self, key: tuple):
        labels_only, shape = key
        model = self._model.clone()
        if labels_only:
            for result in list(model.get_results()):
                if "labels" not in result.output(0).get_names():
                    model.remove_result(result)
        if shape is not None:
            try:
                model.reshape({model.input(0): list(shape)})
            except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses of its own
                raise ValueError(f"OpenVINO cannot reshape {self.path.name} to {shape}: "
                                 f"{error_reason(exc)}") from None
            budget = MAX_STATIC_PIXELS - _pixels(shape) if self.per_size else None
            while True:  # room for it: drop the least recently used models of their own size
                sized = [k for k in self._compiled if k[1] is not None]
                if not sized or (len(sized) < MAX_STATIC_SHAPES and
                                 (budget is None or sum(_pixels(k[1]) for k in sized) <= budget)):
                    break
                del self._compiled[sized[0]]
        compiled = None
        if self.device == "CPU":  # the labels head in phase form (openvino_graph.py), where it stays f32
            fast = model.clone()
            try:
                rewritten = rewrite_labels_head(fast)
            except Exception:  # noqa: BLE001 - a graph the rewrite did not foresee: compiled as it is
                rewritten = False
            if rewritten:
                compiled = self._compile(fast, shape)
                if head_precision(compiled) != "f32":
                    compiled = None
        self.labels_head = "phase" if compiled is not None else "graph"
        if compiled is None:
            compiled = self._compile(model, shape)
        self._compiled[key] = (compiled, compiled.create_infer_request())
        return self._compiled[key]

    def _compile(self, model: ov.Model, shape: tuple | None) -> ov.CompiledModel:
        try:
            return self._core.compile_model(model, self.device, self.config)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses of its own
            raise ValueError(f"OpenVINO cannot compile {self.path.name} for {self.device}"
                             f"{f' at {shape}' if shape is not None else ''}: "
                             f"{error_reason(exc)}") from None

    def _run(self, images: np.ndarray, want_confidence: bool) -> SegmentationResult:
        full = want_confidence and "confidence" in self.outputs
        with self._lock:  # one infer request per compiled model: one call at a time
            compiled, request = self._request(not full, images.shape)
            out = request.infer({0: images}, share_inputs=True)
            labels = out[compiled.output("labels")]
            result = SegmentationResult(labels, out[compiled.output("confidence")] if full else None)
            self._after_run(_pixels(images.shape), dynamic=not compiled.inputs[0].get_partial_shape().is_static)
            return result

    def _after_run(self, pixels: int, dynamic: bool) -> None:
        """Give the dynamic models' memory back once RELEASE_AFTER_RUNS runs in a row (on any
        compiled model) had at most half the pixels it grew to. The outputs of the latest run
        are numpy copies already."""
        if dynamic:
            self._sized_for = max(self._sized_for, pixels)
        self._recent.append(pixels)
        if len(self._recent) == RELEASE_AFTER_RUNS and 2 * max(self._recent) <= self._sized_for:
            try:
                for key, (compiled, _request) in self._compiled.items():
                    if key[1] is None:
                        compiled.release_memory()
            except Exception:  # noqa: BLE001 - a device plugin that cannot: keep the memory, stop trying
                self._recent = deque(maxlen=0)  # never full again
                return
            self.memory_releases += 1
            self._sized_for = 0  # the next dynamic run allocates what it needs
            self._recent.clear()

    def describe(self) -> str:
        return f"{self.backend}:{self.device} {self.precision} {self.info.arch} ({self.path.name})"


# Lines of an OpenVINO error that only say where it was raised ("Exception from src/...cpp:84:",
# "Check '...' failed at src/...cpp:563:", "FrontEnd API failed with GeneralFailure:").
_WHERE = re.compile(r"^Exception from |failed at src/\S+:\d+:?$|^FrontEnd API failed with \w+:?$")


def error_reason(exc: Exception) -> str:
    """The first line of an OpenVINO error that says what went wrong, not where."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not _WHERE.search(ln)]
    return (useful or lines or [type(exc).__name__])[0]


def _pixels(shape: tuple) -> int:
    return int(np.prod(shape[:3]))


def _num_classes(model: ov.Model) -> int | None:
    """Size of the class axis of the arg-max (ONNX ArgMax reads in as TopK k=1) the labels come from."""
    for op in model.get_ordered_ops():
        if op.get_type_name() in ("TopK", "ArgMax"):
            axis = int(op.get_axis()) if hasattr(op, "get_axis") else 1
            dim = op.input(0).get_partial_shape()[axis]
            return dim.get_length() if dim.is_static else None
    return None


def _is_quantized(model: ov.Model) -> bool:
    return any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


def _read_info(path: Path, model: ov.Model) -> ModelInfo:
    """Model metadata from the sidecar JSON, else from the graph's own metadata (ONNX metadata_props
    arrive under rt_info "framework"; an IR written by drn-quantize carries it at the top level)."""
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        return ModelInfo.read_json(sidecar)
    for key in ([METADATA_KEY], ["framework", METADATA_KEY]):
        if model.has_rt_info(key):
            return ModelInfo.from_dict(json.loads(model.get_rt_info(key).astype(str)))
    raise ValueError(f"{path} has neither a {sidecar.name} sidecar nor drn_perception metadata; export it with drn-export")
