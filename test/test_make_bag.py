"""drn-make-bag: real rosbag2 bags written with rosbags, read back with rosbags' own Reader.

Frames are checked against their sources (the generator, the image files, a video written
here with OpenCV), stamps against the rate, metadata against the rosbag2 format Humble reads.
"""
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader

from drn_perception.data.synthetic import generate_scene
from drn_perception.ros.make_bag import main as make_bag_main
from ros_helpers import TS, stamp

# The fields rosbag2 metadata version 5 (ROS 2 Humble) has; a Humble reader needs these.
HUMBLE_KEYS = {"version", "storage_identifier", "duration", "starting_time", "message_count",
               "topics_with_message_count", "compression_format", "compression_mode",
               "relative_file_paths", "files"}


def read_bag(path):
    """{topic: [(bag time, message)]} and {topic: msgtype}, through rosbags directly."""
    out, types = {}, {}
    with Reader(path) as reader:
        for c in reader.connections:
            types[c.topic] = c.msgtype
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t, TS.deserialize_cdr(raw, conn.msgtype)))
    return out, types


def pixels(msg):
    ch = {"mono8": 1, "rgb8": 3, "bgr8": 3}[msg.encoding]
    rows = np.asarray(msg.data, np.uint8).reshape(msg.height, msg.step)[:, : msg.width * ch]
    return rows.reshape(msg.height, msg.width, ch).squeeze(-1) if ch == 1 else rows.reshape(msg.height, msg.width, ch)


