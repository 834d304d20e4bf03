"""seg_node over real DDS: as its own process (the way ``ros2 run`` starts it) and in-process.

Every mask is compared with the backend's direct output for the same frame; that equality,
the copied header and the input-sized mono8 layout are the node's contract.
"""
import ast
import fnmatch
import os
import signal
import time
from pathlib import Path

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.parameter import Parameter
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CompressedImage, Image

from drn_perception.default_model import default_model_path
from drn_perception.model_info import cityscapes
from ros_helpers import (REPO, Probe, SpinThread, compressed_msg, decoded, diagnostics_values, image_msg,
                         node_env, random_rgb, read_image, start_node, stop_node)


def seen_as(rgb, encoding):
    """The RGB frame the node should see: grey encodings carry channel 0 only."""
    return np.repeat(rgb[..., :1], 3, axis=2) if encoding in ("mono8", "8UC1") else rgb


def direct(segmenter, rgb, input_size=None, confidence=False):
    """Backend output for one frame (resized to the network input and back, if set)."""
    h, w = rgb.shape[:2]
    net = rgb if input_size is None else cv2.resize(rgb, input_size[::-1], interpolation=cv2.INTER_LINEAR)
    res = segmenter.infer(net[None], want_confidence=confidence)
    mask = res.labels[0].astype(np.uint8)
    if input_size is not None:
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
    if confidence:
        conf = res.confidence[0]
        if input_size is not None:
            conf = cv2.resize(conf, (w, h), interpolation=cv2.INTER_LINEAR)
        return mask, conf
    return mask


def check_mask(mask_msg, sent, expected):
    assert mask_msg.encoding == "mono8"
    assert (mask_msg.height, mask_msg.width) == expected.shape
    assert mask_msg.header.frame_id == sent.header.frame_id
    assert (mask_msg.header.stamp.sec, mask_msg.header.stamp.nanosec) == (sent.header.stamp.sec,
                                                                        sent.header.stamp.nanosec)
    np.testing.assert_array_equal(read_image(mask_msg), expected)


def wait_diag(probe, status_name, key, at_least=1, timeout=10.0):
    def counted():
        for msg in reversed(probe.messages("/diagnostics")):
            values = diagnostics_values(msg).get(status_name)
            if values is not None:
                return int(values[key]) >= at_least and values
        return False
    return probe.wait(counted, timeout, f"{status_name} {key} >= {at_least} in /diagnostics")


def bad_images():
    """(drop reason, message) for each kind of bad raw frame."""
    rgb = random_rgb(16, 24, seed=99)
    unsupported = image_msg(rgb, "rgb8")
    unsupported.encoding = "16UC1"
    short = image_msg(rgb, "rgb8", pad=2)
    short.data = short.data[:-10]
    bad_step = image_msg(rgb, "rgb8")
    bad_step.step = 24 * 3 - 1
    empty = Image(height=0, width=24, encoding="rgb8", step=72)
    return [("unsupported_encoding", unsupported), ("short_data", short), ("bad_step", bad_step), ("empty", empty)]


