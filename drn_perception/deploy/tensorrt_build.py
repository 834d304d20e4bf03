"""drn-build-engine: an exported ONNX model -> a TensorRT engine and its metadata, on this machine.

    drn-build-engine model.onnx [--precision fp32|fp16|int8] [--calibration DATA_OR_BAG]
        [--shapes MIN/OPT/MAX] [--workspace MB] [--timing-cache FILE] [--dla-core N] [-o ENGINE]

Uses the TensorRT Python API that 8.5 (JetPack 5), 8.6 (JetPack 6.0) and 10.x (JetPack 6.1+, x86)
share: Builder, OnnxParser, BuilderConfig, one optimisation profile for dynamic N/H/W,
build_serialized_network. The engine is written as
``<model>.trt<version>.<gpu>.<precision>.engine`` beside the ONNX model (unless ``-o``), with
``<engine>.json`` (see inference/engine_meta.py). The equivalent ``trtexec`` command is printed too;
an engine built with trtexec is registered with ``--adopt ENGINE``.

This is the one owner of engine builds: the node's first start (``inference.open_segmenter``)
runs this command line as a separate process (``BuildRequest.argv()``) while ONNX Runtime serves.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from drn_perception.deploy.calibration import (
    DEFAULT_MAX_FRAMES,
    CalibrationBatches,
    CalibrationCache,
    CalibrationError,
    CalibrationFeed,
    default_cache_path,
    open_frames,
)
from drn_perception.inference.engine_meta import (
    CONFIDENCE,
    DEFAULT_SHAPES,
    INPUT,
    LABELS,
    PRECISIONS,
    EngineError,
    EngineMeta,
    Profile,
    RuntimeEnv,
    TensorSpec,
    UnsupportedTensorRT,
    atomic_write,
    check_tensorrt_version,
    default_engine_path,
    now_iso,
    parse_cuda_device,
    parse_trt_version,
    precision_problem,
    read_model_info,
    shape_str,
)
from drn_perception.inference.base import BackendUnavailable
from drn_perception.model_info import ModelInfo, sha256_file

try:
    import tensorrt as trt
except ImportError as _exc:  # reported by require_tensorrt(), naming the package
    trt = None  # type: ignore[assignment]
    _TRT_PROBLEM = f"not importable here ({_exc})"
else:
    _TRT_PROBLEM = "" if hasattr(trt, "Builder") else "the importable 'tensorrt' is not NVIDIA's bindings"

TRT_VERSION: tuple[int, ...] = parse_trt_version(trt.__version__) if not _TRT_PROBLEM else ()
PROG = "drn-build-engine"


class BuildError(RuntimeError):
    """The engine could not be built; the message says why and what to change."""


@dataclass
class BuildOptions:
    precision: str = "fp16"
    shapes: str = DEFAULT_SHAPES
    workspace_mb: int | None = None
    timing_cache: Path | None = None
    dla_core: int | None = None
    calibration: str | None = None
    calibration_topic: str | None = None
    calibration_frames: int = DEFAULT_MAX_FRAMES
    calibration_batch: int = 8
    calibration_cache: Path | None = None

    def check(self) -> None:
        """Option combinations that no TensorRT version accepts (ValueError)."""
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}: choose {', '.join(PRECISIONS)}")
        if self.workspace_mb is not None and self.workspace_mb <= 0:
            raise ValueError(f"--workspace must be a positive number of MiB, got {self.workspace_mb}")
        if self.dla_core is not None:
            if self.dla_core < 0:
                raise ValueError(f"--dla-core must be 0 or more, got {self.dla_core}")
            if self.precision == "fp32":
                raise ValueError("--dla-core needs --precision fp16 or int8 (the DLA has no fp32)")
        if self.calibration is not None and self.precision != "int8":
            raise ValueError("--calibration is only used with --precision int8")
        if self.calibration_batch < 1 or self.calibration_frames < 1:
            raise ValueError("--calibration-batch and --calibration-frames must be at least 1")


def require_tensorrt() -> None:
    """BackendUnavailable unless TensorRT 8.5+ is importable."""
    if _TRT_PROBLEM:
        raise BackendUnavailable(
            "building engines needs NVIDIA's TensorRT Python bindings (tensorrt: ships with JetPack as python3-libnvinfer, "
            f"on x86 `pip install tensorrt`) and cuda-python; tensorrt is {_TRT_PROBLEM}"
        )
    check_tensorrt_version(trt.__version__)


# ---------------------------------------------------------------------------------------------
# trtexec


def trtexec_command(onnx: Path, engine: Path, opts: BuildOptions, profile: Profile,
                    calibration_cache: Path | None = None) -> list[str]:
    """The trtexec invocation that builds the same engine (minus calibration, which trtexec reads from a cache)."""
    cmd = [
        "trtexec",
        f"--onnx={onnx}",
        f"--saveEngine={engine}",
        f"--minShapes={INPUT}:{shape_str(profile.min)}",
        f"--optShapes={INPUT}:{shape_str(profile.opt)}",
        f"--maxShapes={INPUT}:{shape_str(profile.max)}",
    ]
    if opts.precision == "fp16":
        cmd.append("--fp16")
    elif opts.precision == "int8":
        cmd += ["--int8", "--fp16"]
        if calibration_cache is not None:
            cmd.append(f"--calib={calibration_cache}")
    if opts.workspace_mb is not None:
        cmd.append(f"--memPoolSize=workspace:{opts.workspace_mb}")
    if opts.timing_cache is not None:
        cmd.append(f"--timingCacheFile={opts.timing_cache}")
    if opts.dla_core is not None:
        cmd += [f"--useDLACore={opts.dla_core}", "--allowGPUFallback"]
    return cmd


def describe_trtexec(onnx: Path, engine: Path, opts: BuildOptions, profile: Profile,
                     calibration_cache: Path | None) -> str:
    lines = ["equivalent trtexec command:", "  " + shlex.join(trtexec_command(onnx, engine, opts, profile, calibration_cache))]
    if opts.precision == "int8":
        lines.append("  (trtexec cannot calibrate from images: it reads the calibration cache this tool writes)")
    lines.append(f"  then register its engine for the node: {PROG} {shlex.quote(str(onnx))} --adopt {shlex.quote(str(engine))}"
                 + ("" if opts.precision == "fp16" else f" --precision {opts.precision}"))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Building


def _dtype_name(dtype: trt.DataType) -> str:
    names = {
        trt.DataType.FLOAT: "float32",
        trt.DataType.HALF: "float16",
        trt.DataType.INT8: "int8",
        trt.DataType.INT32: "int32",
        trt.DataType.BOOL: "bool",
        trt.DataType.UINT8: "uint8",
    }
    return names.get(dtype, str(dtype))


def _tensor_spec(tensor: trt.ITensor) -> TensorSpec:
    dims = tensor.shape
    return TensorSpec(tensor.name, _dtype_name(tensor.dtype), [int(dims[i]) for i in range(len(dims))])


def _parse_onnx(onnx: Path, network: trt.INetworkDefinition, logger: trt.ILogger) -> trt.OnnxParser:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx.read_bytes(), str(onnx)):
        errors = []
        for i in range(parser.num_errors):
            error = parser.get_error(i)
            errors.append(f"node {error.node()}: {error.desc()}")
        raise BuildError(f"TensorRT's ONNX parser rejected {onnx}: " + "; ".join(errors or ["no details"]))
    return parser


def _check_interface(network: trt.INetworkDefinition, onnx: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    inputs = [_tensor_spec(network.get_input(i)) for i in range(network.num_inputs)]
    outputs = [_tensor_spec(network.get_output(i)) for i in range(network.num_outputs)]
    found = {t.name: t.dtype for t in inputs + outputs}
    ok_inputs = [(t.name, t.dtype, len(t.shape)) for t in inputs] == [(INPUT, "uint8", 4)]
    wanted = {LABELS: "int32", CONFIDENCE: "float32"}
    ok_outputs = LABELS in found and all(wanted.get(t.name) == t.dtype for t in outputs)
    if not (ok_inputs and ok_outputs):
        raise BuildError(
            f"{onnx} does not have drn-export's interface (input images:uint8 NHWC, outputs labels:int32 "
            f"[, confidence:float32]); found {found}. Export it with drn-export"
        )
    return inputs, outputs


def _load_timing_cache(config: trt.IBuilderConfig, path: Path | None, log: Callable[[str], None]) -> None:
    if path is None:
        return
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, False):
        log(f"timing cache {path} was made by another TensorRT version or GPU: starting a new one")
        config.set_timing_cache(config.create_timing_cache(b""), False)


def _set_precision(builder: trt.Builder, config: trt.IBuilderConfig, network: trt.INetworkDefinition,
                   opts: BuildOptions, calibrator: trt.IInt8Calibrator | None, calib_shape: tuple[int, ...] | None,
                   log: Callable[[str], None]) -> None:
    if opts.precision == "fp32":
        return
    if TRT_VERSION < (11, 0):
        if not builder.platform_has_fast_fp16:
            log("warning: this GPU has no fast fp16; the engine may be no faster than fp32")
        config.set_flag(trt.BuilderFlag.FP16)
        if opts.precision == "int8" and calibrator is not None and calib_shape is not None:
            config.set_flag(trt.BuilderFlag.INT8)
            config.int8_calibrator = calibrator
            calib_profile = builder.create_optimization_profile()
            fixed = trt.Dims(list(calib_shape))
            calib_profile.set_shape(INPUT, fixed, fixed, fixed)
            if not config.set_calibration_profile(calib_profile):
                raise BuildError(f"TensorRT rejected the calibration shape {shape_str(calib_shape)}")
        return
    raise BuildError(precision_problem(opts.precision, TRT_VERSION) or f"cannot build {opts.precision}")


def _use_dla(builder: trt.Builder, config: trt.IBuilderConfig, network: trt.INetworkDefinition, core: int,
             log: Callable[[str], None]) -> None:
    cores = builder.num_DLA_cores
    if core >= cores:
        raise BuildError(f"--dla-core {core}: this device has {cores} DLA core(s)")
    config.DLA_core = core
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    on_dla = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if config.can_run_on_DLA(layer):
            config.set_device_type(layer, trt.DeviceType.DLA)
            on_dla += 1
    log(f"{on_dla} of {network.num_layers} layers can run on DLA core {core}; the rest fall back to the GPU")


def build_engine(onnx: str | Path, engine: str | Path | None = None, opts: BuildOptions | None = None,
                 device_index: int = 0, log: Callable[[str], None] = print) -> Path:
    """Build ``onnx`` into an engine (default name: see engine_meta.default_engine_path) and write its metadata."""
    require_tensorrt()
    from drn_perception.inference import tensorrt_backend as rt

    opts = opts or BuildOptions()
    opts.check()
    onnx = Path(onnx)
    if not onnx.is_file():
        raise FileNotFoundError(f"ONNX model {onnx} not found")
    problem = precision_problem(opts.precision, TRT_VERSION, hasattr(trt, "IInt8EntropyCalibrator2"))
    if problem:
        raise UnsupportedTensorRT(problem)
    info = read_model_info(onnx)
    profile = Profile.parse(opts.shapes)
    rt.set_device(device_index)
    env = rt.runtime_env(device_index)
    engine_path = Path(engine) if engine is not None else default_engine_path(onnx, env, opts.precision)
    onnx_sha = sha256_file(onnx)

    calib_cache = None
    if opts.precision == "int8":
        calib_cache = CalibrationCache(opts.calibration_cache or default_cache_path(onnx, onnx_sha))
    log(describe_trtexec(onnx, engine_path, opts, profile, calib_cache.path if calib_cache else None))

    logger = rt.trt_logger()
    builder = trt.Builder(logger)
    flags = 0
    if TRT_VERSION < (10, 0):
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = _parse_onnx(onnx, network, logger)
    inputs, outputs = _check_interface(network, onnx)

    config = builder.create_builder_config()
    if opts.workspace_mb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts.workspace_mb << 20)
    trt_profile = builder.create_optimization_profile()
    trt_profile.set_shape(INPUT, trt.Dims(list(profile.min)), trt.Dims(list(profile.opt)), trt.Dims(list(profile.max)))
    config.add_optimization_profile(trt_profile)
    _load_timing_cache(config, opts.timing_cache, log)

    calibrator = None
    calib_record: dict | None = None
    calib_shape = None
    feed = None
    batches = None
    if calib_cache is not None:
        from drn_perception.deploy.calibration import create_entropy_calibrator

        calib_shape = (opts.calibration_batch, profile.opt[1], profile.opt[2], 3)
        if opts.calibration is not None:
            frames = open_frames(opts.calibration, height=profile.opt[1], width=profile.opt[2],
                                 topic=opts.calibration_topic, max_frames=opts.calibration_frames)
            batches = CalibrationBatches(frames, opts.calibration_batch, profile.opt[1], profile.opt[2])
            log(f"calibrating on {frames.description}, batches of {shape_str(calib_shape)}")
        elif calib_cache.exists():
            log(f"using calibration cache {calib_cache.path}")
        else:
            raise CalibrationError(
                f"--precision int8 needs --calibration DATA (image folder, DATASET:SPLIT, bag, synthetic) or an existing "
                f"calibration cache ({calib_cache.path} not found)"
            )
        feed = CalibrationFeed(batches, rt.DeviceBuffer)
        calibrator = create_entropy_calibrator(feed, calib_cache, opts.calibration_batch)
        calib_record = {"source": opts.calibration, "cache": str(calib_cache.path), "batch": opts.calibration_batch}

    _set_precision(builder, config, network, opts, calibrator, calib_shape, log)
    if opts.dla_core is not None:
        _use_dla(builder, config, network, opts.dla_core, log)

    log(f"building {engine_path.name} with {env.describe()}, {opts.precision}, shapes {profile} ...")
    start = time.monotonic()
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if feed is not None:
            feed.close()
    seconds = time.monotonic() - start
    if feed is not None and feed.error is not None:
        raise BuildError(f"calibration failed: {feed.error}") from feed.error
    if serialized is None:
        raise BuildError("TensorRT could not build the engine (see the TensorRT messages above)")
    if calib_record is not None and batches is not None:
        calib_record["frames"] = batches.frames_used
        if batches.frames_used == 0:
            log("warning: no full calibration batch was fed; TensorRT used the calibration cache, if any")
    atomic_write(engine_path, bytes(memoryview(serialized)))
    if opts.timing_cache is not None:
        atomic_write(opts.timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    del parser

    build = {
        "tool": PROG,
        "time": now_iso(),
        "seconds": round(seconds, 1),
        "workspace_mb": opts.workspace_mb,
        "dla_core": opts.dla_core,
        "timing_cache": str(opts.timing_cache) if opts.timing_cache else None,
        "calibration": calib_record,
    }
    meta = make_meta(env, opts.precision, inputs, outputs, profile, onnx, onnx_sha, engine_path, info, build)
    meta.write(engine_path)
    log(f"wrote {engine_path} ({engine_path.stat().st_size / 2**20:.1f} MiB, {seconds:.0f} s) and {engine_path.name}.json")
    return engine_path


def make_meta(env: RuntimeEnv, precision: str, inputs: list[TensorSpec], outputs: list[TensorSpec], profile: Profile,
              onnx: Path, onnx_sha: str, engine_path: Path, info: ModelInfo, build: dict) -> EngineMeta:
    """The metadata record of a freshly written engine file."""
    try:
        onnx_ref = str(onnx.resolve().relative_to(engine_path.resolve().parent))
    except ValueError:
        onnx_ref = str(onnx.resolve())
    return EngineMeta(
        tensorrt_version=env.tensorrt_version,
        gpu_name=env.gpu_name,
        compute_capability=env.compute_capability,
        precision=precision,
        inputs=inputs,
        outputs=outputs,
        profile=profile,
        onnx_sha256=onnx_sha,
        onnx_path=onnx_ref,
        engine_sha256=sha256_file(engine_path),
        model=info,
        build=build,
    )


def adopt_engine(onnx: str | Path, engine: str | Path, precision: str, device_index: int = 0,
                 log: Callable[[str], None] = print) -> Path:
    """Write the metadata for an engine built elsewhere on this machine (e.g. by trtexec) from ``onnx``."""
    require_tensorrt()
    from drn_perception.inference import tensorrt_backend as rt

    onnx, engine = Path(onnx), Path(engine)
    for path in (onnx, engine):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found")
    info = read_model_info(onnx)
    rt.set_device(device_index)
    env = rt.runtime_env(device_index)
    runtime = trt.Runtime(rt.trt_logger())
    cuda_engine = runtime.deserialize_cuda_engine(engine.read_bytes())
    if cuda_engine is None:
        raise EngineError(f"TensorRT {env.tensorrt_version} cannot deserialise {engine}: was it built with this version on this GPU?")
    inputs: list[TensorSpec] = []
    outputs: list[TensorSpec] = []
    for i in range(cuda_engine.num_io_tensors):
        name = cuda_engine.get_tensor_name(i)
        dims = cuda_engine.get_tensor_shape(name)
        spec = TensorSpec(name, _dtype_name(cuda_engine.get_tensor_dtype(name)), [int(dims[j]) for j in range(len(dims))])
        (inputs if cuda_engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(spec)
    shapes = [rt.dims_tuple(d) for d in cuda_engine.get_tensor_profile_shape(INPUT, 0)]
    profile = Profile.from_dict({"min": shapes[0], "opt": shapes[1], "max": shapes[2]})
    build = {"tool": "adopted (built outside drn-build-engine)", "time": now_iso()}
    meta = make_meta(env, precision, inputs, outputs, profile, onnx, sha256_file(onnx), engine, info, build)
    path = meta.write(engine)
    log(f"wrote {path} for {engine} ({env.describe()}, {precision}, shapes {profile})")
    return path


# ---------------------------------------------------------------------------------------------
# Command line


def make_arg_parser() -> argparse.ArgumentParser:
    from drn_perception.cli import Parser  # one-line errors, exit 2

    p = Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("onnx", type=Path, help="ONNX model exported by drn-export (model.json beside it)")
    p.add_argument("-o", "--output", type=Path,
                   help="engine path (default: <model>.trt<version>.<gpu>.<precision>.engine beside the ONNX model)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16", help="default: fp16")
    p.add_argument("--calibration", metavar="DATA_OR_BAG",
                   help="int8 calibration frames: image folder, DATASET:SPLIT, list.txt, rosbag2, or synthetic[:N]")
    p.add_argument("--calibration-topic", help="image topic of the calibration bag (default: its only image topic)")
    p.add_argument("--calibration-frames", type=int, default=DEFAULT_MAX_FRAMES,
                   help=f"at most this many frames, spread over the source (default {DEFAULT_MAX_FRAMES})")
    p.add_argument("--calibration-batch", type=int, default=8, help="calibration batch size (default 8)")
    p.add_argument("--calibration-cache", type=Path,
                   help="calibration cache file (default: <model>.<sha256[:12]>.calib beside the ONNX model)")
    p.add_argument("--shapes", default=DEFAULT_SHAPES, metavar="MIN/OPT/MAX",
                   help=f"NxHxW[x3] of the 'images' profile (default {DEFAULT_SHAPES})")
    p.add_argument("--workspace", type=int, metavar="MB", help="builder workspace limit in MiB (default: TensorRT's)")
    p.add_argument("--timing-cache", type=Path, metavar="FILE", help="read and update this timing cache (faster rebuilds)")
    p.add_argument("--dla-core", type=int, metavar="N", help="put what the DLA can run on DLA core N (Jetson; fp16/int8)")
    p.add_argument("--device", default="cuda:0", help="CUDA device (default cuda:0)")
    p.add_argument("--trtexec-only", action="store_true", help="print the equivalent trtexec command and exit")
    p.add_argument("--adopt", type=Path, metavar="ENGINE",
                   help="write the metadata for ENGINE, built from the ONNX model by trtexec on this machine")
    p.add_argument("--check", action="store_true",
                   help="only check, without TensorRT, whether each supported TensorRT version's ONNX parser takes "
                        "the model (any ONNX file); exit 0 all do, 1 some refuse")
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_arg_parser().parse_args(argv)
    if args.check:
        from drn_perception.deploy.trt_check import run_check

        return run_check(args.onnx, f"{PROG} --check")
    opts = BuildOptions(
        precision=args.precision, shapes=args.shapes, workspace_mb=args.workspace, timing_cache=args.timing_cache,
        dla_core=args.dla_core, calibration=args.calibration, calibration_topic=args.calibration_topic,
        calibration_frames=args.calibration_frames, calibration_batch=args.calibration_batch,
        calibration_cache=args.calibration_cache,
    )
    try:
        device_index = parse_cuda_device(args.device)
        opts.check()
        if not args.onnx.is_file():
            raise FileNotFoundError(f"ONNX model {args.onnx} not found")
        info = read_model_info(args.onnx)
        profile = Profile.parse(opts.shapes)
        if args.trtexec_only:
            engine = args.output
            if engine is None:
                try:
                    require_tensorrt()
                except BackendUnavailable:
                    # Printing a command needs no TensorRT; the default name carries the TensorRT
                    # version and GPU, which only this machine's TensorRT can tell.
                    engine = args.onnx.with_name(f"{args.onnx.stem}.{opts.precision}.engine")
                    print(f"{PROG}: note: TensorRT is not importable here, so the engine is named {engine} "
                          "(its default name carries the TensorRT version and GPU); pass -o to choose one",
                          file=sys.stderr)
                else:
                    from drn_perception.inference import tensorrt_backend as rt

                    engine = default_engine_path(args.onnx, rt.runtime_env(device_index), opts.precision)
            cache = None
            if opts.precision == "int8":
                cache = opts.calibration_cache or default_cache_path(args.onnx, sha256_file(args.onnx))
            print(describe_trtexec(args.onnx, engine, opts, profile, cache))
            return 0
        if args.adopt is not None:
            adopt_engine(args.onnx, args.adopt, opts.precision, device_index)
        else:
            build_engine(args.onnx, args.output, opts, device_index)
    except (BackendUnavailable, FileNotFoundError, ValueError) as exc:  # CalibrationError is a ValueError
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as exc:  # BuildError, EngineError, CudaError
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:  # cuda-python missing while tensorrt is there
        print(f"{PROG}: error: {exc.msg}; install cuda-python matching your CUDA version", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
