"""BagRecorder under sim time: every message of the episode is recorded once, on the sim clock, in order,
inside the episode's sim-time window (the reception times are system-clock; the sim runs at half speed)."""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.serial]  # counts the messages recorded at 50-100 Hz


def test_sim_time_recording_is_complete_ordered_and_on_the_sim_clock(ros, tmp_path) -> None:
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore
    from rosgraph_msgs.msg import Clock
    from std_msgs.msg import String

    from roboalign_policy.bag_recorder import BagRecorder
    from tests.ros_helpers.executor import wait_until

    node = Node("recorder_sim", parameter_overrides=[Parameter("use_sim_time", value=True)])
    sim = Node("fake_sim")
    clock_pub = sim.create_publisher(Clock, "/clock", 10)
    data_pub = sim.create_publisher(String, "/recorded", qos_profile_sensor_data)
    ros(node, sim)
    rec = BagRecorder(node, tmp_path, {"/recorded": String})
    t_ns = 100 * 10**9

    def tick(dt_ns: int) -> None:
        nonlocal t_ns
        t_ns += dt_ns
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(t_ns, 10**9)
        clock_pub.publish(msg)

    tick(0)
    wait_until(lambda: node.get_clock().now().nanoseconds >= t_ns, 10, "the node on sim time")
    wait_until(lambda: data_pub.get_subscription_count() > 0, 10, "the recorder's subscription")
    for _ in range(5):  # sent before the episode: not in its bag
        data_pub.publish(String(data="before"))
        time.sleep(0.01)
    time.sleep(0.2)
    folder = rec.begin(1, "bottle_to_basket", "put the ketchup in the basket")
    begin_ns = node.get_clock().now().nanoseconds
    for k in range(100):  # 10 ms of wall time per 5 ms of sim time
        tick(5_000_000)
        data_pub.publish(String(data=f"m{k:03d}"))
        if k % 10 == 0:
            rec.write("/own", String(data=f"own{k:03d}"))
        time.sleep(0.01)
    time.sleep(0.2)
    end_ns = node.get_clock().now().nanoseconds
    rec.close("success")
    store = get_typestore(Stores.ROS2_JAZZY)
    got = []
    with Reader(folder / "bag") as bag:
        for conn, stamp, raw in bag.messages():
            got.append((stamp, conn.topic, store.deserialize_cdr(raw, conn.msgtype).data))
    recorded = [d for _, topic, d in got if topic == "/recorded"]
    assert recorded == [f"m{k:03d}" for k in range(100)], "incomplete, duplicated or out of order"
    assert [d for _, topic, d in got if topic == "/own"] == [f"own{k:03d}" for k in range(0, 100, 10)]
    stamps = [s for s, _, _ in got]
    assert begin_ns <= min(stamps) and max(stamps) <= end_ns, "stamps outside the episode's sim-time window"
    assert end_ns - begin_ns < 0.7e9  # sim time (0.5 s of episode), not the ~1.2 s of wall time


def _record_and_sigkill_the_bridge(ros, record_dir):
    """Start a recording bridge_node process, run an episode for 4 s, SIGKILL the process: (robot, commands sent)."""
    import subprocess
    import sys
    from pathlib import Path

    from roboalign_msgs.msg import EpisodeStatus

    from tests.ros_helpers.executor import wait_until
    from tests.ros_helpers.kinematic_robot import KinematicRobot
    from tests.test_ros_nodes import CAM, Listener, R, reach_policy

    params = {"record_dir": str(record_dir), "dry_run": "false", "camera_topics": f"[{CAM}]", "home_first": "false",
              "image_timeout_s": "1.0", "state_timeout_s": "1.0", "chunk_timeout_s": "2.0"}
    args = [a for k, v in params.items() for a in ("-p", f"{k}:={v}")]
    proc = subprocess.Popen([sys.executable, "-m", "roboalign_policy.bridge_node", "--ros-args", *args],
                            cwd=Path(__file__).resolve().parents[1])
    try:
        robot = KinematicRobot([CAM], rate_hz=100.0, image_size=96)
        ros(reach_policy(speed=0.1), robot)
        listen = Listener(ros)
        wait_until(lambda: listen.estatus, 30, "the bridge process")
        assert listen.command(R.START, task="bottle_to_basket").accepted
        wait_until(lambda: listen.phase() == EpisodeStatus.PHASE_RUNNING, 15, "RUNNING")
        time.sleep(4.0)
        return robot, len(robot.commands)
    finally:
        proc.kill()  # SIGKILL: the recorder gets no chance to close the bag
        proc.wait()