def test_node_process_answers_both_qos_every_encoding_and_survives_bad_frames(tiny_onnx_model, context, segmenter):
    proc = start_node(params={"model_path": tiny_onnx_model, "diagnostics_period": 0.2})
    probe = Probe(context, "probe_process")
    try:
        probe.listen("drn/mask", Image)
        probe.listen("/diagnostics", DiagnosticArray)
        best_effort = probe.publisher("camera/image_raw", Image, reliable=False)
        reliable = probe.publisher("camera/image_raw", Image, reliable=True)
        with SpinThread(context, probe.node):
            probe.wait_matched(best_effort, timeout=30)
            probe.wait_matched(reliable)
            cases = [(best_effort, "rgb8", (64, 96), 0), (reliable, "bgr8", (37, 53), 5),
                     (best_effort, "rgba8", (37, 53), 0), (reliable, "bgra8", (64, 96), 4),
                     (best_effort, "mono8", (37, 53), 3), (reliable, "8UC3", (64, 96), 0)]
            for i, (pub, enc, size, pad) in enumerate(cases):
                rgb = random_rgb(*size, seed=i)
                msg = image_msg(rgb, enc, pad=pad, stamp=(1000 + i, 17 * i + 1))
                answer = probe.send_until_answered(pub, msg, "drn/mask", f"{enc}-{i}")
                check_mask(answer, msg, direct(segmenter, seen_as(rgb, enc)))

            # one full-size frame (1.5 MB best-effort: needs the large-image DDS profile)
            big = image_msg(random_rgb(512, 1024, seed=50), "rgb8", stamp=(2000, 5))
            answer = probe.send_until_answered(best_effort, big, "drn/mask", "big", timeout=60, resend=10)
            check_mask(answer, big, direct(segmenter, random_rgb(512, 1024, seed=50)))

            for i, (reason, bad) in enumerate(bad_images()):
                bad.header.frame_id = f"bad-{reason}"
                reliable.publish(bad)
                wait_diag(probe, "seg_node: camera", f"dropped_{reason}")
                rgb = random_rgb(24, 40, seed=100 + i)
                good = image_msg(rgb, "rgb8", stamp=(3000 + i, 0))
                check_mask(probe.send_until_answered(reliable, good, "drn/mask", f"after-{reason}"), good,
                           direct(segmenter, rgb))
            values = wait_diag(probe, "seg_node: camera", "masks_out", at_least=11)
            assert {values[f"dropped_{r}"] for r, _ in bad_images()} == {"1"}
            assert (values["backend"], values["precision"]) == (segmenter.backend, segmenter.precision)  # backend auto
            assert Path(values["model"]) == Path(tiny_onnx_model)
            assert float(values["latency_receipt_p95_ms"]) > 0 and float(values["inference_p50_ms"]) > 0
            # the node's own share: measured (not nan), and part of the receipt latency
            assert 0 < float(values["overhead_p50_ms"]) <= float(values["latency_receipt_p95_ms"])
        code, out = stop_node(proc, signal.SIGTERM)
        assert code == 0, out
        assert "Traceback" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        probe.destroy()


def test_start_up_errors_exit_non_zero_with_one_line_and_sigint_is_clean(tiny_onnx_model, tmp_path):
    three = tmp_path / "three.yaml"
    three.write_text("name: three\nclasses:\n" + "".join(
        f"  - {{id: {i}, name: c{i}, color: [{i}, 0, 0]}}\n" for i in range(3)))
    m = str(tiny_onnx_model)
    cases = {
        "missing model": ({"model_path": "/nonexistent/dir/model.onnx"}, ["model file not found",
                                                                           "/nonexistent/dir/model.onnx"]),
        "alpha out of range": ({"model_path": m, "overlay_alpha": "2.0"}, ["overlay_alpha"]),
        "alpha wrong type": ({"model_path": m, "overlay_alpha": "high"}, ["overlay_alpha"]),
        "unknown backend": ({"model_path": m, "backend": "foo"}, ["unknown backend", "foo"]),
        "backend for another file type": ({"model_path": m, "backend": "torch"}, ["torch", Path(m).name]),
        "class mismatch": ({"model_path": m, "class_config": str(three)}, ["19 classes", "lists 3", "class_config"]),
        "bad input_size": ({"model_path": m, "input_size": "[10]"}, ["input_size"]),
        "bad QoS": ({"model_path": m, "input_reliability": "sometimes"}, ["input_reliability"]),
    }
    if not default_model_path().is_file():
        cases["no default model"] = ({}, ["default model", "model_path"])
    procs = {name: start_node(params=params) for name, (params, _) in cases.items()}
    # rosbags not installed: a package of that name that cannot be imported comes first on the path
    shadow = tmp_path / "shadow" / "rosbags"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('rosbags is not installed here')\n")
    env = node_env()
    env["PYTHONPATH"] = os.pathsep.join([str(shadow.parent), env["PYTHONPATH"]])
    cases["rosbags missing"] = ({"model_path": m}, ["rosbags", "pip install rosbags"])
    procs["rosbags missing"] = start_node(params=cases["rosbags missing"][0], env=env)
    ok = start_node(params={"model_path": m})
    try:
        for name, (params, needles) in cases.items():
            out, _ = procs[name].communicate(timeout=60)
            lines = [ln for ln in out.splitlines() if ln.strip()]
            assert procs[name].returncode == 1, f"{name}: exit {procs[name].returncode}\n{out}"
            assert "Traceback" not in out, f"{name}:\n{out}"
            assert len(lines) == 1 and "[FATAL]" in lines[0], f"{name}:\n{out}"
            for needle in needles:
                assert needle in lines[0], f"{name}: {needle!r} not in {lines[0]!r}"
        # a node that started fine stops cleanly on Ctrl-C
        end = time.monotonic() + 60
        seen = ""
        while "->" not in seen and time.monotonic() < end and ok.poll() is None:
            seen += ok.stdout.readline()
        assert "/drn/mask" in seen, seen
        code, out = stop_node(ok, signal.SIGINT)
        assert code == 0 and "Traceback" not in out, out
    finally:
        for p in [*procs.values(), ok]:
            if p.poll() is None:
                p.kill()
                p.communicate()


