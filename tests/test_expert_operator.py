"""The scripted expert as teleoperator (roboalign_policy.tools.expert_operator): which leader target it publishes for an
expert chunk, and that it publishes the moment the chunk arrives, before the sim's clock reaches the chunk's stamp
(the bridge's tick at ``t`` takes the newest leader target; one published on the clock came a step late)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (make setup)")
from rclpy.parameter import Parameter  # noqa: E402
from roboalign_msgs.msg import ActionChunk as ActionChunkMsg  # noqa: E402
from std_msgs.msg import Float64, String  # noqa: E402

from roboalign.spec.action_space import FR3_JOINT_NAMES  # noqa: E402
from roboalign.spec.policy_io import ActionChunk  # noqa: E402
from roboalign_policy import conversions as conv  # noqa: E402
from roboalign_policy import qos  # noqa: E402
from roboalign_policy.tools.expert_operator import ExpertOperator, LeaderSampler  # noqa: E402
from tests.ros_helpers.executor import wait_until  # noqa: E402

DT = 0.05


def rows(n: int, start: float) -> np.ndarray:
    """(n, 8) distinct joint targets + an open gripper."""
    a = np.zeros((n, 8))
    a[:, :7] = start + 0.01 * np.arange(n)[:, None] + 0.001 * np.arange(7)
    a[:, 7] = -1.0
    return a


def test_each_one_row_chunk_becomes_the_target_of_the_tick_at_its_stamp() -> None:
    """The expert's chunk for the observation at t holds the pose for t + dt: exactly what the bridge must command
    at its tick t. Sampling at the next tick's time instead (what a clock-driven publisher sees once the sim has
    moved on) would hand the bridge the previous step's pose."""
    s = LeaderSampler(DT)
    for k in range(20):
        chunk = rows(1, 0.1 * k)
        np.testing.assert_array_equal(s.offer(chunk, k * DT, DT), chunk[0])


def test_a_chunk_older_than_the_last_one_used_never_moves_the_target_back() -> None:
    s = LeaderSampler(DT)
    assert s.offer(rows(1, 0.5), 1.0, DT) is not None
    assert s.offer(rows(1, 0.4), 1.0 - DT, DT) is None
    assert s.offer(rows(1, 0.6), 1.0 + DT, DT) is not None
    s.clear()  # a new take: any time is new again
    assert s.offer(rows(1, 0.1), 0.0, DT) is not None


def test_a_malformed_chunk_publishes_nothing() -> None:
    s = LeaderSampler(DT)
    bad = rows(2, 0.0)
    bad[1, 3] = np.nan
    assert s.offer(bad, 0.0, DT) is None
    assert s.offer(rows(1, 0.0)[:, :7], 0.0, DT) is None  # no gripper column
    assert s.offer(rows(1, 0.0), 0.0, 0.0) is None  # dt 0
    with pytest.raises(ValueError, match="period"):
        LeaderSampler(0.0)


def test_multi_row_chunks_give_the_newest_chunks_pose_for_the_next_tick() -> None:
    """A chunk with a horizon (a learned expert): the newest chunk's row for tick + period, as `roboalign collect`
    executes actions[0] of each chunk; never blended with the older chunk (at a row boundary that blend pulled
    the target half-way back to the previous step); row_offset 0 reads row 1, in between is interpolated."""
    s = LeaderSampler(DT)
    for k in range(6):
        chunk = rows(8, 0.03 * k)
        np.testing.assert_array_equal(s.offer(chunk, k * DT, DT), chunk[0])
    chunk = rows(8, 0.0)
    np.testing.assert_allclose(LeaderSampler(DT, row_offset=0.0).offer(chunk, 0.0, DT), chunk[1])
    np.testing.assert_allclose(LeaderSampler(DT / 2).offer(chunk, 0.0, DT), chunk[0])  # before row 0: row 0
    np.testing.assert_allclose(LeaderSampler(1.5 * DT).offer(chunk, 0.0, DT), (chunk[0] + chunk[1]) / 2)
    np.testing.assert_allclose(LeaderSampler(20 * DT).offer(chunk, 0.0, DT), chunk[-1])  # past the end: held


@pytest.fixture
def operator(ros):
    """An ExpertOperator on a sim-time node with no /clock at all: only chunks can make it publish."""
    node = ros(rclpy.create_node("expert_operator_test", parameter_overrides=[Parameter("use_sim_time", value=True)]))
    op = ExpertOperator(node)
    peer = ros(rclpy.create_node("expert_operator_peer"))
    got: dict[str, list] = {"leader": [], "gripper": [], "instruction": []}
    peer.create_subscription(conv.JointState, qos.TELEOP_LEADER, got["leader"].append, qos.SENSOR)
    peer.create_subscription(Float64, qos.TELEOP_GRIPPER, got["gripper"].append, qos.SENSOR)
    peer.create_subscription(String, qos.INSTRUCTION, got["instruction"].append, qos.LATCHED)
    chunks = peer.create_publisher(ActionChunkMsg, qos.ACTION_CHUNK, qos.RELIABLE)
    wait_until(lambda: chunks.get_subscription_count() > 0 and peer.count_publishers(qos.TELEOP_LEADER) > 0, 10,
               "the operator's chunk subscription and leader publisher")
    return op, chunks, got


def chunk_msg(actions: np.ndarray, stamp: float) -> ActionChunkMsg:
    chunk = ActionChunk(actions, "joint_position", (*FR3_JOINT_NAMES, "gripper"), DT, stamp)
    return conv.chunk_to_msg(chunk, conv.to_time(stamp), 0, "pick up the soup")


def test_the_operator_publishes_each_target_when_its_chunk_arrives(operator) -> None:
    op, chunks, got = operator
    op.start("pick up the soup")
    wait_until(lambda: [m.data for m in got["instruction"]] == ["pick up the soup"], 10, "the instruction")
    for k in range(3):
        chunk = rows(1, 0.3 + 0.1 * k)
        chunks.publish(chunk_msg(chunk, 4.0 + k * DT))
        wait_until(lambda k=k: len(got["leader"]) == k + 1, 10, f"leader target {k}")
        msg = got["leader"][-1]
        assert list(msg.name) == list(FR3_JOINT_NAMES)
        np.testing.assert_allclose(msg.position, chunk[0, :7])
        assert conv.to_sec(msg.header.stamp) == pytest.approx(4.0 + k * DT)  # the observation it answers
    wait_until(lambda: len(got["gripper"]) == 3, 10, "gripper commands")
    assert {m.data for m in got["gripper"]} == {-1.0} and op.published == 3
    op.stop()  # stopped: the expert's chunks are not the operator's any more
    chunks.publish(chunk_msg(rows(1, 0.9), 4.2))
    wait_until(lambda: [m.data for m in got["instruction"]][-1:] == [""], 10, "the cleared instruction")
    assert len(got["leader"]) == 3
