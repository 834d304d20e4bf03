"""TensorRT backend: runs a serialized engine built by drn-build-engine (TensorRT 8.6, 10.3,
10.13-10.16, 11.x: the supported matrix of ``inference/trt_versions.py``; others are refused at
import with a one-line message).

Only the name-based runtime API that all of them share is used (``num_io_tensors``,
``get_tensor_name``, ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``); running
an engine is the same whether it was built strongly typed or not. ``test/test_tensorrt_static.py``
checks every TensorRT name against the per-version API lists. CUDA memory and the stream come from cuda-python (the runtime API on the
primary context, so any executor thread may call ``infer``), not pycuda, whose per-thread context
stack breaks under rclpy's multi-threaded executors. Host staging buffers are pinned.

Before deserialising, the engine's metadata (``<engine>.json``) is checked against the running
TensorRT and GPU (see ``inference/engine_meta.py``): a mismatch is a clear error. This class never
builds: when ``build_engine`` is ``if_missing`` / ``if_stale`` and a build is due it raises
``EngineBuildNeeded``, and ``inference.opening.open_segmenter`` runs drn-build-engine in a
separate process while ONNX Runtime serves (the one owner of engine builds is deploy/).
"""
from __future__ import annotations

import ctypes
import logging
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np
import tensorrt as trt

try:  # cuda-python >= 12.6
    from cuda.bindings import runtime as cudart
except ImportError:  # older cuda-python (JetPack 5 / CUDA 11, JetPack 6.0 / CUDA 12.2)
    from cuda import cudart

from drn_perception.inference.base import SegmentationResult, Segmenter, output_shapes
from drn_perception.inference.engine_meta import (
    CONFIDENCE,
    INPUT,
    LABELS,
    BufferPool,
    EngineBuildNeeded,
    EngineError,
    EngineMeta,
    Profile,
    RuntimeEnv,
    batch_chunks,
    check_tensorrt_version,
    decide,
    nbytes_of,
    parse_cuda_device,
    shape_str,
)

if not hasattr(trt, "Builder") or not hasattr(trt, "__version__"):
    # e.g. the tensorrt-stubs package, which makes `import tensorrt` succeed with nothing in it.
    raise ImportError(f"the importable 'tensorrt' ({getattr(trt, '__file__', '?')}) is not NVIDIA's TensorRT bindings")

TRT_VERSION = check_tensorrt_version(trt.__version__)
log = logging.getLogger(__name__)

# numpy dtype of each TensorRT data type an engine of ours may expose.
NP_DTYPES: dict[trt.DataType, np.dtype] = {
    trt.DataType.FLOAT: np.dtype(np.float32),
    trt.DataType.HALF: np.dtype(np.float16),
    trt.DataType.INT8: np.dtype(np.int8),
    trt.DataType.INT32: np.dtype(np.int32),
    trt.DataType.BOOL: np.dtype(np.bool_),
    trt.DataType.UINT8: np.dtype(np.uint8),
}


def numpy_dtype(dtype: trt.DataType, tensor: str) -> np.dtype:
    try:
        return NP_DTYPES[dtype]
    except KeyError:
        raise EngineError(f"tensor {tensor} has TensorRT type {dtype}, which drn_perception does not handle") from None


def dims_tuple(dims: trt.Dims) -> tuple[int, ...]:
    return tuple(int(dims[i]) for i in range(len(dims)))


_LOGGER: trt.Logger | None = None


def trt_logger() -> trt.Logger:
    """One TensorRT logger per process (TensorRT keeps a pointer to the first one it sees)."""
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


# ---------------------------------------------------------------------------------------------
# CUDA through cuda-python


class CudaError(RuntimeError):
    pass