def test_several_cameras_get_their_own_masks_batched_and_bad_jpegs_are_counted(tiny_onnx_model, context, segmenter):
    from drn_perception.ros.node import SegNode

    topics = ["front/image_raw", "rear/image_raw", "side/image_raw/compressed"]
    node = SegNode("seg_multi", context=context, parameter_overrides=[
        Parameter("model_path", value=str(tiny_onnx_model)), Parameter("image_topics", value=topics),
        Parameter("diagnostics_period", value=0.2)])
    probe = Probe(context, "probe_multi")
    try:
        assert [c.name for c in node.cameras] == ["front", "rear", "side"]
        for cam in ("front", "rear", "side"):
            probe.listen(f"drn/{cam}/mask", Image)
        probe.listen("/diagnostics", DiagnosticArray)
        pubs = {"front": probe.publisher("front/image_raw", Image),
                "rear": probe.publisher("rear/image_raw", Image, reliable=True),
                "side": probe.publisher("side/image_raw/compressed", CompressedImage)}
        frames = {"front": image_msg(random_rgb(64, 96, seed=10), "rgb8", stamp=(10, 1)),
                  "rear": image_msg(random_rgb(64, 96, seed=11), "bgr8", pad=3, stamp=(10, 2)),
                  "side": compressed_msg(random_rgb(48, 80, seed=12, smooth=True), "jpeg", stamp=(10, 3))}
        seen = {"front": random_rgb(64, 96, seed=10), "rear": random_rgb(64, 96, seed=11),
                "side": decoded(frames["side"])}
        expected = {cam: direct(segmenter, rgb) for cam, rgb in seen.items()}
        assert not np.array_equal(expected["front"], expected["rear"])  # so a crossed mask would show
        with SpinThread(context, node, probe.node, multi_threaded=True):
            for pub in pubs.values():
                probe.wait_matched(pub)
            for round_ in range(2):
                for cam, msg in frames.items():
                    msg.header.frame_id = f"{cam}-{round_}"
                    pubs[cam].publish(msg)
                for cam, msg in frames.items():
                    answer = probe.send_until_answered(pubs[cam], msg, f"drn/{cam}/mask", f"{cam}-{round_}")
                    check_mask(answer, msg, expected[cam])
            for cam in frames:  # nothing crossed: every mask on a camera's topic came from that camera
                assert {m.header.frame_id.split("-")[0] for m in probe.messages(f"drn/{cam}/mask")} == {cam}

            truncated = compressed_msg(random_rgb(48, 80, seed=13), "jpeg")
            truncated.data = truncated.data[: len(truncated.data) // 3]
            garbage = CompressedImage(format="jpeg")
            garbage.data = bytes(range(256)) * 8
            for n, bad in enumerate((truncated, garbage), start=1):
                pubs["side"].publish(bad)
                wait_diag(probe, "seg_multi: side", "dropped_decode_error", at_least=n)
            # bytes that are not a whole Image message (the node reads the CDR itself): counted, not a crash
            pubs["front"].publish(serialize_message(frames["front"])[:40])
            wait_diag(probe, "seg_multi: front", "dropped_bad_message")
            png = compressed_msg(random_rgb(30, 44, seed=14), "png", stamp=(11, 0))
            check_mask(probe.send_until_answered(pubs["side"], png, "drn/side/mask", "side-png"), png,
                       direct(segmenter, random_rgb(30, 44, seed=14)))

            # frames pending together: one inference per network size
            shapes = []
            infer = node.segmenter.infer

            def counting_infer(images, want_confidence=False):
                shapes.append(images.shape)
                return infer(images, want_confidence)

            node.segmenter.infer = counting_infer
            try:
                cams = {c.name: c for c in node.cameras}
                for cam, msg in frames.items():
                    msg.header.frame_id = f"{cam}-batch"
                node.process([(cams[c], (serialize_message(frames[c]), time.perf_counter()))
                              for c in ("front", "rear", "side")])
            finally:
                node.segmenter.infer = infer
            assert sorted(shapes) == [(1, 48, 80, 3), (2, 64, 96, 3)]
            for cam, msg in frames.items():
                check_mask(probe.wait_for_message(f"drn/{cam}/mask", lambda m: m.header.frame_id == f"{cam}-batch"),
                           msg, expected[cam])
            assert node.stats_snapshot()["front"]["max_batch"] == 2
    finally:
        node.destroy_node()
        probe.destroy()


def test_optional_outputs_input_size_and_runtime_parameters(tiny_onnx_model, context, segmenter):
    from drn_perception.ros.node import SegNode

    size = (32, 48)
    node = SegNode("seg_opts", context=context, parameter_overrides=[
        Parameter("model_path", value=str(tiny_onnx_model)), Parameter("image_topics", value=["opts/image_raw"]),
        Parameter("input_size", value=list(size))])
    probe = Probe(context, "probe_opts")
    cam = node.cameras[0]
    lut = np.zeros((256, 3), np.uint8)
    lut[:19] = cityscapes().palette
    try:
        probe.listen("drn/mask", Image)
        pub = probe.publisher("opts/image_raw", Image)
        rgb = random_rgb(37, 53, seed=20)
        with SpinThread(context, node, probe.node):
            probe.wait_matched(pub)
            msg = image_msg(rgb, "rgb8", stamp=(20, 0))
            check_mask(probe.send_until_answered(pub, msg, "drn/mask", "plain"), msg, direct(segmenter, rgb, size))
            assert node.stats_snapshot()["opts"]["optional_outputs"] == {}  # nobody listened: nothing computed

            for topic in ("drn/color_mask", "drn/overlay", "drn/confidence"):
                probe.listen(topic, Image)
            probe.wait(lambda: min(p.get_subscription_count() for p in
                                   (cam.pub_color, cam.pub_overlay, cam.pub_confidence)) >= 1, what="subscribers")
            mask_msg = probe.send_until_answered(pub, msg, "drn/mask", "all")
            mask, conf = direct(segmenter, rgb, size, confidence=True)
            check_mask(mask_msg, msg, mask)
            got = {t: probe.wait_for_message(f"drn/{t}", lambda m: m.header.frame_id == "all")
                   for t in ("color_mask", "overlay", "confidence")}
            assert all(m.encoding in ("rgb8", "mono8") and (m.height, m.width) == (37, 53) for m in got.values())
            np.testing.assert_array_equal(read_image(got["color_mask"]), lut[mask])
            np.testing.assert_allclose(read_image(got["overlay"]), 0.5 * rgb + 0.5 * lut[mask], atol=1)
            np.testing.assert_allclose(read_image(got["confidence"]), np.rint(conf * 255), atol=1)

            refused = {"overlay_alpha": 1.5, "confidence_encoding": "16UC1", "model_path": "/tmp/x.onnx",
                       "input_size": [64, 64]}
            for name, value in refused.items():
                (result,) = node.set_parameters([Parameter(name, value=value)])
                assert not result.successful and result.reason, name
            assert node.get_parameter("overlay_alpha").value == 0.5
            results = node.set_parameters([Parameter("overlay_alpha", value=0.2),
                                           Parameter("confidence_encoding", value="32FC1"),
                                           Parameter("publish_color", value=False)])
            assert all(r.successful for r in results), results
            colours_before = node.stats_snapshot()["opts"]["optional_outputs"]["color_mask"]
            probe.send_until_answered(pub, msg, "drn/mask", "changed")
            over = probe.wait_for_message("drn/overlay", lambda m: m.header.frame_id == "changed")
            conf_msg = probe.wait_for_message("drn/confidence", lambda m: m.header.frame_id == "changed")
            np.testing.assert_allclose(read_image(over), 0.8 * rgb + 0.2 * lut[mask], atol=1)
            assert conf_msg.encoding == "32FC1"
            np.testing.assert_allclose(read_image(conf_msg), conf, atol=1e-5)
            assert node.stats_snapshot()["opts"]["optional_outputs"]["color_mask"] == colours_before

            # a backend failure on one frame is counted; the node serves the next frame
            infer = node.segmenter.infer
            failures = []

            def failing_once(images, want_confidence=False):
                if not failures:
                    failures.append(images.shape)
                    raise RuntimeError("device lost")
                return infer(images, want_confidence)

            node.segmenter.infer = failing_once
            try:
                pub.publish(image_msg(rgb, "rgb8", frame_id="fails"))
                probe.wait(lambda: node.stats_snapshot()["opts"]["drops"].get("inference_error") == 1,
                           what="inference_error counted")
                check_mask(probe.send_until_answered(pub, msg, "drn/mask", "recovered"), msg, mask)
            finally:
                node.segmenter.infer = infer
    finally:
        node.destroy_node()
        probe.destroy()


def test_launch_file_names_the_installed_executable_and_params_file():
    launch = REPO / "launch" / "seg.launch.py"
    source = launch.read_text()
    compile(source, str(launch), "exec")
    tree = ast.parse(source)
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]

    constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                 and isinstance(n.value, ast.Constant) for t in n.targets if isinstance(t, ast.Name)}

    def kwarg(call, name):
        value = next(k.value for k in call.keywords if k.arg == name)
        return constants[value.id] if isinstance(value, ast.Name) else ast.literal_eval(value)

    # the node's keywords (package, executable, ...) are given once, shared by Node and LifecycleNode
    nodes = [c for c in calls if {"package", "executable"} <= {k.arg for k in c.keywords}]
    assert len(nodes) == 1
    kinds = {getattr(c.func, "id", getattr(c.func, "attr", None)) for c in calls}
    assert {"Node", "LifecycleNode"} <= kinds
    assert kwarg(nodes[0], "package") == "drn_perception"
    executable = kwarg(nodes[0], "executable")
    setup = ast.parse((REPO / "setup.py").read_text())
    scripts = [ast.literal_eval(n) for n in ast.walk(setup) if isinstance(n, ast.List)
               and any(isinstance(e, ast.Constant) and "=" in str(e.value) for e in n.elts)]
    console = {s.split("=")[0].strip(): s.split("=")[1].strip() for group in scripts for s in group}
    assert console[executable] == "drn_perception.ros.node:main"
    # every file the launch file takes from the package share exists and setup.py installs it there
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    globs = [n.args[0].value for n in ast.walk(setup) if isinstance(n, ast.Call)
             and getattr(n.func, "id", "") == "glob" and isinstance(n.args[0], ast.Constant)]
    for name in ("seg.yaml", "fastdds_large_images.xml"):
        assert name in strings and (REPO / "config" / name).is_file()
        assert any(fnmatch.fnmatch(f"config/{name}", g) for g in globs), f"setup.py does not install {name}"
    arguments = {ast.literal_eval(c.args[0]) for c in calls if getattr(c.func, "id", "") == "DeclareLaunchArgument"}
    assert {"model", "backend", "params_file", "image_topic", "namespace", "use_sim_time", "lifecycle",
            "autostart"} <= arguments
    assert any(getattr(c.func, "id", "") == "SetEnvironmentVariable" for c in calls)


