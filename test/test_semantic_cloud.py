"""Semantic point clouds and LabelInfo for Nav2, over real DDS, on RGB-D frames of known geometry.

The scene: a camera 0.8 m above a flat floor (the optical frame's y points down, so the floor is
the plane y = 0.8) looking at a box whose front face is the plane z = 2.0 m; pixels with neither
(the sky) have no depth. Depth images are rendered from that geometry here, in float64, for
16UC1 (mm) and 32FC1 (m); every point the node publishes is compared with where the pixel's ray
meets the geometry. vision_msgs/LabelInfo is checked against the real message type, built from
vision_msgs' published interface by test/support/build_vision_msgs.sh.
"""
import importlib
import subprocess
import sys
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from drn_perception.model_info import cityscapes
from ros_helpers import REPO, Probe, SpinThread, diagnostics_values, image_msg, random_rgb, read_image, stamp

H, W = 48, 64  # colour frame and mask
FX = FY = 60.0
CX, CY = 31.5, 23.5
CAMERA_HEIGHT = 0.8  # floor: y = 0.8 in the optical frame
BOX_Z, BOX_U, BOX_V = 2.0, (20, 40), (10, 30)  # the box's front face and the mask pixels it covers
MAX_RANGE = 20.0  # farther floor pixels get no depth (as a real sensor's range)
# vision_msgs/msg/LabelInfo's type hash, computed by rosidl from the upstream vision_msgs 4.1.1
# LabelInfo.msg and VisionClass.msg: the type built for the tests must be that same type.
LABEL_INFO_HASH = "RIHS01_3d37df4015cdf660cc851c51897f2acd957e1ca6205ba0a99aebffb9406b0783"


def scene_depth(h, w, scale=1):
    """True depth (float64 metres, NaN = none) of each pixel of an h x w image whose intrinsics are the
    mask's scaled by ``scale`` (pixel centres kept), plus those intrinsics."""
    fx, fy = FX * scale, FY * scale
    cx, cy = (CX + 0.5) * scale - 0.5, (CY + 0.5) * scale - 0.5
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    yn = (v - cy) / fy
    with np.errstate(divide="ignore"):
        z = np.where(yn > 0, CAMERA_HEIGHT / yn, np.nan)  # the floor
    z[z > MAX_RANGE] = np.nan
    # the box, in mask pixels: depth pixels whose centre lies in the mask pixels it covers
    mu, mv = (u + 0.5) / scale - 0.5, (v + 0.5) / scale - 0.5
    box = (mu >= BOX_U[0] - 0.5) & (mu < BOX_U[1] - 0.5) & (mv >= BOX_V[0] - 0.5) & (mv < BOX_V[1] - 0.5)
    z[box] = BOX_Z
    return z, (fx, fy, cx, cy)


def depth_msg(z, encoding, stamp_=(0, 0), holes=()):
    """A depth Image of ``z`` (NaN: no depth), 16UC1 in mm or 32FC1 in m; ``holes``: (row, col) slices
    set to 'no measurement' (0 or NaN)."""
    z = z.copy()
    for hole in holes:
        z[hole] = np.nan
    if encoding == "16UC1":
        data = np.where(np.isnan(z), 0, np.rint(z * 1000)).astype("<u2")
    else:
        data = z.astype("<f4")
    msg = Image(height=z.shape[0], width=z.shape[1], encoding=encoding, is_bigendian=0,
                step=z.shape[1] * data.itemsize)
    msg.data = data.tobytes()
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp_
    msg.header.frame_id = "camera_color_optical_frame"
    return msg


def info_msg(h, w, k, stamp_=(0, 0)):
    fx, fy, cx, cy = k
    msg = CameraInfo(height=h, width=w, distortion_model="plumb_bob", d=[0.0] * 5,
                     k=[fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0],
                     p=[fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0])
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp_
    return msg


