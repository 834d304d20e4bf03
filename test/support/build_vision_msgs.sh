#!/usr/bin/env bash
# Build the vision_msgs message package (LabelInfo, VisionClass: test/support/vision_msgs) into a
# virtualenv that has the ROS 2 wheels, with the real rosidl generators from the package registry.
#
#   test/support/build_vision_msgs.sh [VENV]      (default: .venv)
#
# vision_msgs is a standard ROS package (rosdep key vision_msgs) but has no wheel on the registry;
# seg_node publishes vision_msgs/LabelInfo when the package is importable, and the tests check it
# over DDS with this build. The messages are written from vision_msgs' published interface with
# the same field names and types, so the type (and its RIHS01 type hash) is the real one.
#
# Installs into VENV's prefix (lib/, share/, lib/pythonX.Y/site-packages), where the wheels'
# bootstrapper already puts lib/ on LD_LIBRARY_PATH. Re-running is cheap: a stamp in VENV records
# what was built, and the build runs again only when the sources, this script or the venv's ROS
# version change. Needs cmake and a C/C++ compiler; about 20 s on two cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${1:-.venv}
py=$venv/bin/python
src=test/support/vision_msgs
[ -x "$py" ] || { echo "build_vision_msgs: no virtualenv at $venv (make setup makes .venv)" >&2; exit 1; }
for tool in cmake make cc c++; do
    command -v "$tool" >/dev/null || { echo "build_vision_msgs: $tool is not installed" >&2; exit 1; }
done

rclpy=$("$py" -c 'from importlib.metadata import version; print(version("ros-rclpy"))')
pyver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
stamp_file=$venv/.vision_msgs
stamp=$(cat "$0" "$src/package.xml" "$src/CMakeLists.txt" "$src"/msg/*.msg | sha256sum | cut -c1-16)-$rclpy-$pyver
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ] \
        && "$py" -c 'from vision_msgs.msg import LabelInfo, VisionClass' 2>/dev/null; then
    exit 0
fi

# The generators and CMake modules of the venv's own ROS distro, pinned to the ROS wheels it has
# (Kilted's packages carry no distro prefix; Jazzy's rclpy is 7.x and its meta wheels are ros-jazzy-*).
case $rclpy in
    7.*) prefix=ros-jazzy- cmake_ros=(ros-jazzy-ament-cmake-ros ros-jazzy-ament-cmake-gmock
                                      ros-jazzy-ament-cmake-gtest ros-jazzy-ament-cmake-pytest) ;;
    *) prefix=ros- cmake_ros=(ros-ament-cmake-ros-core) ;;
esac
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
"$py" -m pip freeze --disable-pip-version-check | grep -i '^ros-' > "$constraints" || true
echo "build_vision_msgs: rosidl generators for rclpy $rclpy into $venv"
# (the typesupport generators need ament_cmake_ros: Kilted split its core out; Jazzy's whole one finds
# the gtest/gmock/pytest CMake modules too, which its meta wheel does not bring)
"$py" -m pip install --quiet --disable-pip-version-check -c "$constraints" catkin_pkg \
    "${prefix}rosidl-default-generators" "${prefix}ament-cmake" "${prefix}ament-package" \
    "${prefix}ament-cmake-include-directories" "${prefix}rosidl-core-generators" "${prefix}python-cmake-module" \
    "${cmake_ros[@]}" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2

prefix_dir=$(cd "$venv" && pwd)
build=build/vision_msgs-$(basename "$prefix_dir")
rm -rf "$build"
mkdir -p "$build"
py_include=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_include=$("$py" -c 'import numpy; print(numpy.get_include())')
export AMENT_PREFIX_PATH=$prefix_dir PATH=$prefix_dir/bin:$PATH
echo "build_vision_msgs: building $src in $build"
if ! { cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
            -DCMAKE_PREFIX_PATH="$prefix_dir" -DCMAKE_INSTALL_PREFIX="$prefix_dir" \
            -DPython3_EXECUTABLE="$prefix_dir/bin/python" \
            -DDRN_PYTHON_INCLUDE="$py_include" -DDRN_NUMPY_INCLUDE="$np_include" \
        && cmake --build "$build" -j "$(nproc)" && cmake --install "$build"; } > "$build/build.log" 2>&1; then
    tail -n 40 "$build/build.log" >&2
    echo "build_vision_msgs: the build failed (log: $build/build.log)" >&2
    exit 1
fi
"$py" -c 'from vision_msgs.msg import LabelInfo, VisionClass' || {
    echo "build_vision_msgs: built, but 'from vision_msgs.msg import LabelInfo' fails in $venv" >&2; exit 1; }
echo "$stamp" > "$stamp_file"
echo "build_vision_msgs: vision_msgs installed into $venv"
