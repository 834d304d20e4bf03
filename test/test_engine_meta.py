"""The plain-Python half of the TensorRT support, on real files: the supported versions and how each
builds each precision, engine metadata, default names, the rebuild policy, the default profile and
its activation memory, buffer bookkeeping. (Calibration frames: test_calibration.py.)"""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from drn_perception.inference.engine_meta import (
    EXAMPLE_SHAPES,
    BufferPool,
    EngineError,
    EngineMeta,
    EngineMismatch,
    Profile,
    RuntimeEnv,
    TensorSpec,
    UnsupportedTensorRT,
    batch_chunks,
    check_tensorrt_version,
    decide,
    default_engine_path,
    find_onnx,
    gpu_slug,
    meta_path,
    nbytes_of,
    parse_cuda_device,
    parse_engine_name,
    parse_trt_version,
    BuildRequest,
)
from drn_perception.deploy.tensorrt_build import make_meta
from drn_perception.deploy.tensorrt_profile import activation_memory, default_profile, parse_sizes
from drn_perception.inference.trt_versions import PRECISIONS, build_plan, graph_problem, matrix_line
from drn_perception.inference.base import BackendUnavailable
from drn_perception.model_info import ModelInfo, cityscapes, sha256_file, sidecar_path

ORIN_JP60 = RuntimeEnv("8.6.2.3", "Orin", "8.7")
ORIN_JP6 = RuntimeEnv("10.3.0.30", "Orin", "8.7")
XAVIER_JP60 = RuntimeEnv("8.6.2.3", "Xavier", "7.2")


# ---------------------------------------------------------------------------------------------
# Versions, names, profile


def test_supported_matrix_and_the_clear_message_outside_it():
    assert parse_trt_version("10.3.0.30") == (10, 3, 0, 30)
    for text, line in (("8.6.2.3", "8.6"), ("10.3.0.30", "10.3"), ("10.13.3", "10.13-10.16"), ("10.16.0", "10.13-10.16"),
                       ("11.1.0", "11.x"), ("11.4.1", "11.x")):
        assert check_tensorrt_version(text) == parse_trt_version(text)
        assert matrix_line(parse_trt_version(text)) == line
    for outside in ("8.5.2.2", "8.4.3.1", "7.1.3.0", "10.0.1", "10.8.0", "9.2.0", "12.0.0"):
        with pytest.raises(UnsupportedTensorRT, match="is not supported") as err:
            check_tensorrt_version(outside)
        assert outside in str(err.value) and "10.13-10.16 (JetPack 7.x)" in str(err.value)
        assert isinstance(err.value, BackendUnavailable)  # the node reports it like a missing backend
    with pytest.raises(UnsupportedTensorRT, match="Python 3.8"):
        check_tensorrt_version("8.5.2.2")  # JetPack 5
    for bad in ("", "ten", "10"):
        with pytest.raises(ValueError):
            parse_trt_version(bad)


@pytest.mark.parametrize("version", [(10, 3, 0), (10, 16, 0), (11, 1, 0), (11, 4, 1)])
def test_strongly_typed_versions_take_precision_from_the_graph(version):
    for precision in PRECISIONS:
        plan = build_plan(version, precision)
        assert plan.strongly_typed and plan.builder_flags == () and plan.graph == precision
    assert build_plan(version, "int8").float_precision == "fp16"
    plan = build_plan(version, "fp16")
    assert graph_problem(plan, "fp16", None, "10.3") is None and graph_problem(plan, "fp32", None, "10.3") is None
    assert "pass --precision int8" in graph_problem(plan, "int8", "fp16", "10.3")


def test_tensorrt_86_builds_fp16_from_fp32_with_the_flag_and_int8_from_fp32_qdq():
    fp16, int8, fp32 = (build_plan((8, 6, 1), p) for p in ("fp16", "int8", "fp32"))
    assert (fp16.strongly_typed, fp16.graph, fp16.builder_flags) == (False, "fp32", ("FP16",))
    assert (int8.graph, int8.builder_flags, int8.float_precision) == ("int8", ("INT8", "FP16"), "fp32")
    assert fp32.builder_flags == ()
    assert graph_problem(int8, "int8", "fp32", "8.6.1") is None
    assert "--float-precision fp32" in graph_problem(int8, "int8", "fp16", "8.6.1")
    assert graph_problem(fp16, "fp16", None, "8.6.1") is None  # the AutoCast graph parses on 8.6 as well
    with pytest.raises(ValueError, match="unknown precision"):
        build_plan((10, 3), "bf16")
    with pytest.raises(UnsupportedTensorRT):
        build_plan((8, 5, 2), "fp16")


