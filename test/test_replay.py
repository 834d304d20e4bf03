"""drn-replay over real DDS: generated bags (sqlite3 and mcap) -> seg_node process -> masks bag.

Every mask in OUT_BAG is compared with the backend's direct output for the frame carrying the
same stamp, read back from the input bag; broken bags must fail before anything is written.
"""
import contextlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader

from drn_perception.model_info import cityscapes
from drn_perception.ros import bagio
from drn_perception.ros.make_bag import make_bag
from drn_perception.ros.replay import ReplayOptions, format_summary, main as replay_main, replay
from drn_perception.training.metrics import ConfusionMatrix
from ros_helpers import TS, stamp, start_node, stop_node

SIZE = (96, 160)
FRAMES = 6


def read_topic(bag, topic):
    """[(bag time, message)] of one topic, with rosbags' own Reader."""
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [(t, TS.deserialize_cdr(raw, c.msgtype)) for c, t, raw in reader.messages(connections=conns)]


def mono8(msg):
    assert msg.encoding == "mono8"
    return np.asarray(msg.data, np.uint8).reshape(msg.height, msg.step)[:, : msg.width]


def frame_rgb(msg):
    if hasattr(msg, "format"):
        return cv2.imdecode(np.asarray(msg.data), cv2.IMREAD_COLOR)[..., ::-1]
    return np.asarray(msg.data, np.uint8).reshape(msg.height, msg.width, 3)


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("bags")
    make_bag(root / "raw_sqlite3", "synthetic", frames=FRAMES, size=SIZE, storage="sqlite3", seed=3)
    make_bag(root / "png_mcap", "synthetic", frames=FRAMES, size=SIZE, storage="mcap", compressed="png", seed=3)
    return root


def expected_masks(bag, segmenter):
    """{stamp: (direct-inference mask, ground-truth labels, bag time, rgb)} for every frame of ``bag``."""
    with Reader(bag) as reader:
        image_topic = next(c.topic for c in reader.connections if c.topic.startswith("/camera/image_raw"))
    labels = {stamp(m): mono8(m) for _, m in read_topic(bag, "/camera/labels")}
    out = {}
    for t, msg in read_topic(bag, image_topic):
        rgb = np.ascontiguousarray(frame_rgb(msg))
        mask = segmenter.infer(rgb[None]).labels[0].astype(np.uint8)
        out[stamp(msg)] = (mask, labels[stamp(msg)], t, rgb)
    return out


def check_out_bag(out: Path):
    info = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == 5  # what ROS 2 Humble writes; Humble and every later release read it
    assert "type_description_hash" not in str(info)
    assert not list(out.parent.glob(f".{out.name}.partial*"))


