"""Every command printed in README.md and docs/*.md (```bash blocks) is accounted for.

Each one matches exactly one rule below: it is run as printed (the README's toolchain, in a
scratch folder laid out as the README's flow leaves it), or its arguments are parsed by the
tool's own parser and the rule says why it is not run here (ROS tooling, TensorRT, a Jetson,
Cityscapes, minutes of work). A new command in the docs fails this test until it gets a rule.
Whatever the run commands write must be ignored by git (no untracked clutter after the flow).
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent

ROS = "needs the ROS 2 command-line tools (ros2, colcon, rosdep, rviz2), not installable here"
# (pattern on the command, what to do): "run", or ("parse", why not run), or ("skip", why)
RULES = [
    (r"^make test$", ("skip", "the whole suite: this test is part of it")),
    (r"^make demo$", ("skip", "30 frames through the node, ~15 s: drn-demo's path is run by test_replay")),
    (r"^\. \.venv/bin/activate$", ("skip", "shell set-up; these tests run the venv's tools directly")),
    (r"^(cd|source|export|sudo|git|pip) ", ("skip", "shell, system or network set-up of a user's machine")),
    (r"^(ros2|colcon|rosdep|rviz2) ", ("skip", ROS)),
    (r"^python3 -m venv --system-site-packages |^python3 -m colcon build ",
     ("skip", "the robot's virtualenv and colcon build (README 'On a robot'); " + ROS)),
    (r"^python3 -c import onnxruntime .*\|\| pip install -r ",  # the quotes as shlex leaves them
     ("skip", "the robot flow's pip step: run as printed in the robot lanes (test_robot_install.py)")),
    (r"^rviz2$", ("skip", ROS)),
    (r"^drn-train --dataset synthetic", ("parse", "about 25 minutes of training on 2 cores")),
    (r"^drn-train --data-dir /data/cityscapes", ("parse", "needs Cityscapes and ImageNet weights")),
    (r"^torchrun ", ("parse", "needs 4 GPUs and Cityscapes")),
    (r"^drn-eval .* --data-dir /data/cityscapes", ("parse", "needs Cityscapes")),
    (r"^drn-eval runs/synth/best\.pt --split test --synthetic-num 200$",
     ("parse", "200 scenes at 256x512, ~15 s; drn-eval is run by test_training")),
    (r"^drn-export runs/synth/best\.pt --out models/drn_c_26\.onnx$", "run"),
    (r"^drn-export model\.pt ", ("parse", "model.pt stands for the user's checkpoint")),
    (r"^drn-bench --model models/drn_c_26\.onnx --size 512x1024$", "run-short"),
    (r"^drn-bench .*--engine ", ("parse", "needs TensorRT and a GPU")),
    (r"^drn-quantize models/drn_c_26\.onnx --target tensorrt ", ("parse", "ModelOpt on a full model, seconds to a "
                                                                   "minute; test_tensorrt_graphs runs it on the tiny model")),
    (r"^drn-build-engine models/drn_c_26\.onnx --trtexec-only$", "run"),
    (r"^drn-build-engine ", ("parse", "needs TensorRT and a GPU")),
    (r"^drn-make-bag out/scenes --frames 100 ", ("parse", "100 scenes at 512x1024 (~6 s); drn-make-bag is run by "
                                                          "test_make_bag")),
    (r"^drn-make-bag out/vtest ", ("parse", "needs Debian's opencv-doc; test_make_bag reads vtest.avi where present")),
    (r"^drn-make-bag out/folder --source my_frames/", ("parse", "needs the user's image folder")),
    (r"^drn-replay out/scenes ", ("parse", "100 frames of 512x1024 through the node, about a minute")),
]
# What run-short adds to a command whose printed form takes too long for the suite (it keeps the
# model, the paths chosen by default and the output folder: what the printed command depends on).
SHORT = {"drn-bench": ["--repeats", "1", "--warmup", "0", "--scenes", "1", "--calibration-frames", "1",
                       "--calibration-size", "64x128", "--size", "64x128"]}


def printed_commands() -> list[tuple[str, str]]:
    out = []
    for doc in DOCS:
        for m in re.finditer(r"^```(\w*)\n(.*?)^```", doc.read_text(), re.S | re.M):
            if m.group(1) not in ("bash", "sh", "shell", "console"):
                continue
            for line in re.sub(r"\\\n\s*", " ", m.group(2)).splitlines():
                words = shlex.split(line, comments=True)
                if words:
                    out.append((doc.name, " ".join(words)))
    return out


def rule_for(command: str):
    hits = [action for pattern, action in RULES if re.search(pattern, command)]
    assert len(hits) >= 1, f"printed command without a rule in {__name__}: {command!r}"
    return hits[0]


def parser_for(tool: str):
    from drn_perception import demo
    from drn_perception.bench import bench
    from drn_perception.deploy import export, quantize, tensorrt_build
    from drn_perception.ros import make_bag, replay
    from drn_perception.training import evaluate, train

    return {"drn-train": train.build_parser, "drn-eval": evaluate.build_parser, "drn-export": export.build_parser,
            "drn-quantize": quantize.build_parser, "drn-build-engine": tensorrt_build.make_arg_parser,
            "drn-bench": bench.build_parser, "drn-make-bag": make_bag.build_parser,
            "drn-replay": replay.build_parser, "drn-demo": demo.build_parser}[tool]()


def test_every_printed_command_has_a_rule_and_parses():
    commands = printed_commands()
    assert len(commands) > 20
    for doc, command in commands:
        action = rule_for(command)
        words = shlex.split(command)
        if words[0] == "torchrun":
            words = ["drn-train", *words[words.index("drn_perception.training.train") + 1:]]
        if words[0].startswith("drn-") and action[0] != "skip":
            try:
                parser_for(words[0]).parse_args(words[1:])
            except SystemExit as exc:
                pytest.fail(f"{doc}: {command!r} does not parse (exit {exc.code})")


def test_the_readme_toolchain_runs_as_printed_and_leaves_only_ignored_files(tmp_path):
    from conftest import make_tiny_checkpoint

    # What the README's drn-train line leaves: runs/synth/best.pt (a tiny model stands in for it).
    make_tiny_checkpoint(tmp_path / "runs" / "synth" / "best.pt")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    ran = []
    for doc, command in printed_commands():  # in the docs' order: export before its users
        action = rule_for(command)
        if action not in ("run", "run-short"):
            continue
        words = shlex.split(command)
        if action == "run-short":
            words += SHORT[words[0]]
        r = subprocess.run(words, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"{doc}: {command!r} exit {r.returncode}: {r.stderr[-2000:]}"
        assert "Traceback" not in r.stderr, r.stderr
        ran.append(command)
    assert any(c.startswith("drn-export") for c in ran) and any("--trtexec-only" in c for c in ran)
    assert any(c.startswith("drn-bench") for c in ran)
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert "models/drn_c_26.json" in written and any(w.startswith("runs/bench/") for w in written)
    # Each file the flow wrote, at the same place in the checkout, would be ignored by git.
    check = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=REPO, input="\n".join(written),
                           capture_output=True, text=True)
    ignored = set(check.stdout.split())
    assert set(written) <= ignored, f"untracked clutter: {sorted(set(written) - ignored)}"