def cuda_call(result: Any, what: str) -> Any:
    """Unpack a cuda-python result tuple ``(err, *values)``; CudaError with CUDA's own words if err != 0."""
    err, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
    if int(err) != 0:
        name = cudart.cudaGetErrorName(err)
        text = cudart.cudaGetErrorString(err)
        name = name[-1] if isinstance(name, tuple) else name
        text = text[-1] if isinstance(text, tuple) else text
        decode = lambda v: v.decode(errors="replace") if isinstance(v, bytes) else str(v)  # noqa: E731
        raise CudaError(f"{what} failed: {decode(name)} ({decode(text)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def runtime_env(device: int) -> RuntimeEnv:
    """TensorRT version, GPU name and compute capability of CUDA device ``device``."""
    count = cuda_call(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount (is a CUDA driver installed?)")
    if not 0 <= device < count:
        raise CudaError(f"CUDA device {device} does not exist ({count} device(s) visible)")
    props = cuda_call(cudart.cudaGetDeviceProperties(device), f"cudaGetDeviceProperties({device})")
    name = props.name
    if isinstance(name, bytes):
        name = name.split(b"\0", 1)[0].decode(errors="replace")
    return RuntimeEnv(trt.__version__, str(name).strip(), f"{props.major}.{props.minor}")


def set_device(device: int) -> None:
    cuda_call(cudart.cudaSetDevice(device), f"cudaSetDevice({device})")


class CudaStream:
    def __init__(self) -> None:
        self.stream = cuda_call(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking), "cudaStreamCreateWithFlags")

    @property
    def handle(self) -> int:
        return int(self.stream)

    def synchronize(self) -> None:
        cuda_call(cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def close(self) -> None:
        if self.stream is not None:
            cuda_call(cudart.cudaStreamDestroy(self.stream), "cudaStreamDestroy")
            self.stream = None


class DeviceBuffer:
    """``nbytes`` of device memory."""

    def __init__(self, nbytes: int):
        self.nbytes = int(nbytes)
        self.ptr: int = int(cuda_call(cudart.cudaMalloc(self.nbytes), f"cudaMalloc({self.nbytes})"))

    def upload(self, array: np.ndarray) -> None:
        """Synchronous host -> device copy of a contiguous array (used by the INT8 calibrator)."""
        array = np.ascontiguousarray(array)
        if array.nbytes > self.nbytes:
            raise ValueError(f"{array.nbytes} bytes do not fit a {self.nbytes}-byte device buffer")
        kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        cuda_call(cudart.cudaMemcpy(self.ptr, array.ctypes.data, array.nbytes, kind), "cudaMemcpy host->device")

    def close(self) -> None:
        if self.ptr:
            cuda_call(cudart.cudaFree(self.ptr), "cudaFree")
            self.ptr = 0


class PinnedBuffer:
    """``nbytes`` of page-locked host memory, viewed as numpy bytes (``array``)."""

    def __init__(self, nbytes: int):
        self.nbytes = int(nbytes)
        self.ptr: int = int(cuda_call(cudart.cudaMallocHost(self.nbytes), f"cudaMallocHost({self.nbytes})"))
        self.array = np.ctypeslib.as_array((ctypes.c_uint8 * self.nbytes).from_address(self.ptr))

    def view(self, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        n = nbytes_of(shape, dtype.itemsize)
        return self.array[:n].view(dtype).reshape(shape)

    def close(self) -> None:
        if self.ptr:
            self.array = np.empty(0, np.uint8)
            cuda_call(cudart.cudaFreeHost(self.ptr), "cudaFreeHost")
            self.ptr = 0


def copy_async(dst: int, src: int, nbytes: int, kind: Any, stream: CudaStream, what: str) -> None:
    cuda_call(cudart.cudaMemcpyAsync(dst, src, nbytes, kind, stream.stream), what)


# ---------------------------------------------------------------------------------------------
# The segmenter


class TensorRTSegmenter(Segmenter):
    """A drn_perception engine on one CUDA device.

    build_engine: "never" (default), "if_missing" or "if_stale" (see engine_meta.decide): with
    if_stale a fresh engine under the default name for this TensorRT/GPU is loaded in place of a
    stale ``path``; a build that is due raises EngineBuildNeeded (open_segmenter runs it).
    onnx: the ONNX model to (re)build from, when it is not beside the engine or named in its metadata.
    """

    backend = "tensorrt"

    def __init__(self, path: str | Path, device: str = "auto", *, build_engine: str = "never",
                 onnx: str | Path | None = None, log_fn: Callable[[str], None] | None = None):
        say = log_fn or log.info
        self._closed = True
        self._index = parse_cuda_device(device)
        set_device(self._index)
        env = runtime_env(self._index)
        decision = decide(path, build_engine, env, onnx)
        if decision.action == "build":
            raise EngineBuildNeeded(decision, env)
        if decision.engine != Path(path):
            say(decision.reason)
        engine_path = decision.engine
        self.meta = EngineMeta.read(engine_path)
        super().__init__(engine_path, self.meta.model, f"cuda:{self._index}")
        self.precision = self.meta.precision

        self._runtime = trt.Runtime(trt_logger())
        engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if engine is None:
            raise EngineError(f"TensorRT could not deserialise {engine_path} (see the TensorRT messages above)")
        self._engine = engine
        self._outputs = self._check_io(engine, engine_path)
        self.profile = Profile(*[_nhwc(dims_tuple(d)) for d in engine.get_tensor_profile_shape(INPUT, 0)])
        lo, hi = self.profile.min, self.profile.max
        self.size_range = ((lo[1], lo[2]), (hi[1], hi[2]))
        context = engine.create_execution_context()
        if context is None:
            raise EngineError(f"TensorRT could not create an execution context for {engine_path} (out of GPU memory?)")
        self._context = context
        self._stream = CudaStream()
        self._device_buffers: BufferPool[DeviceBuffer] = BufferPool(DeviceBuffer, DeviceBuffer.close)
        self._host_buffers: BufferPool[PinnedBuffer] = BufferPool(PinnedBuffer, PinnedBuffer.close)
        self._lock = threading.Lock()
        self._closed = False

    @staticmethod
    def _check_io(engine: trt.ICudaEngine, path: Path) -> dict[str, np.dtype]:
        """Output name -> numpy dtype, after checking the engine has drn-export's interface."""
        inputs: dict[str, np.dtype] = {}
        outputs: dict[str, np.dtype] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dtype = numpy_dtype(engine.get_tensor_dtype(name), name)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                inputs[name] = dtype
            else:
                outputs[name] = dtype
        expected = {LABELS: np.dtype(np.int32), CONFIDENCE: np.dtype(np.float32)}
        if inputs != {INPUT: np.dtype(np.uint8)} or LABELS not in outputs or any(
            outputs[n] != expected.get(n) for n in outputs
        ):
            found = ", ".join(f"{n}:{d}" for n, d in {**inputs, **outputs}.items())
            raise EngineError(
                f"{path} does not have drn-export's interface (input images:uint8, outputs labels:int32 "
                f"[, confidence:float32]); found {found}"
            )
        return outputs

    def _run(self, images: np.ndarray, want_confidence: bool) -> SegmentationResult:
        problem = self.profile.violation(images.shape)
        if problem:
            raise ValueError(f"{self.path.name}: {problem}")
        with self._lock:
            if self._closed:
                raise EngineError(f"{self.path.name} was closed")
            set_device(self._index)  # the CUDA runtime's current device is per host thread
            parts = [self._run_chunk(images[a:b], want_confidence)
                     for a, b in batch_chunks(images.shape[0], self.profile.max[0])]
        labels = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
        confidence = None
        if want_confidence and CONFIDENCE in self._outputs:
            confs = [p[1] for p in parts if p[1] is not None]
            confidence = confs[0] if len(confs) == 1 else np.concatenate(confs)
        return SegmentationResult(labels, confidence)

    def _run_chunk(self, images: np.ndarray, want_confidence: bool) -> tuple[np.ndarray, np.ndarray | None]:
        ctx = self._context
        if not ctx.set_input_shape(INPUT, trt.Dims(list(images.shape))):
            raise EngineError(f"{self.path.name}: TensorRT rejected input shape {shape_str(images.shape)}")
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost

        host_in = self._host_buffers.get(INPUT, images.nbytes)
        dev_in = self._device_buffers.get(INPUT, images.nbytes)
        np.copyto(host_in.view(np.dtype(np.uint8), images.shape), images)
        if not ctx.set_tensor_address(INPUT, dev_in.ptr):
            raise EngineError(f"{self.path.name}: set_tensor_address({INPUT}) failed")

        pending = []
        for name, dtype in self._outputs.items():
            shape = dims_tuple(ctx.get_tensor_shape(name))
            if shape not in output_shapes(images.shape):  # input size, or un-cropped (engine of an old graph)
                raise EngineError(f"{self.path.name}: output {name} has shape {shape}, expected {images.shape[:3]}")
            nbytes = nbytes_of(shape, dtype.itemsize)
            dev = self._device_buffers.get(name, nbytes)  # every output needs an address, wanted or not
            if not ctx.set_tensor_address(name, dev.ptr):
                raise EngineError(f"{self.path.name}: set_tensor_address({name}) failed")
            if name == LABELS or want_confidence:
                pending.append((name, dtype, shape, nbytes, dev))

        copy_async(dev_in.ptr, host_in.ptr, images.nbytes, h2d, self._stream, "copy of the input to the GPU")
        if not ctx.execute_async_v3(self._stream.handle):
            raise EngineError(f"{self.path.name}: TensorRT failed to enqueue inference (see the TensorRT messages)")
        hosts = {}
        for name, dtype, shape, nbytes, dev in pending:
            host = self._host_buffers.get(name, nbytes)
            copy_async(host.ptr, dev.ptr, nbytes, d2h, self._stream, f"copy of {name} from the GPU")
            hosts[name] = (host, dtype, shape)
        self._stream.synchronize()
        # Copies: the pinned buffers are reused by the next call.
        out = {name: host.view(dtype, shape).copy() for name, (host, dtype, shape) in hosts.items()}
        return out[LABELS], out.get(CONFIDENCE)

    def close(self) -> None:
        """Free the GPU memory and the stream (also done when the object is collected)."""
        lock = getattr(self, "_lock", None)
        if lock is None or self._closed:
            return
        with lock:
            self._closed = True
            del self._context
            del self._engine
            self._device_buffers.close()
            self._host_buffers.close()
            self._stream.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown may have torn CUDA down already
            pass


def _nhwc(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    if len(shape) != 4:
        raise EngineError(f"input {INPUT} has {len(shape)} dimensions, expected 4 (N, H, W, 3)")
    return (shape[0], shape[1], shape[2], shape[3])