def read_cloud(msg):
    """{field name: (height, width) array} of a PointCloud2, read with the offsets its fields declare."""
    kinds = {7: "<f4", 2: "u1"}
    dtype = np.dtype({"names": [f.name for f in msg.fields], "formats": [kinds[f.datatype] for f in msg.fields],
                      "offsets": [f.offset for f in msg.fields], "itemsize": msg.point_step})
    assert msg.row_step == msg.point_step * msg.width and not msg.is_bigendian
    points = np.frombuffer(bytes(msg.data), dtype, count=msg.width * msg.height).reshape(msg.height, msg.width)
    return {name: points[name] for name in dtype.names}


def analytic_points(z_true):
    """Where each mask pixel's ray meets the scene (float64 (H, W, 3)), NaN where it meets nothing."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    return np.dstack([(u - CX) / FX * z_true, (v - CY) / FY * z_true, z_true])


def depth_warning(probe, what):
    """The camera's /diagnostics status once it warns that the depth topic said nothing."""
    def find():
        for msg in reversed(probe.messages("/diagnostics")):
            status = diagnostics_values(msg).get("seg_cloud: rgbd_color")
            if status and "no depth on /rgbd/aligned_depth_to_color/image_raw" in status["_message"]:
                return status
        return None
    return probe.wait(find, what=f"/diagnostics naming the {what} depth topic")


@pytest.fixture(scope="session")
def vision_msgs():
    """The vision_msgs package built into this virtualenv (once; a no-op when already built)."""
    script = REPO / "test" / "support" / "build_vision_msgs.sh"
    done = subprocess.run(["bash", str(script), sys.prefix], capture_output=True, text=True)
    if done.returncode:
        pytest.fail(f"building vision_msgs failed:\n{done.stdout}\n{done.stderr}")
    importlib.invalidate_caches()
    from vision_msgs.msg import LabelInfo
    return LabelInfo


# ------------------------------------------------------------------ in-process geometry
@pytest.mark.parametrize("band_rows", [0, 7])  # 0: the default band (the whole 48-row frame); 7: 7 bands
def test_depth_on_the_mask_grid_and_points_match_the_geometry(band_rows, monkeypatch):
    from drn_perception.ros import depth as dp
    from drn_perception.ros import pointcloud
    from drn_perception.ros.pointcloud import CloudBuilder

    if band_rows:
        monkeypatch.setattr(pointcloud, "BAND_PIXELS", band_rows * W)

    z_true, k = scene_depth(H, W)
    labels = np.random.default_rng(0).integers(0, 19, (H, W), dtype=np.uint8)
    conf = np.random.default_rng(1).integers(0, 256, (H, W), dtype=np.uint8)
    holes = [(slice(None), 5), (35, slice(10, 12))]
    expected = analytic_points(z_true)
    for h, w, scale, encoding, tol in ((H, W, 1, "16UC1", 1e-3), (H, W, 1, "32FC1", 1e-5),
                                       (2 * H, 2 * W, 2, "32FC1", 1e-5)):
        z_img, k_img = scene_depth(h, w, scale)
        msg = depth_msg(z_img, encoding, holes=[(slice(None), slice(5 * scale, 6 * scale))] if scale > 1 else holes)
        view = dp.depth_view(msg)
        k_mask = dp.intrinsics(info_msg(h, w, k_img), H, W, view.shape)
        np.testing.assert_allclose(k_mask, k)
        depth = dp.on_grid(view, H, W)
        z = dp.to_metres(depth)
        data = CloudBuilder().organized(depth, k_mask, labels, conf)
        pts = np.frombuffer(data, np.dtype({"names": ["x", "y", "z", "l", "c"], "formats": ["<f4"] * 3 + ["u1"] * 2,
                                             "offsets": [0, 4, 8, 12, 13], "itemsize": 16})).reshape(H, W)
        xyz = np.dstack([pts["x"], pts["y"], pts["z"]]).astype(np.float64)
        truth = expected.copy()
        truth[:, 5] = np.nan
        if scale == 1:
            truth[35, 10:12] = np.nan
        if scale > 1:  # sampled from a larger depth image: exact on the box and the floor's rows it samples
            truth = np.where(((np.abs(z - z_true) < 1e-4) | np.isnan(truth[..., 2]))[..., None], truth, xyz)
            assert np.isfinite(xyz[BOX_V[0]:BOX_V[1], BOX_U[0]:BOX_U[1]]).all()
        np.testing.assert_array_equal(np.isnan(xyz), np.isnan(truth), err_msg=f"{encoding} x{scale}")
        err = np.linalg.norm(xyz - truth, axis=2)[np.isfinite(truth[..., 2])]
        assert err.size > H * W // 3 and err.max() <= tol, (encoding, scale, err.max())
        np.testing.assert_array_equal(pts["l"], labels)
        np.testing.assert_array_equal(pts["c"], conf)
    with pytest.raises(dp.FrameError, match="rgb8"):
        dp.depth_view(image_msg(random_rgb(4, 4), "rgb8"))


