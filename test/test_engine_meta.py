"""The plain-Python half of the TensorRT support, on real files: engine metadata, default names,
the rebuild policy, buffer bookkeeping, and INT8 calibration data (folders, dataset splits,
synthetic scenes, rosbag2 bags), batching, feeding and the cache."""
from __future__ import annotations

import ctypes
import json
import os

import cv2
import numpy as np
import pytest

from drn_perception.deploy import calibration as cal
from drn_perception.inference.engine_meta import (
    DEFAULT_SHAPES,
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
    precision_problem,
)
from drn_perception.deploy.tensorrt_build import make_meta
from drn_perception.inference.base import BackendUnavailable
from drn_perception.model_info import ModelInfo, cityscapes, sha256_file, sidecar_path

ORIN_JP5 = RuntimeEnv("8.5.2.2", "Orin", "8.7")
ORIN_JP6 = RuntimeEnv("10.3.0.30", "Orin", "8.7")
XAVIER_JP5 = RuntimeEnv("8.5.2.2", "Xavier", "7.2")


# ---------------------------------------------------------------------------------------------
# Versions, names, profile


def test_tensorrt_versions():
    assert parse_trt_version("10.3.0.30") == (10, 3, 0, 30)
    assert check_tensorrt_version("8.5.2.2") == (8, 5, 2, 2)
    assert check_tensorrt_version("10.16.0") == (10, 16, 0)
    for old in ("8.4.3.1", "8.2.1", "7.1.3.0"):
        with pytest.raises(UnsupportedTensorRT, match="8.5 or newer") as err:
            check_tensorrt_version(old)
        assert old in str(err.value)
        assert isinstance(err.value, BackendUnavailable)  # the node reports it like a missing backend
    for bad in ("", "ten", "10"):
        with pytest.raises(ValueError):
            parse_trt_version(bad)


def test_precision_support_by_version():
    for version in ((8, 5, 2), (8, 6, 1), (10, 3, 0), (10, 16, 0)):
        for precision in ("fp32", "fp16", "int8"):
            assert precision_problem(precision, version) is None
    assert precision_problem("fp32", (11, 1, 0)) is None
    assert "strongly typed" in precision_problem("fp16", (11, 1, 0))
    assert "11.1.0" in precision_problem("int8", (11, 1, 0))
    assert "IInt8EntropyCalibrator2" in precision_problem("int8", (10, 16, 0), has_calibrator=False)
    assert "unknown precision" in precision_problem("bf16", (10, 3, 0))


