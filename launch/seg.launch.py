"""Start seg_node: ``ros2 launch drn_perception seg.launch.py [model:=...] [image_topic:=...]``.

Arguments (``ros2 launch drn_perception seg.launch.py --show-args`` lists them):
  model        model file (.onnx, .engine, .pt); empty: model_path from params_file, else the default model
  backend      auto | tensorrt | onnxruntime | openvino | torch; empty: from params_file
  params_file  node parameters (default: the installed config/seg.yaml)
  image_topic  camera topic the node's 'camera/image_raw' input is remapped to
  namespace    namespace for the node and its relative topics (drn/mask, camera/image_raw)
  use_sim_time use /clock (bag replay)
  lifecycle    true: run seg_node as a managed (lifecycle) node (seg_node --lifecycle); configure loads
               the model, activate starts taking frames
  autostart    with lifecycle:=true, drive configure and then activate from the launch file (what Nav2's
               lifecycle manager does); false leaves it unconfigured for your own manager
  dds_profile  Fast DDS XML profile for seg_node (FASTDDS_/FASTRTPS_DEFAULT_PROFILES_FILE); default: the one
               already set in the environment, else the installed config/fastdds_large_images.xml,
               which lets best-effort images larger than 512 KiB through (docs/node.md)

Supported: ROS 2 Humble (JetPack 6, Ubuntu 22.04, Python 3.10), Jazzy (JetPack 7, Ubuntu 24.04,
Python 3.12) and Kilted. Tested how: `make test` runs the node on Kilted's rclpy (CPython 3.11)
and on Jazzy's (CPython 3.12, and 3.10 with numpy 1.x as on Jammy); every rclpy, launch and
launch_ros name and keyword used here and in the node is checked against Humble's and Jazzy's
API (test/test_ros_api.py); this file ran under the real `ros2 launch` built from the ROS 2
sources (README "Limits").
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler, SetEnvironmentVariable
from launch.events import matches_action
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

PACKAGE = "drn_perception"
DEFAULT_INPUT = "camera/image_raw"


def _node(context):
    """The Node, with only the overrides that were actually given (so params_file values stand)."""
    def arg(name):
        return LaunchConfiguration(name).perform(context).strip()

    overrides = {"use_sim_time": _true(arg("use_sim_time"))}
    if arg("model"):
        overrides["model_path"] = arg("model")
    if arg("backend"):
        overrides["backend"] = arg("backend")
    remappings = []
    if arg("image_topic") and arg("image_topic") != DEFAULT_INPUT:
        remappings.append((DEFAULT_INPUT, arg("image_topic")))
    common = dict(
        package=PACKAGE,
        executable="seg_node",
        name="seg_node",
        parameters=[arg("params_file"), overrides],
        remappings=remappings,
        output="screen",
        emulate_tty=True,
    )
    if not _true(arg("lifecycle")):
        return [Node(namespace=arg("namespace") or None, **common)]
    node = LifecycleNode(namespace=arg("namespace"), arguments=["--lifecycle"], **common)
    if not _true(arg("autostart")):
        return [node]

    def transition(transition_id):
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition_id))

    # configure once the process is up; activate once configure has succeeded (a failed configure
    # stays unconfigured, with the reason in the node's log)
    return [
        node,
        RegisterEventHandler(OnStateTransition(target_lifecycle_node=node, start_state="configuring",
                                               goal_state="inactive", handle_once=True,
                                               entities=[transition(Transition.TRANSITION_ACTIVATE)])),
        transition(Transition.TRANSITION_CONFIGURE),
    ]


def _true(text: str) -> bool:
    return text.lower() in ("true", "1", "yes", "on")


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    return LaunchDescription([
        DeclareLaunchArgument("model", default_value="",
                              description="Model file (.onnx/.engine/.pt); empty: params_file's model_path "
                                          "or the package's default model"),
        DeclareLaunchArgument("backend", default_value="",
                              choices=["", "auto", "tensorrt", "onnxruntime", "openvino", "torch"],
                              description="Inference backend; empty: params_file's backend (auto)"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "seg.yaml"),
                              description="YAML with seg_node parameters"),
        DeclareLaunchArgument("image_topic", default_value=DEFAULT_INPUT,
                              description="Camera topic (sensor_msgs/Image) to segment"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace for seg_node"),
        DeclareLaunchArgument("use_sim_time", default_value="false", choices=["true", "false"],
                              description="Use simulated time from /clock"),
        DeclareLaunchArgument("lifecycle", default_value="false", choices=["true", "false"],
                              description="Run seg_node as a managed (lifecycle) node"),
        DeclareLaunchArgument("autostart", default_value="true", choices=["true", "false"],
                              description="With lifecycle:=true: configure and activate it from the launch file"),
        DeclareLaunchArgument(
            "dds_profile",
            default_value=EnvironmentVariable(
                "FASTDDS_DEFAULT_PROFILES_FILE", default_value=EnvironmentVariable(
                    "FASTRTPS_DEFAULT_PROFILES_FILE",
                    default_value=os.path.join(share, "config", "fastdds_large_images.xml"))),
            description="Fast DDS XML profile for seg_node (FASTDDS_DEFAULT_PROFILES_FILE, or Fast DDS 2.x's "
                        "FASTRTPS_DEFAULT_PROFILES_FILE); default: the one set in the environment, else "
                        + os.path.join(share, "config", "fastdds_large_images.xml")),
        # Fast DDS 2.x (Humble, Jazzy) reads FASTRTPS_..., 3.x (Kilted) FASTDDS_... (and warns about the
        # 2.x name): seg_node sets the name its own Fast DDS reads from this one (ros/distros.py).
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", LaunchConfiguration("dds_profile")),
        OpaqueFunction(function=_node),
    ])
