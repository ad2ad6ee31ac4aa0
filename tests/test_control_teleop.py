"""Teleoperation through the bridge core: FR3 kinematics (pinocchio), twist -> joint targets, leader arms and
kinesthetic teaching, all behind the same limits, watchdogs and e-stop as policy chunks. No DDS."""

from __future__ import annotations

import numpy as np
import pytest

from roboalign.control.bridge import Command
from roboalign.control.episode import Phase
from roboalign.control.kinematics import FR3Kinematics
from roboalign.control.teleop import JointTargets, TwistCommand, TwistFollower
from roboalign.spec.action_space import FR3_HOME, FR3_LIMITS
from tests.test_control_bridge import DT, START, Rig

KIN = FR3Kinematics()


def test_fr3_forward_kinematics_matches_the_published_ready_pose_and_zero_pose() -> None:
    p = KIN.fk(np.array(FR3_HOME))  # Franka's "ready" pose: hand TCP 0.307 m ahead, 0.487 m up, pointing down
    np.testing.assert_allclose(p.position, [0.3070, 0.0, 0.4869], atol=5e-4)
    np.testing.assert_allclose(p.rotation[:, 2], [0, 0, -1], atol=1e-3)
    flange = FR3Kinematics(tcp=False).fk(np.zeros(7)).position  # straight up: 0.333 + 0.316 + 0.384 - 0.107
    np.testing.assert_allclose(flange, [0.088, 0.0, 0.926], atol=1e-9)


def test_the_jacobian_is_the_derivative_of_the_forward_kinematics() -> None:
    q = np.array(FR3_HOME) + np.array([0.1, -0.2, 0.3, 0.2, -0.1, 0.1, 0.2])
    J, eps = KIN.jacobian(q), 1e-6
    for j in range(7):
        dq = np.zeros(7)
        dq[j] = eps
        np.testing.assert_allclose((KIN.fk(q + dq).position - KIN.fk(q - dq).position) / (2 * eps), J[:3, j], atol=1e-6)


def test_twist_following_moves_the_tcp_along_the_twist_and_clips_the_speed() -> None:
    f = TwistFollower(np.array(FR3_HOME), max_linear=0.15)
    q, p0 = np.array(FR3_HOME), KIN.fk(np.array(FR3_HOME))
    for _ in range(50):  # 1 s at 0.1 m/s along -y, no rotation
        q = f.target(q, [0, -0.1, 0, 0, 0, 0], DT)
    p1 = KIN.fk(q)
    np.testing.assert_allclose(p1.position - p0.position, [0, -0.1, 0], atol=1e-3)
    np.testing.assert_allclose(p1.rotation, p0.rotation, atol=5e-3)
    assert np.linalg.norm(f.clip([3.0, 4.0, 0, 0, 0, 2.0])[:3]) == pytest.approx(0.15)
    with pytest.raises(ValueError, match="finite"):
        f.clip([np.nan, 0, 0, 0, 0, 0])


def teleop_rig(mode: str, **cfg) -> Rig:
    rig = Rig(mode=mode, **cfg)
    rig.step()
    assert rig.command(Command.START, task="bottle_to_basket").accepted
    assert rig.phase is Phase.RUNNING
    return rig


def twist(rig: Rig, v, gripper: float = -1.0) -> TwistCommand:
    return TwistCommand(np.asarray(v, float), gripper, rig.now + DT)


