"""Teleoperation through bridge_node over real DDS: a twist stream moves the arm's TCP (differential IK), leader
joint targets are followed, kinesthetic teaching sends nothing, a stopped teleop stream faults and holds."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (make setup)")
from geometry_msgs.msg import TwistStamped  # noqa: E402
from roboalign_msgs.msg import EpisodeStatus  # noqa: E402
from std_msgs.msg import Float64  # noqa: E402

from roboalign.control.kinematics import FR3Kinematics  # noqa: E402
from roboalign.spec.action_space import FR3_JOINT_NAMES  # noqa: E402
from roboalign_policy import conversions as conv  # noqa: E402
from roboalign_policy import qos  # noqa: E402
from tests.ros_helpers.executor import wait_until  # noqa: E402
from tests.ros_helpers.kinematic_robot import START, KinematicRobot  # noqa: E402
from tests.test_ros_nodes import CAM, Listener, R, bridge  # noqa: E402


class Operator:
    """The teleoperation device side: publishes a twist (or leader joints) and the gripper at 50 Hz."""

    def __init__(self, add) -> None:
        self.node = add(rclpy.create_node("teleop_operator"))
        self.twist = self.node.create_publisher(TwistStamped, qos.TELEOP_TWIST, qos.SENSOR)
        self.leader = self.node.create_publisher(conv.JointState, qos.TELEOP_LEADER, qos.SENSOR)
        self.gripper = self.node.create_publisher(Float64, qos.TELEOP_GRIPPER, qos.SENSOR)
        self.v, self.q, self.on = None, None, True
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.is_set():
            stamp = self.node.get_clock().now().to_msg()
            if self.on and self.v is not None:
                m = TwistStamped()
                m.header.stamp = stamp
                m.twist.linear.x, m.twist.linear.y, m.twist.linear.z = self.v
                self.twist.publish(m)
            if self.on and self.q is not None:
                self.leader.publish(conv.joint_state(list(FR3_JOINT_NAMES), self.q, stamp))
            time.sleep(0.02)

    def close(self) -> None:
        self._stop.set()


def start(ros, mode: str):
    robot = KinematicRobot([CAM])
    ros(bridge(mode=mode, teleop_timeout_s=0.5), robot)
    op, listen = Operator(ros), Listener(ros)
    wait_until(lambda: listen.estatus, 10, "episode status")
    return robot, op, listen


def test_a_twist_stream_moves_the_tcp_and_a_stopped_stream_faults_and_holds(ros) -> None:
    robot, op, listen = start(ros, "teleop")
    kin = FR3Kinematics()
    op.v = (0.0, 0.0, 0.0)
    assert listen.command(R.START, task="bottle_to_basket").accepted
    wait_until(lambda: listen.phase() == EpisodeStatus.PHASE_RUNNING, 10, "RUNNING")
    p0 = kin.fk(robot.q).position
    op.v = (0.1, 0.0, 0.0)  # 10 cm/s forward
    wait_until(lambda: kin.fk(robot.q).position[0] - p0[0] > 0.05, 10, "the TCP to move 5 cm forward")
    dp = kin.fk(robot.q).position - p0
    assert abs(dp[1]) < 0.005 and abs(dp[2]) < 0.005, f"moved off-axis: {dp}"
    assert not listen.chunks, "no policy ran"
    op.on = False
    wait_until(lambda: listen.phase() == EpisodeStatus.PHASE_FAULT, 5, "FAULT on the stopped stream")
    assert "stale teleop" in listen.estatus[-1].message
    held = robot.q.copy()
    time.sleep(0.3)
    assert np.allclose(robot.q, held), "holds after the fault"
    op.close()


def test_leader_targets_are_followed_and_kinesthetic_sends_nothing(ros) -> None:
    robot, op, listen = start(ros, "leader")
    goal = START + np.array([0.2, -0.1, 0.1, 0.1, 0.0, 0.1, -0.1])
    op.q = goal
    assert listen.command(R.START, task="can_to_bowl").accepted
    wait_until(lambda: np.abs(robot.q - goal).max() < 1e-6, 10, "the follower to reach the leader")
    op.gripper.publish(Float64(data=1.0))
    wait_until(lambda: robot.gripper and robot.gripper[-1] > 0.9, 5, "the gripper to close")
    assert listen.command(R.STOP).accepted
    op.close()


def test_teleop_node_turns_joy_into_a_twist_that_moves_the_arm(ros) -> None:
    from sensor_msgs.msg import Joy

    from roboalign_policy.teleop_node import TeleopNode

    robot = KinematicRobot([CAM])
    teleop = TeleopNode(parameter_overrides=[rclpy.parameter.Parameter("device", value="joy")])
    ros(bridge(mode="teleop", teleop_timeout_s=0.5), robot, teleop)
    listen = Listener(ros)
    got = []
    listen.node.create_subscription(TwistStamped, qos.TELEOP_TWIST, got.append, qos.SENSOR)
    joy = listen.node.create_publisher(Joy, "/joy", 10)
    wait_until(lambda: listen.estatus and got, 10, "episode status and the teleop stream")
    assert all(m.twist.linear.x == 0.0 for m in got), "at rest: zeros, so the stream is alive"
    assert listen.command(R.START, task="bottle_to_basket").accepted
    kin = FR3Kinematics()
    p0 = kin.fk(robot.q).position
    for _ in range(100):  # left stick pushed up (axis 1): +x at 0.1 m/s; button 0 pressed once: close
        joy.publish(Joy(axes=[0.0, 1.0, 0.0, 0.0, 0.0, 0.0], buttons=[1, 0]))
        time.sleep(0.02)
        if kin.fk(robot.q).position[0] - p0[0] > 0.04:
            break
    assert kin.fk(robot.q).position[0] - p0[0] > 0.04, "the stick moved the TCP forward"
    assert abs(got[-1].twist.linear.x - 0.1) < 1e-9 and got[-1].header.frame_id == "fr3_link0"
    wait_until(lambda: robot.gripper and robot.gripper[-1] > 0.9, 5, "the button to close the gripper")


def test_teleop_node_without_the_device_stops_at_once_saying_what_to_do() -> None:
    from roboalign_policy.node_runner import StartupError
    from roboalign_policy.teleop_node import Gamepad, SpaceMouse

    with pytest.raises(StartupError, match="no SpaceMouse found|pyspacemouse"):
        SpaceMouse()
    with pytest.raises(StartupError, match="no gamepad found|evdev"):
        Gamepad()
