"""Start seg_node: ``ros2 launch drn_perception seg.launch.py [model:=...] [image_topic:=...]``.

Arguments (``ros2 launch drn_perception seg.launch.py --show-args`` lists them):
  model        model file (.onnx, .engine, .pt); empty: model_path from params_file, else the default model
  backend      auto | tensorrt | onnxruntime | torch; empty: from params_file
  params_file  node parameters (default: the installed config/seg.yaml)
  image_topic  camera topic the node's 'camera/image_raw' input is remapped to
  namespace    namespace for the node and its relative topics (drn/mask, camera/image_raw)
  use_sim_time use /clock (bag replay)
  dds_profile  Fast DDS XML profile for seg_node (FASTDDS_DEFAULT_PROFILES_FILE); default: the one
               already set in the environment, else the installed config/fastdds_large_images.xml,
               which lets best-effort images larger than 512 KiB through (docs/node.md)
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "drn_perception"
DEFAULT_INPUT = "camera/image_raw"


def _node(context):
    """The Node, with only the overrides that were actually given (so params_file values stand)."""
    def arg(name):
        return LaunchConfiguration(name).perform(context).strip()

    overrides = {"use_sim_time": arg("use_sim_time").lower() in ("true", "1", "yes", "on")}
    if arg("model"):
        overrides["model_path"] = arg("model")
    if arg("backend"):
        overrides["backend"] = arg("backend")
    remappings = []
    if arg("image_topic") and arg("image_topic") != DEFAULT_INPUT:
        remappings.append((DEFAULT_INPUT, arg("image_topic")))
    return [Node(
        package=PACKAGE,
        executable="seg_node",
        name="seg_node",
        namespace=arg("namespace") or None,
        parameters=[arg("params_file"), overrides],
        remappings=remappings,
        output="screen",
        emulate_tty=True,
    )]


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    return LaunchDescription([
        DeclareLaunchArgument("model", default_value="",
                              description="Model file (.onnx/.engine/.pt); empty: params_file's model_path "
                                          "or the package's default model"),
        DeclareLaunchArgument("backend", default_value="",
                              choices=["", "auto", "tensorrt", "onnxruntime", "torch"],
                              description="Inference backend; empty: params_file's backend (auto)"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "seg.yaml"),
                              description="YAML with seg_node parameters"),
        DeclareLaunchArgument("image_topic", default_value=DEFAULT_INPUT,
                              description="Camera topic (sensor_msgs/Image) to segment"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace for seg_node"),
        DeclareLaunchArgument("use_sim_time", default_value="false", choices=["true", "false"],
                              description="Use simulated time from /clock"),
        DeclareLaunchArgument(
            "dds_profile",
            default_value=EnvironmentVariable(
                "FASTDDS_DEFAULT_PROFILES_FILE",
                default_value=os.path.join(share, "config", "fastdds_large_images.xml")),
            description="Fast DDS XML profile for seg_node (FASTDDS_DEFAULT_PROFILES_FILE)"),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", LaunchConfiguration("dds_profile")),
        OpaqueFunction(function=_node),
    ])
