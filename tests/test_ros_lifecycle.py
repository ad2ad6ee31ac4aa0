"""policy_node and bridge_node as managed (lifecycle) nodes, driven over DDS through their lifecycle services
(lifecycle_msgs/srv/ChangeState, GetState), with a kinematic robot at the hardware boundary.

Covers: a configure that fails on a checkpoint that cannot load (the reason in PolicyStatus, the node stays
unconfigured), configure -> inactive (nothing published) -> activate (chunks flow) -> deactivate (they stop),
a bridge deactivated while the arm moves (a hold, then no command at all; START refused until activated), and
START refused while the policy cannot act, quoting the policy's own reason, in the bridge's reply and in
``roboalign say``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (make setup)")
from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.parameter import Parameter as P  # noqa: E402
from roboalign_msgs.msg import EpisodeStatus, PolicyStatus  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from roboalign_policy.policy_node import PolicyNode  # noqa: E402
from tests.ros_helpers.executor import wait_until  # noqa: E402
from tests.ros_helpers.kinematic_robot import KinematicRobot  # noqa: E402
from tests.test_ros_nodes import CAM, Listener, R, bridge, reach_policy  # noqa: E402

MISSING = "/nonexistent/roboalign_export"


def change(listen: Listener, node: str, transition: str) -> bool:
    """``ros2 lifecycle set <node> <transition>`` (configure, activate, deactivate, cleanup): the answer."""
    client = listen.node.create_client(ChangeState, f"/{node}/change_state")
    return listen.call(client, ChangeState.Request(transition=Transition(label=transition))).success


def lifecycle_state(listen: Listener, node: str) -> int:
    """``ros2 lifecycle get <node>``: the state id (lifecycle_msgs/State)."""
    client = listen.node.create_client(GetState, f"/{node}/get_state")
    return listen.call(client, GetState.Request()).current_state.id


def broken_policy(autostart: bool) -> PolicyNode:
    """An onnxruntime policy node whose checkpoint does not exist."""
    return PolicyNode(parameter_overrides=[
        P("backend", value="onnxruntime"), P("checkpoint", value=MISSING), P("autostart", value=autostart),
        P("camera_names", value=["test"]), P("camera_topics", value=[CAM])])


def test_a_configure_that_cannot_load_the_checkpoint_says_why_and_stays_unconfigured(ros) -> None:
    ros(broken_policy(autostart=False))
    listen = Listener(ros)
    assert lifecycle_state(listen, "policy_node") == State.PRIMARY_STATE_UNCONFIGURED
    wait_until(lambda: listen.pstatus, 10, "a policy status")
    assert listen.pstatus[-1].state == PolicyStatus.STATE_UNCONFIGURED
    assert "ros2 lifecycle set /policy_node configure" in listen.pstatus[-1].message
    assert not change(listen, "policy_node", "configure")
    assert lifecycle_state(listen, "policy_node") == State.PRIMARY_STATE_UNCONFIGURED
    wait_until(lambda: listen.pstatus[-1].state == PolicyStatus.STATE_FAULT, 5, "the FAULT status")
    msg = listen.pstatus[-1].message
    assert msg.startswith("configure failed: could not load the policy:") and MISSING in msg, msg
    assert "does not exist" in msg and "the node stays unconfigured" in msg
    assert not change(listen, "policy_node", "activate")  # not from unconfigured
    assert listen.chunks == []


def test_configure_activate_deactivate_start_and_stop_the_chunks(ros) -> None:
    pn = ros(reach_policy(autostart=False))
    listen = Listener(ros)
    ros(KinematicRobot([CAM]))
    listen.instr.publish(String(data="put the ketchup in the basket"))
    assert change(listen, "policy_node", "configure")
    assert lifecycle_state(listen, "policy_node") == State.PRIMARY_STATE_INACTIVE and pn._policy is not None
    wait_until(lambda: listen.pstatus and listen.pstatus[-1].message.startswith("inactive"), 5, "inactive status")
    assert "ros2 lifecycle set /policy_node activate" in listen.pstatus[-1].message
    time.sleep(1.0)  # inputs and instruction are there: an inactive node still publishes no chunk
    assert listen.chunks == [] and listen.trajs == []
    assert change(listen, "policy_node", "activate")
    wait_until(lambda: len(listen.chunks) >= 3 and len(listen.trajs) >= 3, 15, "chunks once active")
    wait_until(lambda: listen.pstatus[-1].state == PolicyStatus.STATE_RUNNING, 5, "RUNNING")
    assert change(listen, "policy_node", "deactivate")
    time.sleep(0.3)  # what was on the wire arrives
    n = len(listen.chunks)
    time.sleep(1.0)
    assert len(listen.chunks) == n, "chunks after deactivate"
    assert listen.pstatus[-1].state == PolicyStatus.STATE_UNCONFIGURED
    assert change(listen, "policy_node", "cleanup")
    assert pn._policy is None and pn._io is None and not pn._cameras  # the model and the inputs are released
    assert change(listen, "policy_node", "configure")  # and can be loaded again
    assert change(listen, "policy_node", "activate")
    wait_until(lambda: len(listen.chunks) > n + 2, 15, "chunks after a second configure and activate")


def _moving(robot: KinematicRobot) -> bool:
    if len(robot.commands) < 20:
        return False
    recent = np.array([c[2][0] for c in sorted(robot.commands[-10:], key=lambda c: c[1])])
    return bool(np.any(np.diff(recent, axis=0) != 0))


def test_a_bridge_deactivated_while_the_arm_moves_holds_it_and_then_commands_nothing(ros) -> None:
    robot = KinematicRobot([CAM], rate_hz=100.0)
    br = bridge()
    ros(reach_policy(), br, robot)
    listen = Listener(ros)
    wait_until(lambda: listen.estatus, 10, "episode status")
    assert listen.command(R.START, task="bottle_to_basket").accepted
    wait_until(lambda: _moving(robot), 20, "the arm to be commanded and moving")
    asked = listen.node.get_clock().now().nanoseconds * 1e-9
    assert change(listen, "bridge_node", "deactivate")
    assert lifecycle_state(listen, "bridge_node") == State.PRIMARY_STATE_INACTIVE
    time.sleep(0.5)
    n = len(robot.commands)
    by_stamp = sorted(robot.commands, key=lambda c: c[1])
    hold = by_stamp[-1]  # the last command, by stamp and by arrival: the hold deactivate sent
    assert hold[1] >= asked and hold is robot.commands[-1], "the hold is sent when the bridge is deactivated"
    np.testing.assert_array_equal(hold[2], np.tile(hold[2][0], (len(hold[2]), 1)))  # it stays where it is
    assert np.abs(hold[2][0] - by_stamp[-2][2][0]).max() < 0.05  # where the arm was commanded, not elsewhere
    time.sleep(0.5)
    assert len(robot.commands) == n, "an inactive bridge commands nothing"
    wait_until(lambda: listen.phase() == EpisodeStatus.PHASE_STOPPED, 5, "STOPPED")
    assert "bridge_node deactivated" in listen.estatus[-1].message
    refused = listen.command(R.START, task="bottle_to_basket")
    assert not refused.accepted and "ros2 lifecycle set /bridge_node activate" in refused.message
    assert change(listen, "bridge_node", "activate")
    assert listen.command(R.START, task="bottle_to_basket").accepted
    wait_until(lambda: len(robot.commands) > n + 10, 10, "commands once active again")
    assert listen.command(R.STOP).accepted


def test_start_is_refused_with_the_policys_own_reason_when_its_checkpoint_cannot_load(ros, capsys) -> None:
    from roboalign.commands import say

    ros(broken_policy(autostart=True), bridge(), KinematicRobot([CAM]))
    listen = Listener(ros)
    wait_until(lambda: listen.estatus and listen.pstatus and listen.pstatus[-1].state == PolicyStatus.STATE_FAULT,
               15, "the bridge and the policy's FAULT")
    res = listen.command(R.START, instruction="put the ketchup in the basket")
    assert not res.accepted and listen.phase() == EpisodeStatus.PHASE_IDLE
    assert res.message.startswith("the policy cannot act: fault: configure failed: could not load the policy:")
    assert MISSING in res.message and "no chunk" not in res.message
    assert say.main(["put the ketchup in the basket"]) == 2
    out = capsys.readouterr().out
    assert f"[say] policy: onnxruntime, checkpoint {MISSING}" in out
    assert "[say] refused: the policy cannot act: fault: configure failed" in out and MISSING in out
