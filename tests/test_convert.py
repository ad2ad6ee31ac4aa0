"""Recorded rosbag2 episodes -> training episodes: control-grid alignment with known values, the errors for bad
recordings (naming episode and topic), a really SIGKILLed bag writer salvaged and kept out of training, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.bag_fixtures import frame_at, q_at, write_bag_episode

DT = 0.05


def test_bag_episode_is_aligned_to_the_control_grid(tmp_path: Path) -> None:
    from roboalign.data.rosbag_episodes import bag_to_episode

    ep = bag_to_episode(write_bag_episode(tmp_path / "episode_0001_x", steps=40))
    q = np.array([q_at(k * DT) for k in range(41)])
    assert ep.length == 40 and ep.success and ep.task == "bottle_to_basket"
    np.testing.assert_allclose(ep.state[:, :7], q[:-1], atol=1e-6)  # measured before the action
    np.testing.assert_allclose(ep.actions["joint_position"][:, :7], q[1:], atol=1e-6)  # measured one tick later
    np.testing.assert_allclose(ep.robot["joint_position_command"][:, :7], q[1:], atol=1e-6)  # what was commanded
    np.testing.assert_allclose(ep.final_state[:7], q[-1], atol=1e-6)
    grip = np.where(np.arange(40) < 19, -1.0, 1.0)  # commanded closed from tick 19
    np.testing.assert_array_equal(ep.actions["joint_position"][:, 7], grip)
    np.testing.assert_allclose(ep.state[:, 7], np.where(np.arange(40) < 20, 0.08, 0.02), atol=1e-6)
    for cam in ("agentview", "wrist"):
        assert all(np.array_equal(ep.images[cam][k], frame_at(k)) for k in range(40)), f"{cam} frames off the grid"
    assert ep.meta["fps"] == 20.0 and ep.meta["complete"] and ep.meta["action_source"] == "measured"
    assert ep.meta["time_source"]["/joint_states"] == "header"


def test_only_the_running_phase_becomes_training_data(tmp_path: Path) -> None:
    from roboalign.data.bag_streams import BagEpisodeError
    from roboalign.data.rosbag_episodes import bag_to_episode

    ep = bag_to_episode(write_bag_episode(tmp_path / "e", steps=40, homing_ticks=10))
    q = np.array([q_at(k * DT) for k in range(41)])
    assert ep.length == 30  # ticks 10..39 (the status is published 0.5 ms after the tick's command)
    np.testing.assert_allclose(ep.state[:, :7], q[10:40], atol=1e-6)
    np.testing.assert_allclose(ep.actions["joint_position"][:, :7], q[11:41], atol=1e-6)
    assert ep.meta["ticks_outside_running"] == {"before_running": 10, "after_running": 0}
    with pytest.raises(BagEpisodeError, match="/roboalign/episode_status: the episode never ran"):
        bag_to_episode(write_bag_episode(tmp_path / "h", steps=20, homing_ticks=30))


def test_gripper_commands_in_controller_units_become_the_action_spaces_minus_one_to_one(tmp_path: Path) -> None:
    from roboalign.data.rosbag_episodes import bag_to_episode

    ep = bag_to_episode(write_bag_episode(tmp_path / "e", steps=20, gripper_values=(0.08, 0.0)))  # open 8 cm, closed 0
    np.testing.assert_array_equal(ep.actions["joint_position"][:, 7], np.where(np.arange(20) < 9, -1.0, 1.0))


def test_a_coarser_grid_interpolates_the_commanded_trajectory(tmp_path: Path) -> None:
    from roboalign.data.rosbag_episodes import BagOptions, bag_to_episode

    ep = bag_to_episode(write_bag_episode(tmp_path / "e", steps=40), BagOptions(fps=10, action_source="commanded"))
    q = np.array([q_at(k * DT) for k in range(42)])
    assert ep.length == 20
    np.testing.assert_allclose(ep.state[:, :7], q[0:40:2], atol=1e-6)
    # the target 0.1 s ahead is the trajectory's second point (q two fine ticks later)
    np.testing.assert_allclose(ep.actions["joint_position"][:, :7], q[2:42:2], atol=1e-6)
    assert all(np.array_equal(ep.images["wrist"][k], frame_at(2 * k)) for k in range(20))


@pytest.mark.parametrize("kw, topic, words", [
    ({"stall": ("/camera/wrist/color/image_raw", 0.5, 1.3)}, "/camera/wrist/color/image_raw", "stalled"),
    ({"stall": ("/joint_states", 1.5, 9.0)}, "/joint_states", "stalled"),
    ({"clock_back_at": 1.0}, "/joint_states", "clock jumped back"),
    ({"drop_topics": ("/camera/wrist/color/image_raw",)}, "camera 'wrist'", "not recorded"),
    ({"drop_topics": ("/joint_states",)}, "joint_states", "no joint_states stream"),
    ({"drop_topics": ("/camera/agentview/color/image_raw",), "expect": None}, "/camera/agentview/color/image_raw",
     "configured camera topic has no messages in the bag (missing topic)"),
])
def test_bad_recordings_name_the_episode_and_topic(tmp_path: Path, kw: dict, topic: str, words: str) -> None:
    from roboalign.data.bag_streams import BagEpisodeError
    from roboalign.data.rosbag_episodes import BagOptions, bag_to_episode

    cams = kw.pop("expect", ("agentview", "wrist"))  # None: the cameras the bridge was configured with
    folder = write_bag_episode(tmp_path / "episode_0007_bad", **kw)
    with pytest.raises(BagEpisodeError) as e:
        bag_to_episode(folder, BagOptions(cameras=cams))
    assert "episode_0007_bad" in str(e.value) and topic in str(e.value) and words in str(e.value)


def test_a_clock_jump_forward_is_not_blamed_on_one_topic(tmp_path: Path) -> None:
    from roboalign.data.bag_streams import BagEpisodeError
    from roboalign.data.rosbag_episodes import bag_to_episode

    folder = write_bag_episode(tmp_path / "e", steps=60)
    bag = tmp_path / "e" / "bag"
    _shift_after(bag, 1.0, 3.0)  # every message after t = 1 s is stamped 3 s later
    with pytest.raises(BagEpisodeError, match="clock jumped forward: no topic has a message for 3.0"):
        bag_to_episode(folder)


def _shift_after(bag: Path, at_s: float, by_s: float) -> None:
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    with Reader(bag) as r:
        conns = [(c.topic, c.msgtype, c.msgdef.data, c.digest) for c in r.connections]
        msgs = [(c.topic, t, bytes(d)) for c, t, d in r.messages()]
    t0 = min(t for _, t, _ in msgs)
    for f in bag.iterdir():
        f.unlink()
    bag.rmdir()
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        out = {topic: w.add_connection(topic, mt, msgdef=md, rihs01=dg) for topic, mt, md, dg in conns}
        for topic, t, d in msgs:
            w.write(out[topic], t + (int(by_s * 1e9) if t - t0 > at_s * 1e9 else 0), d)


def test_sigkilled_bag_writer_is_salvaged_and_kept_out_of_training(tmp_path: Path) -> None:
    from rosbags.rosbag2 import Reader

    from roboalign.data.bag_salvage import repair_bag
    from roboalign.data.convert import ConvertOptions, convert
    from roboalign.data.dataset import EpisodeDataset
    from roboalign.data.rosbag_episodes import bag_to_episode

    folder = tmp_path / "rec" / "episode_0001_bottle_to_basket"
    folder.mkdir(parents=True)
    (folder / "episode.json").write_text('{"task": "bottle_to_basket", "outcome": "running", "bag": "bag"}')
    proc = subprocess.Popen([sys.executable, "-m", "tests.bag_fixtures", str(folder / "bag")], stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parents[1])
    ticks = 0
    deadline = time.monotonic() + 60
    while ticks < 120 and time.monotonic() < deadline:  # ~2.5 MB written: two full 1 MiB chunks at least
        ticks = int(proc.stdout.readline() or -1) + 1
    proc.kill()  # SIGKILL: no metadata.yaml, no MCAP footer
    proc.wait()
    assert ticks >= 120, "the writer did not get going"
    assert not (folder / "bag" / "metadata.yaml").exists()
    with pytest.raises(Exception):  # noqa: B017 - rosbags refuses the folder (its error types vary)
        Reader(folder / "bag").open()

    ep = bag_to_episode(folder)  # salvaged from the stream
    assert not ep.meta["complete"] and not ep.success and "not closed" in ep.meta["problems"][0]
    assert 20 <= ep.length <= ticks
    np.testing.assert_allclose(ep.state[:, :7], [q_at(k * DT) for k in range(ep.length)], atol=1e-6)
    assert all(np.array_equal(ep.images["wrist"][k, 0, 0], frame_at(k, 1)[0, 0]) for k in range(ep.length))

    skipped = convert(tmp_path / "rec", tmp_path / "ours", "roboalign", progress=False)
    assert not skipped.written and "incomplete" in skipped.skipped[0][1]
    kept = convert(tmp_path / "rec", tmp_path / "ours", "roboalign", ConvertOptions(include_incomplete=True),
                   progress=False)
    assert kept.written == [folder.name]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ds = EpisodeDataset(tmp_path / "ours", success_only=False)
    assert len(ds) == 0 and ds.num_incomplete == 1 and "incomplete" in str(w[0].message)

    from roboalign.commands.dataset import main

    assert main(["repair", str(tmp_path / "rec")]) == 0  # what the recorder also does on its next start
    assert (folder / "bag.crashed").is_dir() and repair_bag(folder / "bag") is None  # the repaired bag is complete
    assert json.loads((folder / "episode.json").read_text())["outcome"] == "incomplete"
    with Reader(folder / "bag") as r:
        assert r.message_count >= 2 * ep.length


def test_cli_detects_reports_and_converts_every_way(tmp_path: Path, capsys) -> None:
    from roboalign.commands.dataset import main

    rec = tmp_path / "rec"
    write_bag_episode(rec / "episode_0001_a", steps=20)
    write_bag_episode(rec / "episode_0002_a", steps=24, outcome="failure")
    write_bag_episode(rec / "episode_0003_a", stall=("/joint_states", 0.3, 1.2))
    assert main(["validate", str(rec)]) == 1
    out = capsys.readouterr().out
    assert "BAD" in out and "episode_0003_a" in out and "/joint_states" in out and "rosbag dataset, 1 problem" in out
    assert main(["convert", str(rec), str(tmp_path / "ours"), "--to", "roboalign"]) == 1  # one failed, two written
    out = capsys.readouterr().out
    assert "rosbag -> roboalign: 2 written, 0 skipped, 1 failed" in out and "FAILED episode_0003_a" in out
    assert main(["validate", str(tmp_path / "ours"), "--config", "training/configs/vla_tiny_joint.yaml"]) == 0
    assert main(["validate", str(tmp_path / "ours"), "--action-space", "eef_delta", "--cameras", "wrist,top"]) == 1
    out = capsys.readouterr().out
    assert "no actions for action space 'eef_delta'" in out and "cameras ['top'] missing" in out
    assert main(["convert", str(tmp_path / "ours"), str(tmp_path / "lr"), "--to", "lerobot", "--vcodec", "h264"]) == 0
    assert main(["info", str(tmp_path / "lr")]) == 0
    assert "format lerobot" in capsys.readouterr().out
    assert main(["convert", str(tmp_path / "lr"), str(tmp_path / "back"), "--to", "roboalign"]) == 0
    assert main(["info", str(tmp_path / "back")]) == 0
    out = capsys.readouterr().out
    assert "episodes: 2 (1 successful, 0 incomplete, 0 unreadable), steps: 44" in out
    assert main(["convert", str(tmp_path / "ours"), str(tmp_path / "x"), "--to", "roboalign"]) == 2
    assert "already a roboalign dataset" in capsys.readouterr().err


def test_record_converts_each_episode_as_it_goes(tmp_path: Path) -> None:
    """``convert_bag_episode``: the per-episode step of ``roboalign record`` (one HDF5 each, meta.json kept)."""
    from roboalign.data.convert import convert_bag_episode
    from roboalign.data.dataset import EpisodeDataset

    out = tmp_path / "demos"
    p1 = convert_bag_episode(write_bag_episode(tmp_path / "rec" / "episode_0001_a", steps=20), out)
    def kept(folder: Path) -> Path:  # the operator's verdict, as roboalign record notes it
        meta = json.loads((folder / "episode.json").read_text()) | {"operator_verdict": "keep"}
        (folder / "episode.json").write_text(json.dumps(meta))
        return folder

    # kept by the operator but cut short: still incomplete; a kept demonstration the operator ended with STOP
    p2 = convert_bag_episode(kept(write_bag_episode(tmp_path / "rec" / "episode_0002_a", steps=20, outcome="running")),
                             out)
    p3 = convert_bag_episode(kept(write_bag_episode(tmp_path / "rec" / "episode_0003_a", steps=20, outcome="stopped")),
                             out)
    assert p1.name == "episode_0001_a.hdf5" and p2.is_file()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["action_spaces"] == ["joint_position"] and meta["cameras"] == ["agentview", "wrist"]
    with pytest.warns(UserWarning, match="1 incomplete recorded episode"):
        ds = EpisodeDataset(out, success_only=False)
    assert [(e.path.name, e.success) for e in ds.episodes] == [("episode_0001_a.hdf5", True),
                                                               ("episode_0003_a.hdf5", True)]
    assert p3.is_file()


def test_repair_leaves_an_episode_of_a_live_recorder_alone(tmp_path: Path, capsys) -> None:
    import os

    from roboalign.commands.dataset import main
    from roboalign.data.bag_salvage import process_identity

    folder = write_bag_episode(tmp_path / "rec" / "episode_0001_a", steps=10, outcome="running")
    meta = json.loads((folder / "episode.json").read_text()) | process_identity(os.getppid())  # live, not us
    (folder / "episode.json").write_text(json.dumps(meta))
    assert main(["repair", str(tmp_path / "rec")]) == 0
    assert "still being recorded by process" in capsys.readouterr().out
    assert json.loads((folder / "episode.json").read_text())["outcome"] == "running"
    assert main(["repair", str(tmp_path / "rec"), "--force"]) == 0
    assert json.loads((folder / "episode.json").read_text())["outcome"] == "incomplete"


def test_training_refuses_a_dataset_without_the_configs_action_space_or_cameras(tmp_path: Path) -> None:
    from roboalign.data.convert import convert
    from roboalign.training.config import VLATrainConfig
    from roboalign.training.vla_head import load_splits

    for k in range(2):
        write_bag_episode(tmp_path / "rec" / f"episode_000{k}_a", steps=12)
    convert(tmp_path / "rec", tmp_path / "ours", "roboalign", progress=False)
    with pytest.raises(ValueError, match=r"2 episode\(s\) do not match the training config .*episode_0000_a.hdf5: no "
                                         r"actions for action space 'eef_delta'"):
        load_splits(VLATrainConfig(dataset=str(tmp_path / "ours"), action_space="eef_delta"))
    with pytest.raises(ValueError, match=r"episode_0001_a.hdf5: cameras \['top'\] missing"):
        load_splits(VLATrainConfig(dataset=str(tmp_path / "ours"), action_space="joint_position",
                                   cameras=("agentview", "top")))
    train, val = load_splits(VLATrainConfig(dataset=str(tmp_path / "ours"), action_space="joint_position",
                                            val_fraction=0.5))
    assert len(train) + len(val) == 2


def test_image_messages_of_every_encoding_decode_to_rgb() -> None:
    import dataclasses

    import cv2
    from rosbags.typesys import Stores, get_typestore

    from roboalign.data.bag_streams import camera_name
    from roboalign.data.ros_images import image_msg_to_rgb

    T = get_typestore(Stores.ROS2_JAZZY).types
    rgb = np.random.default_rng(0).integers(0, 255, (5, 6, 3), dtype=np.uint8)

    def raw(enc: str, px: np.ndarray, pad: int = 2):
        h, w = px.shape[:2]
        rows = np.zeros((h, px[0].size + pad), np.uint8)  # a padded row stride
        rows[:, :px[0].size] = px.reshape(h, -1)
        return T["sensor_msgs/msg/Image"](header=None, height=h, width=w, encoding=enc, is_bigendian=0,
                                          step=rows.shape[1], data=rows.reshape(-1))

    assert np.array_equal(image_msg_to_rgb(raw("rgb8", rgb), "sensor_msgs/msg/Image"), rgb)
    assert np.array_equal(image_msg_to_rgb(raw("bgr8", rgb[..., ::-1]), "sensor_msgs/msg/Image"), rgb)
    rgba = np.concatenate([rgb, np.full((5, 6, 1), 7, np.uint8)], axis=2)
    assert np.array_equal(image_msg_to_rgb(raw("rgba8", rgba), "sensor_msgs/msg/Image"), rgb)
    mono = image_msg_to_rgb(raw("mono8", rgb[..., 0]), "sensor_msgs/msg/Image")
    assert np.array_equal(mono, np.repeat(rgb[..., :1], 3, axis=2))
    png = cv2.imencode(".png", rgb[..., ::-1])[1]
    comp = T["sensor_msgs/msg/CompressedImage"](header=None, format="png", data=png.reshape(-1))
    assert np.array_equal(image_msg_to_rgb(comp, "sensor_msgs/msg/CompressedImage"), rgb)
    with pytest.raises(ValueError, match="cam0: Image.encoding '16UC1' not supported"):
        image_msg_to_rgb(raw("16UC1", rgb[..., :2]), "sensor_msgs/msg/Image", where="cam0")
    with pytest.raises(ValueError, match="does not fit its"):  # rosbags messages are dataclasses
        image_msg_to_rgb(dataclasses.replace(raw("rgb8", rgb), height=9), "sensor_msgs/msg/Image")
    assert camera_name("/camera/wrist/color/image_raw/compressed") == "wrist"
    assert camera_name("/top_cam/image_raw") == "top_cam"