def test_selected_cloud_keeps_only_the_listed_classes_with_depth():
    from drn_perception.ros.pointcloud import CloudBuilder

    z_true, k = scene_depth(H, W)
    z = z_true.astype(np.float32)
    labels = np.random.default_rng(2).integers(0, 6, (H, W), dtype=np.uint8)
    conf = np.random.default_rng(3).integers(0, 256, (H, W), dtype=np.uint8)
    rgb = random_rgb(H, W, seed=4)
    keep = np.zeros(256, bool)
    keep[[1, 4]] = True
    builder = CloudBuilder()
    full = np.frombuffer(builder.organized(z, k, labels, conf, rgb), np.uint8).reshape(H * W, 20)
    assert np.isnan(z).any()  # float32 metres: the sky
    data, n = builder.selected(z, k, labels, conf, keep, rgb)
    picked = np.isin(labels, [1, 4]) & np.isfinite(z)
    assert n == picked.sum() > 0
    np.testing.assert_array_equal(np.frombuffer(data, np.uint8).reshape(n, 20), full[picked.reshape(-1)])
    packed = full.view("<u4")[:, 4].reshape(H, W)  # rgb: PCL's 0xAARRGGBB, alpha 255
    assert (packed >> 24 == 255).all()
    np.testing.assert_array_equal((packed >> 16) & 255, rgb[..., 0])
    np.testing.assert_array_equal((packed >> 8) & 255, rgb[..., 1])
    np.testing.assert_array_equal(packed & 255, rgb[..., 2])