def test_default_engine_names_are_keyed_by_tensorrt_gpu_and_precision(tmp_path):
    onnx = tmp_path / "drn_c_26.onnx"
    names = {default_engine_path(onnx, env, p).name
             for env in (ORIN_JP5, ORIN_JP6, XAVIER_JP5, RuntimeEnv("8.5.2.2", "Orin", "8.6"))
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
    p = Profile.parse(DEFAULT_SHAPES)
    assert (p.min, p.opt, p.max) == ((1, 256, 512, 3), (1, 512, 1024, 3), (4, 1024, 2048, 3))
    assert str(p) == DEFAULT_SHAPES
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


def build_like_the_builder(onnx, env, precision="fp16", engine=None, shapes=DEFAULT_SHAPES, build=None):
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
    assert meta.profile == Profile.parse(DEFAULT_SHAPES)
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
    old = build_like_the_builder(model, ORIN_JP5, shapes="1x256x512/1x512x1024/2x512x1024",
                                 build={"workspace_mb": 512, "dla_core": 0})
    for policy in ("never", "if_missing"):
        with pytest.raises(EngineMismatch) as err:
            decide(old, policy, ORIN_JP6)
        msg = str(err.value)
        assert "TensorRT 8.5.2.2" in msg and "TensorRT 10.3.0.30" in msg
        assert "drn-build-engine" in msg and "if_stale" in msg
    d = decide(old, "if_stale", ORIN_JP6)
    assert d.action == "build" and d.engine == default_engine_path(model, ORIN_JP6, "fp16") != old
    assert (d.request.shapes, d.request.workspace_mb, d.request.dla_core) == ("1x256x512x3/1x512x1024x3/2x512x1024x3", 512, 0)
    assert "8.5.2.2" in d.reason


def test_engine_for_another_gpu_is_stale(model):
    engine = build_like_the_builder(model, XAVIER_JP5)
    with pytest.raises(EngineMismatch, match=r"Xavier \(sm 7.2\).*Orin \(sm 8.7\)"):
        decide(engine, "never", ORIN_JP5)
    assert decide(engine, "if_stale", ORIN_JP5).engine == default_engine_path(model, ORIN_JP5, "fp16")
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
    configured = build_like_the_builder(model, ORIN_JP5)
    first = decide(configured, "if_stale", ORIN_JP6)
    assert first.action == "build"
    built = build_like_the_builder(model, ORIN_JP6, engine=first.engine)  # what the build leaves behind
    for _ in range(2):
        later = decide(configured, "if_stale", ORIN_JP6)
        assert (later.action, later.engine) == ("load", built)
        assert configured.name in later.reason and built.name in later.reason
    # And back on the old JetPack the old engine is still there and still fresh.
    assert decide(configured, "never", ORIN_JP5).action == "load"


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


# ---------------------------------------------------------------------------------------------
# Calibration frames


def scene(seed, h=48, w=64):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_sample_evenly_and_fit_frame():
    assert cal.sample_evenly(10, 4) == [0, 2, 5, 7]
    assert cal.sample_evenly(3, 8) == [0, 1, 2]
    assert cal.sample_evenly(0, 8) == [] and cal.sample_evenly(5, 0) == []
    stripes = np.zeros((100, 300, 3), np.uint8)
    stripes[:, :100] = (255, 0, 0)
    stripes[:, 100:200] = (0, 255, 0)
    stripes[:, 200:] = (0, 0, 255)
    square = cal.fit_frame(stripes, 100, 100)  # the centre third, untouched
    assert square.shape == (100, 100, 3) and (square == (0, 255, 0)).all()
    wide = cal.fit_frame(stripes, 64, 256)  # scaled down to 64 x 192... then up to cover 256 wide
    assert wide.shape == (64, 256, 3) and wide.flags.c_contiguous
    small = cal.fit_frame(scene(1, 30, 40), 64, 128)
    assert small.shape == (64, 128, 3)


def write_png(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def test_image_folder_list_and_dataset_splits(tmp_path):
    frames = [scene(i) for i in range(6)]
    for i, f in enumerate(frames):
        write_png(tmp_path / "imgs" / f"sub{i % 2}" / f"{i}.png", f)
    got = list(cal.open_frames(str(tmp_path / "imgs"), height=48, width=64))
    order = sorted(range(6), key=lambda i: (f"sub{i % 2}", f"{i}.png"))
    assert len(got) == 6 and all((g == frames[i]).all() for g, i in zip(got, order))  # RGB kept, not BGR
    src = cal.open_frames(str(tmp_path / "imgs"), height=48, width=64, max_frames=3)
    assert len(list(src)) == 3 and "3 of 6 images" in src.description
    # The authors' list layout, as a split and as a bare list file.
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "val_images.txt").write_text("../imgs/sub0/0.png\n../imgs/sub1/3.png\n\n")
    got = list(cal.open_frames(f"{tmp_path / 'ds'}:val", height=48, width=64))
    assert len(got) == 2 and (got[1] == frames[3]).all()
    assert len(list(cal.open_frames(str(tmp_path / "ds" / "val_images.txt"), height=48, width=64))) == 2
    # The Cityscapes layout.
    for city, i in (("aachen", 0), ("bremen", 1)):
        write_png(tmp_path / "cs" / "leftImg8bit" / "train" / city / f"{city}_000000_000019_leftImg8bit.png", frames[i])
    got = list(cal.open_frames(f"{tmp_path / 'cs'}:train", height=48, width=64))
    assert len(got) == 2 and (got[0] == frames[0]).all()


def test_bad_calibration_sources_are_named(tmp_path):
    with pytest.raises(cal.CalibrationError, match="not found"):
        cal.open_frames(str(tmp_path / "nope"), height=48, width=64)
    (tmp_path / "ds").mkdir()
    with pytest.raises(cal.CalibrationError, match="val_images.txt"):
        cal.open_frames(f"{tmp_path / 'ds'}:val", height=48, width=64)
    (tmp_path / "ds" / "val_images.txt").write_text("missing.png\n")
    with pytest.raises(cal.CalibrationError, match=r"val_images.txt:1: .*missing.png"):
        cal.open_frames(f"{tmp_path / 'ds'}:val", height=48, width=64)
    (tmp_path / "empty").mkdir()
    with pytest.raises(cal.CalibrationError, match="no images"):
        cal.open_frames(str(tmp_path / "empty"), height=48, width=64)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    with pytest.raises(cal.CalibrationError, match="a.png"):
        list(cal.open_frames(str(broken), height=48, width=64))
    for spec in ("synthetic:x", "synthetic:0"):
        with pytest.raises(cal.CalibrationError, match="synthetic"):
            cal.open_frames(spec, height=48, width=64)


def test_synthetic_scenes():
    from drn_perception.data.synthetic import generate_scene

    src = cal.open_frames("synthetic:3", height=64, width=128)
    frames = list(src)
    assert len(frames) == 3 and all(f.shape == (64, 128, 3) and f.dtype == np.uint8 for f in frames)
    assert (frames[2] == generate_scene(2, 64, 128)[0]).all()
    assert len(list(cal.open_frames("synthetic", height=32, width=64, max_frames=2))) == 2


# ---------------------------------------------------------------------------------------------
# Calibration frames from a rosbag2


def write_bag(path, topics):
    """topics: {topic: [message kwargs]}; each message is an Image (rgb8/bgr8/...) or CompressedImage."""
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    Image = ts.types["sensor_msgs/msg/Image"]
    Compressed = ts.types["sensor_msgs/msg/CompressedImage"]
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    with Writer(path, version=9) as writer:
        for topic, msgs in topics.items():
            kind = Compressed if "format" in msgs[0] else Image
            conn = writer.add_connection(topic, kind.__msgtype__, typestore=ts)
            for i, fields in enumerate(msgs):
                header = Header(stamp=Time(sec=i, nanosec=0), frame_id="cam")
                msg = kind(header=header, **fields)
                writer.write(conn, (i + 1) * 10**9, ts.serialize_cdr(msg, kind.__msgtype__))


def image_fields(rgb, encoding="rgb8", pad=0):
    h, w, _ = rgb.shape
    pixels = rgb[..., ::-1] if encoding == "bgr8" else rgb
    rows = np.zeros((h, w * 3 + pad), np.uint8)
    rows[:, : w * 3] = pixels.reshape(h, w * 3)
    return dict(height=h, width=w, encoding=encoding, is_bigendian=0, step=w * 3 + pad, data=rows.reshape(-1))


def test_bag_frames_of_every_kind(tmp_path):
    frames = [scene(i, 24, 40) for i in range(10)]
    png = [np.frombuffer(cv2.imencode(".png", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))[1], np.uint8) for f in frames[:3]]
    bag = tmp_path / "cal_bag"
    write_bag(bag, {
        "/cam/rgb": [image_fields(f, "rgb8", pad=8) for f in frames],
        "/cam/bgr": [image_fields(f, "bgr8") for f in frames[:4]],
        "/cam/compressed": [dict(format="png", data=d) for d in png]
        + [dict(format="png", data=np.frombuffer(b"garbage", np.uint8))],
        "/cam/mono": [dict(height=24, width=40, encoding="mono8", is_bigendian=0, step=40,
                           data=np.zeros(960, np.uint8))],
    })
    rgb = cal.open_frames(str(bag), height=24, width=40, topic="/cam/rgb", max_frames=4)
    got = list(rgb)
    assert [i for i in cal.sample_evenly(10, 4)] == [0, 2, 5, 7]
    assert len(got) == 4 and all((g == frames[i]).all() for g, i in zip(got, [0, 2, 5, 7]))
    assert "4 of 10 frames of /cam/rgb" in rgb.description
    got = list(cal.open_frames(str(bag), height=24, width=40, topic="/cam/bgr"))
    assert len(got) == 4 and all((g == f).all() for g, f in zip(got, frames))
    src = cal.open_frames(str(bag), height=24, width=40, topic="/cam/compressed")
    got = list(src)
    assert len(got) == 3 and src.dropped == 1 and all((g == f).all() for g, f in zip(got, frames))
    # The .db3/.mcap file itself also names the bag.
    storage = next(p for p in bag.iterdir() if p.suffix in (".db3", ".mcap"))
    assert len(list(cal.open_frames(str(storage), height=24, width=40, topic="/cam/bgr"))) == 4
    with pytest.raises(cal.CalibrationError, match="mono8"):
        list(cal.open_frames(str(bag), height=24, width=40, topic="/cam/mono"))
    with pytest.raises(cal.CalibrationError, match="several image topics .*--calibration-topic"):
        list(cal.open_frames(str(bag), height=24, width=40))
    with pytest.raises(cal.CalibrationError, match="no Image/CompressedImage topic /other"):
        list(cal.open_frames(str(bag), height=24, width=40, topic="/other"))