def test_rebuild_request_carries_profile_and_calibration_source(model):
    engine = build_like_the_builder(model, ORIN_JP6, "int8",
                                    build={"tool": "t", "calibration": {"source": "/data/cam.bag", "frames": 32}})
    request = BuildRequest.like(engine, EngineMeta.read(engine))
    assert request.argv() == ["--precision", "int8", "--shapes", EXAMPLE_SHAPES, "--calibration", "/data/cam.bag"]
    assert BuildRequest().argv() == ["--precision", "fp16"]  # no --shapes: the builder's default profile


def test_default_profile_follows_model_size_and_cameras():
    info = {"trained_synthetic_size": [256, 512]}
    assert str(default_profile(info)) == "1x256x512x3/1x256x512x3/1x256x512x3"
    assert str(default_profile({"input_size": [480, 640], **info}, cameras=3)) == "1x480x640x3/3x480x640x3/3x480x640x3"
    two = default_profile(info, parse_sizes("720x1280,480x640"), cameras=2)
    assert (two.min, two.opt, two.max) == ((1, 480, 640, 3), (2, 720, 1280, 3), (2, 720, 1280, 3))
    assert default_profile({}).max == (1, 512, 1024, 3)
    for bad in ("640", "4x640", "axb"):
        with pytest.raises(ValueError, match="--sizes"):
            parse_sizes(bad)
    with pytest.raises(ValueError, match="--cameras"):
        default_profile(info, cameras=0)


def test_activation_memory_is_computed_from_the_graph(tiny_onnx_model):
    small = activation_memory(tiny_onnx_model, (1, 64, 128, 3))
    big = activation_memory(tiny_onnx_model, (2, 128, 256, 3))
    # 19 float32 scores at input size are among the largest tensors: 19 * H * W * 4 bytes per image
    assert small.largest_bytes >= 19 * 64 * 128 * 4
    assert big.largest_bytes == 8 * small.largest_bytes
    assert big.peak_bytes == pytest.approx(8 * small.peak_bytes, rel=1e-3)  # shape tensors do not scale
    assert small.largest_bytes < small.peak_bytes < 50 * small.largest_bytes
    assert "1x64x128x3" in small.describe() and "MiB" in small.describe()


def test_default_engine_names_are_keyed_by_tensorrt_gpu_and_precision(tmp_path):
    onnx = tmp_path / "drn_c_26.onnx"
    names = {default_engine_path(onnx, env, p).name
             for env in (ORIN_JP60, ORIN_JP6, XAVIER_JP60, RuntimeEnv("8.5.2.2", "Orin", "8.6"))
             for p in ("fp32", "fp16", "int8")}
    assert len(names) == 12
    engine = default_engine_path(onnx, ORIN_JP6, "fp16")
    assert engine == tmp_path / "drn_c_26.trt10.3.0.orin-sm87.fp16.engine"
    assert parse_engine_name(engine) == {"stem": "drn_c_26", "trt": "10.3.0", "gpu": "orin-sm87", "precision": "fp16"}
    assert parse_engine_name(tmp_path / "custom.engine") is None
    assert gpu_slug("NVIDIA GeForce RTX 4090", "8.9") == "rtx-4090-sm89"
    assert gpu_slug("NVIDIA H100 80GB HBM3", "9.0") == "h100-80gb-hbm3-sm90"
    assert gpu_slug("", "8.7") == "gpu-sm87"
    # The engine's metadata never lands on the ONNX model's own sidecar, even for model.engine.
    assert meta_path(tmp_path / "m.engine") == tmp_path / "m.engine.json"
    assert meta_path(tmp_path / "drn_c_26.engine") != sidecar_path(onnx)