@pytest.mark.parametrize("name, in_flight", [("raw_sqlite3", 1), ("png_mcap", 1), ("raw_sqlite3", 2)])
def test_every_frame_gets_its_own_mask_equal_to_direct_inference(bags, name, in_flight, tiny_onnx_model, segmenter,
                                                                 tmp_path):
    """Lockstep, and with two frames in flight (a frame waits at the node while the one before
    runs): every frame answered by its own mask, none replaced in the node's one-frame slot."""
    out = tmp_path / "masks"
    result = replay(ReplayOptions(in_bag=bags / name, out_bag=out, model=tiny_onnx_model, as_fast_as_node=True,
                                  in_flight=in_flight, report=tmp_path / "report.json", overlays=tmp_path / "overlays",
                                  progress=False))
    assert result["in_flight"] == in_flight
    check_out_bag(out)
    with Reader(out) as reader:
        assert reader.message_count == FRAMES
        assert {c.topic: c.msgtype for c in reader.connections} == {"/drn/mask": "sensor_msgs/msg/Image"}
        assert reader.connections[0].ext.offered_qos_profiles  # ros2 bag play needs a recorded QoS
    expected = expected_masks(bags / name, segmenter)
    masks = read_topic(out, "/drn/mask")
    assert sorted(stamp(m) for _, m in masks) == sorted(expected)  # one mask per frame, stamps 1:1
    conf = ConfusionMatrix(19)
    for t, msg in masks:
        mask, gt, t_in, _ = expected[stamp(msg)]
        assert t == t_in and msg.header.frame_id == "camera"
        np.testing.assert_array_equal(mono8(msg), mask)
        conf.update(mask, gt)
    assert (result["frames_published"], result["masks_received"], result["dropped"]) == (FRAMES, FRAMES, 0)
    assert result["late_masks"] == result["duplicate_masks"] == 0
    lat = result["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    # The report's IoU is the IoU of exactly these masks against the bag's labels.
    report = json.loads((tmp_path / "report.json").read_text())
    metrics = report["metrics"]
    assert metrics["frames_evaluated"] == FRAMES
    names = cityscapes().classes
    present = [names.index(n) for n in metrics["miou_classes"]]
    assert present == sorted({int(c) for e in expected.values() for c in np.unique(e[1])})
    for c in present:
        ours = metrics["per_class_iou"][names[c]]
        assert ours == pytest.approx(conf.iou()[c], abs=1e-12) if ours is not None else np.isnan(conf.iou()[c])
    assert metrics["miou"] == pytest.approx(conf.miou(present))
    # Overlays: one PNG per frame, blended from the frame and the palette colours of its mask.
    # Each carries a legend panel on its right: a swatch of every class in its mask.
    pngs = sorted((tmp_path / "overlays").glob("*.png"))
    assert len(pngs) == FRAMES
    lut = np.zeros((256, 3), np.uint8)
    lut[:19] = cityscapes().palette
    for png, (mask, _, _, rgb) in zip(pngs, sorted(expected.values(), key=lambda e: e[2])):
        blend = cv2.addWeighted(rgb, 0.5, lut[mask], 0.5, 0.0)
        got = cv2.imread(str(png))[..., ::-1]
        assert got.shape[0] == SIZE[0] and got.shape[1] > SIZE[1]
        np.testing.assert_array_equal(got[:, : SIZE[1]], blend)
        legend = got[:, SIZE[1]:].reshape(-1, 3)
        colours = {tuple(c) for c in np.unique(legend, axis=0)}
        present = np.unique(mask)
        shown = present if len(present) <= SIZE[0] // 14 else present[:0]  # more classes than rows: not checked
        for c in shown:
            assert tuple(lut[c]) in colours, (png.name, c)
    assert result["node"]["demo_model"] is False and not any("demo model" in n for n in result["notes"])
    assert result["frame_size"] == list(SIZE) and result["frame_sizes"] == {f"{SIZE[0]}x{SIZE[1]}": FRAMES}


def test_separately_started_node_timed_replay_never_mismatches(bags, tiny_onnx_model, segmenter, tmp_path):
    """The node runs as `ros2 run` would start it, on the default topics; the replay only connects."""
    proc = start_node(params={"model_path": tiny_onnx_model, "input_reliability": "reliable"})
    try:
        out = tmp_path / "masks"
        result = replay(ReplayOptions(in_bag=bags / "raw_sqlite3", out_bag=out, start_node=False, rate_factor=2.0,
                                      record=("mask", "color_mask"), progress=False, startup_timeout=30))
    finally:
        code, log = stop_node(proc)
    assert code == 0, log
    check_out_bag(out)
    expected = expected_masks(bags / "raw_sqlite3", segmenter)
    masks = read_topic(out, "/drn/mask")
    colors = {stamp(m): m for _, m in read_topic(out, "/drn/color_mask")}
    # Timed replay: the node may drop frames (newest wins), but a mask never lands on another frame.
    assert result["masks_received"] == len(masks) >= 1
    assert result["masks_received"] + result["dropped"] == result["frames_published"] == FRAMES
    assert result["duplicate_masks"] == 0
    lut = np.zeros((256, 3), np.uint8)
    lut[:19] = cityscapes().palette
    for _, msg in masks:
        mask = expected[stamp(msg)][0]
        np.testing.assert_array_equal(mono8(msg), mask)
        color = colors[stamp(msg)]
        np.testing.assert_array_equal(np.asarray(color.data, np.uint8).reshape(*SIZE, 3), lut[mask])
    assert result["node"]["started"] is False
    assert result["node"]["diagnostics"].get("backend") == segmenter.backend


def _truncate(bag: Path, fraction: float):
    f = next(p for p in bag.iterdir() if p.suffix in (".db3", ".mcap"))
    f.write_bytes(f.read_bytes()[: int(f.stat().st_size * fraction)])
    return f.name


def _string_bag(path: Path, declared: str):
    """A bag whose /camera/image_raw carries std_msgs/String payloads, declared as ``declared``."""
    msg = TS.types["std_msgs/msg/String"](data="not an image")
    with bagio.BagWriter(path) as w:
        w.add_topic("/camera/image_raw", declared)
        w.write("/camera/image_raw", 1, bagio.serialize(msg, "std_msgs/msg/String"))


@pytest.mark.parametrize("case", ["unknown_topic", "no_image_topic", "truncated_sqlite3", "truncated_mcap",
                                  "declared_wrong_type", "payload_wrong_type", "missing_bag", "labels_not_mono8"])
def test_bad_bags_fail_with_one_line_and_write_nothing(bags, case, tiny_onnx_model, tmp_path, capsys):
    bag = tmp_path / "in"
    args = ["--model", str(tiny_onnx_model), "--quiet", "--startup-timeout", "5"]
    if case == "unknown_topic":
        shutil.copytree(bags / "raw_sqlite3", bag)
        args += ["--image-topic", "/front/image_raw"]
        names = ["/front/image_raw"]
    elif case == "no_image_topic":
        with bagio.BagWriter(bag) as w:  # only a String topic under another name
            w.write_msg("/chatter", 1, TS.types["std_msgs/msg/String"](data="x"), "std_msgs/msg/String")
        names = ["/chatter", "--image-topic"]
    elif case.startswith("truncated"):
        storage = case.split("_")[1]
        shutil.copytree(bags / ("raw_sqlite3" if storage == "sqlite3" else "png_mcap"), bag)
        names = [_truncate(bag, 0.6)]
    elif case == "declared_wrong_type":
        _string_bag(bag, "std_msgs/msg/String")
        names = ["/camera/image_raw", "std_msgs/msg/String"]
    elif case == "payload_wrong_type":
        _string_bag(bag, "sensor_msgs/msg/Image")
        names = ["/camera/image_raw", "message 0"]
    elif case == "missing_bag":
        names = [str(bag), "does not exist"]
    else:
        shutil.copytree(bags / "raw_sqlite3", bag)
        args += ["--labels-topic", "/camera/image_raw", "--image-topic", "/camera/labels"]
        names = ["/camera/image_raw", "mono8"]
    out = tmp_path / "out"
    assert replay_main([str(bag), "--out", str(out), *args]) == 2  # a user error, argparse's status
    err = capsys.readouterr().err.strip()
    assert err.startswith("drn-replay: error: ") and "\n" not in err, err
    for n in names:
        assert n in err, err
    assert not out.exists() and not list(tmp_path.glob(".out.partial*"))


@pytest.mark.parametrize("args, words", [(["--in-flight", "2"], ["--in-flight", "--as-fast-as-node"]),
                                         (["--as-fast-as-node", "--in-flight", "0"], ["--in-flight", "1 or 2"]),
                                         (["--as-fast-as-node", "--in-flight", "3"], ["--in-flight", "1 or 2"])])
def test_in_flight_is_checked_before_anything_starts(bags, args, words, tmp_path, capsys):
    out = tmp_path / "out"
    assert replay_main([str(bags / "raw_sqlite3"), "--out", str(out), "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("drn-replay: error: ") and "\n" not in err and all(w in err for w in words), err
    assert not out.exists()


def test_node_that_cannot_start_is_reported_and_nothing_written(bags, tmp_path, capsys):
    bad_model = tmp_path / "broken.onnx"
    bad_model.write_bytes(b"\x08\x07 definitely not an onnx graph")
    out = tmp_path / "out"
    assert replay_main([str(bags / "raw_sqlite3"), "--out", str(out), "--model", str(bad_model), "--quiet",
                        "--overlays", str(tmp_path / "ov")]) == 1
    err = capsys.readouterr().err.strip()
    assert "seg_node exited with code 1" in err and "broken.onnx" in err and "\n" not in err, err
    assert not out.exists() and not (tmp_path / "ov").exists()
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_default_model_miou_on_generated_street_scenes(tmp_path):
    from drn_perception.default_model import default_model_path
    from drn_perception.model_info import sidecar_path

    model = Path(default_model_path())
    # the held-out mIoU its training run recorded (drn-export --meta held_out_miou=...)
    target = float(json.loads(sidecar_path(model).read_text())["held_out_miou"])
    bag = tmp_path / "scenes"
    # Scenes from the synthetic test split (seeds from 20,000,000), never used for training.
    make_bag(bag, "synthetic", frames=8, size=(256, 512), seed=20_000_000)
    result = replay(ReplayOptions(in_bag=bag, out_bag=tmp_path / "masks", model=model, as_fast_as_node=True,
                                  progress=False, timeout=60))
    assert result["masks_received"] == 8
    assert result["metrics"]["miou"] >= target - 0.05, (result["metrics"], target)
    # The report says what this model is, so its mIoU is not read as a street-scene score.
    assert result["node"]["demo_model"] is True
    assert any("demo model trained on generated street scenes" in n for n in result["notes"])
    assert "note: demo model" in format_summary(result)


def test_library_replay_sends_large_best_effort_frames(tiny_onnx_model, tmp_path):
    """replay() called from Python, in a process without a Fast DDS profile, still gets 1.5 MB
    frames to a node on its default best-effort input (Fast DDS's default shared-memory segment
    loses them): Replay.run sets the large-image profile itself."""
    import subprocess
    import sys

    from ros_helpers import REPO, node_env

    bag = tmp_path / "big"
    make_bag(bag, "synthetic", frames=3, size=(512, 1024), seed=5)
    env = node_env()
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    env.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)  # Fast DDS 2.x's name for it (Jazzy, Humble)
    code = ("import json, sys\n"
            "from drn_perception.ros.replay import ReplayOptions, replay\n"
            "r = replay(ReplayOptions(in_bag=sys.argv[1], out_bag=sys.argv[2], start_node=False, as_fast_as_node=True,\n"
            "                         progress=False, startup_timeout=30))\n"
            "print(json.dumps({k: r[k] for k in ('frames_published', 'masks_received')}))\n")
    proc = start_node(params={"model_path": tiny_onnx_model})  # default input: best effort
    try:
        run = subprocess.run([sys.executable, "-c", code, str(bag), str(tmp_path / "masks")], env=env, cwd=REPO,
                             capture_output=True, text=True, timeout=120)
    finally:
        stop_node(proc)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {"frames_published": 3, "masks_received": 3}


def test_mixed_sizes_and_old_stamps_are_reported_as_such(tiny_onnx_model, tmp_path):
    """A folder of two frame sizes reports both; a bag stamped in 2001 drops the node's
    stamp latency (mask published minus a 25-year-old stamp) and says why."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, (h, w) in enumerate([(48, 64), (64, 96), (48, 64), (64, 96), (64, 96)]):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((h, w, 3), 30 * i, np.uint8))
    bag = tmp_path / "bag"
    make_bag(bag, str(folder), start_time=1_000_000_000.0)
    result = replay(ReplayOptions(in_bag=bag, out_bag=tmp_path / "masks", model=tiny_onnx_model, as_fast_as_node=True,
                                  progress=False))
    assert result["masks_received"] == 5
    assert result["frame_size"] is None and result["frame_sizes"] == {"48x64": 2, "64x96": 3}
    assert "frame sizes: 48x64 (2), 64x96 (3)" in format_summary(result)
    diag = result["node"]["diagnostics"]
    assert "inference_p50_ms" in diag  # the node's report did arrive
    assert not [k for k in diag if k.startswith("latency_stamp_")]
    assert any("latency_stamp_" in n and "old" in n for n in result["notes"])


@contextlib.contextmanager
def stand_in_node(name: str, answers):
    """A stand-in for seg_node over real DDS: a mono8 mask for each frame that ``answers(msg)``
    says to answer, none for the others (so which frames go unanswered is known exactly)."""
    import threading

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node(name, context=ctx, start_parameter_services=False)
    qos = QoSProfile(depth=400, reliability=ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(Image, "/drn/mask", qos)

    def answer(msg):
        if answers(msg):
            pub.publish(Image(header=msg.header, height=msg.height, width=msg.width, encoding="mono8",
                              step=msg.width, data=bytes(msg.height * msg.width)))

    node.create_subscription(Image, "/camera/image_raw", answer, qos)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    try:
        yield
    finally:
        executor.shutdown(timeout_sec=2)
        node.destroy_node()
        ctx.try_shutdown()


def test_every_dropped_frame_is_listed(tmp_path):
    """More than 100 drops are all listed: the stand-in node answers every second frame."""
    frames = 240
    bag = tmp_path / "bag"
    make_bag(bag, "synthetic", frames=frames, size=(16, 32), rate=1000.0, start_time=2_000_000_000.0)
    index_of = {stamp(m): i for i, (_, m) in enumerate(read_topic(bag, "/camera/image_raw"))}

    def answers(msg):  # the warm-up frame, and frames 1, 3, 5, ...
        i = index_of.get(stamp(msg))
        return i is None or i % 2 == 1

    with stand_in_node("every_second_frame", answers):
        result = replay(ReplayOptions(in_bag=bag, out_bag=tmp_path / "masks", start_node=False, rate_factor=1.0,
                                      progress=False, startup_timeout=30, timeout=5, labels_topic=""))
    assert result["masks_received"] == frames // 2
    assert result["dropped"] == frames // 2 > 100
    assert result["dropped_frames"] == list(range(0, frames, 2))


@pytest.mark.parametrize("always", [False, True])
def test_a_frame_the_node_replaced_goes_again_at_two_in_flight(tmp_path, always):
    """--in-flight 2: a frame the node never answered while it answered the next one (as when a
    frame is replaced in the node's one-frame slot) is sent again, up to RESEND_LIMIT times.
    The stand-in node ignores the first copy of frame 3 (answered when it comes again) or, with
    ``always``, every copy of that frame (then listed as dropped)."""
    from drn_perception.ros.replay_loop import RESEND_LIMIT

    frames = 8
    bag = tmp_path / "bag"
    make_bag(bag, "synthetic", frames=frames, size=(16, 32), start_time=2_000_000_000.0)
    index_of = {stamp(m): i for i, (_, m) in enumerate(read_topic(bag, "/camera/image_raw"))}
    copies = []

    def answers(msg):
        i = index_of.get(stamp(msg))
        copies.append(i)
        return not (i == 3 and (always or copies.count(3) == 1))

    with stand_in_node("replaces_frame_3", answers):
        result = replay(ReplayOptions(in_bag=bag, out_bag=tmp_path / "masks", start_node=False, as_fast_as_node=True,
                                      in_flight=2, progress=False, startup_timeout=30, timeout=5, labels_topic=""))
    assert result["frames_published"] == frames and result["duplicate_masks"] == result["late_masks"] == 0
    if not always:
        assert result["frames_resent"] == 1 and result["masks_received"] == frames and result["dropped"] == 0
        assert copies.count(3) == 2
    else:
        assert result["frames_resent"] == RESEND_LIMIT and result["dropped_frames"] == [3]
        assert result["masks_received"] == frames - 1 and copies.count(3) == 1 + RESEND_LIMIT
    assert sorted(stamp(m) for _, m in read_topic(tmp_path / "masks", "/drn/mask")) == sorted(
        s for s, i in index_of.items() if not always or i != 3)
