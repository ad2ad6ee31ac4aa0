"""Message <-> numpy conversions of the ROS nodes (real message types, no DDS needed)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.ros

conv = pytest.importorskip("roboalign_policy.conversions", reason="needs the ROS 2 workspace (make setup)")


def _image(rgb: np.ndarray, encoding: str, pad: int = 0):
    from sensor_msgs.msg import Image

    h, w, _ = rgb.shape
    if encoding in ("rgb8", "bgr8"):
        px = rgb if encoding == "rgb8" else rgb[:, :, ::-1]
    elif encoding in ("rgba8", "bgra8"):
        alpha = np.full((h, w, 1), 255, np.uint8)
        px = np.concatenate([rgb if encoding == "rgba8" else rgb[:, :, ::-1], alpha], axis=2)
    else:
        px = rgb[:, :, :1]
    rows = px.reshape(h, -1)
    rows = np.concatenate([rows, np.full((h, pad), 77, np.uint8)], axis=1)  # garbage padding bytes
    msg = Image(height=h, width=w, encoding=encoding, step=rows.shape[1])
    msg.data = rows.tobytes()
    return msg


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
@pytest.mark.parametrize("pad", [0, 5])
def test_colour_images_with_padded_rows_come_out_rgb(encoding: str, pad: int) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    out = conv.image_to_rgb(_image(rgb, encoding, pad))
    assert out.shape == (6, 7, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


def test_mono_is_replicated_and_round_trip_works() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (4, 9, 3), dtype=np.uint8)
    out = conv.image_to_rgb(_image(rgb, "mono8", pad=3))
    np.testing.assert_array_equal(out, np.repeat(rgb[:, :, :1], 3, axis=2))
    msg = conv.rgb_to_image(rgb, conv.to_time(12.5), "agentview_color_optical_frame")
    assert (msg.encoding, msg.step, msg.header.stamp.sec, msg.header.stamp.nanosec) == ("rgb8", 27, 12, 500_000_000)
    np.testing.assert_array_equal(conv.image_to_rgb(msg), rgb)


def test_malformed_images_name_the_field() -> None:
    rgb = np.zeros((4, 4, 3), np.uint8)
    msg = _image(rgb, "rgb8")
    msg.encoding = "16UC1"
    with pytest.raises(ValueError, match="encoding '16UC1' is not supported; valid: rgb8"):
        conv.image_to_rgb(msg)
    msg = _image(rgb, "rgb8")
    msg.step = 10
    with pytest.raises(ValueError, match="step 10 is smaller than width"):
        conv.image_to_rgb(msg)
    msg = _image(rgb, "rgb8")
    msg.data = bytes(20)
    with pytest.raises(ValueError, match="data has 20 bytes, expected step\\*height"):
        conv.image_to_rgb(msg)
    with pytest.raises(ValueError, match="\\(H, W, 3\\) uint8"):
        conv.rgb_to_image(np.zeros((4, 4), np.uint8))


def test_joint_positions_reorder_and_check() -> None:
    from sensor_msgs.msg import JointState

    msg = JointState(name=["b", "a", "c"], position=[2.0, 1.0, 3.0])
    np.testing.assert_array_equal(conv.joint_positions(msg, ["a", "b"]), [1.0, 2.0])
    with pytest.raises(ValueError, match="lacks joints \\['z'\\]"):
        conv.joint_positions(msg, ["a", "z"])
    msg.position = [2.0, float("nan"), 3.0]
    with pytest.raises(ValueError, match="non-finite positions for \\['a'\\]"):
        conv.joint_positions(msg, ["a", "b"])
    with pytest.raises(ValueError, match="3 names but 2 positions"):
        conv.joint_positions(JointState(name=["a", "b", "c"], position=[1.0, 2.0]), ["a"])


def test_trajectory_points_are_k_dt_apart_and_parse_back() -> None:
    rows = np.arange(12, dtype=float).reshape(4, 3)
    msg = conv.trajectory(["j1", "j2", "j3"], rows, dt=0.05, stamp=conv.to_time(3.0), first=1)
    assert [conv.to_sec(p.time_from_start) for p in msg.points] == pytest.approx([0.05, 0.1, 0.15, 0.2])
    times, pos = conv.trajectory_rows(msg, ["j3", "j1"])
    np.testing.assert_allclose(times, [0.05, 0.1, 0.15, 0.2])
    np.testing.assert_array_equal(pos, rows[:, [2, 0]])
    with pytest.raises(ValueError, match="non-finite"):
        conv.trajectory(["j1", "j2", "j3"], rows * np.nan, dt=0.05, stamp=conv.to_time(0))
    msg.points[2].time_from_start = msg.points[1].time_from_start
    with pytest.raises(ValueError, match="must increase strictly"):
        conv.trajectory_rows(msg, ["j1"])


def test_action_chunk_round_trip_and_size_checks() -> None:
    from roboalign.spec.policy_io import ActionChunk

    a = np.random.default_rng(2).normal(size=(16, 8))
    chunk = ActionChunk(a, "joint_position", tuple(f"j{i}" for i in range(8)), dt=0.05, stamp=7.25,
                        timings={"preprocess": 1.5, "model": 12.0, "total": 14.0})
    msg = conv.chunk_to_msg(chunk, conv.to_time(7.3), sequence=4, instruction="put x in y", task="x", backend="onnxruntime")
    assert (msg.horizon, msg.action_dim, msg.sequence, msg.model_latency_ms) == (16, 8, 4, 12.0)
    back = conv.msg_to_chunk(msg)
    np.testing.assert_array_equal(back.actions, a)
    assert back.stamp == pytest.approx(7.25) and back.action_names == chunk.action_names and back.dt == 0.05
    msg.data = msg.data[:-1]
    with pytest.raises(ValueError, match="has 127 values, expected horizon\\*action_dim = 16\\*8"):
        conv.msg_to_chunk(msg)


def _smooth(h: int = 48, w: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], axis=2).astype(np.uint8)


def test_header_stamp_is_read_from_the_serialized_bytes() -> None:
    from builtin_interfaces.msg import Time
    from rclpy.serialization import serialize_message

    stamp = Time(sec=1_700_000_123, nanosec=456_789_000)
    for msg in (conv.rgb_to_image(_smooth(), stamp, "cam_optical_frame"), conv.compressed_image(_smooth(), stamp)):
        raw = serialize_message(msg)
        assert conv.raw_header_stamp(raw) == pytest.approx(1_700_000_123.456789, abs=1e-9)
        big = raw[:1] + bytes([raw[1] & ~1]) + raw[2:4] + stamp.sec.to_bytes(4, "big") + \
            stamp.nanosec.to_bytes(4, "big") + raw[12:]  # the same header in big-endian CDR
        assert conv.raw_header_stamp(big) == pytest.approx(1_700_000_123.456789, abs=1e-9)
    with pytest.raises(ValueError, match="too short"):
        conv.raw_header_stamp(b"\x00\x01\x00\x00")


def test_jpeg_round_trip_keeps_the_colours_and_bad_data_names_the_field() -> None:
    from sensor_msgs.msg import CompressedImage

    rgb = _smooth()
    msg = conv.compressed_image(rgb, frame_id="f", quality=95)
    assert msg.format == "rgb8; jpeg compressed bgr8" and bytes(msg.data[:2]) == b"\xff\xd8"  # a JPEG SOI marker
    back = conv.compressed_to_rgb(msg)
    assert back.shape == rgb.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - rgb).mean() < 2.0  # lossy, but R stays R (a BGR mix-up is ~80 off)
    with pytest.raises(ValueError, match="CompressedImage.data \\(5 bytes\\) is not a decodable"):
        conv.compressed_to_rgb(CompressedImage(format="jpeg", data=b"\x00\x01\x02\x03\x04"))
    truncated = CompressedImage(format=msg.format, data=bytes(msg.data[:20]))
    with pytest.raises(ValueError, match="not a decodable"):
        conv.compressed_to_rgb(truncated)
    with pytest.raises(ValueError, match="format 'tiff' is not supported"):
        conv.compressed_to_rgb(CompressedImage(format="tiff", data=bytes(msg.data)))


def test_camera_qos_follows_the_publishers() -> None:
    from rclpy.qos import ReliabilityPolicy as R

    from roboalign_policy import qos as q

    assert q.choose_reliability("auto", []) == (None, "no publisher yet")
    assert q.choose_reliability("auto", [R.RELIABLE])[0] == R.RELIABLE
    assert q.choose_reliability("auto", [R.RELIABLE, R.BEST_EFFORT])[0] == R.BEST_EFFORT  # serves both
    rel, note = q.choose_reliability("reliable", [R.BEST_EFFORT])
    assert rel == R.RELIABLE and "gets nothing" in note
    assert q.choose_reliability("best_effort", [R.RELIABLE]) == (R.BEST_EFFORT, "ok")
    with pytest.raises(ValueError, match="valid: auto, reliable, best_effort"):
        q.choose_reliability("sensor", [])
    p = q.camera_profile(R.RELIABLE)
    assert p.depth == 1 and p.history.name == "KEEP_LAST" and p.durability.name == "VOLATILE"
    assert q.compressed_topic("/camera/wrist/color/image_raw") == "/camera/wrist/color/image_raw/compressed"
    assert q.camera_topic("wrist") == q.CAMERA_TOPICS[1] == "/camera/wrist/color/image_raw"


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "mono8"])
@pytest.mark.parametrize("frame_id", ["", "c", "cam", "wrist_color_optical_frame"])  # every string alignment
def test_a_serialized_image_is_read_in_place_as_deserialising_it_would(encoding: str, frame_id: str) -> None:
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image

    rgb = np.random.default_rng(1).integers(0, 256, (5, 9, 3), dtype=np.uint8)
    for pad in (0, 3):
        msg = _image(rgb, encoding, pad)
        msg.header.frame_id, msg.header.stamp.sec = frame_id, 1_700_000_000
        raw = serialize_message(msg)
        expected = conv.image_to_rgb(deserialize_message(raw, Image))
        out = conv.raw_image_to_rgb(raw)
        assert out.shape == expected.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(out, expected)


def test_a_truncated_or_malformed_serialized_image_is_refused_with_the_field() -> None:
    from rclpy.serialization import serialize_message

    raw = serialize_message(conv.rgb_to_image(_smooth(), None, "cam"))
    with pytest.raises(ValueError, match="data"):
        conv.raw_image_to_rgb(raw[:-100])  # the pixels are cut short
    with pytest.raises(ValueError, match="height|frame_id"):
        conv.raw_image_to_rgb(raw[:14])
    with pytest.raises(ValueError, match="CDR header"):
        conv.raw_image_to_rgb(b"\x00")
    wrong = serialize_message(_image(_smooth(), "rgb8", 0)).replace(b"rgb8", b"yuv4")
    with pytest.raises(ValueError, match="encoding 'yuv4'"):
        conv.raw_image_to_rgb(wrong)


@pytest.mark.parametrize("points", [1, 2, 16])
@pytest.mark.parametrize("names", [[f"fr3_joint{i}" for i in range(1, 8)], ["a", "bb", "ccc"], ["abcd"]])  # both paddings
@pytest.mark.parametrize("first", [0, 1])
def test_a_trajectory_serialized_directly_reads_back_as_the_message(points: int, names: list[str], first: int) -> None:
    from rclpy.serialization import deserialize_message
    from trajectory_msgs.msg import JointTrajectory

    rows = np.random.default_rng(points).normal(size=(points, len(names)))
    stamp = conv.to_time(1_700_000_012.345678)
    raw = conv.trajectory_cdr(names, rows, 0.05, stamp, first)
    assert deserialize_message(raw, JointTrajectory) == conv.trajectory(names, rows, 0.05, stamp, first)
    for bad, match in ((rows[:, :-1], "do not match"), (np.full_like(rows, np.nan), "non-finite")):
        with pytest.raises(ValueError, match=match):
            conv.trajectory_cdr(names, bad, 0.05, stamp)
