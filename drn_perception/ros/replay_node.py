"""drn-replay, step 2: seg_node started as its own process, the way ``ros2 run`` starts it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path

from drn_perception.ros.replay_plan import ReplayError, ReplayFailed

NODE_MODULE = "drn_perception.ros.node"


def default_model() -> Path:
    """The package's default model (drn_perception/assets); ReplayError if none is installed."""
    try:
        from drn_perception.default_model import default_model_path
    except ImportError:
        raise ReplayError("this installation has no default model (drn_perception.default_model); "
                          "pass --model <model.onnx>") from None
    return Path(default_model_path())


def _death_signal_setter():
    """A function for Popen's preexec_fn that makes the child get SIGTERM when the replay dies,
    even by SIGKILL (Linux PR_SET_PDEATHSIG), or None where prctl is not available.

    libc is looked up here, in the parent: the child of a threaded process (the overlay writer
    runs on a thread) must not import or dlopen between fork and exec.
    """
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def started_node_params(model: str | Path, backend: str = "auto", compressed: bool = False) -> dict:
    """seg_node parameters for a node that serves a replay: it listens on ``camera/image_raw`` in
    its namespace, and both directions are reliable with room for 50 masks, so a replay loses
    nothing to QoS (drops then mean the node's own newest-frame policy)."""
    return {"model_path": str(model), "backend": backend, "input_reliability": "reliable",
            "output_reliability": "reliable", "output_depth": 50, "image_topics": "[camera/image_raw]",
            "compressed": str(compressed).lower()}


class NodeProcess:
    """seg_node started the way ``ros2 run drn_perception seg_node --ros-args ...`` starts it."""

    def __init__(self, namespace: str, params: dict, log_path: Path | None = None):
        self.command = [sys.executable, "-m", NODE_MODULE, "--ros-args", "-r", f"__ns:={namespace}"]
        for k, v in params.items():
            self.command += ["-p", f"{k}:={v}"]
        env = dict(os.environ)
        pkg_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pkg_root, env.get("PYTHONPATH", "")]))
        env["PYTHONUNBUFFERED"] = "1"
        self.lines: deque[str] = deque(maxlen=40)
        self._log = open(log_path, "w") if log_path else None  # noqa: SIM115 - closed in stop()
        # Own session: a terminal Ctrl-C reaches only the replay, which then stops the node itself.
        self.proc = subprocess.Popen(
            self.command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True, preexec_fn=_death_signal_setter(),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if self._log:
                self._log.write(line)

    def check_alive(self, when: str) -> None:
        code = self.proc.poll()
        if code is not None:
            self._reader.join(timeout=2.0)
            last = next((ln for ln in reversed(self.lines) if ln.strip()), "no output")
            raise ReplayFailed(f"seg_node exited with code {code} {when}: {last}")

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=2.0)
        if self._log:
            self._log.close()
        return self.proc.returncode


def use_large_image_profile() -> None:
    """Let large best-effort images through Fast DDS, as seg.launch.py does for the node.

    A node started with the default best-effort input only gets frames over 512 KiB when the
    publishing process (this one) uses config/fastdds_large_images.xml. Replay.run calls it
    before rclpy.init; Fast DDS reads the file when the process creates its first participant,
    so a caller that created one earlier must set the profile variables itself. A profile the
    user set already (under either of Fast DDS's two names, ros/distros.py) is kept.
    """
    from drn_perception.model_info import _config_path
    from drn_perception.ros.distros import dds_profile_environment

    profile = _config_path("fastdds_large_images.xml")
    if profile.is_file():
        os.environ.update(dds_profile_environment(os.environ, str(profile)))
