"""A real bridge episode recorded over DDS (reach policy, kinematic robot at the hardware boundary) becomes a training
episode whose grid is the bridge's control ticks and whose commanded actions are exactly what the robot received."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.serial]  # serial: the in-process robot must keep up with the 50 Hz ticks
pytest.importorskip("rclpy", reason="needs ROS 2 (make setup)")


def test_a_recorded_bridge_episode_converts_on_the_control_grid(ros, tmp_path) -> None:
    from roboalign_msgs.msg import EpisodeStatus

    from roboalign.data.convert import convert
    from roboalign.data.dataset import EpisodeDataset
    from roboalign.data.rosbag_episodes import bag_to_episode
    from tests.ros_helpers.executor import wait_until
    from tests.ros_helpers.kinematic_robot import KinematicRobot
    from tests.test_ros_nodes import CAM, GOAL, Listener, R, bridge, reach_policy

    robot = KinematicRobot([CAM], rate_hz=100.0)
    ros(reach_policy(speed=0.5), bridge(record_dir=str(tmp_path / "rec")), robot)
    listen = Listener(ros)
    wait_until(lambda: listen.estatus, 10, "episode status")
    assert listen.command(R.START, task="bottle_to_basket").accepted
    wait_until(lambda: listen.phase() == EpisodeStatus.PHASE_RUNNING, 15, "RUNNING")
    wait_until(lambda: len(robot.commands) >= 60, 20, "60 commands")
    assert listen.command(R.STOP).accepted
    wait_until(lambda: listen.phase() == EpisodeStatus.PHASE_STOPPED, 5, "STOPPED")
    folder = next((tmp_path / "rec").glob("episode_0001_*"))
    wait_until(lambda: '"stopped"' in (folder / "episode.json").read_text(), 5, "the bag to be closed")

    from roboalign.data.bag_streams import read_bag_episode

    raw = read_bag_episode(folder)  # every message readable by rosbags' strict CDR reader (no trailing bytes)
    for stream in raw.streams.values():
        if stream.msgtype != "sensor_msgs/msg/Image":  # (images are read in full only when converted)
            for data in stream.raw:
                raw.store.deserialize_cdr(data, stream.msgtype)

    ep = bag_to_episode(folder)
    assert ep.meta["recorder_info"]["control_rate_hz"] == 50.0 and ep.meta["recorder_info"]["gripper_open_value"] == -1
    assert ep.meta["fps"] == 50.0 and ep.meta["complete"] and not ep.success  # stopped by the operator
    assert ep.meta["policy"]["backend"] == "reach" and ep.meta["cameras"] == {"test": CAM}
    assert ep.meta["ticks_outside_running"]["before_running"] <= 1  # the bridge's status was recorded
    assert ep.length >= 50
    stamps = np.array([stamp for _, stamp, _ in robot.commands])  # header stamps of what the robot received
    t = ep.meta["t0_ns"] / 1e9 + ep.robot["tick_time"].astype(np.float64)
    cmd = ep.robot["joint_position_command"][:, :7]
    nearest = np.abs(stamps[None, :] - t[:, None]).argmin(axis=1)
    off = np.abs(stamps[nearest] - t)
    assert (off < 1e-4).all(), f"grid ticks are not the bridge's ticks: {np.round(off * 1e3, 2)} ms"
    assert abs(np.median(np.diff(t)) - 0.02) < 1e-3  # one tick per bridge period (50 Hz; late ticks happen)
    for k in range(ep.length):  # each tick's command exactly as the robot got it (the next target)
        np.testing.assert_allclose(cmd[k], robot.commands[nearest[k]][2][0], atol=1e-9)
    # the robot moves to each command at once: the joints measured one tick later are that command (within the
    # robot's 100 Hz state period, i.e. one command step) and the arm goes towards the goal
    step = np.abs(np.diff(cmd, axis=0)).max()
    assert np.abs(ep.actions["joint_position"][:, :7] - cmd).max() <= 2 * step + 1e-6
    assert np.abs(ep.state[-1, :7] - GOAL).sum() < np.abs(ep.state[0, :7] - GOAL).sum()
    np.testing.assert_array_equal(ep.images["test"][0], robot._img)
    np.testing.assert_allclose(ep.state[:, 7], 0.08)  # two fingers at 0.04 m
    assert (ep.actions["joint_position"][:, 7] == -1.0).all()  # the reach policy keeps the gripper open

    report = convert(tmp_path / "rec", tmp_path / "ours", "roboalign", progress=False)
    assert report.written == [folder.name]
    assert len(EpisodeDataset(tmp_path / "ours", success_only=False)) == 1
