"""Calibration frames for every int8 graph (deploy/calibration.py) on real files: image folders,
dataset splits, lists, synthetic scenes and rosbag2 bags written with rosbags."""
from __future__ import annotations

import numpy as np
import pytest

import cv2

from drn_perception.deploy import calibration as cal


# ---------------------------------------------------------------------------------------------
# Calibration frames


def scene(seed, h=48, w=64):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_sample_evenly_and_fit_frame():
    assert cal.sample_evenly(10, 4) == [0, 2, 5, 7]
    assert cal.sample_evenly(3, 8) == [0, 1, 2]
    assert cal.sample_evenly(0, 8) == [] and cal.sample_evenly(5, 0) == []
    stripes = np.zeros((100, 300, 3), np.uint8)
    stripes[:, :100] = (255, 0, 0)
    stripes[:, 100:200] = (0, 255, 0)
    stripes[:, 200:] = (0, 0, 255)
    square = cal.fit_frame(stripes, 100, 100)  # the centre third, untouched
    assert square.shape == (100, 100, 3) and (square == (0, 255, 0)).all()
    wide = cal.fit_frame(stripes, 64, 256)  # scaled down to 64 x 192... then up to cover 256 wide
    assert wide.shape == (64, 256, 3) and wide.flags.c_contiguous
    small = cal.fit_frame(scene(1, 30, 40), 64, 128)
    assert small.shape == (64, 128, 3)


def write_png(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def test_image_folder_list_and_dataset_splits(tmp_path):
    frames = [scene(i) for i in range(6)]
    for i, f in enumerate(frames):
        write_png(tmp_path / "imgs" / f"sub{i % 2}" / f"{i}.png", f)
    got = list(cal.open_frames(str(tmp_path / "imgs"), height=48, width=64))
    order = sorted(range(6), key=lambda i: (f"sub{i % 2}", f"{i}.png"))
    assert len(got) == 6 and all((g == frames[i]).all() for g, i in zip(got, order))  # RGB kept, not BGR
    src = cal.open_frames(str(tmp_path / "imgs"), height=48, width=64, max_frames=3)
    assert len(list(src)) == 3 and "3 of 6 images" in src.description
    # The authors' list layout, as a split and as a bare list file.
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "val_images.txt").write_text("../imgs/sub0/0.png\n../imgs/sub1/3.png\n\n")
    got = list(cal.open_frames(f"{tmp_path / 'ds'}:val", height=48, width=64))
    assert len(got) == 2 and (got[1] == frames[3]).all()
    assert len(list(cal.open_frames(str(tmp_path / "ds" / "val_images.txt"), height=48, width=64))) == 2
    # The Cityscapes layout.
    for city, i in (("aachen", 0), ("bremen", 1)):
        write_png(tmp_path / "cs" / "leftImg8bit" / "train" / city / f"{city}_000000_000019_leftImg8bit.png", frames[i])
    got = list(cal.open_frames(f"{tmp_path / 'cs'}:train", height=48, width=64))
    assert len(got) == 2 and (got[0] == frames[0]).all()


def test_bad_calibration_sources_are_named(tmp_path):
    with pytest.raises(cal.CalibrationError, match="not found"):
        cal.open_frames(str(tmp_path / "nope"), height=48, width=64)
    (tmp_path / "ds").mkdir()
    with pytest.raises(cal.CalibrationError, match="val_images.txt"):
        cal.open_frames(f"{tmp_path / 'ds'}:val", height=48, width=64)
    (tmp_path / "ds" / "val_images.txt").write_text("missing.png\n")
    with pytest.raises(cal.CalibrationError, match=r"val_images.txt:1: .*missing.png"):
        cal.open_frames(f"{tmp_path / 'ds'}:val", height=48, width=64)
    (tmp_path / "empty").mkdir()
    with pytest.raises(cal.CalibrationError, match="no images"):
        cal.open_frames(str(tmp_path / "empty"), height=48, width=64)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    with pytest.raises(cal.CalibrationError, match="a.png"):
        list(cal.open_frames(str(broken), height=48, width=64))
    for spec in ("synthetic:x", "synthetic:0"):
        with pytest.raises(cal.CalibrationError, match="synthetic"):
            cal.open_frames(spec, height=48, width=64)


def test_synthetic_scenes():
    from drn_perception.data.synthetic import generate_scene

    src = cal.open_frames("synthetic:3", height=64, width=128)
    frames = list(src)
    assert len(frames) == 3 and all(f.shape == (64, 128, 3) and f.dtype == np.uint8 for f in frames)
    assert (frames[2] == generate_scene(2, 64, 128)[0]).all()
    assert len(list(cal.open_frames("synthetic", height=32, width=64, max_frames=2))) == 2


# ---------------------------------------------------------------------------------------------
# Calibration frames from a rosbag2


