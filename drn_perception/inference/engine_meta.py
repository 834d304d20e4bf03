"""TensorRT engines as files: metadata, default names, the cache and rebuild policy, buffer bookkeeping.

Plain Python on purpose (no tensorrt, no CUDA): everything here runs and is tested on machines
without a GPU. The TensorRT calls live in ``deploy/tensorrt_build.py`` (building) and
``inference/tensorrt_backend.py`` (running); this module sits in inference/ because both need it
and the inference room imports nothing of deploy (``deploy/engine_meta.py`` re-exports it).

An engine ``E`` is accompanied by ``E.json`` (:func:`meta_path`), written by drn-build-engine:
TensorRT version, GPU name and compute capability, precision, I/O tensors, optimisation
profile, the ONNX model's sha256 and the ModelInfo fields (classes, palette, ...), so
``ModelInfo.read_json(meta_path(E))`` works as for an ONNX sidecar.

Serialized engines only run on the TensorRT version and GPU model they were built with. The
default file name therefore carries both (``model.trt10.3.0.orin-sm87.fp16.engine``): after a
JetPack upgrade the old engine is never picked up by accident, and engines for several
versions or GPUs can sit side by side (the "engine cache" is simply the ONNX model's folder).
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Generic, TypeVar

from drn_perception.inference.trt_versions import (  # noqa: F401 - the version rules, re-exported
    PRECISIONS,
    UnsupportedTensorRT,
    check_tensorrt_version,
    parse_trt_version,
)
from drn_perception.inference.trt_profile import (  # noqa: F401 - re-exported
    EXAMPLE_SHAPES,
    MIN_SIDE,
    Profile,
    Shape,
    batch_chunks,
    shape_str,
)
from drn_perception.model_info import ModelInfo, sha256_file, sidecar_path

META_FORMAT = 1
BUILD_POLICIES = ("never", "if_missing", "if_stale")
INPUT = "images"
LABELS = "labels"
CONFIDENCE = "confidence"
ENGINE_SUFFIX = ".engine"
_DEFAULT_NAME = re.compile(
    r"^(?P<stem>.+)\.trt(?P<trt>\d+\.\d+\.\d+)\.(?P<gpu>[a-z0-9-]+)\.(?P<precision>fp32|fp16|int8)\.(engine|plan)$"
)


class EngineError(RuntimeError):
    """An engine file that cannot be used here, with the reason and the fix."""


class EngineMismatch(EngineError):
    """The engine was built for another TensorRT version, GPU or ONNX model."""


class EngineBuildNeeded(EngineError):
    """:func:`decide` says the engine must be built before it can run (build_engine: if_missing / if_stale).

    The runtime never builds: ``inference.opening.open_segmenter`` catches this and runs
    drn-build-engine in a separate process (``decision`` says what to build, from what, how).
    """

    def __init__(self, decision: "Decision", env: RuntimeEnv | None = None):
        self.decision = decision
        self.env = env
        super().__init__(
            f"TensorRT engine {decision.engine} must be built first ({decision.reason}): run "
            f"`drn-build-engine {decision.onnx} -o {decision.engine}`, or open it with open_segmenter, which builds "
            "it in a separate process while ONNX Runtime serves"
        )


# ---------------------------------------------------------------------------------------------
# Versions and the machine


def version_tag(tensorrt_version: str) -> str:
    """"10.3.0.30" -> "10.3.0" (the part of the version that goes into file names)."""
    return ".".join(str(v) for v in parse_trt_version(tensorrt_version)[:3])


@dataclass(frozen=True)
class RuntimeEnv:
    """What an engine is tied to: the TensorRT build and the GPU model."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.7"

    def describe(self) -> str:
        return f"TensorRT {self.tensorrt_version} on {self.gpu_name} (sm {self.compute_capability})"


def gpu_slug(gpu_name: str, compute_capability: str) -> str:
    """A short file-name-safe GPU key: ("Orin", "8.7") -> "orin-sm87"; ("NVIDIA GeForce RTX 4090", "8.9") -> "rtx-4090-sm89"."""
    drop = {"nvidia", "geforce", "tesla", "quadro", "corporation"}
    words = [w for w in re.split(r"[^a-z0-9]+", gpu_name.lower()) if w and w not in drop]
    cc = re.sub(r"[^0-9]", "", compute_capability)
    return "-".join(words[:4] + [f"sm{cc}"]) if words else f"gpu-sm{cc}"


def default_engine_path(onnx_path: str | Path, env: RuntimeEnv, precision: str) -> Path:
    """model.onnx -> model.trt<major.minor.patch>.<gpu>.<precision>.engine beside it."""
    onnx_path = Path(onnx_path)
    name = f"{onnx_path.stem}.trt{version_tag(env.tensorrt_version)}.{gpu_slug(env.gpu_name, env.compute_capability)}.{precision}"
    return onnx_path.with_name(name + ENGINE_SUFFIX)


