"""BagRecorder under sim time: every message of the episode is recorded once, on the sim clock, in order,
inside the episode's sim-time window (the reception times are system-clock; the sim runs at half speed)."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.ros


def test_sim_time_recording_is_complete_ordered_and_on_the_sim_clock(ros, tmp_path) -> None:
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data
    from roboalign_policy.bag_recorder import BagRecorder
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore
    from rosgraph_msgs.msg import Clock
    from std_msgs.msg import String

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


def test_sigkill_during_an_episode_is_recovered_and_marked_incomplete(ros, tmp_path) -> None:
    """The bridge's recorder SIGKILLed 4 s into an episode: the bag has no metadata.yaml and episode.json says
    "running"; the converter salvages it (incomplete, kept out of training) and the next recorder repairs it."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np
    from rclpy.node import Node
    from roboalign_policy.bag_recorder import BagRecorder
    from rosbags.rosbag2 import Reader

    from roboalign.data.rosbag_episodes import bag_to_episode
    from tests.bag_fixtures import frame_at

    proc = subprocess.Popen([sys.executable, "-m", "tests.ros_helpers.record_until_killed", str(tmp_path)],
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    ticks = 0
    deadline = time.monotonic() + 60
    while ticks < 80 and time.monotonic() < deadline:  # 4 s of 20 Hz ticks
        line = proc.stdout.readline()
        if not line:
            break
        ticks = int(line) + 1
    proc.kill()
    proc.wait()
    assert ticks >= 80, "the recording process did not get going"
    folder = next(tmp_path.glob("episode_0001_*"))
    assert json.loads((folder / "episode.json").read_text())["outcome"] == "running"
    assert (folder / "bag" / "bag.mcap").stat().st_size > 1_000_000 and not (folder / "bag" / "metadata.yaml").exists()
    with pytest.raises(Exception):  # noqa: B017 - rosbags refuses a bag without metadata.yaml
        Reader(folder / "bag").open()

    ep = bag_to_episode(folder)  # read as a stream: at most the last ~1 s (the recorder's flush period) is lost
    assert not ep.meta["complete"] and not ep.success
    assert ep.length >= ticks - 30, (ep.length, ticks)
    k0 = int(ep.images["wrist"][0, 0, 0, 0]) // 5  # the tick the grid starts at (the image encodes it)
    assert all(np.array_equal(ep.images["wrist"][i, 0, 0], frame_at(k0 + i, 1)[0, 0]) for i in range(ep.length))

    rec = BagRecorder(ros(Node("recorder_restart")), tmp_path, {})  # the next start repairs the crashed episode
    assert rec.recovered == [folder]
    meta = json.loads((folder / "episode.json").read_text())
    assert meta["outcome"] == "incomplete" and "killed or crashed" in meta["message"]
    with Reader(folder / "bag") as bag:
        assert bag.message_count >= 2 * ep.length
    assert (folder / "bag.crashed" / "bag.mcap").is_file()
    rec.close()
