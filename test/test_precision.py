"""The precision a node serves in, as its start-up line states it: fp32 labels, or a faster
precision whose labels are not bit-exact to fp32, with what gives fp32 labels (seg_node as its
own process, OpenVINO at f32 and at bf16 where the cores have it)."""
from __future__ import annotations

import subprocess
import time

import pytest
from ros_helpers import node_command, node_env, stop_node

from drn_perception.default_model import default_model_path

ov = pytest.importorskip("openvino")


def start_line(params: dict, timeout: float = 60.0) -> str:
    """The node's start-up line (the one naming its topics, "camera -> mask"); then it is stopped."""
    proc = subprocess.Popen(node_command(params=params), env=node_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    seen, end = [], time.monotonic() + timeout
    try:
        while time.monotonic() < end and proc.poll() is None:
            line = proc.stdout.readline()
            seen.append(line)
            if "->" in line:
                return line
        raise AssertionError("no start-up line:\n" + "".join(seen))
    finally:
        code, out = stop_node(proc)
        assert code == 0, "".join(seen) + out


def test_the_start_up_line_says_whether_labels_are_fp32():
    model = default_model_path()
    line = start_line({"model_path": model, "backend": "openvino", "precision": "f32"})
    assert "openvino:CPU f32 " in line and "labels computed in fp32" in line and "not bit-exact" not in line, line
    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("these cores have no bf16 (AMX / AVX512-BF16): auto means f32 here")
    for precision in ("bf16", "auto"):  # auto runs bf16 on such cores
        line = start_line({"model_path": model, "backend": "openvino", "precision": precision})
        assert "openvino:CPU bf16 " in line, line
        assert "labels computed in bf16, not bit-exact to fp32 (precision:=f32 gives fp32 labels)" in line, line