def _check_the_salvaged_steps(folder, robot, sent: int):
    """The converter reads the unclosed bag as a stream: marked incomplete, at most the last ~1 s (the recorder's
    flush period) lost, and each step's command exactly what the robot received. Returns the episode."""
    import numpy as np

    from roboalign.data.rosbag_episodes import bag_to_episode

    ep = bag_to_episode(folder)
    assert not ep.meta["complete"] and not ep.success and "not closed" in ep.meta["problems"][0]
    print(f"bridge SIGKILLed 4 s into the episode: {sent} commands sent, {ep.length} steps recovered from "
          f"{(folder / 'bag' / 'bag.mcap').stat().st_size / 1e6:.1f} MB")
    assert ep.length >= sent - 75, (ep.length, sent)  # 50 Hz ticks
    assert ep.meta["fps"] == 50.0 and ep.meta["policy"]["backend"] == "reach"
    np.testing.assert_array_equal(ep.images["test"][-1], robot._img)
    cmd = ep.robot["joint_position_command"][:, :7]
    stamps = np.array([stamp for _, stamp, _ in robot.commands])  # what the robot received, by header stamp
    t = ep.meta["t0_ns"] / 1e9 + ep.robot["tick_time"].astype(np.float64)
    nearest = np.abs(stamps[None, :] - t[:, None]).argmin(axis=1)
    assert (np.abs(stamps[nearest] - t) < 1e-4).all(), "steps are not the bridge's ticks"
    for k in range(ep.length):  # each step's command is exactly what the robot received
        np.testing.assert_allclose(cmd[k], robot.commands[nearest[k]][2][0], atol=1e-9)
    return ep


def test_sigkill_of_the_bridge_during_an_episode_is_recovered_and_marked_incomplete(ros, tmp_path) -> None:
    """A recording bridge_node process SIGKILLed 4 s into an episode (as a new user would): its bag has no
    metadata.yaml and episode.json says "running"; the converter salvages what was written (incomplete, kept out of
    training) and the next recorder start repairs the bag."""
    import json

    from rclpy.node import Node
    from rosbags.rosbag2 import Reader

    from roboalign_policy.bag_recorder import BagRecorder

    robot, sent = _record_and_sigkill_the_bridge(ros, tmp_path)
    folder = next(tmp_path.glob("episode_0001_*"))
    assert json.loads((folder / "episode.json").read_text())["outcome"] == "running"
    assert (folder / "bag" / "bag.mcap").stat().st_size > 1_000_000 and not (folder / "bag" / "metadata.yaml").exists()
    with pytest.raises(Exception):  # noqa: B017 - rosbags refuses a bag without metadata.yaml
        Reader(folder / "bag").open()
    ep = _check_the_salvaged_steps(folder, robot, sent)

    rec = BagRecorder(ros(Node("recorder_restart")), tmp_path, {})  # the next start repairs the crashed episode
    assert rec.recovered == [folder]
    meta = json.loads((folder / "episode.json").read_text())
    assert meta["outcome"] == "incomplete" and "killed or crashed" in meta["message"]
    with Reader(folder / "bag") as bag:
        assert bag.message_count >= 2 * ep.length
    assert (folder / "bag.crashed" / "bag.mcap").is_file()
    rec.close()


def test_repair_next_to_a_zombie_or_another_process_with_the_recorders_pid(tmp_path) -> None:
    """A recorder that exited but is not reaped yet (a zombie), or a pid now held by a process that is not the
    recorder, is no live recorder: repair recovers the episode; the recorder itself still running is left alone."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from roboalign.commands.dataset import main
    from roboalign.data.bag_salvage import live_recorder, process_identity
    from tests.bag_fixtures import write_bag_episode

    recorder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "roboalign_policy.bridge_node"])
    other = subprocess.Popen(["sleep", "60"])
    try:
        alive = process_identity(recorder.pid)
        assert live_recorder(alive)
        assert not live_recorder({**alive, "pid_start": alive["pid_start"] + 1})  # the pid, another process
        assert not live_recorder({"pid": other.pid})  # a process that is not a recorder of ours
        assert live_recorder({"pid": recorder.pid})  # an episode.json with the pid only: a command line of ours
        for k, meta in enumerate((alive, {"pid": other.pid})):
            folder = write_bag_episode(tmp_path / "rec" / f"episode_000{k}_a", steps=10, outcome="running")
            (folder / "episode.json").write_text(json.dumps(json.loads((folder / "episode.json").read_text()) | meta))
        outcome = lambda k: json.loads((tmp_path / "rec" / f"episode_000{k}_a" / "episode.json").read_text())[  # noqa: E731
            "outcome"]
        assert main(["repair", str(tmp_path / "rec")]) == 0
        assert [outcome(0), outcome(1)] == ["running", "incomplete"]  # the live recorder's episode is left alone
        recorder.kill()
        while Path(f"/proc/{recorder.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            time.sleep(0.01)  # killed, not reaped: a zombie with the recorder's pid and start time
        assert not live_recorder(alive)
        assert main(["repair", str(tmp_path / "rec")]) == 0
        assert outcome(0) == "incomplete"
    finally:
        for p in (recorder, other):
            p.kill()
            p.wait()