def test_params_file_and_remapping_to_a_compressed_topic(tiny_onnx_model, context, segmenter):
    import yaml

    from drn_perception.ros.node import SegNode

    seg_yaml = REPO / "config" / "seg.yaml"
    params = yaml.safe_load(seg_yaml.read_text())["/**"]["ros__parameters"]
    node = SegNode("seg_params", context=context, cli_args=[
        "--ros-args", "--params-file", str(seg_yaml), "-p", f"model_path:={tiny_onnx_model}",
        "-r", "camera/image_raw:=remapped/image_raw/compressed", "-r", "drn/mask:=remapped/mask"])
    probe = Probe(context, "probe_params")
    try:
        for name, value in params.items():
            if name != "model_path":
                assert node.get_parameter(name).value == value, name
        described = node.describe_parameters(list(params))
        assert all(d.description for d in described)
        assert {d.name for d in described if d.read_only} >= {"model_path", "backend", "device", "image_topics",
                                                              "input_size", "input_reliability"}
        # the launch file's image_topic remapping may point at a CompressedImage topic
        assert node.cameras[0].compressed
        probe.listen("remapped/mask", Image)
        pub = probe.publisher("remapped/image_raw/compressed", CompressedImage)
        with SpinThread(context, node, probe.node):
            probe.wait_matched(pub)
            png = compressed_msg(random_rgb(24, 40, seed=30), "png", stamp=(30, 0))
            check_mask(probe.send_until_answered(pub, png, "remapped/mask", "remapped"), png,
                       direct(segmenter, random_rgb(24, 40, seed=30)))
    finally:
        node.destroy_node()
        probe.destroy()