def test_profile_parsing_and_checks():
    p = Profile.parse(EXAMPLE_SHAPES)
    assert (p.min, p.opt, p.max) == ((1, 256, 512, 3), (1, 512, 1024, 3), (2, 512, 1024, 3))
    assert str(p) == EXAMPLE_SHAPES
    assert Profile.parse("1x256x512/2x512x1024/4x1024x2048").opt == (2, 512, 1024, 3)
    assert Profile.from_dict(p.to_dict()) == p
    for bad, words in [("1x256x512", "MIN/OPT/MAX"), ("1x7x512/1x512x1024/4x1024x2048", "at least 8"),
                       ("1x256x512/1x512x1024/4x1024x4", "at least 8"),
                       ("1x256x512x4/1x512x1024/4x1024x2048", "NxHxW"), ("2x256x512/1x512x1024/4x1024x2048", "MIN <= OPT"),
                       ("0x256x512/1x512x1024/4x1024x2048", "<= 0"), ("ax256x512/1x512x1024/4x1024x2048", "NxHxW")]:
        with pytest.raises(ValueError, match=words):
            Profile.parse(bad)
    # Any H, W of at least 8: the graph runs every size and crops to it (no multiple-of-8 rule).
    odd = Profile.parse("1x8x8/1x375x1242/2x1001x2047")
    assert (odd.min, odd.max) == ((1, 8, 8, 3), (2, 1001, 2047, 3)) and odd.violation((1, 125, 203, 3)) is None
    assert p.violation((1, 512, 1024, 3)) is None
    assert p.violation((9, 512, 1024, 3)) is None  # larger batches are split, not refused
    assert "height 128" in p.violation((1, 128, 1024, 3)) and "--shapes" in p.violation((1, 128, 1024, 3))
    assert "width 4096" in p.violation((1, 512, 4096, 3))
    assert "minimum batch 2" in Profile.parse("2x256x512/2x256x512/2x256x512").violation((1, 256, 512, 3))


def test_batch_chunks_and_sizes():
    assert batch_chunks(9, 4) == [(0, 4), (4, 8), (8, 9)]
    assert batch_chunks(4, 4) == [(0, 4)]
    assert batch_chunks(1, 4) == [(0, 1)]
    with pytest.raises(ValueError):
        batch_chunks(3, 0)
    assert nbytes_of((2, 512, 1024), 4) == 2 * 512 * 1024 * 4
    with pytest.raises(ValueError, match="dynamic"):
        nbytes_of((-1, 512, 1024), 4)
    assert parse_cuda_device("auto") == 0 and parse_cuda_device("cuda") == 0 and parse_cuda_device("cuda:2") == 2
    for bad in ("cpu", "cuda:x", "dla"):
        with pytest.raises(ValueError, match="CUDA"):
            parse_cuda_device(bad)


# ---------------------------------------------------------------------------------------------
# Metadata files


@pytest.fixture
def model(tmp_path):
    """An exported model as the builder sees it: model.onnx with drn-export's model.json beside it."""
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"onnx-bytes-" + os.urandom(32))
    cs = cityscapes()
    info = ModelInfo(arch="drn_c_26", classes=cs.classes, palette=cs.palette, width=0.25)
    info.write_json(sidecar_path(onnx), onnx_sha256=sha256_file(onnx))
    return onnx


def build_like_the_builder(onnx, env, precision="fp16", engine=None, shapes=EXAMPLE_SHAPES, build=None):
    """What drn-build-engine leaves on disk for ``env``: the serialized engine (here bytes that only TensorRT
    could interpret, and nothing in these tests deserialises) and its metadata, written by the builder's own code."""
    engine = engine or default_engine_path(onnx, env, precision)
    engine.parent.mkdir(parents=True, exist_ok=True)
    engine.write_bytes(b"plan:" + env.tensorrt_version.encode() + os.urandom(64))
    inputs = [TensorSpec("images", "uint8", [-1, -1, -1, 3])]
    outputs = [TensorSpec("labels", "int32", [-1, -1, -1]), TensorSpec("confidence", "float32", [-1, -1, -1])]
    meta = make_meta(env, precision, inputs, outputs, Profile.parse(shapes), onnx, sha256_file(onnx), engine,
                     ModelInfo.read_json(sidecar_path(onnx)), build or {"tool": "test", "workspace_mb": 1024})
    meta.write(engine)
    return engine


