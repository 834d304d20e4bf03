"""Serve now, switch later (inference/switching.py, inference/opening.py), with real backends and
real producer processes: ONNX Runtime fp32 serving while drn-quantize writes an int8 graph in
another process, frames fed from a thread across the switch; producers that fail, crash or are
cancelled; a new model that fails its check; the TensorRT build as a producer on a machine
without TensorRT; and the inference room importing nothing of deploy/ or ros/."""
from __future__ import annotations

import ast
import gc
import importlib.util
import os
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest

from drn_perception.inference import (
    BackendUnavailable,
    Producer,
    SwitchingSegmenter,
    create_segmenter,
    open_segmenter,
)
from drn_perception.model_info import sidecar_path

REPO = Path(__file__).resolve().parent.parent
NO_TENSORRT = importlib.util.find_spec("tensorrt") is None


def frames(n=3, h=48, w=72, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8) for _ in range(n)]


def quantize_producer(fp32: Path, out: Path) -> Producer:
    """drn-quantize as a separate process, on a calibration set small enough to take seconds."""
    cmd = (sys.executable, "-m", "drn_perception.deploy.quantize", str(fp32), "--out", str(out),
           "--calibration-frames", "2", "--calibration-size", "64x128")
    return Producer("drn-quantize", "quantising to int8", cmd, lambda: create_segmenter(out, "onnxruntime", "cpu"))


def python_producer(code: str, opener=None) -> Producer:
    def never_opened():
        raise AssertionError("the opener ran although the producer failed")

    return Producer("test-producer", "producing a model", (sys.executable, "-c", code), opener or never_opened)


def test_switch_from_fp32_to_int8_while_frames_flow(tiny_onnx_model, tmp_path):
    int8_path = tmp_path / "tiny_int8.onnx"
    batch = frames()
    fp32 = create_segmenter(tiny_onnx_model, "onnxruntime", "cpu")
    want_fp32 = [fp32.infer(f).labels for f in batch]
    sw = SwitchingSegmenter(fp32, quantize_producer(tiny_onnx_model, int8_path), start=False)
    released = weakref.ref(fp32)
    del fp32

    results: list[np.ndarray] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    fed_before_start = threading.Event()

    def feed():
        i = 0
        try:
            while not stop.is_set():
                results.append(sw.infer(batch[i % len(batch)]).labels)
                i += 1
                if i == 5:
                    fed_before_start.set()
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
            fed_before_start.set()

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        assert fed_before_start.wait(60)
        sw.start()
        assert sw.status()["state"] in ("building", "switching")
        state = sw.wait(120)
        status = sw.status()
        assert state == "switched", status
        switched_at = status["frames_before_switch"]
        while len(results) < switched_at + 10 and not errors:  # keep feeding across and after the switch
            stop.wait(0.01)
    finally:
        stop.set()
        feeder.join(60)
    assert not errors, errors

    int8 = create_segmenter(int8_path, "onnxruntime", "cpu")
    want_int8 = [int8.infer(f).labels for f in batch]
    for a, b in zip(want_fp32, want_int8):  # the comparison below can tell the two backends apart
        assert (a != b).any()
    assert sw.status()["frames"] == len(results)  # every frame went through infer() once
    assert 5 <= switched_at < len(results) - 5
    for i, labels in enumerate(results):
        expected = want_fp32 if i < switched_at else want_int8
        np.testing.assert_array_equal(labels, expected[i % len(batch)], err_msg=f"frame {i}, switch at {switched_at}")

    assert sw.path == int8_path and sw.backend == "onnxruntime"
    assert status["serving"] == int8.describe() and "switched" in status["message"]
    assert status["reason"] == "" and 0.0 < status["agreement"] < 1.0
    gc.collect()
    assert released() is None, "the fp32 backend is still referenced after the switch"


@pytest.mark.parametrize("code, words", [
    ("import sys; print('calibration data not found', file=sys.stderr); sys.exit(3)",
     ["exited with status 3", "calibration data not found"]),
    ("import os, signal; print('started'); os.kill(os.getpid(), signal.SIGKILL)", ["killed by SIGKILL", "started"]),
    ("pass", ["exited with status 0"]),  # exits 0, but the opener finds no model
])
def test_a_failed_producer_keeps_the_old_backend_serving(ort_segmenter, tiny_onnx_model, tmp_path, code, words):
    if code == "pass":
        missing = tmp_path / "never_written.onnx"
        producer = python_producer(code, lambda: create_segmenter(missing, "onnxruntime", "cpu"))
        words = ["cannot be opened", "never_written.onnx"]
    else:
        producer = python_producer(code)
    serving = create_segmenter(tiny_onnx_model, "onnxruntime", "cpu")
    sw = SwitchingSegmenter(serving, producer)
    assert sw.wait(60) == "failed"
    status = sw.status()
    for w in words:
        assert w in status["reason"], status
    assert status["reason"] in status["message"] and status["serving"] == serving.describe()
    assert sw.serving is serving and "failed" in sw.describe()
    for f in frames(2):
        np.testing.assert_array_equal(sw.infer(f).labels, ort_segmenter.infer(f).labels)