def test_bag_with_one_topic_and_bad_fields(tmp_path):
    frame = scene(3, 24, 40)
    bag = tmp_path / "one"
    write_bag(bag, {"/front/image": [image_fields(frame)]})
    got = list(cal.open_frames(str(bag), height=24, width=40))
    assert len(got) == 1 and (got[0] == frame).all()
    short = image_fields(frame)
    short["data"] = short["data"][:-1]
    bad = tmp_path / "bad"
    write_bag(bad, {"/front/image": [short]})
    with pytest.raises(cal.CalibrationError, match="/front/image: Image fields do not fit"):
        list(cal.open_frames(str(bad), height=24, width=40))


# ---------------------------------------------------------------------------------------------
# Batches, feeding TensorRT, the cache


def test_batches_are_full_fitted_and_fixed_shape():
    frames = [scene(i, 40, 80) for i in range(10)]
    batches = cal.CalibrationBatches(frames, batch_size=4, height=32, width=64)
    got = [b.copy() for b in batches]
    assert len(got) == 2 and batches.frames_used == 8 and batches.batches == 2
    assert all(b.shape == (4, 32, 64, 3) and b.dtype == np.uint8 and b.flags.c_contiguous for b in got)
    assert (got[1][3] == cal.fit_frame(frames[7], 32, 64)).all()
    assert batches.batch_nbytes == got[0].nbytes
    with pytest.raises(cal.CalibrationError, match="not RGB uint8"):
        list(cal.CalibrationBatches([np.zeros((8, 8), np.uint8)], 1, 8, 8))
    with pytest.raises(cal.CalibrationError):
        cal.CalibrationBatches(frames, 0, 8, 8)