def parse_engine_name(engine_path: str | Path) -> dict[str, str] | None:
    """The parts of a default engine name ({stem, trt, gpu, precision}), or None for other names."""
    m = _DEFAULT_NAME.match(Path(engine_path).name)
    return {k: m.group(k) for k in ("stem", "trt", "gpu", "precision")} if m else None


def meta_path(engine_path: str | Path) -> Path:
    """model.<...>.engine -> model.<...>.engine.json (never clashes with the ONNX sidecar model.json)."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def parse_cuda_device(device: str) -> int:
    """"auto" / "cuda" -> 0, "cuda:1" -> 1; anything else is a ValueError (TensorRT runs on CUDA only)."""
    if device in ("auto", "cuda", "gpu"):
        return 0
    m = re.fullmatch(r"cuda:(\d+)", device)
    if not m:
        raise ValueError(f"the tensorrt backend runs on CUDA devices only: device must be auto, cuda or cuda:N, not {device!r}")
    return int(m.group(1))


# ---------------------------------------------------------------------------------------------
# Optimisation profile


# ---------------------------------------------------------------------------------------------
# Metadata


@dataclass
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: uint8, int32, float32, ...
    shape: list[int]  # -1 for dynamic dimensions

    @classmethod
    def from_dict(cls, d: dict) -> "TensorSpec":
        return cls(str(d["name"]), str(d["dtype"]), [int(v) for v in d["shape"]])


@dataclass
class EngineMeta:
    """Everything drn_perception needs to know about an engine without deserialising it."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    profile: Profile
    onnx_sha256: str
    onnx_path: str
    engine_sha256: str
    model: ModelInfo
    build: dict = field(default_factory=dict)  # time, seconds, workspace_mb, dla_core, timing_cache, calibration, tool

    @property
    def env(self) -> RuntimeEnv:
        return RuntimeEnv(self.tensorrt_version, self.gpu_name, self.compute_capability)

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def to_dict(self) -> dict:
        # ModelInfo's fields are stored flat, so ModelInfo.read_json() also reads this file.
        return {
            **self.model.to_dict(),
            "format": META_FORMAT,
            "tensorrt_version": self.tensorrt_version,
            "gpu_name": self.gpu_name,
            "compute_capability": self.compute_capability,
            "precision": self.precision,
            "inputs": [asdict(t) for t in self.inputs],
            "outputs": [asdict(t) for t in self.outputs],
            "profile": self.profile.to_dict(),
            "onnx_sha256": self.onnx_sha256,
            "onnx_path": self.onnx_path,
            "engine_sha256": self.engine_sha256,
            "build": self.build,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "EngineMeta":
        if not isinstance(d, dict):
            raise ValueError("expected a JSON object")
        if d.get("format") != META_FORMAT:
            raise ValueError(f"unknown metadata format {d.get('format')!r} (this drn_perception reads {META_FORMAT})")
        try:
            meta = cls(
                tensorrt_version=str(d["tensorrt_version"]),
                gpu_name=str(d["gpu_name"]),
                compute_capability=str(d["compute_capability"]),
                precision=str(d["precision"]),
                inputs=[TensorSpec.from_dict(t) for t in d["inputs"]],
                outputs=[TensorSpec.from_dict(t) for t in d["outputs"]],
                profile=Profile.from_dict(d["profile"]),
                onnx_sha256=str(d["onnx_sha256"]),
                onnx_path=str(d["onnx_path"]),
                engine_sha256=str(d["engine_sha256"]),
                model=ModelInfo.from_dict(d),
                build=dict(d.get("build") or {}),
            )
        except KeyError as exc:
            raise ValueError(f"missing field {exc.args[0]!r}") from None
        except (TypeError, AttributeError) as exc:
            raise ValueError(f"malformed field: {exc}") from None
        parse_trt_version(meta.tensorrt_version)
        if meta.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {meta.precision!r}")
        return meta

    def write(self, engine_path: str | Path) -> Path:
        path = meta_path(engine_path)
        atomic_write(path, (json.dumps(self.to_dict(), indent=2) + "\n").encode())
        return path

    @classmethod
    def read(cls, engine_path: str | Path) -> "EngineMeta":
        """The metadata of ``engine_path``; EngineError naming the file when missing or invalid."""
        path = meta_path(engine_path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise EngineError(
                f"engine metadata {path} not found: engines for drn_perception are built with drn-build-engine "
                "(or registered with drn-build-engine MODEL.onnx --adopt ENGINE after trtexec)"
            ) from None
        except OSError as exc:
            raise EngineError(f"cannot read engine metadata {path}: {exc.strerror}") from None
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise EngineError(f"engine metadata {path} is not valid JSON: {exc}") from None
        except ValueError as exc:
            raise EngineError(f"engine metadata {path} is invalid: {exc}") from None


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_model_info(onnx_path: str | Path) -> ModelInfo:
    """ModelInfo of an exported ONNX model, from the model.json drn-export writes beside it."""
    sidecar = sidecar_path(onnx_path)
    if not sidecar.is_file():
        raise ValueError(
            f"{sidecar} not found: drn-build-engine needs the metadata drn-export writes beside {Path(onnx_path).name}"
        )
    return ModelInfo.read_json(sidecar)


# ---------------------------------------------------------------------------------------------
# Freshness and the rebuild policy


def env_mismatches(meta: EngineMeta, env: RuntimeEnv) -> list[str]:
    """How the machine an engine was built for differs from this one (empty when it matches)."""
    problems = []
    if meta.tensorrt_version != env.tensorrt_version:
        problems.append(f"built with TensorRT {meta.tensorrt_version}, this machine has TensorRT {env.tensorrt_version}")
    if (meta.gpu_name, meta.compute_capability) != (env.gpu_name, env.compute_capability):
        problems.append(
            f"built for GPU {meta.gpu_name} (sm {meta.compute_capability}), this machine has "
            f"{env.gpu_name} (sm {env.compute_capability})"
        )
    return problems


def staleness(engine_path: str | Path, env: RuntimeEnv, onnx_path: str | Path | None) -> tuple[EngineMeta | None, list[str]]:
    """(metadata or None, reasons the engine cannot be used here); no reasons means fresh.

    Stale: metadata missing or invalid, the engine file changed since its metadata was written,
    another TensorRT version / GPU / compute capability, or an ONNX model beside it whose sha256
    differs from the one the engine was built from.
    """
    engine_path = Path(engine_path)
    try:
        meta = EngineMeta.read(engine_path)
    except EngineError as exc:
        return None, [str(exc)]
    problems = env_mismatches(meta, env)
    if sha256_file(engine_path) != meta.engine_sha256:
        problems.append(f"{engine_path.name} is not the file its metadata {meta_path(engine_path).name} describes")
    if onnx_path is not None and Path(onnx_path).is_file() and sha256_file(onnx_path) != meta.onnx_sha256:
        problems.append(f"the ONNX model {onnx_path} changed since the engine was built from it")
    return meta, problems


def find_onnx(engine_path: str | Path, onnx: str | Path | None = None, meta: EngineMeta | None = None) -> Path | None:
    """The ONNX model an engine is (re)built from: ``onnx`` if given, else the one its metadata names,
    else ``<stem>.onnx`` beside a default-named engine, else ``<engine>.onnx``; None if none exists."""
    engine_path = Path(engine_path)
    if onnx is not None:
        return Path(onnx)
    candidates = []
    if meta is not None and meta.onnx_path:
        recorded = Path(meta.onnx_path)
        candidates.append(recorded if recorded.is_absolute() else engine_path.parent / recorded)
    parts = parse_engine_name(engine_path)
    if parts:
        candidates.append(engine_path.with_name(parts["stem"] + ".onnx"))
    candidates.append(engine_path.with_suffix(".onnx"))
    return next((c for c in candidates if c.is_file()), None)


@dataclass
class BuildRequest:
    """How to rebuild an engine: the options of the build it replaces, where known."""

    precision: str = "fp16"
    shapes: str | None = None  # None: drn-build-engine's default profile (the model's size, one camera)
    workspace_mb: int | None = None
    dla_core: int | None = None
    timing_cache: str | None = None
    calibration: str | None = None  # int8 from an exported fp32 graph: where the Q/DQ graph's frames came from

    @classmethod
    def like(cls, engine_path: Path, meta: EngineMeta | None) -> "BuildRequest":
        if meta is not None:
            b = meta.build
            calib = b.get("calibration") or {}
            return cls(meta.precision, str(meta.profile), b.get("workspace_mb"), b.get("dla_core"),
                       b.get("timing_cache"), calib.get("source"))
        parts = parse_engine_name(engine_path)
        return cls(precision=parts["precision"]) if parts else cls()

    def argv(self) -> list[str]:
        """These options as drn-build-engine arguments."""
        args = ["--precision", self.precision]
        for flag, value in (("--shapes", self.shapes), ("--workspace", self.workspace_mb), ("--dla-core", self.dla_core),
                            ("--timing-cache", self.timing_cache), ("--calibration", self.calibration)):
            if value is not None:
                args += [flag, str(value)]
        return args


@dataclass
class Decision:
    action: str  # "load" or "build"
    engine: Path  # what to load, or where to build
    reason: str = ""
    onnx: Path | None = None
    request: BuildRequest | None = None


def decide(engine_path: str | Path, policy: str, env: RuntimeEnv | None, onnx: str | Path | None = None) -> Decision:
    """What to do with ``engine_path`` on this machine under ``build_engine: policy``.

    ``env`` may be None (TensorRT not importable here) only for an engine file that does not exist.

    never:      load a fresh engine; anything else is an error that says how to fix it.
    if_missing: also build the engine when its file does not exist (at that path).
    if_stale:   also build when it is stale, into the default name for this TensorRT/GPU/precision
                beside the ONNX model, and reuse that file on later starts while it is fresh, so an
                engine is built once per JetPack/GPU, never on every start.
    """
    if policy not in BUILD_POLICIES:
        raise ValueError(f"unknown build_engine policy {policy!r}: choose {', '.join(BUILD_POLICIES)}")
    engine_path = Path(engine_path)
    if not engine_path.exists():
        onnx_path = find_onnx(engine_path, onnx)
        if policy == "never":
            hint = f"drn-build-engine {onnx_path or 'MODEL.onnx'}"
            raise FileNotFoundError(
                f"TensorRT engine {engine_path} not found: build it with `{hint}`, or set build_engine: if_missing "
                "(with the ONNX model beside it) to build it on first start"
            )
        if onnx_path is None or not onnx_path.is_file():
            raise FileNotFoundError(
                f"TensorRT engine {engine_path} not found and no ONNX model to build it from "
                f"({onnx_path or 'looked for ' + engine_path.with_suffix('.onnx').name}); pass the .onnx path"
            )
        return Decision("build", engine_path, "engine file missing", onnx_path, BuildRequest.like(engine_path, None))

    if env is None:
        raise ValueError(f"cannot tell whether {engine_path} is usable without TensorRT's version and the GPU")
    try:
        recorded: EngineMeta | None = EngineMeta.read(engine_path)
    except EngineError:
        recorded = None
    onnx_path = find_onnx(engine_path, onnx, recorded)
    meta, problems = staleness(engine_path, env, onnx_path)
    if not problems:
        return Decision("load", engine_path, "fresh", onnx_path)
    reason = "; ".join(problems)
    if policy != "if_stale":
        raise EngineMismatch(
            f"TensorRT engine {engine_path} cannot be used on this machine ({env.describe()}): {reason}. "
            f"Rebuild it with `drn-build-engine {onnx_path or 'MODEL.onnx'}`, or set build_engine: if_stale "
            "to rebuild it automatically"
        )
    if onnx_path is None or not onnx_path.is_file():
        raise EngineMismatch(
            f"TensorRT engine {engine_path} is stale ({reason}) and there is no ONNX model to rebuild it from; "
            "pass the .onnx path"
        )
    request = BuildRequest.like(engine_path, meta)
    target = default_engine_path(onnx_path, env, request.precision)
    if target != engine_path and target.exists():
        _, cached_problems = staleness(target, env, onnx_path)
        if not cached_problems:
            return Decision("load", target, f"{engine_path.name} is stale ({reason}); using {target.name}", onnx_path)
    return Decision("build", target, reason, onnx_path, request)


# ---------------------------------------------------------------------------------------------
# Buffer bookkeeping for the runtime


B = TypeVar("B")


class BufferPool(Generic[B]):
    """Buffers kept per tensor name and reused across calls; one grows (free + alloc) only when a
    larger request arrives, so steady-state inference allocates nothing."""

    def __init__(self, alloc: Callable[[int], B], free: Callable[[B], None]):
        self._alloc = alloc
        self._free = free
        self._buffers: dict[str, tuple[B, int]] = {}
        self.allocations = 0

    def get(self, name: str, nbytes: int) -> B:
        if nbytes < 0:
            raise ValueError(f"negative size {nbytes} for {name}")
        held = self._buffers.get(name)
        if held is not None and held[1] >= nbytes:
            return held[0]
        if held is not None:
            del self._buffers[name]
            self._free(held[0])
        size = max(int(nbytes), 1)
        buf = self._alloc(size)
        self.allocations += 1
        self._buffers[name] = (buf, size)
        return buf

    def capacity(self, name: str) -> int:
        held = self._buffers.get(name)
        return held[1] if held is not None else 0

    def __len__(self) -> int:
        return len(self._buffers)

    def close(self) -> None:
        buffers, self._buffers = self._buffers, {}
        for buf, _ in buffers.values():
            self._free(buf)


def nbytes_of(shape: tuple[int, ...], itemsize: int) -> int:
    n = itemsize
    for d in shape:
        if d < 0:
            raise ValueError(f"shape {shape} still has a dynamic dimension")
        n *= int(d)
    return n
