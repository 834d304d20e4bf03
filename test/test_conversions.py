"""sensor_msgs <-> NumPy conversions: every encoding, padded rows, odd sizes, bad frames."""
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from drn_perception.ros import conversions as cv
from ros_helpers import compressed_msg, image_msg, random_rgb, read_image


def _expected_rgb(rgb, encoding):
    """What the node should see for a frame sent as ``encoding`` (grey frames stay grey)."""
    if encoding in ("mono8", "8UC1"):
        return np.repeat(rgb[..., :1], 3, axis=2)
    return rgb


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "8UC3", "rgba8", "bgra8", "8UC4", "mono8", "8UC1"])
@pytest.mark.parametrize("size,pad", [((64, 96), 0), ((37, 53), 0), ((37, 53), 7), ((1, 1), 3)])
def test_every_encoding_gives_the_frame_back_in_rgb(encoding, size, pad):
    rgb = random_rgb(*size, seed=size[0] + pad)
    msg = image_msg(rgb, encoding, pad=pad)
    got = cv.to_rgb(msg)
    assert got.dtype == np.uint8 and got.shape == (*size, 3)
    np.testing.assert_array_equal(got, _expected_rgb(rgb, encoding))


@pytest.mark.parametrize("pad", [0, 5])
def test_image_view_is_zero_copy_and_follows_step(pad):
    rgb = random_rgb(37, 53, seed=1)
    msg = image_msg(rgb, "rgb8", pad=pad)
    view = cv.image_view(msg)
    assert np.shares_memory(view, np.frombuffer(msg.data, np.uint8))
    assert view.strides[0] == msg.step == 53 * 3 + pad
    np.testing.assert_array_equal(view, rgb)
    # rgb8 frames are handed on without a copy too
    assert np.shares_memory(cv.to_rgb(msg), np.frombuffer(msg.data, np.uint8))


def test_big_endian_flag_does_not_change_8bit_frames():
    rgb = random_rgb(20, 30, seed=2)
    for enc in ("rgb8", "bgra8", "mono8"):
        little, big = image_msg(rgb, enc), image_msg(rgb, enc)
        big.is_bigendian = 1
        np.testing.assert_array_equal(cv.to_rgb(big), cv.to_rgb(little))


def test_data_longer_than_needed_is_accepted():
    rgb = random_rgb(10, 12, seed=3)
    msg = image_msg(rgb, "bgr8")
    msg.data.extend(b"\x00" * 17)
    np.testing.assert_array_equal(cv.to_rgb(msg), rgb)


def _bad(msg):
    with pytest.raises(cv.FrameError) as info:
        cv.to_rgb(msg)
    return info.value


def test_bad_frames_raise_frame_errors_with_their_reason():
    rgb = random_rgb(16, 24, seed=4)
    msg = image_msg(rgb, "rgb8")
    msg.encoding = "bayer_rggb8"
    err = _bad(msg)
    assert err.reason == "unsupported_encoding" and "bayer_rggb8" in str(err)
    msg = image_msg(rgb, "rgb8")
    msg.encoding = "16UC1"
    assert _bad(msg).reason == "unsupported_encoding"

    msg = image_msg(rgb, "rgb8", pad=4)
    del msg.data[-1]
    err = _bad(msg)
    assert err.reason == "short_data" and str(msg.step * msg.height) in str(err)

    msg = image_msg(rgb, "rgb8")
    msg.step = 24 * 3 - 1
    assert _bad(msg).reason == "bad_step"

    for h, w in ((0, 24), (16, 0), (0, 0)):
        msg = Image(height=h, width=w, encoding="rgb8", step=w * 3)
        assert _bad(msg).reason == "empty"


def test_compressed_png_round_trips_exactly_and_jpeg_closely():
    rgb = random_rgb(37, 53, seed=5, smooth=True)
    png = compressed_msg(rgb, "png")
    np.testing.assert_array_equal(cv.to_rgb(png), rgb)
    jpg = compressed_msg(rgb, "jpeg")
    got = cv.to_rgb(jpg)
    assert got.shape == rgb.shape
    # JPEG is lossy; a BGR/RGB swap would be far off on this frame
    assert np.abs(got.astype(int) - rgb.astype(int)).mean() < 6
    swapped = np.abs(got[..., ::-1].astype(int) - rgb.astype(int)).mean()
    assert swapped > 3 * np.abs(got.astype(int) - rgb.astype(int)).mean()