def test_feed_hands_out_pointers_to_each_batch_then_none():
    frames = [scene(i, 16, 24) for i in range(6)]
    batches = cal.CalibrationBatches(frames, batch_size=2, height=16, width=24)
    allocated = []
    feed = cal.CalibrationFeed(batches, lambda n: allocated.append(HostMemory(n)) or allocated[-1])
    for k in range(3):
        ptrs = feed.next_pointers(["images"])
        assert len(allocated) == 1 and ptrs == [allocated[0].ptr]
        seen = np.ctypeslib.as_array((ctypes.c_uint8 * batches.batch_nbytes).from_address(ptrs[0]))
        expected = np.stack([cal.fit_frame(f, 16, 24) for f in frames[2 * k: 2 * k + 2]])
        assert (seen == expected.reshape(-1)).all()
    assert feed.next_pointers(["images"]) is None and feed.fed == 3 and feed.error is None
    feed.close()
    assert allocated[0].freed


def test_feed_keeps_errors_instead_of_raising():
    feed = cal.CalibrationFeed(iter([np.zeros((1, 8, 8, 3), np.uint8)]), HostMemory)
    assert feed.next_pointers(["images", "extra"]) is None
    assert isinstance(feed.error, cal.CalibrationError) and "extra" in str(feed.error)

    def failing():
        yield np.zeros((1, 8, 8, 3), np.uint8)
        raise OSError("disk gone")

    feed = cal.CalibrationFeed(failing(), HostMemory)
    assert feed.next_pointers(["images"]) is not None
    assert feed.next_pointers(["images"]) is None and "disk gone" in str(feed.error)
    assert feed.next_pointers(["images"]) is None  # stays stopped
    assert cal.CalibrationFeed(None, HostMemory).next_pointers(["images"]) is None  # cache-only builds


def test_calibration_cache_file(model, tmp_path):
    path = cal.default_cache_path(model, sha256_file(model))
    assert path.parent == model.parent and path.name == f"model.{sha256_file(model)[:12]}.calib"
    cache = cal.CalibrationCache(path)
    assert cache.read() is None and not cache.exists()
    cache.write(b"TRT-8502-EntropyCalibration2\nimages: 3c010a14\n")
    assert cache.read().startswith(b"TRT-8502") and cache.exists()
    path.write_bytes(b"")
    assert cache.read() is None  # an empty file is no cache
