"""seg_node as a fleet runs it, over real DDS: the lifecycle (managed) node driven through the
lifecycle_msgs services, camera_info republished with each mask, and a first start that serves
at once while a TensorRT engine is (here: fails to be) built in another process."""
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from ros_helpers import Probe, SpinThread, diagnostics_values, image_msg, random_rgb, read_image


def reliable(depth=10):
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE)


def call(probe, client, request, timeout=20.0):
    assert client.wait_for_service(timeout_sec=timeout), client.srv_name
    future = client.call_async(request)
    probe.wait(future.done, timeout, f"answer from {client.srv_name}")
    return future.result()


class Lifecycle:
    """Drives a managed node the way `ros2 lifecycle set` does: over its services."""

    def __init__(self, probe, node_name):
        self.probe = probe
        self.change = probe.node.create_client(ChangeState, f"/{node_name}/change_state")
        self.get = probe.node.create_client(GetState, f"/{node_name}/get_state")

    def state(self) -> str:
        return call(self.probe, self.get, GetState.Request()).current_state.label

    def go(self, transition_id: int) -> bool:
        return call(self.probe, self.change, ChangeState.Request(transition=Transition(id=transition_id))).success


def test_lifecycle_over_its_services_and_a_model_that_fails_to_load(tiny_onnx_model, context, segmenter):
    from drn_perception.ros.node import ManagedSegNode

    node = ManagedSegNode(context=context, parameter_overrides=[
        Parameter("model_path", value=str(tiny_onnx_model)), Parameter("input_reliability", value="reliable")])
    broken = ManagedSegNode("broken_node", context=context, parameter_overrides=[
        Parameter("model_path", value="/nonexistent/model.onnx"), Parameter("image_topics", value=["other/image"])])
    probe = Probe(context, "lifecycle_probe")
    pub = probe.node.create_publisher(Image, "camera/image_raw", reliable(1))
    probe.listen("drn/mask", Image, reliable())
    life, life_broken = Lifecycle(probe, "seg_node"), Lifecycle(probe, "broken_node")
    frame = image_msg(random_rgb(48, 64, seed=4))
    want = segmenter.infer(random_rgb(48, 64, seed=4)[None]).labels[0].astype(np.uint8)
    try:
        with SpinThread(context, node, broken, probe.node, multi_threaded=True):
            assert life.state() == "unconfigured" and node.segmenter is None
            # transitions not valid from here are refused and the node lives on (Humble's and
            # Jazzy's rclpy raise them out of spin; ros/distros.py refuses them on every distro)
            assert not life.go(Transition.TRANSITION_ACTIVATE) and not life.go(Transition.TRANSITION_DEACTIVATE)
            assert life.state() == "unconfigured" and node.segmenter is None
            assert pub.get_subscription_count() == 0  # no input before activate
            assert life.go(Transition.TRANSITION_CONFIGURE) and life.state() == "inactive"
            assert node.segmenter is not None
            time.sleep(0.5)
            assert pub.get_subscription_count() == 0  # configured, not taking frames
            assert life.go(Transition.TRANSITION_ACTIVATE) and life.state() == "active"
            m = probe.send_until_answered(pub, frame, "drn/mask", "active-1")
            np.testing.assert_array_equal(read_image(m), want)
            assert life.go(Transition.TRANSITION_DEACTIVATE) and life.state() == "inactive"
            assert node.segmenter is not None  # model kept
            probe.wait(lambda: pub.get_subscription_count() == 0, 10, "input subscription gone")
            frame.header.frame_id = "inactive"
            pub.publish(frame)
            time.sleep(0.5)
            assert not [m for m in probe.messages("drn/mask") if m.header.frame_id == "inactive"]
            assert life.go(Transition.TRANSITION_ACTIVATE)
            probe.send_until_answered(pub, frame, "drn/mask", "active-2")
            assert life.go(Transition.TRANSITION_DEACTIVATE) and life.go(Transition.TRANSITION_CLEANUP)
            assert life.state() == "unconfigured" and node.segmenter is None  # released
            assert life.go(Transition.TRANSITION_CONFIGURE) and life.go(Transition.TRANSITION_ACTIVATE)
            probe.send_until_answered(pub, frame, "drn/mask", "active-3")
            assert life.go(Transition.TRANSITION_ACTIVE_SHUTDOWN) and life.state() == "finalized"
            # the broken model: configure fails, the node stays unconfigured and can still shut down
            assert not life_broken.go(Transition.TRANSITION_CONFIGURE)
            assert life_broken.state() == "unconfigured" and broken.segmenter is None
            assert life_broken.go(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
            assert life_broken.state() == "finalized"
    finally:
        probe.destroy()
        node.destroy_node()
        broken.destroy_node()


def camera_info(stamp, fx):
    info = CameraInfo(height=48, width=64, distortion_model="plumb_bob", d=[0.1, 0.0, 0.0, 0.0, 0.0])
    info.k = [fx, 0.0, 32.0, 0.0, fx, 24.0, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, 32.0, 0.0, 0.0, fx, 24.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.header.stamp.sec, info.header.stamp.nanosec = stamp
    info.header.frame_id = "optical"
    return info


def test_camera_info_is_republished_with_each_mask_header_and_missing_info_is_reported(tiny_onnx_model, context):
    from drn_perception.ros.node import SegNode

    node = SegNode(context=context, parameter_overrides=[
        Parameter("model_path", value=str(tiny_onnx_model)), Parameter("input_reliability", value="reliable"),
        Parameter("image_topics", value=["front/image_raw", "rear/image_raw/compressed"]),
        Parameter("diagnostics_period", value=0.2)])
    probe = Probe(context, "info_probe")
    pub = probe.node.create_publisher(Image, "front/image_raw", reliable(1))
    info_pub = probe.node.create_publisher(CameraInfo, "front/camera_info", reliable(10))
    probe.listen("drn/front/mask", Image, reliable())
    probe.listen("drn/front/camera_info", CameraInfo, reliable(50))
    probe.listen("/diagnostics", DiagnosticArray)
    try:
        with SpinThread(context, node, probe.node):
            probe.wait_matched(pub)
            probe.wait_matched(info_pub)
            # no camera_info yet: masks, but no info, and /diagnostics says why
            probe.send_until_answered(pub, image_msg(random_rgb(48, 64), stamp=(5, 0)), "drn/front/mask", "before")
            assert not probe.messages("drn/front/camera_info")
            # two infos with different focal lengths; each frame gets the one stamped like it
            for sec, fx in ((10, 100.0), (11, 111.0)):
                info_pub.publish(camera_info((sec, 500), fx))
            probe.wait(lambda: node.stats_snapshot()["front"]["camera_info_in"] >= 2, 10, "infos received")
            for sec, fx in ((10, 100.0), (11, 111.0), (12, None)):
                m = probe.send_until_answered(pub, image_msg(random_rgb(48, 64), stamp=(sec, 500)), "drn/front/mask",
                                              f"cam-{sec}")
                info = probe.wait_for_message("drn/front/camera_info", lambda i, f=m.header.frame_id:
                                              i.header.frame_id == f)
                assert (info.header.stamp.sec, info.header.stamp.nanosec) == (m.header.stamp.sec, m.header.stamp.nanosec)
                assert info.k[0] == (fx or 111.0)  # no info stamped 12: the newest one
                assert (info.width, info.height, info.distortion_model) == (64, 48, "plumb_bob")
            assert len(probe.messages("drn/front/camera_info")) == 3
            st = node.stats_snapshot()["front"]
            assert st["camera_info_out"] == 3 and st["camera_info_exact"] == 2

            def rear():
                for msg in reversed(probe.messages("/diagnostics")):
                    v = diagnostics_values(msg).get("seg_node: rear")
                    if v is not None:
                        return v
            d = probe.wait(rear, 10, "rear status")
            assert d["camera_info_topic"] == "/rear/camera_info" and "no camera_info on /rear/camera_info" in d["_message"]
    finally:
        probe.destroy()
        node.destroy_node()


def test_first_start_without_an_engine_serves_on_onnx_runtime_and_reports_the_failed_build(tiny_onnx_model, context,
                                                                                           ort_segmenter, tmp_path):
    """TensorRT is not installable here: the build process fails, the node keeps serving on ONNX
    Runtime over the same graph and /diagnostics says why."""
    from drn_perception.ros.node import SegNode

    engine = tmp_path / "tiny.engine"
    node = SegNode(context=context, parameter_overrides=[
        Parameter("model_path", value=str(engine)), Parameter("build_engine", value="if_missing"),
        Parameter("onnx_path", value=str(tiny_onnx_model)), Parameter("input_reliability", value="reliable"),
        Parameter("diagnostics_period", value=0.2)])
    probe = Probe(context, "build_probe")
    pub = probe.node.create_publisher(Image, "camera/image_raw", reliable(1))
    probe.listen("drn/mask", Image, reliable())
    probe.listen("/diagnostics", DiagnosticArray)
    rgb = random_rgb(40, 56, seed=9)
    want = ort_segmenter.infer(rgb[None]).labels[0].astype(np.uint8)
    try:
        with SpinThread(context, node, probe.node):
            probe.wait_matched(pub)
            m = probe.send_until_answered(pub, image_msg(rgb), "drn/mask", "first")  # served while it builds
            np.testing.assert_array_equal(read_image(m), want)

            def failed():
                for msg in reversed(probe.messages("/diagnostics")):
                    v = diagnostics_values(msg).get("seg_node: camera")
                    if v is not None and v.get("model_switch_state") == "failed":
                        return v
            d = probe.wait(failed, 60, "the failed engine build in /diagnostics")
            assert d["backend"] == "onnxruntime" and "tensorrt" in d["model_switch"].lower(), d
            assert d["_level"] == b"\x01" and "failed" in d["_message"]
            m = probe.send_until_answered(pub, image_msg(rgb), "drn/mask", "after")
            np.testing.assert_array_equal(read_image(m), want)
            assert not engine.exists()
    finally:
        probe.destroy()
        node.destroy_node()


def test_openvino_precision_is_chosen_reported_and_refused_for_other_backends(tiny_onnx_model, context, ort_segmenter):
    pytest.importorskip("openvino", reason="the robot lanes have no OpenVINO (a robot runs TensorRT / ONNX Runtime)")
    from drn_perception.ros.node import SegNode
    from drn_perception.ros.params import StartupError

    node = SegNode(context=context, parameter_overrides=[
        Parameter("model_path", value=str(tiny_onnx_model)), Parameter("backend", value="openvino"),
        Parameter("precision", value="f32"), Parameter("input_reliability", value="reliable")])
    probe = Probe(context, "precision_probe")
    pub = probe.node.create_publisher(Image, "camera/image_raw", reliable(1))
    probe.listen("drn/mask", Image, reliable())
    rgb = random_rgb(37, 53, seed=6)
    try:
        assert (node.serving()["backend"], node.serving()["precision"]) == ("openvino", "f32")
        with SpinThread(context, node, probe.node):
            probe.wait_matched(pub)
            m = probe.send_until_answered(pub, image_msg(rgb), "drn/mask", "ov")
        # f32 is the precision whose labels are ONNX Runtime's
        np.testing.assert_array_equal(read_image(m), ort_segmenter.infer(rgb[None]).labels[0].astype(np.uint8))
    finally:
        probe.destroy()
        node.destroy_node()
    with pytest.raises(StartupError, match="applies to backend openvino only; onnxruntime"):
        SegNode("refused_node", context=context, parameter_overrides=[
            Parameter("model_path", value=str(tiny_onnx_model)), Parameter("backend", value="onnxruntime"),
            Parameter("precision", value="bf16")])