def test_metadata_round_trip(model):
    engine = build_like_the_builder(model, ORIN_JP6, "int8")
    doc = json.loads(meta_path(engine).read_text())
    for key in ("tensorrt_version", "gpu_name", "compute_capability", "precision", "inputs", "outputs", "profile",
                "onnx_sha256", "engine_sha256", "classes", "palette", "mean", "std", "build"):
        assert key in doc
    assert doc["tensorrt_version"] == "10.3.0.30" and doc["compute_capability"] == "8.7"
    assert doc["onnx_sha256"] == sha256_file(model) and doc["engine_sha256"] == sha256_file(engine)
    assert doc["onnx_path"] == "model.onnx"  # relative: the folder can move as a whole
    meta = EngineMeta.read(engine)
    assert meta.env == ORIN_JP6 and meta.precision == "int8" and meta.output_names == ["labels", "confidence"]
    assert meta.profile == Profile.parse(EXAMPLE_SHAPES)
    assert meta.model == ModelInfo.read_json(sidecar_path(model))
    assert ModelInfo.read_json(meta_path(engine)).classes == cityscapes().classes  # readable as a sidecar too
    assert EngineMeta.from_dict(meta.to_dict()) == meta


def test_bad_metadata_files_are_named(model, tmp_path):
    engine = build_like_the_builder(model, ORIN_JP6)
    path = meta_path(engine)
    good = json.loads(path.read_text())
    path.write_text("{not json")
    with pytest.raises(EngineError, match="not valid JSON") as err:
        EngineMeta.read(engine)
    assert path.name in str(err.value)
    path.write_text(json.dumps({k: v for k, v in good.items() if k != "gpu_name"}))
    with pytest.raises(EngineError, match="gpu_name"):
        EngineMeta.read(engine)
    path.write_text(json.dumps({**good, "format": 99}))
    with pytest.raises(EngineError, match="format"):
        EngineMeta.read(engine)
    path.write_text(json.dumps({**good, "precision": "fp8"}))
    with pytest.raises(EngineError, match="precision"):
        EngineMeta.read(engine)
    path.unlink()
    with pytest.raises(EngineError, match="not found.*drn-build-engine"):
        EngineMeta.read(engine)


# ---------------------------------------------------------------------------------------------
# The rebuild policy


def test_fresh_engine_is_loaded_under_every_policy(model):
    engine = build_like_the_builder(model, ORIN_JP6)
    for policy in ("never", "if_missing", "if_stale"):
        d = decide(engine, policy, ORIN_JP6)
        assert (d.action, d.engine, d.onnx) == ("load", engine, model)
    assert decide(engine, "never", ORIN_JP6, onnx=model).action == "load"
    with pytest.raises(ValueError, match="if_stale"):
        decide(engine, "always", ORIN_JP6)


def test_missing_engine(model, tmp_path):
    engine = default_engine_path(model, ORIN_JP6, "int8")
    with pytest.raises(FileNotFoundError, match="drn-build-engine .*model.onnx.*if_missing"):
        decide(engine, "never", ORIN_JP6)
    for policy in ("if_missing", "if_stale"):
        d = decide(engine, policy, ORIN_JP6)
        assert (d.action, d.engine, d.onnx) == ("build", engine, model)
        assert d.request.precision == "int8"  # read from the default name
    custom = tmp_path / "elsewhere" / "seg.engine"
    with pytest.raises(FileNotFoundError, match="no ONNX model"):
        decide(custom, "if_missing", ORIN_JP6)
    d = decide(custom, "if_missing", ORIN_JP6, onnx=model)
    assert (d.action, d.engine, d.onnx, d.request.precision) == ("build", custom, model, "fp16")


def test_engine_from_another_jetpack_is_refused_with_the_fix(model):
    old = build_like_the_builder(model, ORIN_JP60, shapes="1x256x512/1x512x1024/2x512x1024",
                                 build={"workspace_mb": 512, "dla_core": 0})
    for policy in ("never", "if_missing"):
        with pytest.raises(EngineMismatch) as err:
            decide(old, policy, ORIN_JP6)
        msg = str(err.value)
        assert "TensorRT 8.6.2.3" in msg and "TensorRT 10.3.0.30" in msg
        assert "drn-build-engine" in msg and "if_stale" in msg
    d = decide(old, "if_stale", ORIN_JP6)
    assert d.action == "build" and d.engine == default_engine_path(model, ORIN_JP6, "fp16") != old
    assert (d.request.shapes, d.request.workspace_mb, d.request.dla_core) == ("1x256x512x3/1x512x1024x3/2x512x1024x3", 512, 0)
    assert "8.6.2.3" in d.reason