def write_bag(path, topics):
    """topics: {topic: [message kwargs]}; each message is an Image (rgb8/bgr8/...) or CompressedImage."""
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    Image = ts.types["sensor_msgs/msg/Image"]
    Compressed = ts.types["sensor_msgs/msg/CompressedImage"]
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    with Writer(path, version=9) as writer:
        for topic, msgs in topics.items():
            kind = Compressed if "format" in msgs[0] else Image
            conn = writer.add_connection(topic, kind.__msgtype__, typestore=ts)
            for i, fields in enumerate(msgs):
                header = Header(stamp=Time(sec=i, nanosec=0), frame_id="cam")
                msg = kind(header=header, **fields)
                writer.write(conn, (i + 1) * 10**9, ts.serialize_cdr(msg, kind.__msgtype__))


def image_fields(rgb, encoding="rgb8", pad=0):
    h, w, _ = rgb.shape
    pixels = rgb[..., ::-1] if encoding == "bgr8" else rgb
    rows = np.zeros((h, w * 3 + pad), np.uint8)
    rows[:, : w * 3] = pixels.reshape(h, w * 3)
    return dict(height=h, width=w, encoding=encoding, is_bigendian=0, step=w * 3 + pad, data=rows.reshape(-1))


def test_bag_frames_of_every_kind(tmp_path):
    frames = [scene(i, 24, 40) for i in range(10)]
    png = [np.frombuffer(cv2.imencode(".png", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))[1], np.uint8) for f in frames[:3]]
    bag = tmp_path / "cal_bag"
    write_bag(bag, {
        "/cam/rgb": [image_fields(f, "rgb8", pad=8) for f in frames],
        "/cam/bgr": [image_fields(f, "bgr8") for f in frames[:4]],
        "/cam/compressed": [dict(format="png", data=d) for d in png]
        + [dict(format="png", data=np.frombuffer(b"garbage", np.uint8))],
        "/cam/mono": [dict(height=24, width=40, encoding="mono8", is_bigendian=0, step=40,
                           data=np.zeros(960, np.uint8))],
    })
    rgb = cal.open_frames(str(bag), height=24, width=40, topic="/cam/rgb", max_frames=4)
    got = list(rgb)
    assert [i for i in cal.sample_evenly(10, 4)] == [0, 2, 5, 7]
    assert len(got) == 4 and all((g == frames[i]).all() for g, i in zip(got, [0, 2, 5, 7]))
    assert "4 of 10 frames of /cam/rgb" in rgb.description
    got = list(cal.open_frames(str(bag), height=24, width=40, topic="/cam/bgr"))
    assert len(got) == 4 and all((g == f).all() for g, f in zip(got, frames))
    src = cal.open_frames(str(bag), height=24, width=40, topic="/cam/compressed")
    got = list(src)
    assert len(got) == 3 and src.dropped == 1 and all((g == f).all() for g, f in zip(got, frames))
    # The .db3/.mcap file itself also names the bag.
    storage = next(p for p in bag.iterdir() if p.suffix in (".db3", ".mcap"))
    assert len(list(cal.open_frames(str(storage), height=24, width=40, topic="/cam/bgr"))) == 4
    with pytest.raises(cal.CalibrationError, match="mono8"):
        list(cal.open_frames(str(bag), height=24, width=40, topic="/cam/mono"))
    with pytest.raises(cal.CalibrationError, match="several image topics .*--calibration-topic"):
        list(cal.open_frames(str(bag), height=24, width=40))
    with pytest.raises(cal.CalibrationError, match="no Image/CompressedImage topic /other"):
        list(cal.open_frames(str(bag), height=24, width=40, topic="/other"))


def test_bag_with_one_topic_and_bad_fields(tmp_path):
    frame = scene(3, 24, 40)
    bag = tmp_path / "one"
    write_bag(bag, {"/front/image": [image_fields(frame)]})
    got = list(cal.open_frames(str(bag), height=24, width=40))
    assert len(got) == 1 and (got[0] == frame).all()
    short = image_fields(frame)
    short["data"] = short["data"][:-1]
    bad = tmp_path / "bad"
    write_bag(bad, {"/front/image": [short]})
    with pytest.raises(cal.CalibrationError, match="/front/image: Image fields do not fit"):
        list(cal.open_frames(str(bad), height=24, width=40))


def test_generated_and_user_frames_for_the_graph_writers(tmp_path):
    frames = list(cal.calibration_frames(2, (32, 64)))
    assert [f.shape for f in frames] == [(1, 32, 64, 3)] * 2 and frames[0].dtype == np.uint8
    assert not np.array_equal(frames[0], frames[1])
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "imgs" / f"{i}.png"), scene(i, 40, 90))
    got, note = cal.user_calibration_frames(str(tmp_path / "imgs"), (32, 64), max_frames=2)
    assert [f.shape for f in got] == [(1, 32, 64, 3)] * 2
    assert "2 of 3 images" in note and "fitted to 32x64" in note