def test_mono8_confidence_rounds_and_saturates_as_numpy_does():
    # the one conversion drn/confidence and the clouds use, against NumPy's float32 product, rint, clip
    from drn_perception.ros.conversions import confidence_to_mono8

    halves = ((np.arange(256) + 0.5) / 255).astype(np.float32)  # x * 255 at or next to .5: the rounding
    values = np.concatenate([np.linspace(0, 1, 1_000_003, dtype=np.float32), halves, np.nextafter(halves, 0),
                             np.nextafter(halves, 1), [0.0, 1.0, 1.5, 1e-9]]).astype(np.float32)
    expected = np.clip(np.rint(values * np.float32(255.0)), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(confidence_to_mono8(values), expected)
    np.testing.assert_array_equal(confidence_to_mono8(values[:1000].reshape(10, 100)), expected[:1000].reshape(10, 100))


# ------------------------------------------------------------------ the node over DDS
def test_node_publishes_label_info_and_pixel_aligned_clouds(tiny_onnx_model, context, segmenter, vision_msgs):
    from drn_perception.ros.node import SegNode

    rgb = random_rgb(H, W, seed=7, smooth=True)
    mask = segmenter.infer(rgb[None]).labels[0].astype(np.uint8)
    classes = cityscapes().classes
    present = [c for c, _ in sorted(zip(*np.unique(mask, return_counts=True)), key=lambda t: -t[1])]
    listed = [classes[present[0]], classes[present[-1]]] if len(present) > 1 else [classes[present[0]]]
    node = SegNode("seg_cloud", context=context, parameter_overrides=[
        Parameter("model_path", value=str(tiny_onnx_model)), Parameter("image_topics", value=["rgbd/color/image_raw"]),
        Parameter("depth_topics", value=["rgbd/aligned_depth_to_color/image_raw"]),
        Parameter("obstacle_classes", value=listed), Parameter("depth_stamp_tolerance", value=0.005),
        Parameter("diagnostics_period", value=0.2)])
    probe = Probe(context, "probe_cloud")
    cloud = node.cameras[0].cloud
    try:
        for topic, kind in (("drn/mask", Image), ("drn/confidence", Image), ("drn/points", PointCloud2),
                            ("drn/obstacle_points", PointCloud2), ("/diagnostics", DiagnosticArray)):
            probe.listen(topic, kind)
        color = probe.publisher("rgbd/color/image_raw", Image, reliable=True)
        depth = probe.publisher("rgbd/aligned_depth_to_color/image_raw", Image, reliable=True)
        depth_info = probe.publisher("rgbd/aligned_depth_to_color/camera_info", CameraInfo, reliable=True)
        with SpinThread(context, node, probe.node):
            for pub in (color, depth, depth_info):
                probe.wait_matched(pub)
            probe.wait(lambda: cloud.pub_points.get_subscription_count() and
                       cloud.pub_obstacles.get_subscription_count(), what="cloud subscribers")
            # the depth topic has said nothing yet: /diagnostics names it
            status = depth_warning(probe, "silent")
            assert status["depth_topic"] == "/rgbd/aligned_depth_to_color/image_raw"

            # a late LabelInfo subscriber (reliable + transient local, as Nav2's layer) still gets it
            got = []
            late = probe.node.create_subscription(vision_msgs, "drn/label_info", got.append, QoSProfile(
                depth=5, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE))
            probe.wait(lambda: got, what="LabelInfo on a late subscriber")
            assert [(c.class_id, c.class_name) for c in got[0].class_map] == list(enumerate(classes))
            assert got[0].threshold == 0.0
            (endpoint,) = node.get_publishers_info_by_topic("/drn/label_info")
            assert str(endpoint.topic_type_hash) == LABEL_INFO_HASH
            probe.node.destroy_subscription(late)

            cases = [("mm", "16UC1", 1, (50, 100), 1e-3), ("metres", "32FC1", 1, (51, 200), 1e-5),
                     ("metres_2x", "32FC1", 2, (52, 300), 1e-5)]
            z_true, _ = scene_depth(H, W)
            for name, encoding, scale, st, tol in cases:
                z_img, k_img = scene_depth(H * scale, W * scale, scale)
                hole_cols = slice(5 * scale, 6 * scale)
                before = cloud.depth_in
                depth_info.publish(info_msg(H * scale, W * scale, k_img, st))
                holes = [(slice(None), hole_cols), (slice(35 * scale, 36 * scale), slice(10 * scale, 12 * scale))]
                depth.publish(depth_msg(z_img, encoding, st, holes))
                probe.wait(lambda: cloud.depth_in > before and cloud.info is not None, what="depth received")
                with_rgb = name == "metres_2x"
                assert node.set_parameters([Parameter("points_rgb", value=with_rgb)])[0].successful
                frame = image_msg(rgb, "rgb8", stamp=st, frame_id=name)
                color.publish(frame)
                pts = read_cloud(probe.wait_for_message("drn/points", lambda m: m.header.frame_id == name))
                mask_msg = probe.wait_for_message("drn/mask", lambda m: m.header.frame_id == name)
                conf_msg = probe.wait_for_message("drn/confidence", lambda m: m.header.frame_id == name)
                cloud_msg = probe.wait_for_message("drn/points", lambda m: m.header.frame_id == name)
                assert stamp(cloud_msg) == stamp(mask_msg) == stamp(frame)
                assert (cloud_msg.height, cloud_msg.width) == (H, W) and not cloud_msg.is_dense
                assert [f.name for f in cloud_msg.fields] == ["x", "y", "z", "label", "confidence"] + ["rgb"] * with_rgb
                if with_rgb:  # PCL's packed colour: bytes b, g, r, 255
                    packed = pts["rgb"].view("<u4")
                    np.testing.assert_array_equal(np.dstack([(packed >> s) & 255 for s in (16, 8, 0, 24)]),
                                                  np.dstack([rgb, np.full((H, W), 255)]))
                np.testing.assert_array_equal(pts["label"], read_image(mask_msg))
                np.testing.assert_array_equal(pts["label"], mask)
                np.testing.assert_array_equal(pts["confidence"], read_image(conf_msg))
                xyz = np.dstack([pts["x"], pts["y"], pts["z"]]).astype(np.float64)
                truth = analytic_points(z_true)
                truth[:, 5] = np.nan
                truth[35, 10:12] = np.nan
                if scale > 1:  # nearest sampling: exact where the sampled depth is the pixel's own (box, rows)
                    same = np.abs(pts["z"] - z_true) < 1e-4
                    truth = np.where((same | np.isnan(truth[..., 2]))[..., None], truth, xyz)
                np.testing.assert_array_equal(np.isnan(xyz), np.isnan(truth), err_msg=name)
                err = np.linalg.norm(xyz - truth, axis=2)[np.isfinite(truth[..., 2])]
                assert err.size > H * W // 3 and err.max() <= tol, (name, err.max())

                obstacles = read_cloud(probe.wait_for_message("drn/obstacle_points",
                                                              lambda m: m.header.frame_id == name))
                keep = np.isin(mask, [classes.index(c) for c in listed]) & np.isfinite(pts["z"])
                assert obstacles["label"].size == keep.sum() > 0
                assert set(np.unique(obstacles["label"])) <= {classes.index(c) for c in listed}
                for f in ("x", "y", "z", "label", "confidence"):
                    np.testing.assert_array_equal(obstacles[f][0], pts[f][keep])

            # publish_confidence off: the cloud still carries confidence, drn/confidence gets nothing
            assert node.set_parameters([Parameter("publish_confidence", value=False)])[0].successful
            color.publish(image_msg(rgb, "rgb8", stamp=(52, 300), frame_id="no_conf_topic"))
            no_conf = read_cloud(probe.wait_for_message("drn/points", lambda m: m.header.frame_id == "no_conf_topic"))
            np.testing.assert_array_equal(no_conf["confidence"], pts["confidence"])
            time.sleep(0.5)  # drn/confidence would have gone out before the cloud
            assert not [m for m in probe.messages("drn/confidence") if m.header.frame_id == "no_conf_topic"]
            assert node.set_parameters([Parameter("publish_confidence", value=True)])[0].successful

            # a frame without depth of its own stamp (the last depth is 1 s older): no cloud, counted
            skipped = cloud.skipped["no_depth"]
            frame = image_msg(rgb, "rgb8", stamp=(53, 300), frame_id="stale")
            color.publish(frame)
            probe.wait_for_message("drn/mask", lambda m: m.header.frame_id == "stale")
            probe.wait(lambda: cloud.skipped["no_depth"] == skipped + 1, what="no_depth counted")
            assert not [m for m in probe.messages("drn/points") if m.header.frame_id == "stale"]
            # a depth image the node cannot read (8-bit): no cloud, counted by its reason
            bad = depth_msg(z_true, "16UC1", (54, 0))
            bad.encoding = "mono8"
            depth.publish(bad)
            probe.wait(lambda: cloud.frames and cloud.frames[-1][0] == 54 * 10**9, what="bad depth kept")
            color.publish(image_msg(rgb, "rgb8", stamp=(54, 0), frame_id="bad_depth"))
            probe.wait_for_message("drn/mask", lambda m: m.header.frame_id == "bad_depth")
            probe.wait(lambda: cloud.skipped["depth_encoding"] == 1, what="depth_encoding counted")
            assert not [m for m in probe.messages("drn/points") if m.header.frame_id == "bad_depth"]
            # the depth topic stopped: /diagnostics names it again
            probe.clear()
            status = depth_warning(probe, "stopped")
            assert int(status["points_out"]) == 4 and int(status["points_skipped_no_depth"]) >= 1
            assert int(status["points_skipped_depth_encoding"]) == 1
            assert status["_level"] == b"\x01"
    finally:
        node.destroy_node()
        probe.destroy()


def test_nobody_listening_computes_no_cloud_and_confidence(tiny_onnx_model, context, vision_msgs):
    from drn_perception.ros.node import SegNode

    node = SegNode("seg_quiet", context=context, parameter_overrides=[
        Parameter("model_path", value=str(tiny_onnx_model)), Parameter("image_topics", value=["quiet/image_raw"]),
        Parameter("depth_topics", value=["quiet/depth/image_raw"])])
    probe = Probe(context, "probe_quiet")
    calls = []
    infer = node.segmenter.infer
    node.segmenter.infer = lambda images, want_confidence=False: calls.append(want_confidence) or infer(
        images, want_confidence)
    try:
        probe.listen("drn/mask", Image)
        color = probe.publisher("quiet/image_raw", Image, reliable=True)
        depth = probe.publisher("quiet/depth/image_raw", Image, reliable=True)
        info = probe.publisher("quiet/depth/camera_info", CameraInfo, reliable=True)
        with SpinThread(context, node, probe.node):
            probe.wait_matched(color)
            probe.wait_matched(depth)
            z_true, k = scene_depth(H, W)
            info.publish(info_msg(H, W, k, (1, 0)))
            depth.publish(depth_msg(z_true, "16UC1", (1, 0)))
            probe.wait(lambda: node.cameras[0].cloud.depth_in, what="depth received")
            probe.send_until_answered(color, image_msg(random_rgb(H, W), "rgb8", stamp=(1, 0)), "drn/mask", "q")
            assert calls and not any(calls)  # no confidence computed for a cloud nobody reads
            assert node.cameras[0].cloud.clouds_out == 0
    finally:
        node.destroy_node()
        probe.destroy()


def test_without_vision_msgs_the_node_says_so_once_and_serves(tiny_onnx_model, tmp_path, context):
    from ros_helpers import node_env, start_node, stop_node

    shadow = tmp_path / "shadow" / "vision_msgs"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named vision_msgs')\n")
    env = node_env()
    env["PYTHONPATH"] = f"{shadow.parent}:{env['PYTHONPATH']}"
    proc = start_node(params={"model_path": tiny_onnx_model, "image_topics": "[a/image_raw, b/image_raw]"}, env=env)
    probe = Probe(context, "probe_novm")
    try:
        probe.listen("drn/a/mask", Image)
        pub = probe.publisher("a/image_raw", Image, reliable=True)
        with SpinThread(context, probe.node):
            probe.wait_matched(pub, timeout=60)
            probe.send_until_answered(pub, image_msg(random_rgb(H, W), "rgb8"), "drn/a/mask", "served", timeout=30)
        time.sleep(0.2)
        code, out = stop_node(proc)
        assert code == 0 and "Traceback" not in out, out
        lines = [ln for ln in out.splitlines() if "vision_msgs is not installed" in ln]
        assert len(lines) == 1 and "drn/a/label_info, drn/b/label_info" in lines[0], out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        probe.destroy()


def test_bad_depth_parameters_are_one_line_start_up_errors(tiny_onnx_model):
    from ros_helpers import start_node

    cases = {
        "obstacle class the model lacks": ({"obstacle_classes": "[person, dragon]"}, ["obstacle_classes", "'dragon'"]),
        "one depth topic for two cameras": ({"image_topics": "[a/image_raw, b/image_raw]", "depth_topics": "[a/depth]"},
                                            ["depth_topics has 1 entries for 2 image_topics"]),
    }
    procs = {name: start_node(params={"model_path": tiny_onnx_model, **p}) for name, (p, _) in cases.items()}
    for name, (_, needles) in cases.items():
        out, _ = procs[name].communicate(timeout=60)
        lines = [ln for ln in out.splitlines() if ln.strip()]
        assert procs[name].returncode == 1 and len(lines) == 1 and "Traceback" not in out, f"{name}:\n{out}"
        for needle in needles:
            assert needle in lines[0], f"{name}: {needle!r} not in {lines[0]!r}"
