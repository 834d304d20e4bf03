"""seg_node: camera frames in, per-pixel class masks out.

Subscribes to one or more camera topics (sensor_msgs/Image or CompressedImage), runs the
segmentation model on a worker thread and publishes, per camera, a mono8 label mask at the
input resolution with the input's header (stamp and frame_id), the camera's camera_info with
that same header, plus optional colour mask, overlay and confidence images that are only
computed while someone subscribes to them. Health and latency go to /diagnostics about once a second.

Frames arrive as their serialised (CDR) bytes and are read in place with rosbags' deserialiser:
the pixels are a view of the received buffer (rclpy's own conversion copies them into an
array.array, 3.7 ms per 1024x512 rgb8 frame). Subscription callbacks only keep the newest
frame per camera (an older one still waiting is dropped and counted), so DDS never backs up
behind a slow model; frames of equal network size from several cameras that are pending
together run as one batch.

Two ways to run the same node: ``SegNode`` starts serving at construction; ``ManagedSegNode``
(``seg_node --lifecycle``) is a lifecycle node whose configure loads and warms the model,
activate starts taking frames, deactivate stops taking them (model kept), cleanup releases the
model. Both are ``SegCore`` (seg_core.py: parameters, model, cameras, the frame pipeline,
/diagnostics) over a different rclpy base.

Run: ``ros2 run drn_perception seg_node --ros-args -p model_path:=model.onnx`` or
``ros2 launch drn_perception seg.launch.py`` (see docs/node.md for topics and parameters).
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import signal
import sys
import threading
import time

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.node import Node

from drn_perception.ros import params
from drn_perception.ros.params import StartupError
from drn_perception.ros.distros import dds_profile_environment, refuse_invalid_transitions, try_shutdown_keeping_signals
from drn_perception.ros.seg_core import SegCore, startup_errors

NODE_NAME = "seg_node"


class SegNode(SegCore, Node):
    """The plain node: serving once constructed. ``SegNode(**node_kwargs)``; destroy_node() stops it."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        Node.__init__(self, node_name, start_parameter_services=False, **kwargs)
        try:
            self._init_core()
            with startup_errors(self):
                self._load_model()
                self._create_cameras()
            self._start_inputs()
        except BaseException:
            self.destroy_node()
            raise
        self.get_logger().info(self._started_line())

    def close(self):
        """Stop the worker (waits for the frame in flight) and a model build still running."""
        if hasattr(self, "_cond"):
            self._stop_inputs()
            self._close_model()

    def destroy_node(self):
        self.close()
        return super().destroy_node()