def test_a_model_failing_its_check_is_not_switched_to(tiny_onnx_model, tmp_path):
    # int8 labels differ from fp32 on part of every frame (checked in the test above), so a
    # 100% agreement requirement must refuse the switch after a real quantisation.
    serving = create_segmenter(tiny_onnx_model, "onnxruntime", "cpu")
    sw = SwitchingSegmenter(serving, quantize_producer(tiny_onnx_model, tmp_path / "q.onnx"), min_agreement=1.0)
    f = frames(1)[0]
    sw.infer(f)  # the check frame is the last one served
    assert sw.wait(120) == "failed"
    reason = sw.status()["reason"]
    assert "failed its check" in reason and "below min_agreement 100.0%" in reason, reason
    assert sw.serving is serving and sw.status()["backend"] == "onnxruntime"
    np.testing.assert_array_equal(sw.infer(f).labels, serving.infer(f).labels)


def test_a_model_with_other_classes_is_not_switched_to(tiny_onnx_model, tmp_path):
    import torch

    from drn_perception.deploy.export import export_onnx
    from drn_perception.model_info import ModelInfo
    from drn_perception.models.checkpoints import save_checkpoint
    from drn_perception.models.segmentation import DRNSeg

    torch.manual_seed(0)
    info = ModelInfo(arch="drn_c_26", classes=["road", "car", "sky"], palette=[[0, 0, 0], [1, 1, 1], [2, 2, 2]],
                     width=0.25)
    ckpt = save_checkpoint(tmp_path / "three.pt", DRNSeg("drn_c_26", 3, width=0.25).eval(), info.to_dict())
    three = export_onnx(ckpt, tmp_path / "three.onnx", check=False)
    out = tmp_path / "produced.onnx"
    code = (f"import shutil; shutil.copy({str(three)!r}, {str(out)!r}); "
            f"shutil.copy({str(sidecar_path(three))!r}, {str(sidecar_path(out))!r})")
    serving = create_segmenter(tiny_onnx_model, "onnxruntime", "cpu")
    sw = SwitchingSegmenter(serving, python_producer(code, lambda: create_segmenter(out, "onnxruntime", "cpu")))
    assert sw.wait(60) == "failed"
    reason = sw.status()["reason"]
    assert "predicts 3 classes" in reason and "19" in reason, reason
    assert sw.serving is serving


def test_close_stops_a_running_producer(tiny_onnx_model, tmp_path):
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    sw = SwitchingSegmenter(create_segmenter(tiny_onnx_model, "onnxruntime", "cpu"), python_producer(code))
    for _ in range(600):
        if pid_file.is_file() and pid_file.read_text():
            break
        threading.Event().wait(0.05)
    pid = int(pid_file.read_text())
    assert sw.status()["state"] == "building" and "producing a model, " in sw.status()["message"]
    sw.close()
    assert sw.status()["state"] == "failed" and "cancelled" in sw.status()["reason"]
    with pytest.raises(ProcessLookupError):  # reaped by the wrapper: gone, not a zombie
        os.kill(pid, 0)


# ---------------------------------------------------------------------------------------------
# open_segmenter: the TensorRT build as one producer


@pytest.mark.skipif(not NO_TENSORRT, reason="TensorRT is installed here: the build would succeed")
def test_engine_build_without_tensorrt_keeps_serving_on_onnxruntime(ort_segmenter, tiny_onnx_model, tmp_path):
    engine = tmp_path / "tiny.engine"
    sw = open_segmenter(engine, "auto", "auto", build_engine="if_missing", onnx=tiny_onnx_model)
    assert isinstance(sw, SwitchingSegmenter)
    f = frames(1)[0]
    np.testing.assert_array_equal(sw.infer(f).labels, ort_segmenter.infer(f).labels)  # serves before the build ends
    assert sw.wait(120) == "failed"
    status = sw.status()
    assert status["producer"] == "drn-build-engine" and status["backend"] == "onnxruntime"
    assert "drn-build-engine exited with status 2" in status["reason"] and "TensorRT" in status["reason"], status
    assert "building TensorRT engine failed" in status["message"]
    np.testing.assert_array_equal(sw.infer(f).labels, ort_segmenter.infer(f).labels)
    assert not engine.exists()


@pytest.mark.skipif(not NO_TENSORRT, reason="TensorRT is installed here")
def test_stale_engine_without_tensorrt_keeps_serving(ort_segmenter, tiny_onnx_model, tmp_path):
    engine = tmp_path / "tiny.engine"
    engine.write_bytes(b"an engine of another machine")
    with pytest.raises(BackendUnavailable, match="tensorrt"):  # nothing to build under if_missing, and it cannot run
        open_segmenter(engine, build_engine="if_missing", onnx=tiny_onnx_model)
    sw = open_segmenter(engine, build_engine="if_stale", onnx=tiny_onnx_model)
    assert isinstance(sw, SwitchingSegmenter) and sw.wait(120) == "failed"
    assert "TensorRT" in sw.status()["reason"]
    f = frames(1)[0]
    np.testing.assert_array_equal(sw.infer(f).labels, ort_segmenter.infer(f).labels)