def check_humble_metadata(bag: Path):
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == 5
    assert set(info) == HUMBLE_KEYS
    for t in info["topics_with_message_count"]:
        assert set(t["topic_metadata"]) == {"name", "type", "serialization_format", "offered_qos_profiles"}
        # Humble parses this string as a YAML list of QoS maps with integer policies.
        qos = yaml.safe_load(t["topic_metadata"]["offered_qos_profiles"])
        assert isinstance(qos, list) and qos and isinstance(qos[0]["reliability"], int)
    for f in info["relative_file_paths"]:
        assert (bag / f).is_file()
    return info


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_synthetic_bag_has_frames_and_labels_with_identical_stamps(tmp_path, storage, capsys):
    bag = tmp_path / "scenes"
    rc = make_bag_main([str(bag), "--frames", "3", "--size", "64x128", "--rate", "20", "--seed", "5",
                        "--frame-id", "cam_front", "--storage", storage, "--start-time", "1700000000.5", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert "3 frames" in capsys.readouterr().out
    info = check_humble_metadata(bag)
    assert info["storage_identifier"] == storage
    msgs, types = read_bag(bag)
    assert types == {"/camera/image_raw": "sensor_msgs/msg/Image", "/camera/labels": "sensor_msgs/msg/Image"}
    frames, labels = msgs["/camera/image_raw"], msgs["/camera/labels"]
    assert len(frames) == len(labels) == 3
    for i, ((t_img, img), (t_lab, lab)) in enumerate(zip(frames, labels)):
        rgb, gt = generate_scene(5 + i, 64, 128)
        assert img.encoding == "rgb8" and lab.encoding == "mono8"
        np.testing.assert_array_equal(pixels(img), rgb)
        np.testing.assert_array_equal(pixels(lab), gt)
        assert stamp(img) == stamp(lab) == t_img == t_lab == 1_700_000_000_500_000_000 + i * 50_000_000
        assert img.header.frame_id == lab.header.frame_id == "cam_front"
    assert not list(tmp_path.glob(".*partial*"))


def test_compressed_png_is_lossless_and_jpeg_close(tmp_path):
    for fmt in ("png", "jpeg"):
        bag = tmp_path / fmt
        assert make_bag_main([str(bag), "--frames", "2", "--size", "48x80", "--compressed", fmt,
                              "--labels-topic", "", "--quiet"]) == 0
        msgs, types = read_bag(bag)
        assert types == {"/camera/image_raw/compressed": "sensor_msgs/msg/CompressedImage"}
        for i, (_, msg) in enumerate(msgs["/camera/image_raw/compressed"]):
            assert msg.format == fmt
            rgb = cv2.imdecode(np.asarray(msg.data), cv2.IMREAD_COLOR)[..., ::-1]
            expected = generate_scene(i, 48, 80)[0]
            if fmt == "png":
                np.testing.assert_array_equal(rgb, expected)
            else:
                assert np.abs(rgb.astype(int) - expected).mean() < 12


def test_image_folder_in_name_order_resized_bgr8(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    images = {}
    for name in ("b.png", "a.png", "c.png"):
        bgr = rng.integers(0, 256, (30, 40, 3), np.uint8)
        cv2.imwrite(str(folder / name), bgr)
        images[name] = bgr
    (folder / "notes.txt").write_text("not an image")
    bag = tmp_path / "folder"
    assert make_bag_main([str(bag), "--source", str(folder), "--size", "60x80", "--encoding", "bgr8",
                          "--topic", "/cam/image", "--quiet"]) == 0
    msgs, types = read_bag(bag)
    assert types == {"/cam/image": "sensor_msgs/msg/Image"}
    got = [m for _, m in msgs["/cam/image"]]
    assert len(got) == 3
    for name, msg in zip(("a.png", "b.png", "c.png"), got):
        assert msg.encoding == "bgr8"
        np.testing.assert_array_equal(pixels(msg), cv2.resize(images[name], (80, 60), interpolation=cv2.INTER_LINEAR))


def test_video_frames_and_rate(tmp_path):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (64, 48))
    assert writer.isOpened()
    for i in range(7):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[:, : 8 * (i + 1)] = (255, 128, 0)  # a growing bar, so frames differ and order shows
        writer.write(frame)
    writer.release()
    bag = tmp_path / "video"
    assert make_bag_main([str(bag), "--source", str(video), "--frames", "5", "--quiet"]) == 0
    msgs, _ = read_bag(bag)
    frames = msgs["/camera/image_raw"]
    assert len(frames) == 5
    assert [t - frames[0][0] for t, _ in frames] == [i * 40_000_000 for i in range(5)]  # 25 Hz from the file
    for i, (_, msg) in enumerate(frames):
        rgb = pixels(msg)
        bar = (rgb[..., 2] > 128).all(axis=0)  # BGR (255,128,0) is RGB blue 255
        assert bar.sum() == pytest.approx(8 * (i + 1), abs=2)


def test_vtest_avi_when_installed(tmp_path):
    vtest = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
    if not vtest.is_file():
        pytest.skip("Debian's opencv-doc (vtest.avi) is not installed")
    bag = tmp_path / "vtest"
    assert make_bag_main([str(bag), "--source", str(vtest), "--frames", "3", "--compressed", "jpeg", "--quiet"]) == 0
    msgs, _ = read_bag(bag)
    assert len(msgs["/camera/image_raw/compressed"]) == 3


def test_errors_leave_nothing_behind(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), np.zeros((8, 8, 3), np.uint8))
    (folder / "1.png").write_bytes(b"this is not a png")
    out = tmp_path / "bag"
    assert make_bag_main([str(out), "--source", str(folder), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "1.png" in err
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))

    assert make_bag_main([str(out), "--source", str(tmp_path / "missing.avi"), "--quiet"]) == 2
    assert "missing.avi" in capsys.readouterr().err
    assert make_bag_main([str(out), "--source", str(folder), "--labels-topic", "/gt", "--quiet"]) == 2
    assert "synthetic" in capsys.readouterr().err
    assert not out.exists()

    assert make_bag_main([str(out), "--frames", "1", "--size", "32x32", "--quiet"]) == 0
    assert make_bag_main([str(out), "--frames", "1", "--size", "32x32", "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert make_bag_main([str(out), "--frames", "2", "--size", "32x32", "--overwrite", "--quiet"]) == 0
    assert len(read_bag(out)[0]["/camera/image_raw"]) == 2
    # --overwrite never deletes something that is not a bag
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("...")
    assert make_bag_main([str(tmp_path / "precious"), "--frames", "1", "--size", "32x32", "--overwrite", "--quiet"]) == 2
    assert (tmp_path / "precious" / "thesis.tex").exists()


def test_mixed_size_folder_reports_every_size(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, (h, w) in enumerate([(48, 64), (64, 96), (48, 64)]):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((h, w, 3), 40 * i, np.uint8))
    bag = tmp_path / "bag"
    assert make_bag_main([str(bag), "--source", str(folder), "--quiet"]) == 0
    assert "3 frames of 48x64 (2), 64x96 (1)" in capsys.readouterr().out
    msgs = read_bag(bag)[0]["/camera/image_raw"]
    assert [(m.height, m.width) for _, m in msgs] == [(48, 64), (64, 96), (48, 64)]


def test_bad_scene_size_fails_before_generating(tmp_path, capsys):
    # Without the up-front check the generator refused it only after the progress bar started.
    assert make_bag_main([str(tmp_path / "bag"), "--size", "8x8"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [err.strip()] and "16..8192" in err and "frame/s" not in err
    assert not (tmp_path / "bag").exists()
