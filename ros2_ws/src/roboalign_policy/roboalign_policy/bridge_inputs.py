"""The bridge's secondary inputs as messages -> core types: teleoperation (twist, leader joint targets, gripper
button) taken by the control tick, and the simulator's reset service call.

Teleop topics (``roboalign_policy.qos``): ``geometry_msgs/TwistStamped`` end-effector velocity in the robot base
frame (what a SpaceMouse or gamepad node publishes), ``sensor_msgs/JointState`` leader-arm targets (a second arm,
GELLO-style; the names must include the follower's joints) and ``std_msgs/Float64`` gripper (-1 open .. +1
closed). All are polled by the control tick (never wake the executor), newest message only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from geometry_msgs.msg import TwistStamped
from roboalign_msgs.srv import TaskCommand
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64

from roboalign.control.bridge import SimReset, SimResetResult
from roboalign.control.teleop import JointTargets, TwistCommand
from roboalign_policy import conversions as conv
from roboalign_policy.polling import PolledGroup, arrival_s, polled_subscription, take_newest
from roboalign_policy.qos import SENSOR


def twist_vector(msg: TwistStamped) -> np.ndarray:
    """[vx, vy, vz, wx, wy, wz] of a TwistStamped."""
    t = msg.twist
    return np.array([t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z], np.float64)


class TeleopInputs:
    """Polled teleop subscriptions of a node; ``take`` returns the newest twist and leader targets as core types
    (a malformed one is handed on as NaN, so the core holds and says why)."""

    def __init__(self, node: Any, group: PolledGroup, twist_topic: str, leader_topic: str, gripper_topic: str,
                 joint_names: list[str]) -> None:
        self._twist = polled_subscription(node, group, TwistStamped, twist_topic, SENSOR)
        self._leader = polled_subscription(node, group, JointState, leader_topic, SENSOR)
        self._gripper_sub = polled_subscription(node, group, Float64, gripper_topic, SENSOR)
        self._names = list(joint_names)
        self.gripper = -1.0  # open until the operator closes it

    def take(self, now: float, sim_time: bool) -> tuple[TwistCommand | None, JointTargets | None]:
        if (g := take_newest(self._gripper_sub)) is not None:
            self.gripper = float(g[0].data)
        twist, leader = None, None
        if (got := take_newest(self._twist)) is not None:
            twist = TwistCommand(twist_vector(got[0]), self.gripper, arrival_s(got[1], now, sim_time))
        if (got := take_newest(self._leader)) is not None:
            try:
                q = conv.joint_positions(got[0], self._names)
            except ValueError:
                q = np.full(len(self._names), np.nan)  # the core refuses it with the reason
            leader = JointTargets(q, self.gripper, arrival_s(got[1], now, sim_time))
        return twist, leader


class SimResetCall:
    """The simulator's reset service (roboalign_msgs/TaskCommand RESET): one call in flight, answer polled."""

    def __init__(self, node: Any, service: str, group: Any) -> None:
        self._client = node.create_client(TaskCommand, service, callback_group=group)
        self._future = None

    def ready(self) -> bool:
        return self._client.service_is_ready()

    def call(self, reset: SimReset) -> None:
        req = TaskCommand.Request(command=TaskCommand.Request.RESET, task=reset.task, init_state=reset.init_state)
        self._future = self._client.call_async(req)  # a newer request replaces an older one's answer

    def answer(self) -> SimResetResult | None:
        """The answer of the call in flight once it is there (then forgotten), else None."""
        fut = self._future
        if fut is None or not fut.done():
            return None
        self._future, res = None, fut.result()
        if res is None:
            return SimResetResult(False, "no response")
        return SimResetResult(bool(res.accepted), res.message, int(res.init_state))