def test_frames_outside_a_fixed_size_range_run_fitted_into_it(tiny_onnx_model, context, segmenter):
    # A TensorRT engine runs only its optimisation profile's sizes (Segmenter.size_range); the node
    # fits each frame into that range and scales the mask back. The real ONNX Runtime segmenter
    # stands in for the engine here, given the range an engine built for 32x48 frames would have.
    from drn_perception.inference.base import fit_size
    from drn_perception.ros.node import SegNode

    assert fit_size(600, 800, ((32, 32), (256, 512))) == (256, 341)  # down to the maximum, aspect kept
    assert fit_size(20, 30, ((32, 32), (256, 512))) == (32, 32)  # each side up to the minimum
    assert fit_size(100, 200, ((32, 32), (256, 512))) == (100, 200) and fit_size(5, 7, None) == (5, 7)
    node = SegNode("seg_profile", context=context, parameter_overrides=[
        Parameter("model_path", value=str(tiny_onnx_model)), Parameter("image_topics", value=["prof/image_raw"])])
    node.segmenter.size_range = ((32, 48), (32, 48))
    probe = Probe(context, "probe_profile")
    try:
        probe.listen("drn/mask", Image)
        pub = probe.publisher("prof/image_raw", Image)
        with SpinThread(context, node, probe.node):
            probe.wait_matched(pub)
            for i, (h, w) in enumerate([(60, 80), (32, 48), (20, 30)]):
                rgb = random_rgb(h, w, seed=70 + i)
                msg = image_msg(rgb, "rgb8", stamp=(70 + i, 0))
                want = direct(segmenter, rgb, None if (h, w) == (32, 48) else (32, 48))
                check_mask(probe.send_until_answered(pub, msg, "drn/mask", f"p{i}"), msg, want)
        assert node.stats_snapshot()["prof"]["notes"].get("resized_to_profile", 0) >= 2
    finally:
        probe.destroy()
        node.destroy_node()