class ManagedSegNode(SegCore, LifecycleNode):
    """seg_node as a lifecycle node (``seg_node --lifecycle``): parameters at construction, the model at
    configure, frames between activate and deactivate. A failed configure returns to unconfigured and
    logs the reason; shutdown works from every state."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        LifecycleNode.__init__(self, node_name, start_parameter_services=False, **kwargs)
        refuse_invalid_transitions(self)
        try:
            self._init_core()
        except BaseException:
            self.destroy_node()
            raise

    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            with startup_errors(self):
                self._load_model()
                self._create_cameras()
        except StartupError as exc:
            self.get_logger().error(f"configure failed: {exc}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"configured: {self._started_line()}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        self._start_inputs()
        self.get_logger().info("active: taking frames")
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._stop_inputs()
        self.get_logger().info("inactive: not taking frames (model kept)")
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("unconfigured: model released")
        return super().on_cleanup(state)

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self._stop_inputs()
        self._release()
        return super().on_shutdown(state)

    def on_error(self, state) -> TransitionCallbackReturn:
        self._stop_inputs()
        self._release()
        return TransitionCallbackReturn.SUCCESS  # back to unconfigured

    def destroy_node(self):
        if hasattr(self, "_cond"):
            self._stop_inputs()
            self._close_model()
        return super().destroy_node()


def _parse_cli(args: list[str]) -> argparse.Namespace:
    """seg_node's own options (everything after --ros-args is ROS's); --help prints every parameter."""
    from rclpy.utilities import remove_ros_args

    parser = argparse.ArgumentParser(prog=NODE_NAME, add_help=False)
    parser.add_argument("--help", "-h", action="store_true")
    parser.add_argument("--lifecycle", action="store_true")
    opts = parser.parse_args(remove_ros_args(args)[1:])
    if opts.help:
        sys.stdout.write(params.help_text(NODE_NAME))
        sys.exit(0)
    return opts


def _ignore_signals():
    """From the first SIGINT/SIGTERM on, the rest are ignored: cleanup runs to the end and exits 0
    (``ros2 launch`` without a terminal sends a second SIGINT shortly after the first)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def main(args=None) -> int:
    """Console script ``seg_node``: exit 0 on any sequence of SIGINT/SIGTERM, 1 on a configuration
    error, 2 on a bad command line."""
    args = list(sys.argv if args is None else args)
    try:
        opts = _parse_cli(args)
        # a Fast DDS profile given under the other generation's name (seg.launch.py gives the 3.x
        # name) is set under the name this process's Fast DDS reads, before its first participant
        os.environ.update(dds_profile_environment(os.environ))
        rclpy.init(args=args)
    except _rclpy.RCLInvalidROSArgsError as exc:
        sys.stderr.write(f"{NODE_NAME}: error: invalid ROS arguments: {str(exc).split(', at ')[0]}\n")
        return 2
    try:
        return _run(ManagedSegNode if opts.lifecycle else SegNode)
    except KeyboardInterrupt:  # a signal that landed before the handlers below were replaced
        _ignore_signals()
        return 0


# After a SIGINT/SIGTERM has shut the context down, the process exits within this many seconds
# even if the node's cleanup (threads, the model, DDS) has not finished.
SHUTDOWN_GRACE_S = 10.0


def _exit_watchdog():
    """Daemon thread: once the context is shut down or cleanup has begun, give it SHUTDOWN_GRACE_S, then print
    where every thread is (faulthandler) and exit as _run would have (0 after a signal): a node
    asked to stop always stops."""
    while rclpy.ok() and not _cleaning_up.is_set():
        time.sleep(0.2)
    time.sleep(SHUTDOWN_GRACE_S)
    sys.stderr.write(f"{NODE_NAME}: cleanup did not finish within {SHUTDOWN_GRACE_S:g} s of the shutdown "
                     "request; exiting now. Where each thread was:\n")
    faulthandler.dump_traceback(all_threads=True)
    sys.stderr.flush()
    os._exit(_exit_code[0])


_exit_code = [0]  # what _run will return: the watchdog exits with it too
_cleaning_up = threading.Event()  # _run has left spin and is cleaning up


def _run(node_class) -> int:
    node = executor = None
    code = 0
    threading.Thread(target=_exit_watchdog, name="exit_watchdog", daemon=True).start()
    try:
        # The executor before the node: once the node has logged its start-up line, nothing is
        # left to construct on the context, so a signal from then on cannot land inside an
        # Executor.__init__ (whose half-made object prints a traceback when it is collected).
        executor = SingleThreadedExecutor()
        node = node_class()
        rclpy.spin(node, executor)
    except StartupError as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(str(exc))
        code = _exit_code[0] = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # A SIGINT/SIGTERM shuts the context down under a callback that is running (or under the
        # node's construction): rcl then fails with "context is invalid". That is the shutdown
        # the user asked for, not a fault; any other exception is one and propagates.
        if rclpy.ok():
            raise
    finally:
        _ignore_signals()
        _cleaning_up.set()
        if node is not None:
            node.destroy_node()
        if executor is not None:  # its guard conditions go before the context, as rclpy's own executor's do
            executor.shutdown(timeout_sec=0)
        try_shutdown_keeping_signals()  # the signals stay ignored until exit
    return code


if __name__ == "__main__":
    sys.exit(main())
