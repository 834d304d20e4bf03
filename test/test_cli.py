"""Every console tool (seg_node apart) as a user runs it: a mistake is one line, exit 2, before
any slow work; --help lists each option once."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ASSET = REPO / "drn_perception" / "assets" / "drn_c_26_w025_synthetic.onnx"
TOOLS = ["drn-train", "drn-eval", "drn-export", "drn-quantize", "drn-build-engine", "drn-make-bag", "drn-replay",
         "drn-bench", "drn-demo"]


def run(args, cwd):
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.parametrize("args, words", [
    # drn-train generated 2,000 scenes (84 s) before it found out that the arch does not exist.
    (["drn-train", "--arch", "drn_x_99", "--out", "o"], ["--arch", "drn_x_99", "drn_c_26", "drn_d_105"]),
    (["drn-train", "--out", "o", "--synthetic-train", "4"], ["fewer than one batch"]),
    (["drn-train", "--out", "o", "--init", "missing.pt"], ["--init", "missing.pt"]),
    (["drn-train", "--out", "o", "--width", "9"], ["--width"]),
    (["drn-eval", "missing.onnx"], ["model file not found"]),
    (["drn-eval", str(ASSET), "--scales", "0"], ["--scales"]),
    (["drn-export", "missing.pt", "--out", "x.onnx"], ["checkpoint not found"]),
    (["drn-export", "missing.pt", "--out", "x.onnx", "--arch", "drn_x_99"], ["--arch", "drn_x_99"]),
    (["drn-quantize", str(ASSET), "--out", "q.onnx", "--calibration-size", "7"], ["--calibration-size"]),
    (["drn-quantize", "missing.onnx", "--out", "q.onnx"], ["not found"]),
    (["drn-build-engine", str(ASSET), "--precision", "fp7"], ["--precision", "fp7"]),
    (["drn-make-bag", "bag", "--size", "8x8"], ["--size", "16..8192"]),
    (["drn-make-bag", "bag", "--jpeg-quality", "101", "--compressed", "jpeg"], ["--jpeg-quality"]),
    (["drn-replay", "missing_bag", "--out", "o"], ["missing_bag", "does not exist"]),
    (["drn-replay", "missing_bag", "--out", "o", "--record", "mask,everything"], ["--record"]),
    (["drn-bench", "--arch", "drn_x_99", "--no-write"], ["drn_x_99", "drn_c_26"]),
    (["drn-demo", "--size", "7x7", "--out", "d"], ["--size"]),
    (["drn-demo", "--frames", "0", "--out", "d"], ["--frames"]),
])
def test_user_error_is_one_line_exit_2_and_nothing_written(args, words, tmp_path):
    r = run(args, tmp_path)
    err = r.stderr.strip()
    assert r.returncode == 2, (r.returncode, err[-2000:])
    assert len(err.splitlines()) == 1 and err.startswith(f"{args[0]}: error: "), err
    for w in words:
        assert w in err, err
    assert not list(tmp_path.iterdir())  # nothing generated, nothing half-written


@pytest.mark.parametrize("tool", TOOLS)
def test_help_lists_each_option_once(tool, tmp_path):
    r = run([tool, "--help"], tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("usage: "), r.stderr
    body = r.stdout.split("\n\n", 1)[1]
    options = [ln.split()[0].rstrip(",") for ln in body.splitlines() if ln.startswith("  -")]
    assert len(options) == len(set(options)) > 1, options
    assert "(default: (" not in r.stdout and "(default: None)" not in r.stdout


def test_train_help_gives_each_default_once_and_every_arch():
    from drn_perception.models.drn import ARCHS

    out = run(["drn-train", "--help"], REPO).stdout
    text = " ".join(out.split())
    for flag, default in [("--epochs", "500"), ("--lr", "0.01"), ("--synthetic-size", "256x512"),
                          ("--crop-size", "896x896"), ("--seed", "0"), ("--synthetic-train", "2000")]:
        entry = text.split(f" {flag} ", 1)[1].split(" --", 1)[0]
        assert entry.count("default") == 1 and f"(default: {default})" in entry, (flag, entry)
    assert len(ARCHS) >= 12 and all(a in text for a in ARCHS)