def test_a_teleop_episode_follows_the_twist_within_the_limits_and_never_starts_the_policy() -> None:
    rig = teleop_rig("teleop")
    assert all(o.instruction is None for o in rig.outputs), "the policy is not asked to run"
    p0 = KIN.fk(rig.q).position
    for k in range(50):
        rig.step(1, teleop=twist(rig, [0.0, 0.0, 0.1, 0, 0, 0], gripper=1.0 if k > 40 else -1.0))
    np.testing.assert_allclose(KIN.fk(rig.q).position - p0, [0, 0, 0.1], atol=1e-3)
    firsts = np.array([s[0] for s in rig.sent])
    assert np.abs(np.diff(firsts, axis=0)).max() <= min(0.05, 0.5 * min(FR3_LIMITS.velocity) * 3 * DT) + 1e-9
    assert rig.bridge.ctrl.last_command[-1] > -1.0, "the gripper button closes (rate-limited)"
    assert rig.chunk(START + 0.3) is None and rig.bridge.ctrl.chunks_accepted == 0  # chunks are not used
    rig.step(15)  # the teleop stream stops
    assert rig.phase is Phase.FAULT and "stale teleop" in rig.bridge.status(rig.now).message


def test_a_bad_twist_holds_and_is_reported_and_estop_holds_teleop_too() -> None:
    rig = teleop_rig("teleop")
    rig.step(5, teleop=twist(rig, [0.0, 0.1, 0.0, 0, 0, 0]))
    held = rig.q.copy()
    rig.step(3, teleop=twist(rig, [np.nan, 0, 0, 0, 0, 0]))
    assert np.array_equal(rig.q, held) and rig.phase is Phase.RUNNING
    assert any("teleop input ignored" in e.text for e in rig.events("log"))
    rig.collect(rig.bridge.estop("e-stop", rig.now))
    rig.step(5, teleop=twist(rig, [0.1, 0, 0, 0, 0, 0]))
    assert rig.phase is Phase.ESTOP and np.array_equal(rig.q, held)


def test_a_leader_arm_is_followed_rate_limited_and_clamped_to_the_limits() -> None:
    rig = teleop_rig("leader")
    goal = START + np.array([0.3, -0.2, 0.1, 0.2, 0.0, 0.1, -0.2])
    for _ in range(60):
        rig.step(1, leader=JointTargets(goal, 1.0, rig.now + DT))
    np.testing.assert_allclose(rig.q, goal, atol=1e-9)
    far = np.array(FR3_LIMITS.upper) + 0.1  # just outside: clamped, never beyond
    for _ in range(200):
        rig.step(1, leader=JointTargets(far, 1.0, rig.now + DT))
    assert np.all(rig.q <= np.array(FR3_LIMITS.upper) + 1e-12)


def test_kinesthetic_teaching_sends_nothing_and_records_the_episode() -> None:
    rig = teleop_rig("kinesthetic")
    for k in range(30):
        rig.q = START + 0.005 * k  # moved by hand
        rig.step()
    assert rig.sent == [] and rig.recorded == 0
    assert rig.events("episode_begin") and rig.phase is Phase.RUNNING
    rig.state_on = False
    rig.step(10)
    assert rig.phase is Phase.FAULT and "stale state" in rig.bridge.status(rig.now).message
    rig.step(5)
    assert rig.sent == [], "a fault in kinesthetic mode does not command the arm either"
    assert rig.events("episode_end")[-1].outcome == "fault"


def test_the_mode_is_taken_at_start_and_policy_episodes_are_unchanged() -> None:
    rig = teleop_rig("teleop")
    rig.bridge.reconfigure(mode="policy")
    assert rig.bridge.episode_mode == "teleop", "a running episode keeps its source"
    rig.command(Command.STOP)
    assert rig.command(Command.START, task="bottle_to_basket").accepted
    assert rig.bridge.episode_mode == "policy" and rig.outputs[-1].instruction


def test_before_the_first_device_message_the_arm_holds_without_error() -> None:
    for mode in ("teleop", "leader"):
        rig = teleop_rig(mode, teleop_timeout_s=0.2)
        rig.step(5)
        assert rig.phase is Phase.RUNNING and all(np.array_equal(s[0], START) for s in rig.sent)
        rig.step(10)
        assert rig.phase is Phase.FAULT and f"no {mode} message" in rig.bridge.status(rig.now).message
