#!/usr/bin/env bash
# One robot lane of `make test`: ROS 2 Jazzy's rclpy on a robot's own CPython, without torch.
#
#   tools/test_lane.sh NAME PYTHON_VERSION TINY_MODEL.onnx [pytest args...]
#
# The lane's virtualenv (.lanes/NAME) is made once and again only when its inputs change:
#  1. requirements/lane-NAME.txt: what the robot's system has before our install step (numpy 1.x,
#     an OpenCV built for it, Jazzy's rclpy and message packages);
#  2. the README's robot pip step, exactly as README.md prints it (test/robot_flow.py reads it);
#  3. the package itself, without its dependencies (colcon's part on a robot).
# Then the tests given run in it, on the tiny model the main lane exported.
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1 version=$2 tiny=$3
shift 3
dir=.lanes/$name

python=""
for candidate in "python$version" "$HOME"/.pyenv/versions/"$version".*/bin/python"$version"; do
    if "$candidate" -c 'import sys' >/dev/null 2>&1; then python=$candidate; break; fi
done
if [ -z "$python" ]; then
    echo "test lane $name: no CPython $version found (python$version on PATH, or under ~/.pyenv/versions)" >&2
    exit 1
fi

inputs=$(cat "requirements/lane-$name.txt" requirements/robot*.txt setup.py README.md test/robot_flow.py | sha256sum)
if [ ! -f "$dir/.installed" ] || [ "$(cat "$dir/.installed")" != "$inputs" ]; then
    echo "test lane $name: making $dir with $("$python" --version)"
    rm -rf "$dir"
    "$python" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "requirements/lane-$name.txt"
    # The README's robot pip step, run as printed, with this checkout for src/drn_perception.
    "$dir/bin/python" test/robot_flow.py --commands | while IFS= read -r command; do
        echo "test lane $name: $command"
        PATH="$PWD/$dir/bin:$PATH" PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_QUIET=1 bash -c "$command"
    done
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
    echo "$inputs" > "$dir/.installed"
fi

echo "test lane $name: $("$dir/bin/python" --version), rclpy $("$dir/bin/python" -c 'from importlib.metadata import version; print(version("ros-rclpy"))'), numpy $("$dir/bin/python" -c 'import numpy; print(numpy.__version__)')"
DRN_TEST_LANE=$name DRN_TEST_TINY_ONNX=$(realpath "$tiny") exec "$dir/bin/python" -m pytest -p no:cacheprovider "$@"
