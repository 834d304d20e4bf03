"""Every rclpy / launch / launch_ros name and keyword the package uses exists on Humble, Jazzy and
Kilted (test/ros_api.py reads the API lists of shared/rclpy/; no Humble wheels exist)."""
from __future__ import annotations

from pathlib import Path

import pytest

from ros_api import check_source, load_api, own_methods

REPO = Path(__file__).resolve().parent.parent
SOURCES = sorted([*REPO.glob("drn_perception/**/*.py"), *REPO.glob("launch/*.py"), *REPO.glob("benchmarks/*.py")])


def version_branches() -> set[str]:
    from drn_perception.ros import distros

    return set(distros.VERSION_BRANCHES)


@pytest.fixture(scope="module")
def dev():
    return load_api("rolling")  # Kilted's rclpy (9.x) is rolling's API (7.4+): what the main lane runs


@pytest.mark.parametrize("branch", ["humble", "jazzy", "rolling"])
def test_every_rclpy_launch_and_launch_ros_use_exists_on_the_branch(branch, dev):
    api = load_api(branch)
    own = own_methods(SOURCES)
    problems = []
    for path in SOURCES:
        problems += check_source(path.read_text(), str(path.relative_to(REPO)), api, dev, own, version_branches())
    assert not problems, "\n".join(map(str, problems))


OLD_RUN = '''
import rclpy
def _run():
    rclpy.try_shutdown(uninstall_handlers=False)  # keep the signals ignored until exit
'''


@pytest.mark.parametrize("branch, fails", [("humble", True), ("jazzy", True), ("rolling", False)])
def test_the_old_try_shutdown_call_is_refused_where_it_raised(branch, fails, dev):
    problems = check_source(OLD_RUN, "old_node.py", load_api(branch), dev, set())
    assert bool(problems) == fails, problems
    if fails:
        assert "uninstall_handlers" in str(problems[0]) and "old_node.py:4" in str(problems[0])


@pytest.mark.parametrize("source, words", [
    ("from rclpy.executors import EventsExecutor\n", ["EventsExecutor", "not in humble"]),  # rclpy 7.2+
    ("import rclpy\nrclpy.spin(n, executor=e, timeout_sec=1)\n", ["spin", "timeout_sec"]),
    ("from rclpy.node import Node\nclass N(Node):\n  def f(self):\n    self.create_subscription(A, 't', cb, 10, "
     "raw=True, nope=1)\n", ["create_subscription", "nope"]),
    ("from launch.actions import DeclareLaunchArgument\nDeclareLaunchArgument('a', 'x')\n",
     ["DeclareLaunchArgument", "at most 1 positional"]),
    ("class R:\n  def f(self, subs):\n    return [s.get_publisher_count() for s in subs]\n",
     ["get_publisher_count", "no rclpy class has it in humble"]),  # Jazzy's; Humble: Node.count_publishers
    ("import rclpy\nrclpy.nothing_here()\n", ["rclpy.nothing_here", "not in humble"]),
])
def test_each_kind_of_use_is_checked(source, words, dev):
    problems = "\n".join(map(str, check_source(source, "x.py", load_api("humble"), dev, set())))
    assert all(w in problems for w in words), problems


def test_a_version_branch_is_checked_against_the_development_api_only(dev):
    source = "import rclpy\nif TAKES:\n    rclpy.try_shutdown(uninstall_handlers=False)\nelse:\n    rclpy.try_shutdown()\n"
    assert not check_source(source, "x.py", load_api("humble"), dev, set(), {"TAKES"})
    assert check_source(source.replace("False", "False, nope=1"), "x.py", load_api("humble"), dev, set(), {"TAKES"})


@pytest.mark.parametrize("environ, generation", [
    ({"ROS_DISTRO": "humble"}, 2), ({"ROS_DISTRO": "jazzy"}, 2), ({"ROS_DISTRO": "kilted"}, 3),
    ({"ROS_DISTRO": "rolling"}, 3), ({}, None)])
def test_the_fast_dds_generation_from_ros_distro(environ, generation):
    from drn_perception.ros.distros import fastdds_generation

    assert fastdds_generation(environ) == generation


def test_the_fast_dds_profile_goes_under_the_name_this_fast_dds_reads(tmp_path):
    import os
    from importlib.metadata import PackageNotFoundError, version

    from drn_perception.ros.distros import dds_profile_environment, fastdds_generation

    # this process's ROS wheels say which Fast DDS it loads: ros-fastdds (3.x) or ros-fastrtps (2.x)
    try:
        expected = int(version("ros-fastdds").split(".")[0])
    except PackageNotFoundError:
        expected = int(version("ros-fastrtps").split(".")[0])
    assert fastdds_generation({"LD_LIBRARY_PATH": os.environ["LD_LIBRARY_PATH"]}) == expected
    name = {2: "FASTRTPS_DEFAULT_PROFILES_FILE", 3: "FASTDDS_DEFAULT_PROFILES_FILE"}
    # the launch file's 3.x name is moved to the 2.x name on Jazzy; the user's own profile wins over the default
    for given in ({name[3]: "/mine.xml"}, {name[2]: "/mine.xml"}):
        assert dds_profile_environment({**given, "ROS_DISTRO": "jazzy"}, "/default.xml") == {name[2]: "/mine.xml"}
        assert dds_profile_environment({**given, "ROS_DISTRO": "kilted"}, "/default.xml") == {name[3]: "/mine.xml"}
    assert dds_profile_environment({"ROS_DISTRO": "humble"}, "/default.xml") == {name[2]: "/default.xml"}
    assert dds_profile_environment({"ROS_DISTRO": "humble"}) == {}
    libs = tmp_path / "lib"
    libs.mkdir()
    (libs / "libfastrtps.so.2.6").touch()
    assert dds_profile_environment({"LD_LIBRARY_PATH": str(libs)}, "/d.xml") == {name[2]: "/d.xml"}
    assert dds_profile_environment({"LD_LIBRARY_PATH": str(tmp_path / "none")}, "/d.xml") == {
        name[2]: "/d.xml", name[3]: "/d.xml"}  # cannot tell: both