def test_open_segmenter_errors_come_before_any_work(tiny_onnx_model, tmp_path):
    engine = tmp_path / "tiny.engine"
    with pytest.raises(FileNotFoundError, match="drn-build-engine .*build_engine: if_missing"):
        open_segmenter(engine, onnx=tiny_onnx_model)  # build_engine never: a missing engine names the fix
    with pytest.raises(FileNotFoundError, match="no ONNX model to build it from"):
        open_segmenter(tmp_path / "other.engine", build_engine="if_missing")
    with pytest.raises(ValueError, match="unknown build_engine 'always'"):
        open_segmenter(engine, build_engine="always", onnx=tiny_onnx_model)
    with pytest.raises(ValueError, match="CUDA devices only"):
        open_segmenter(engine, device="cpu", build_engine="if_missing", onnx=tiny_onnx_model)


def test_open_segmenter_gives_plain_segmenters_when_nothing_is_built(tiny_onnx_model, tmp_path):
    from drn_perception.inference.base import auto_backend

    seg = open_segmenter(tiny_onnx_model, build_engine="if_stale")
    assert not isinstance(seg, SwitchingSegmenter) and seg.backend == auto_backend(tiny_onnx_model)


# ---------------------------------------------------------------------------------------------
# Rooms: inference/ imports nothing of deploy/ or ros/


def test_inference_imports_nothing_of_deploy_or_ros():
    bad = []
    for path in sorted((REPO / "drn_perception" / "inference").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):  # also imports inside functions
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
                if node.module == "drn_perception":
                    names = [f"drn_perception.{a.name}" for a in node.names]
            bad += [f"{path.name}:{node.lineno} {n}" for n in names
                    if n.startswith(("drn_perception.deploy", "drn_perception.ros"))]
    assert not bad, bad
    code = ("import sys, drn_perception.inference, drn_perception.inference.onnxruntime_backend, "
            "drn_perception.inference.engine_meta; "
            "print(sorted(m for m in sys.modules if m.startswith(('drn_perception.deploy', 'drn_perception.ros'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_deploy_engine_meta_is_the_inference_module():
    from drn_perception.deploy import engine_meta as old
    from drn_perception.inference import engine_meta as new

    assert old.decide is new.decide and old.Profile is new.Profile and old.EngineMeta is new.EngineMeta


# ---------------------------------------------------------------------------------------------
# A producer dies with its parent


def process_state(pid: int) -> str | None:
    """The state letter of process ``pid`` (R, S, Z, ...), None when there is none."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def parent_pid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid in /proc/{pid}/status")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_node_killed_mid_build_leaves_no_build_process(tiny_onnx_model, tmp_path):
    """seg_node as its own process (the real main, open_segmenter, producer thread) with
    build_engine if_missing and no engine: the build starts in its process, the node is killed
    with SIGKILL mid-build (no handler, no atexit runs), and the build process goes with it.
    TensorRT is not installable here, so drn-build-engine's module is replaced by a stand-in
    that records its pid and sleeps, the one thing patched in the node."""
    from ros_helpers import node_command, node_env

    pid_file = tmp_path / "build.pid"
    (tmp_path / "slow_build.py").write_text(
        "import os, time\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(600)\n")
    code = ("import sys\n"
            "import drn_perception.inference.opening as opening\n"
            "import drn_perception.ros.node as n\n"
            "opening.BUILD_MODULE = 'slow_build'\n"
            "sys.exit(n.main(sys.argv))\n")
    cmd = node_command(params={"model_path": tmp_path / "tiny.engine", "build_engine": "if_missing",
                               "onnx_path": tiny_onnx_model})
    env = node_env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    node = subprocess.Popen([sys.executable, "-c", code, *cmd[3:]], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    build = None
    try:
        for _ in range(1200):
            if pid_file.is_file() and pid_file.read_text() or node.poll() is not None:
                break
            threading.Event().wait(0.05)
        assert pid_file.is_file() and pid_file.read_text(), (node.poll(), node.stdout.read() if node.poll() else "")
        build = int(pid_file.read_text())
        assert process_state(build) not in (None, "Z") and parent_pid(build) == node.pid  # its own child, building
        node.kill()
        node.wait(30)
        for _ in range(600):  # gone (reaped), or a zombie: dead either way, not running on its own
            if process_state(build) in (None, "Z"):
                break
            threading.Event().wait(0.05)
        assert process_state(build) in (None, "Z"), f"the build process {build} outlived the killed node"
        out = node.stdout.read()
        assert "while building TensorRT engine in a separate process" in out, out
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
        if build is not None and process_state(build) not in (None, "Z"):
            os.kill(build, 9)