def test_corrupt_and_empty_compressed_frames_are_frame_errors():
    rgb = random_rgb(32, 32, seed=6)
    jpg = compressed_msg(rgb, "jpeg")
    jpg.data = jpg.data[:20]
    assert _bad(jpg).reason == "decode_error"
    garbage = CompressedImage(format="jpeg")
    garbage.data = bytes(range(256)) * 4
    assert _bad(garbage).reason == "decode_error"
    assert _bad(CompressedImage(format="png")).reason == "empty"
    depth = compressed_msg(rgb, "png")
    depth.format = "16UC1; compressedDepth png"
    assert _bad(depth).reason == "unsupported_encoding"


def test_mask_message_is_mono8_with_the_header_copied():
    header = Header(frame_id="cam_left")
    header.stamp.sec, header.stamp.nanosec = 1234, 567
    mask = np.random.default_rng(7).integers(0, 19, (37, 53)).astype(np.uint8)
    msg = cv.mask_to_image(mask, header)
    assert (msg.encoding, msg.height, msg.width, msg.step) == ("mono8", 37, 53, 53)
    assert msg.header.frame_id == "cam_left"
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1234, 567)
    np.testing.assert_array_equal(read_image(msg), mask)
    np.testing.assert_array_equal(cv.image_to_numpy(msg), mask)
    with pytest.raises(ValueError):
        cv.mask_to_image(mask.astype(np.int32), header)


def test_labels_outside_0_254_become_unknown():
    for dtype in (np.int16, np.int32, np.int64, np.uint16, np.uint32, np.uint64, np.float32):
        kind = np.dtype(dtype).kind
        big = np.iinfo(dtype).max if kind in "iu" else 1e9
        low = np.iinfo(dtype).min if kind == "i" else 256 if kind == "u" else -1
        labels = np.array([[0, 18, 254], [255, low, big]], dtype)
        mask = cv.labels_to_mask(labels)
        assert mask.dtype == np.uint8, dtype
        np.testing.assert_array_equal(mask, [[0, 18, 254], [255, 255, 255]])
        # a strided view (a batch's column slice) gives the same as its copy
        wide = np.repeat(labels, 2, axis=1)[:, ::2]
        np.testing.assert_array_equal(cv.labels_to_mask(wide), mask)


def test_resize_labels_is_nearest_and_keeps_the_class_set():
    mask = np.random.default_rng(8).integers(0, 19, (16, 24)).astype(np.uint8)
    up = cv.resize_labels(mask, 37, 53)
    assert up.shape == (37, 53) and up.dtype == np.uint8
    assert set(np.unique(up)) <= set(np.unique(mask))
    # integer upscaling by 2 repeats every label exactly
    np.testing.assert_array_equal(cv.resize_labels(mask, 32, 48), mask.repeat(2, 0).repeat(2, 1))
    assert cv.resize_labels(mask, 16, 24) is mask


def test_colour_mask_overlay_and_confidence_messages():
    palette = [[10 * i, 255 - 10 * i, (37 * i) % 256] for i in range(19)]
    lut = cv.palette_lut(palette)
    mask = np.array([[0, 5, 255], [18, 1, 2]], np.uint8)
    color = cv.colorize(mask, lut)
    np.testing.assert_array_equal(color[0, 1], palette[5])
    np.testing.assert_array_equal(color[0, 2], [0, 0, 0])
    rgb = random_rgb(2, 3, seed=9)
    over = cv.blend(rgb, color, 0.25)
    np.testing.assert_allclose(over, 0.75 * rgb + 0.25 * color, atol=1)
    np.testing.assert_array_equal(cv.blend(rgb, color, 0.0), rgb)

    header = Header(frame_id="f")
    conf = np.array([[0.0, 0.5, 1.0]], np.float32)
    m8 = cv.confidence_to_image(conf, header, "mono8")
    np.testing.assert_array_equal(read_image(m8), [[0, 128, 255]])
    f32 = cv.confidence_to_image(conf, header, "32FC1")
    assert (f32.encoding, f32.step, f32.is_bigendian) == ("32FC1", 12, 0)
    np.testing.assert_array_equal(read_image(f32), conf)
    with pytest.raises(ValueError):
        cv.confidence_to_image(conf, header, "16UC1")


def test_works_on_rosbags_messages_too():
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    Img = ts.types["sensor_msgs/msg/Image"]
    Hdr = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    rgb = random_rgb(9, 11, seed=10)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    msg = Img(header=Hdr(stamp=Time(sec=1, nanosec=2), frame_id="bag"), height=9, width=11,
              encoding="bgr8", is_bigendian=0, step=33, data=bgr.reshape(-1))
    np.testing.assert_array_equal(cv.to_rgb(msg), rgb)