def test_engine_for_another_gpu_is_stale(model):
    engine = build_like_the_builder(model, XAVIER_JP60)
    with pytest.raises(EngineMismatch, match=r"Xavier \(sm 7.2\).*Orin \(sm 8.7\)"):
        decide(engine, "never", ORIN_JP60)
    assert decide(engine, "if_stale", ORIN_JP60).engine == default_engine_path(model, ORIN_JP60, "fp16")
    other_cc = RuntimeEnv("8.5.2.2", "Xavier", "8.7")
    with pytest.raises(EngineMismatch, match="sm 8.7"):
        decide(engine, "never", other_cc)


def test_changed_onnx_model_makes_the_engine_stale(model):
    engine = build_like_the_builder(model, ORIN_JP6)
    model.write_bytes(b"retrained")
    with pytest.raises(EngineMismatch, match="ONNX model .*changed"):
        decide(engine, "never", ORIN_JP6)
    d = decide(engine, "if_stale", ORIN_JP6)
    assert (d.action, d.engine) == ("build", engine)  # already the name for this machine: rebuilt in place
    # Without the ONNX model beside it there is nothing to compare with, and nothing to rebuild from.
    model.unlink()
    assert decide(engine, "never", ORIN_JP6).action == "load"


def test_replaced_engine_file_or_lost_metadata_is_stale(model):
    engine = build_like_the_builder(model, ORIN_JP6)
    engine.write_bytes(b"another plan")
    with pytest.raises(EngineMismatch, match="not the file its metadata"):
        decide(engine, "never", ORIN_JP6)
    meta_path(engine).unlink()
    with pytest.raises(EngineMismatch, match="metadata .* not found"):
        decide(engine, "if_missing", ORIN_JP6)
    d = decide(engine, "if_stale", ORIN_JP6)
    assert (d.action, d.engine, d.request.precision) == ("build", engine, "fp16")


def test_stale_engine_is_rebuilt_once_not_on_every_start(model):
    """After a JetPack upgrade the configured (old) engine stays stale; the engine built for the new
    version beside it is found and loaded on later starts instead of being rebuilt."""
    configured = build_like_the_builder(model, ORIN_JP60)
    first = decide(configured, "if_stale", ORIN_JP6)
    assert first.action == "build"
    built = build_like_the_builder(model, ORIN_JP6, engine=first.engine)  # what the build leaves behind
    for _ in range(2):
        later = decide(configured, "if_stale", ORIN_JP6)
        assert (later.action, later.engine) == ("load", built)
        assert configured.name in later.reason and built.name in later.reason
    # And back on the old JetPack the old engine is still there and still fresh.
    assert decide(configured, "never", ORIN_JP60).action == "load"


def test_find_onnx_uses_the_recorded_path(model, tmp_path):
    engine = build_like_the_builder(model, ORIN_JP6, engine=tmp_path / "engines" / "seg.engine")
    recorded = EngineMeta.read(engine).onnx_path
    assert recorded == str(model.resolve())  # not below the engine's folder: absolute
    assert find_onnx(engine, meta=EngineMeta.read(engine)) == model
    assert find_onnx(engine) is None
    assert decide(engine, "never", ORIN_JP6).onnx == model


# ---------------------------------------------------------------------------------------------
# Buffer bookkeeping


class HostMemory:
    """Real memory standing in for a device allocation (what BufferPool hands out is opaque to it)."""

    def __init__(self, nbytes):
        self.array = np.zeros(nbytes, np.uint8)
        self.ptr = self.array.ctypes.data
        self.freed = False

    def upload(self, batch):
        self.array[: batch.nbytes] = np.ascontiguousarray(batch).reshape(-1).view(np.uint8)

    def close(self):
        self.freed = True


def test_buffer_pool_grows_only_when_needed():
    freed = []
    pool = BufferPool(HostMemory, lambda b: freed.append(b))
    a = pool.get("images", 1000)
    assert pool.get("images", 1000) is a and pool.get("images", 10) is a
    assert pool.allocations == 1 and pool.capacity("images") == 1000
    b = pool.get("images", 4000)
    assert b is not a and freed == [a] and pool.capacity("images") == 4000 and pool.allocations == 2
    c = pool.get("labels", 0)
    assert c.array.size == 1 and len(pool) == 2
    pool.close()
    assert set(map(id, freed)) == {id(a), id(b), id(c)} and len(pool) == 0 and pool.capacity("images") == 0
    with pytest.raises(ValueError):
        pool.get("x", -1)
