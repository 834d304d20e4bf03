"""The README's robot install flow leaves the robot's Python as it found it (robot lanes only).

In a robot lane of ``make test`` (tools/test_lane.sh: CPython 3.10 or 3.12, numpy 1.x and an
OpenCV built for it, Jazzy's rclpy, then the README's pip step as printed), the step is run
again as printed, against the real package registry, and what it left is checked: numpy still
1.x and the same as the "system" had, OpenCV still imports, no torch, the node's tools answer.
The node's masks in these lanes are the other lane tests' business (test_node*.py, test_replay.py).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from robot_flow import REPO, pip_step

LANE = os.environ.get("DRN_TEST_LANE")
pytestmark = pytest.mark.skipif(not LANE, reason="runs in the robot lanes of make test (tools/test_lane.sh)")


def lane_requirement(name: str) -> str:
    for line in (REPO / "requirements" / f"lane-{LANE}.txt").read_text().splitlines():
        if line.split("==")[0].strip() == name:
            return line.split("==")[1].strip()
    raise AssertionError(f"lane-{LANE}.txt pins no {name}")


def run(command, **kwargs):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, **kwargs)


def test_the_readme_pip_step_as_printed_keeps_the_systems_numpy_and_opencv():
    commands = pip_step()
    assert any("requirements/robot.txt" in c for c in commands), commands
    for command in commands:
        r = run(["bash", "-c", command])
        assert r.returncode == 0, f"{command}: exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    probe = ("import numpy, cv2, rosbags, simplejpeg, onnx, onnxruntime; "
             "print(numpy.__version__, cv2.__version__)")
    r = run([sys.executable, "-c", probe])
    assert r.returncode == 0, r.stderr
    numpy_version, cv2_version = r.stdout.split()
    assert numpy_version == lane_requirement("numpy") and int(numpy_version.split(".")[0]) == 1
    assert cv2_version.startswith(lane_requirement("opencv-python-headless").rsplit(".", 1)[0][:3])
    assert importlib.util.find_spec("torch") is None, "a robot lane must not have torch"
    r = run([sys.executable, "-m", "pip", "check"])
    assert r.returncode == 0, r.stdout + r.stderr


def installed(tool: str) -> str:
    """A console script of the package as installed in this lane: bin/, or lib/drn_perception/ where
    setup.cfg puts them for ros2 run (pip's legacy editable install honours it, PEP 660 does not)."""
    prefix = Path(sys.prefix)
    found = shutil.which(tool, path=os.pathsep.join([str(prefix / "bin"), str(prefix / "lib" / "drn_perception")]))
    assert found, f"{tool} is not installed in {prefix}"
    return found


def test_the_installed_tools_answer_without_torch(tiny_onnx_model):
    r = run([installed("seg_node"), "--help"])
    assert r.returncode == 0 and "model_path" in r.stdout and not r.stderr, r.stderr
    for tool in ("drn-replay", "drn-make-bag", "drn-build-engine"):
        r = run([installed(tool), "--help"])
        assert r.returncode == 0 and "usage:" in r.stdout and "Traceback" not in r.stderr, (tool, r.stderr)
    # the TensorRT check a robot runs before building an engine needs onnx, not TensorRT nor torch
    r = run([installed("drn-build-engine"), "--check", str(tiny_onnx_model)])
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stdout + r.stderr
