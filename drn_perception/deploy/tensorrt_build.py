"""drn-build-engine: an exported ONNX model -> a TensorRT engine and its metadata, on this machine.

    drn-build-engine model.onnx [--precision fp32|fp16|int8] [--calibration DATA_OR_BAG]
        [--sizes HxW[,HxW] --cameras N | --shapes MIN/OPT/MAX] [--workspace MB] [--timing-cache FILE]
        [--dla-core N] [-o ENGINE] | --check | --trtexec-only | --adopt ENGINE

Supported: TensorRT 8.6 (JetPack 6.0), 10.3 (JetPack 6.1/6.2), 10.13-10.16 (JetPack 7.x) and
11.x; how each builds each precision is decided in one place, inference/trt_versions.build_plan:
from 10 on, a strongly typed network parsed from the graph that carries the precision (the fp16
graph, the symmetric int8 Q/DQ graph: deploy/tensorrt_graphs.py); on 8.6, BuilderFlag.FP16 on the
fp32 graph and BuilderFlag.INT8 on the Q/DQ graph. Given the exported fp32 model, this tool writes
the graph the plan needs first (with ModelOpt, into a temporary folder; int8 from ``--calibration``
frames), so one command builds every precision. There is no implicit INT8 calibration.

The default profile follows the model's size and ``--cameras`` (deploy/tensorrt_profile.py); the
activation memory at its maximum is printed before the build. The engine is written as
``<model>.trt<version>.<gpu>.<precision>.engine`` beside the ONNX model (unless ``-o``), with
``<engine>.json`` (see inference/engine_meta.py). The equivalent ``trtexec`` command is printed too;
an engine built with trtexec is registered with ``--adopt ENGINE``.

This is the one owner of engine builds: the node's first start (``inference.open_segmenter``)
runs this command line as a separate process (``BuildRequest.argv()``) while ONNX Runtime serves.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from drn_perception.deploy.calibration import DEFAULT_MAX_FRAMES
from drn_perception.deploy.graph_files import read_sidecar
from drn_perception.deploy.tensorrt_graphs import graph_kind, plan_for, prepare_graph
from drn_perception.deploy.tensorrt_profile import activation_memory, default_profile, parse_sizes
from drn_perception.deploy.trtexec import describe_trtexec
from drn_perception.inference.base import BackendUnavailable
from drn_perception.inference.engine_meta import (
    CONFIDENCE,
    EXAMPLE_SHAPES,
    INPUT,
    LABELS,
    EngineError,
    EngineMeta,
    Profile,
    RuntimeEnv,
    TensorSpec,
    atomic_write,
    default_engine_path,
    now_iso,
    parse_cuda_device,
    read_model_info,
    shape_str,
)
from drn_perception.inference.trt_versions import (
    PRECISIONS,
    BuildPlan,
    check_tensorrt_version,
    matrix_line,
    parse_trt_version,
)
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
DEFAULT_CALIBRATION_FRAMES = 32  # ModelOpt calibrates on the CPU: a few dozen frames, not hundreds


class BuildError(RuntimeError):
    """The engine could not be built; the message says why and what to change."""


@dataclass
class BuildOptions:
    precision: str | None = None  # None: the graph's own (fp16/int8 graphs), fp16 for an exported fp32 graph
    shapes: str | None = None  # MIN/OPT/MAX; None: from sizes and cameras
    sizes: str | None = None  # "HxW[,HxW]"; None: the model's size (sidecar)
    cameras: int = 1
    workspace_mb: int | None = None
    timing_cache: Path | None = None
    dla_core: int | None = None
    calibration: str | None = None
    calibration_topic: str | None = None
    calibration_frames: int = DEFAULT_CALIBRATION_FRAMES

    def check(self) -> None:
        """Option combinations that no TensorRT version accepts (ValueError)."""
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}: choose {', '.join(PRECISIONS)}")
        if self.workspace_mb is not None and self.workspace_mb <= 0:
            raise ValueError(f"--workspace must be a positive number of MiB, got {self.workspace_mb}")
        if self.dla_core is not None:
            if self.dla_core < 0:
                raise ValueError(f"--dla-core must be 0 or more, got {self.dla_core}")
            if self.precision == "fp32":
                raise ValueError("--dla-core needs --precision fp16 or int8 (the DLA has no fp32)")
        if self.calibration is not None and self.precision not in ("int8", None):
            raise ValueError("--calibration is only used with --precision int8")
        if self.calibration_frames < 1:
            raise ValueError("--calibration-frames must be at least 1")
        if self.cameras < 1:
            raise ValueError(f"--cameras must be at least 1, got {self.cameras}")
        if self.shapes is not None and (self.sizes is not None or self.cameras != 1):
            raise ValueError("--shapes sets the whole profile: leave out --sizes and --cameras")
        if self.sizes is not None:
            parse_sizes(self.sizes)

    def profile(self, info: dict) -> Profile:
        if self.shapes is not None:
            return Profile.parse(self.shapes)
        return default_profile(info, parse_sizes(self.sizes) if self.sizes else None, self.cameras)


def require_tensorrt() -> None:
    """BackendUnavailable unless a supported TensorRT is importable."""
    if _TRT_PROBLEM:
        raise BackendUnavailable(
            "building engines needs NVIDIA's TensorRT Python bindings (tensorrt: ships with JetPack as python3-libnvinfer, "
            f"on x86 `pip install tensorrt`) and cuda-python (pip install drn_perception[tensorrt-jp6] or "
            f"[tensorrt-jp7], docs/tensorrt.md); tensorrt is {_TRT_PROBLEM}"
        )
    check_tensorrt_version(trt.__version__)


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


def _network_and_config(builder: trt.Builder, plan: BuildPlan,
                        log: Callable[[str], None]) -> tuple[trt.INetworkDefinition, trt.IBuilderConfig]:
    """The one version branch of the build (the plan came from trt_versions.build_plan)."""
    if TRT_VERSION >= (10, 0):  # strongly typed: each tensor's type comes from the graph; no precision flags
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        config = builder.create_builder_config()
    else:  # 8.6: weakly typed, explicit batch, builder flags allow fp16 / the Q/DQ graph's int8
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
        config = builder.create_builder_config()
        if "FP16" in plan.builder_flags:
            if not builder.platform_has_fast_fp16:
                log("warning: this GPU has no fast fp16; the engine may be no faster than fp32")
            config.set_flag(trt.BuilderFlag.FP16)
        if "INT8" in plan.builder_flags:
            config.set_flag(trt.BuilderFlag.INT8)
    return network, config


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
    info = read_model_info(onnx)
    profile = opts.profile(read_sidecar(onnx))
    plan, kind = plan_for(onnx, opts.precision, opts.calibration, TRT_VERSION)
    rt.set_device(device_index)
    env = rt.runtime_env(device_index)
    engine_path = Path(engine) if engine is not None else default_engine_path(onnx, env, plan.precision)
    onnx_sha = sha256_file(onnx)
    log(f"TensorRT {env.tensorrt_version}: {plan.describe()}")
    log(activation_memory(onnx, profile.max).describe())

    with tempfile.TemporaryDirectory(prefix="drn-trt-graph-") as folder:
        graph, calib_record = prepare_graph(onnx, plan, kind, (profile.opt[1], profile.opt[2]), Path(folder), opts.calibration,
                                            opts.calibration_frames, opts.calibration_topic, log)
        log(describe_trtexec(onnx, graph if graph == onnx else None, engine_path, plan, profile,
                             opts.workspace_mb, opts.timing_cache, opts.dla_core))
        logger = rt.trt_logger()
        builder = trt.Builder(logger)
        network, config = _network_and_config(builder, plan, log)
        parser = _parse_onnx(graph, network, logger)
        inputs, outputs = _check_interface(network, onnx)
        if opts.workspace_mb is not None:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts.workspace_mb << 20)
        trt_profile = builder.create_optimization_profile()
        trt_profile.set_shape(INPUT, trt.Dims(list(profile.min)), trt.Dims(list(profile.opt)),
                              trt.Dims(list(profile.max)))
        config.add_optimization_profile(trt_profile)
        _load_timing_cache(config, opts.timing_cache, log)
        if opts.dla_core is not None:
            _use_dla(builder, config, network, opts.dla_core, log)
        graph_record = None if graph == onnx else {"written_from": onnx.name, "sha256": sha256_file(graph)}

        log(f"building {engine_path.name} with {env.describe()}, {plan.precision}, shapes {profile} ...")
        start = time.monotonic()
        serialized = builder.build_serialized_network(network, config)
        seconds = time.monotonic() - start
    if serialized is None:
        raise BuildError("TensorRT could not build the engine (see the TensorRT messages above)")
    atomic_write(engine_path, bytes(memoryview(serialized)))
    if opts.timing_cache is not None:
        atomic_write(opts.timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    del parser

    build = {
        "tool": PROG,
        "time": now_iso(),
        "seconds": round(seconds, 1),
        "plan": plan.describe(),
        "graph": graph_record,
        "workspace_mb": opts.workspace_mb,
        "dla_core": opts.dla_core,
        "timing_cache": str(opts.timing_cache) if opts.timing_cache else None,
        "calibration": calib_record,
    }
    meta = make_meta(env, plan.precision, inputs, outputs, profile, onnx, onnx_sha, engine_path, info, build)
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
    p.add_argument("onnx", type=Path, help="ONNX model exported by drn-export (model.json beside it), or the fp16 / "
                   "int8 Q/DQ graph drn-quantize --target tensorrt wrote")
    p.add_argument("-o", "--output", type=Path,
                   help="engine path (default: <model>.trt<version>.<gpu>.<precision>.engine beside the ONNX model)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="default: the graph's own for an fp16/int8 graph, fp16 for an exported fp32 model")
    p.add_argument("--calibration", metavar="DATA_OR_BAG",
                   help="int8 from an exported fp32 model: frames the Q/DQ graph is calibrated on (ModelOpt, CPU): "
                        "image folder, DATASET:SPLIT, list.txt, rosbag2, or synthetic[:N]")
    p.add_argument("--calibration-topic", help="image topic of the calibration bag (default: its only image topic)")
    p.add_argument("--calibration-frames", type=int, default=DEFAULT_CALIBRATION_FRAMES,
                   help=f"at most this many frames, spread over the source (default {DEFAULT_CALIBRATION_FRAMES}; "
                        f"the sources hold up to {DEFAULT_MAX_FRAMES} by default elsewhere)")
    p.add_argument("--sizes", metavar="HxW[,HxW]",
                   help="network input sizes the cameras give (default: the model's size from its sidecar)")
    p.add_argument("--cameras", type=int, default=1, help="cameras batched together: the profile's batch (default 1)")
    p.add_argument("--shapes", metavar="MIN/OPT/MAX",
                   help=f"the whole profile, NxHxW[x3] each, e.g. {EXAMPLE_SHAPES} (instead of --sizes/--cameras)")
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


def _print_trtexec(args, opts: BuildOptions, profile: Profile, device_index: int) -> None:
    try:
        print(activation_memory(args.onnx, profile.max).describe())
    except Exception as exc:  # noqa: BLE001 - a note only: the command is printed whatever the graph holds
        print(f"activation memory at the profile's maximum: not computed ({type(exc).__name__}: {exc})")
    try:
        require_tensorrt()
    except BackendUnavailable:
        # Printing a command needs no TensorRT: print it for each typing (8.6 and 10+).
        versions: list[tuple[int, ...]] = [(8, 6), (10, 3)]
        print(f"{PROG}: note: TensorRT is not importable here: the commands for TensorRT 8.6 and for 10/11 follow; "
              "the default engine name carries the version and GPU, so pass -o to choose one", file=sys.stderr)
        env = None
    else:
        from drn_perception.inference import tensorrt_backend as rt

        versions = [TRT_VERSION]
        env = rt.runtime_env(device_index)
    for version in versions:
        label = matrix_line(version) if env is not None else ("8.6" if version < (10, 0) else "10.x and 11.x")
        try:
            plan, kind = plan_for(args.onnx, opts.precision, opts.calibration, version)
        except ValueError as exc:
            if env is not None:
                raise
            print(f"TensorRT {label}: not this graph: {exc}")
            continue
        engine = args.output
        if engine is None:
            engine = (default_engine_path(args.onnx, env, plan.precision) if env is not None
                      else args.onnx.with_name(f"{args.onnx.stem}.{plan.precision}.engine"))
        print(f"TensorRT {label}:")
        print(describe_trtexec(args.onnx, args.onnx if kind != "fp32" or plan.graph == "fp32" else None, engine,
                               plan, profile, opts.workspace_mb, opts.timing_cache, opts.dla_core))


def main(argv: list[str] | None = None) -> int:
    args = make_arg_parser().parse_args(argv)
    if args.check:
        from drn_perception.deploy.trt_check import run_check

        return run_check(args.onnx, f"{PROG} --check")
    opts = BuildOptions(
        precision=args.precision, shapes=args.shapes, sizes=args.sizes, cameras=args.cameras,
        workspace_mb=args.workspace, timing_cache=args.timing_cache, dla_core=args.dla_core,
        calibration=args.calibration, calibration_topic=args.calibration_topic,
        calibration_frames=args.calibration_frames,
    )
    try:
        device_index = parse_cuda_device(args.device)
        opts.check()
        if not args.onnx.is_file():
            raise FileNotFoundError(f"ONNX model {args.onnx} not found")
        info = read_model_info(args.onnx)
        profile = opts.profile(read_sidecar(args.onnx))
        if args.trtexec_only:
            _print_trtexec(args, opts, profile, device_index)
            return 0
        if args.adopt is not None:
            kind = graph_kind(args.onnx)[0]
            adopt_engine(args.onnx, args.adopt, opts.precision or ("fp16" if kind == "fp32" else kind), device_index)
        else:
            build_engine(args.onnx, args.output, opts, device_index)
    except (BackendUnavailable, FileNotFoundError, ValueError) as exc:  # CalibrationError is a ValueError
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as exc:  # BuildError, EngineError, CudaError
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:  # cuda-python or ModelOpt missing while tensorrt is there
        print(f"{PROG}: error: {exc.msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
