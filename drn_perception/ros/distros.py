"""Where the ROS 2 distros seg_node runs on differ, met in one place.

Supported: Humble (rclpy 3.3, Fast DDS 2.6), Jazzy (rclpy 7.1, Fast DDS 2.14), Kilted (rclpy 9.x,
Fast DDS 3.x). Each difference below was read from the sources on each branch (rclpy's public
API lists in shared/rclpy/ and test/test_ros_api.py, which checks every rclpy/launch name this
package uses against Humble's and Jazzy's; Fast DDS's XMLParserCommon.cpp per release):

- ``rclpy.try_shutdown``: Kilted's (rclpy >= 7.4) takes ``uninstall_handlers`` and, by default,
  puts Python's own SIGINT handler back when the default context goes down; Humble's and
  Jazzy's take only ``context`` and never touch the signal handlers. seg_node ignores signals
  from its first one on, so after Kilted's shutdown they must stay ignored.
- A lifecycle transition that is not valid from the current state (activate while
  unconfigured): Kilted's LifecycleNode logs it and answers ``success: false``; Humble's and
  Jazzy's raise RCLError out of the change_state service callback, out of spin, and the node
  dies. ``refuse_invalid_transitions`` gives every distro Kilted's behaviour.
- The Fast DDS XML profile (config/fastdds_large_images.xml, large best-effort images): Fast DDS
  2.x (Humble, Jazzy) reads it from FASTRTPS_DEFAULT_PROFILES_FILE, 3.x (Kilted) from
  FASTDDS_DEFAULT_PROFILES_FILE (it reads the 2.x name too, with a deprecation warning on every
  start). With only the 3.x name set, Jazzy kept its 512 KiB shared-memory segment and lost
  most 1024x512 best-effort frames (3-17 of 60 at 20 Hz; 41-60 of 60 with the profile read).
  seg.launch.py hands seg_node the 3.x name; seg_node, drn-replay and the tests set the one
  their Fast DDS reads (``dds_profile_environment``) before the first participant exists.
"""
from __future__ import annotations

import glob
import inspect
import os

# The names that code branches on by distro: test/test_ros_api.py checks what such a branch calls
# against the development distro's API only, and everything else against Humble's and Jazzy's.
VERSION_BRANCHES = ("_TRY_SHUTDOWN_TAKES_UNINSTALL",)

# Fast DDS's XML profile variable, by the Fast DDS generation that reads it.
PROFILE_VARIABLE = {2: "FASTRTPS_DEFAULT_PROFILES_FILE", 3: "FASTDDS_DEFAULT_PROFILES_FILE"}
_FASTDDS_2_DISTROS = ("humble", "iron", "jazzy")


def fastdds_generation(environ=os.environ) -> int | None:
    """2 or 3: the Fast DDS this process's rmw loads. From ROS_DISTRO where a ROS install set it,
    else from the library on LD_LIBRARY_PATH (2.x is libfastrtps.so, 3.x libfastdds.so; the
    registry's ROS wheels set no ROS_DISTRO); None when neither tells."""
    distro = environ.get("ROS_DISTRO", "").strip().lower()
    if distro:
        return 2 if distro in _FASTDDS_2_DISTROS else 3
    for folder in filter(None, environ.get("LD_LIBRARY_PATH", "").split(os.pathsep)):
        if glob.glob(os.path.join(folder, "libfastdds.so*")):
            return 3
        if glob.glob(os.path.join(folder, "libfastrtps.so*")):
            return 2
    return None


def dds_profile_environment(environ=os.environ, default: str | None = None) -> dict:
    """The Fast DDS profile variable(s) to set so this process's Fast DDS reads one profile: the
    one the user set under either name (the 3.x name first), else ``default``; {} when neither.
    Only the variable this Fast DDS reads (Kilted's warns about the 2.x name on every start);
    both where the generation cannot be told."""
    chosen = next((environ[v] for v in (PROFILE_VARIABLE[3], PROFILE_VARIABLE[2]) if environ.get(v)), default)
    if not chosen:
        return {}
    generation = fastdds_generation(environ)
    names = [PROFILE_VARIABLE[generation]] if generation else list(PROFILE_VARIABLE.values())
    return {name: chosen for name in names}


def try_shutdown_keeping_signals() -> None:
    """Shut the default context down (if it is not already) and leave the signal handlers as they are."""
    import rclpy

    _TRY_SHUTDOWN_TAKES_UNINSTALL = "uninstall_handlers" in inspect.signature(rclpy.try_shutdown).parameters
    if _TRY_SHUTDOWN_TAKES_UNINSTALL:
        rclpy.try_shutdown(uninstall_handlers=False)
    else:
        rclpy.try_shutdown()


def refuse_invalid_transitions(node) -> None:
    """Make ``node``'s change_state service answer ``success: false`` (and log why) for a transition
    that is not valid from the current state, instead of raising out of spin (Humble, Jazzy).

    rclpy offers no public hook for this: the service object is the lifecycle mixin's
    ``_service_change_state`` on every supported branch, and a Service calls ``.callback``.
    """
    service = getattr(node, "_service_change_state", None)
    if service is None:  # not a lifecycle node, or a lifecycle node without its services
        return
    from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

    handle = service.callback

    def change_state(request, response):
        try:
            return handle(request, response)
        except _rclpy.RCLError as exc:
            transition = request.transition.label or f"id {request.transition.id}"
            node.get_logger().error(
                f"lifecycle transition {transition!r} refused: not valid from the current state "
                f"{_current_state(node)!r} ({str(exc).splitlines()[0]})")
            response.success = False
            return response

    service.callback = change_state


def _current_state(node) -> str:
    try:
        return node._state_machine.current_state[1]
    except Exception:  # the label is for the message only
        return "unknown"
