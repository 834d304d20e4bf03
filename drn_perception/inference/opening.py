"""``open_segmenter``: what the node calls instead of ``create_segmenter`` when a TensorRT engine
may have to be built first, so that the first start on a new machine serves at once.

The engine build is one :class:`~drn_perception.inference.switching.Producer`: drn-build-engine
run as a separate process (``python -m drn_perception.deploy.tensorrt_build``; this room does
not import deploy/), while ONNX Runtime serves the same ONNX graph.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from drn_perception.inference.base import BackendUnavailable, Segmenter, backend_for_path, create_segmenter
from drn_perception.inference.engine_meta import (
    BUILD_POLICIES,
    BuildRequest,
    EngineBuildNeeded,
    EngineMeta,
    EngineError,
    decide,
    find_onnx,
    parse_cuda_device,
)
from drn_perception.inference.switching import Producer, SwitchingSegmenter, run_producer

log = logging.getLogger(__name__)
BUILD_MODULE = "drn_perception.deploy.tensorrt_build"  # drn-build-engine, run as a process


def open_segmenter(path: str | Path, backend: str = "auto", device: str = "auto", *, build_engine: str = "never",
                   onnx: str | Path | None = None, logger: Any = None, progress_period: float = 30.0,
                   **options) -> Segmenter:
    """Open ``path`` like ``create_segmenter``; for TensorRT, build a missing or stale engine without blocking.

    Returns a plain Segmenter when nothing has to be built: any backend other than tensorrt
    (``build_engine`` does not concern them), a usable engine (with ``if_stale``, possibly the
    fresh default-named engine beside the ONNX model instead of a stale ``path``), or
    ``build_engine == "never"``, where a missing engine is FileNotFoundError naming
    drn-build-engine and a stale one EngineMismatch.

    With ``if_missing`` (engine file absent) or ``if_stale`` (absent or stale) it returns a
    :class:`SwitchingSegmenter` at once: it serves on ONNX Runtime over the ONNX model
    (``onnx``, else the one the engine's metadata or name points to), on CUDA where
    onnxruntime-gpu has it, else on CPU, while drn-build-engine builds the engine in a separate
    process with the options of the engine it replaces; it switches to the engine between two
    ``infer()`` calls once it is built and passes its check. Where TensorRT cannot be imported
    here the build is still started: it fails, and ONNX Runtime keeps serving with the reason in
    ``status()``. Where onnxruntime is missing too, nothing could serve meanwhile: the build
    then runs before this returns (progress in the log) and the engine is returned.

    The caller (the node) should log ``describe()``, put ``status()`` (a dict: state, message
    like "building TensorRT engine, 312 s", reason, serving backend and precision) into
    /diagnostics when the result has one, and call ``close()`` on shutdown to stop a running
    build; a caller killed without that (SIGKILL) takes the build along on Linux
    (die_with_parent.py). ``info`` (classes, palette) is the same before and after the switch.

    Raises, before anything slow: ValueError (unknown backend or policy, a device TensorRT
    cannot use), FileNotFoundError (no engine and no ONNX model to build it from), and
    create_segmenter's errors otherwise.
    """
    path = Path(path)
    if build_engine not in BUILD_POLICIES:
        raise ValueError(f"unknown build_engine {build_engine!r}: choose {', '.join(BUILD_POLICIES)}")
    chosen = backend_for_path(path) if backend == "auto" else backend
    if chosen != "tensorrt":  # "auto" passed on as given: create_segmenter applies its own rule
        return create_segmenter(path, backend, device, **options)
    backend = chosen
    index = parse_cuda_device(device)
    logger = logger if logger is not None else log
    if build_engine == "never":
        if not path.exists():
            decide(path, "never", None, onnx)  # FileNotFoundError that names drn-build-engine
        return create_segmenter(path, "tensorrt", device, onnx=onnx, **options)

    try:
        return create_segmenter(path, "tensorrt", device, build_engine=build_engine, onnx=onnx, **options)
    except EngineBuildNeeded as need:
        source, target, request = need.decision.onnx, need.decision.engine, need.decision.request
        why = need.decision.reason
    except BackendUnavailable as missing:  # TensorRT or cuda-python not importable in this process
        if path.exists() and build_engine == "if_missing":
            raise  # nothing to build, and this engine cannot run here
        source, target, request = _build_plan_without_tensorrt(path, build_engine, onnx, missing)
        why = "engine file missing" if not path.exists() else "cannot check it without TensorRT"
    if source is None or request is None:
        raise EngineError(f"nothing to build {path} from: pass the .onnx model (onnx parameter)")

    command = [sys.executable, "-m", BUILD_MODULE, str(source), *request.argv(), "--device", f"cuda:{index}"]
    if target is not None:
        command += ["-o", str(target)]

    def open_engine() -> Segmenter:
        if target is not None:
            return create_segmenter(target, "tensorrt", device, onnx=source, **options)
        return create_segmenter(path, "tensorrt", device, build_engine="if_stale", onnx=source, **options)

    producer = Producer("drn-build-engine", "building TensorRT engine", tuple(command), open_engine)
    logger.info(f"no usable TensorRT engine at {path} ({why}): building {target or 'one'} from {source.name} "
                "in a separate process")
    serving = _onnxruntime_for(source, index)
    if serving is None:
        logger.warning("onnxruntime is not installed, so nothing can serve while the engine builds: waiting "
                       "for drn-build-engine (minutes, once; install onnxruntime to serve meanwhile)")
        run_producer(producer, logger, progress_period)
        return open_engine()
    return SwitchingSegmenter(serving, producer, logger=logger, progress_period=progress_period)


def _build_plan_without_tensorrt(path: Path, policy: str, onnx: str | Path | None,
                                 missing: BackendUnavailable) -> tuple[Path | None, Path | None, BuildRequest | None]:
    """(ONNX model, engine path or None for the default name, build options) when this process
    cannot ask TensorRT which engine is fresh; the build process will say what is missing."""
    if not path.exists():
        decision = decide(path, policy, None, onnx)  # FileNotFoundError when there is nothing to build from
        return decision.onnx, decision.engine, decision.request
    try:
        meta: EngineMeta | None = EngineMeta.read(path)
    except EngineError:
        meta = None
    source = find_onnx(path, onnx, meta)
    if source is None or not source.is_file():
        raise missing
    return source, None, BuildRequest.like(path, meta)


def _onnxruntime_for(onnx: Path, index: int) -> Segmenter | None:
    """The ONNX graph on ONNX Runtime: CUDA device ``index`` where onnxruntime-gpu has it, else CPU;
    None when onnxruntime is not installed."""
    try:
        return create_segmenter(onnx, "onnxruntime", f"cuda:{index}")
    except BackendUnavailable:
        pass
    try:
        return create_segmenter(onnx, "onnxruntime", "cpu")
    except BackendUnavailable:
        return None
