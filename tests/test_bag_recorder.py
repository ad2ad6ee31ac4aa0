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
