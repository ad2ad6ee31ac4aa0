"""The ROS-free bridge core (roboalign.control.bridge), on a test clock with a perfect robot: every safety path.

Each fault reason (stale image / joint state / chunk, no chunk at all, a refused or silent sim reset, a tick
error), e-stop and release, dry run, homing, the episode ends (success, timeout, stop), bad inputs, task
resolution and runtime reconfiguration. No DDS: milliseconds per test.
"""

from __future__ import annotations

import numpy as np
import pytest

from roboalign.control.bridge import (
    Bridge,
    BridgeConfig,
    Command,
    Inputs,
    PolicyReport,
    PolicyState,
    Request,
    SimResetResult,
)
from roboalign.control.episode import Phase
from roboalign.spec.action_space import FR3_HOME, FR3_LIMITS

DT = 0.02
START = np.array(FR3_HOME)


class Rig:
    """A bridge, a clock and a robot that reaches every command it is sent; cameras publish each tick."""

    def __init__(self, sim: bool = False, cameras: bool = True, **cfg) -> None:
        base = {"dry_run": False, "home_first": False, "watch_cameras": cameras, "image_timeout_s": 0.1,
                "state_timeout_s": 0.1, "chunk_timeout_s": 0.5}
        self.sim_up = True
        self.bridge = Bridge(BridgeConfig(**{**base, **cfg}), (lambda: self.sim_up) if sim else None)
        self.now, self.q = 100.0, START.copy()
        self.cameras_on, self.state_on = cameras, True
        self.sent: list[np.ndarray] = []  # (K, 7) per published command
        self.recorded = 0  # commands computed (published or, in dry run, only recorded)
        self.outputs = []

    def step(self, n: int = 1, **inputs) -> None:
        for _ in range(n):
            self.now += DT
            state = {"joint_state": self.q.copy(), "joint_state_time": self.now} if self.state_on else {}
            images = (self.now,) if self.cameras_on else ()
            self.collect(self.bridge.tick(self.now, Inputs(**state, image_times=images, **inputs)))

    def collect(self, out) -> None:
        self.outputs.append(out)
        if out.arm is not None:
            self.recorded += 1
            if out.send:
                self.sent.append(out.arm)
                self.q = out.arm[0].copy()

    def command(self, command: Command, **kw):
        reply = self.bridge.command(Request(command, **kw), self.now)
        self.collect(reply.output)
        return reply

    def chunk(self, target: np.ndarray, rows: int = 20, gripper: float = 1.0, stamp: float | None = None) -> str | None:
        a = np.tile(np.r_[target, gripper], (rows, 1))
        return self.bridge.offer_chunk("joint_position", a, self.now if stamp is None else stamp, 0.05, self.now)

    def events(self, kind: str) -> list:
        return [e for o in self.outputs for e in o.events if e.kind == kind]

    @property
    def phase(self) -> Phase:
        return self.bridge.phase


def running(**cfg) -> Rig:
    rig = Rig(**cfg)
    rig.step()
    assert rig.command(Command.START, task="bottle_to_basket").accepted
    assert rig.phase is Phase.RUNNING
    return rig


def test_an_episode_tracks_chunks_within_the_limits_and_stops_the_policy_at_the_end() -> None:
    rig = running()
    assert rig.outputs[-1].instruction == "put the ketchup in the basket"
    goal = START + 0.3
    for _ in range(60):
        assert rig.chunk(goal) is None
        rig.step()
    assert np.abs(rig.q - goal).max() < 1e-6, "a perfect robot reaches the target"
    steps = np.abs(np.diff(np.array([s[0] for s in rig.sent]), axis=0))
    assert steps.max() <= min(0.05, 0.5 * min(FR3_LIMITS.velocity) * 3 * DT) + 1e-9  # rate limited
    reply = rig.command(Command.STOP)
    assert reply.accepted and rig.phase is Phase.STOPPED
    assert reply.output.instruction == "" and rig.events("episode_end")[-1].outcome == "stopped"


@pytest.mark.parametrize("stream, cut, reason", [
    ("image", "cameras_on", "stale image"), ("state", "state_on", "stale state")])
def test_a_stale_input_faults_and_holds(stream, cut, reason) -> None:
    rig = running()
    rig.chunk(START + 0.3)
    rig.step(5)
    setattr(rig, cut, False)
    rig.step(3)
    assert rig.phase is Phase.RUNNING  # within the 0.1 s timeout
    rig.step(5)
    assert rig.phase is Phase.FAULT and reason in rig.bridge.status(rig.now).message
    held = rig.sent[-1][0]
    rig.chunk(START + 0.5)
    rig.step(10)
    assert all(np.array_equal(s[0], held) for s in rig.sent[-10:]), "a fault holds the last command"
    assert rig.bridge.counts["faults"] == 1
    assert rig.events("episode_end")[-1].outcome == "fault"


def test_no_chunk_at_all_and_chunks_that_stop_coming_fault_the_episode() -> None:
    rig = running()
    rig.step(24)
    assert rig.phase is Phase.RUNNING
    rig.step(2)
    assert rig.phase is Phase.FAULT and "no chunk message" in rig.bridge.status(rig.now).message
    rig = running()
    rig.chunk(START + 0.1)
    rig.step(30)
    assert rig.phase is Phase.FAULT and "stale chunk" in rig.bridge.status(rig.now).message


def test_a_missing_chunk_fault_names_the_rejections_behind_it() -> None:
    rig = running()
    far = START.copy()
    far[5] += 2.5  # inside the joint limits, far from the current command
    for _ in range(3):
        assert "too far" in rig.chunk(far)
        rig.step(10)
    rig.step(2)
    message = rig.bridge.status(rig.now).message
    assert rig.phase is Phase.FAULT and "no chunk message" in message
    assert "the 3 chunk(s) received were rejected, last: chunk starts too far" in message
    rig = running()  # a new episode starts from no rejections
    rig.step(26)
    assert "rejected" not in rig.bridge.status(rig.now).message


def test_bad_chunks_are_rejected_with_a_reason_and_the_episode_keeps_running() -> None:
    rig = running()
    bad = np.tile(np.r_[START, 1.0], (5, 1))
    bad[2, 3] = np.nan
    assert "non-finite" in rig.bridge.offer_chunk("joint_position", bad, rig.now, 0.05, rig.now)
    assert "outside" in rig.chunk(START + 5.0)
    assert "stale chunk" in rig.chunk(START, stamp=rig.now - 2.0)
    assert "future" in rig.chunk(START, stamp=rig.now + 1.0)
    assert "joint_position chunks" in rig.bridge.offer_chunk("eef_delta", bad, rig.now, 0.05, rig.now)
    assert "shape" in rig.bridge.offer_chunk("joint_position", bad[:, :5], rig.now, 0.05, rig.now)
    assert rig.bridge.counts["chunks_rejected"] == 6
    assert rig.bridge.safety_report()[0] == "warn"
    assert rig.chunk(START + 0.1) is None and rig.phase is Phase.RUNNING
    rig.bridge.command(Request(Command.STOP), rig.now)
    assert rig.chunk(START + 0.1) is None and rig.bridge.counts["chunks_rejected"] == 6  # not running: ignored


def test_chunk_columns_are_reordered_from_the_action_space_to_arm_then_gripper() -> None:
    rig = running()
    from roboalign.spec.action_space import ACTION_SPACES

    space = ACTION_SPACES["joint_position"]
    row = np.zeros(space.dim)
    row[list(space.arm_indices)], row[space.gripper_index] = START + 0.01, 0.5
    out = rig.bridge.to_joint_order("joint_position", row[None])
    np.testing.assert_allclose(out[0], np.r_[START + 0.01, 0.5])


def test_estop_holds_at_once_refuses_start_and_release_returns_to_idle() -> None:
    rig = running()
    rig.chunk(START + 0.3)
    rig.step(5)
    out = rig.bridge.estop("e-stop on /roboalign/estop", rig.now)
    rig.collect(out)
    assert rig.phase is Phase.ESTOP and out.arm is not None and out.send, "the hold leaves with the e-stop"
    assert np.array_equal(out.arm[0], rig.sent[-2][0]) and out.instruction == ""
    rig.step(5)
    assert all(np.array_equal(s[0], out.arm[0]) for s in rig.sent[-5:])
    refused = rig.command(Command.START, task="bottle_to_basket")
    assert not refused.accepted and "release the e-stop first" in refused.message
    assert rig.bridge.release_estop(rig.now).accepted and rig.phase is Phase.IDLE
    assert not rig.bridge.release_estop(rig.now).accepted  # not in e-stop: refused with the reason
    rig.collect(rig.bridge.fault("control tick failed", rig.now))
    assert rig.phase is Phase.FAULT and rig.command(Command.RESET).accepted and rig.phase is Phase.IDLE
    assert rig.command(Command.ESTOP).accepted and rig.phase is Phase.ESTOP
    assert rig.bridge.fault("x", rig.now) and rig.phase is Phase.ESTOP  # a fault never leaves the e-stop


def test_dry_run_computes_and_records_but_sends_nothing() -> None:
    rig = running(dry_run=True)
    rig.chunk(START + 0.3)
    rig.step(10)
    assert rig.sent == [] and rig.recorded >= 10 and rig.bridge.counts["dry_run"] >= 10
    assert rig.bridge.status(rig.now).dry_run and "dry run" in rig.bridge.safety_report()[1]
    rig.bridge.reconfigure(dry_run=False)
    rig.step(2)
    assert len(rig.sent) == 2


def test_homing_moves_slowly_to_the_home_pose_then_runs() -> None:
    rig = Rig(home_first=True, homing_velocity_scale=0.2, chunk_timeout_s=30.0)
    rig.q = START + 0.2
    rig.step()
    assert rig.command(Command.START, instruction="put the tomato sauce in the bowl").task == "can_to_bowl"
    assert rig.phase is Phase.HOMING
    rig.step(400)
    assert rig.phase is Phase.RUNNING and np.abs(rig.q - START).max() < 1e-3
    firsts = np.array([s[0] for s in rig.sent])
    slow = 0.2 * np.minimum(0.05, 0.5 * np.array(FR3_LIMITS.velocity) * DT)
    assert np.all(np.abs(np.diff(firsts, axis=0)) <= slow + 1e-9)
    rig.command(Command.STOP)
    rig.q = START - 0.1
    rig.step()
    assert rig.command(Command.HOME).accepted and rig.phase is Phase.HOMING
    rig.step(400)
    assert rig.phase is Phase.IDLE and np.abs(rig.q - START).max() < 1e-3  # HOME alone ends idle


def test_success_and_timeout_end_the_episode() -> None:
    rig = running()
    rig.chunk(START + 0.1)
    rig.step()
    rig.bridge.success(rig.now)
    rig.step()
    assert rig.phase is Phase.SUCCESS and rig.events("episode_end")[-1].outcome == "success"
    rig = running(max_episode_s=0.2, chunk_timeout_s=5.0)
    rig.step(11)
    assert rig.phase is Phase.TIMEOUT


def test_commands_need_a_joint_state_a_valid_task_and_a_simulator_for_init_states() -> None:
    rig = Rig()
    refused = rig.command(Command.START, task="bottle_to_basket")
    assert not refused.accepted and "no joint state on /joint_states" in refused.message
    rig.step()
    assert "valid tasks" in rig.command(Command.START, instruction="make me a sandwich").message
    assert "needs a simulator" in rig.command(Command.START, task="bottle_to_basket", init_state=3).message
    assert "unknown command 9" in rig.command(9).message
    assert rig.phase is Phase.IDLE


def test_start_waits_for_a_first_camera_image_when_the_cameras_are_watched() -> None:
    rig = Rig()
    rig.cameras_on = False  # the joint states are there, the camera subscriptions still matching
    rig.step()
    assert rig.bridge.ready_for(Command.HOME) and not rig.bridge.ready_for(Command.START)
    refused = rig.command(Command.START, task="bottle_to_basket")
    assert not refused.accepted and "no camera image yet" in refused.message and rig.phase is Phase.IDLE
    rig.cameras_on = True
    rig.step()
    assert rig.bridge.ready_for(Command.START) and rig.command(Command.START, task="bottle_to_basket").accepted
    blind = Rig(cameras=False)  # cameras not watched: a joint state is all START needs
    assert not blind.bridge.ready_for(Command.START) and blind.bridge.ready_for(Command.STOP)
    blind.step()
    assert blind.bridge.ready_for(Command.START)


def test_a_bad_joint_state_is_counted_and_reported_and_changes_nothing() -> None:
    rig = running()
    rig.step(1, joint_state_error="JointState has non-finite positions for ['fr3_joint3']")
    assert rig.bridge.counts["bad_state"] == 1 and rig.phase is Phase.RUNNING
    assert any("non-finite" in e.text for e in rig.events("log"))


def test_the_sim_reset_carries_the_init_state_and_running_waits_for_a_fresh_joint_state() -> None:
    rig = Rig(sim=True, task_domain="sim")
    rig.step()
    reply = rig.command(Command.START, task="shelf_to_tray", init_state=12)
    assert reply.output.sim_reset.task == "shelf_to_tray" and reply.output.sim_reset.init_state == 12
    rig.step(3)
    assert rig.outputs[-1].instruction is None, "the policy waits for the reset"
    rig.step(1, sim_reset=SimResetResult(True, "reset", 12))
    rig.step(1)
    assert rig.bridge.init_state == 12 and rig.outputs[-1].instruction, "running after a post-reset joint state"
    assert rig.bridge.status(rig.now).init_state == 12


def test_a_refused_or_silent_sim_reset_faults_the_episode_with_the_reason() -> None:
    rig = Rig(sim=True, cameras=False)
    rig.step()
    rig.command(Command.START, task="shelf_to_tray", init_state=60)
    rig.step(1, sim_reset=SimResetResult(False, "init_state 60 is out of range: 50 init states"))
    assert rig.phase is Phase.FAULT and "out of range" in rig.bridge.status(rig.now).message
    rig = Rig(sim=True, cameras=False, sim_reset_timeout_s=0.5, state_timeout_s=5.0)
    rig.step()
    rig.command(Command.START, task="shelf_to_tray")
    rig.step(24)
    assert rig.phase is Phase.RUNNING
    rig.step(2)
    assert rig.phase is Phase.FAULT and "sim reset did not answer within 0.5 s" in rig.bridge.status(rig.now).message
    rig.sim_up = False
    assert "not available" in rig.command(Command.START, task="shelf_to_tray").message


def test_instructions_follow_the_task_domain_and_mode() -> None:
    rig = Rig()
    rig.step()
    assert rig.bridge.resolve(Request(0, instruction="put the bbq sauce in the basket"))[1] == \
        "put the bbq sauce in the basket"
    rig.bridge.reconfigure(instruction_mode="verbatim")
    assert rig.bridge.resolve(Request(0, task="bottle_to_basket", instruction="ketchup, basket, go"))[1] == \
        "ketchup, basket, go"
    rig.bridge.reconfigure(task_domain="sim", instruction_mode="canonical")
    name, text = rig.bridge.resolve(Request(0, task="bottle_to_basket"))
    assert name == "bottle_to_basket" and text == rig.bridge.tasks.get(name).sim.instruction


def test_a_sim_bridge_sends_the_instruction_of_its_scene_set() -> None:
    """``scenes`` is the sim robot's scene set: on the LIBERO-Object stand-ins, can_to_bowl's sim instruction is the
    stand-in's (into the basket), not the real-target scene's (into the bowl)."""
    from roboalign.spec.tasks import SCENE_SETS

    for scenes, tasks in SCENE_SETS.items():
        rig = Rig(sim=True, scenes=scenes, task_domain="sim")
        name, text = rig.bridge.resolve(Request(0, task="can_to_bowl"))
        assert name == "can_to_bowl" and text == tasks.get(name).sim.instruction, scenes
    stand_in, target = (SCENE_SETS[k].get("can_to_bowl").sim.instruction for k in ("libero_object", "targets"))
    assert stand_in != target and "basket" in stand_in, (stand_in, target)
    with pytest.raises(ValueError, match="scenes"):
        BridgeConfig(scenes="moon")


def test_runtime_settings_apply_and_fixed_or_unsafe_ones_are_refused() -> None:
    rig = running(chunk_timeout_s=5.0)
    rig.bridge.reconfigure(chunk_timeout_s=0.1)
    rig.step(7)
    assert rig.phase is Phase.FAULT, "the new chunk timeout applies to the running episode"
    with pytest.raises(ValueError, match="cannot change while the bridge runs"):
        rig.bridge.reconfigure(control_rate_hz=10.0)
    with pytest.raises(ValueError, match="outside the fr3 joint limits"):
        rig.bridge.reconfigure(home_pose=(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="task_domain"):
        BridgeConfig(task_domain="moon")


# ---------------------------------------------------------------------------------------------- the policy's state
POLICY_TOPIC = "/roboalign/policy_status"
LOAD_FAILED = "configure failed: could not load the policy: checkpoint folder /models/export not found"


def watched(**cfg) -> Rig:
    """A rig whose bridge needs an active policy for START (as bridge_node with policy_status_topic set)."""
    rig = Rig(policy_status_topic=POLICY_TOPIC, policy_status_timeout_s=3.0, policy_wait_s=20.0, **cfg)
    rig.step()
    return rig


def report(rig: Rig, state: PolicyState, message: str, age: float = 0.0) -> None:
    rig.bridge.policy_status(PolicyReport(int(state), message, rig.now - age, "onnxruntime", "/models/export"))


def test_start_is_refused_while_the_policy_reports_a_fault_quoting_its_reason() -> None:
    rig = watched()
    report(rig, PolicyState.FAULT, LOAD_FAILED)
    assert rig.bridge.wait_s(Command.START, rig.now) == 0.0  # nothing to wait for: refuse at once
    refused = rig.command(Command.START, task="bottle_to_basket")
    assert not refused.accepted and rig.phase is Phase.IDLE and rig.sent == []
    assert refused.message == f"the policy cannot act: fault: {LOAD_FAILED}"
    report(rig, PolicyState.UNCONFIGURED, "inactive: activate it: ros2 lifecycle set /policy_node activate")
    refused = rig.command(Command.START, task="bottle_to_basket")
    assert not refused.accepted and "unconfigured: inactive: activate it" in refused.message
    report(rig, PolicyState.READY, "ready; waiting for an instruction")
    assert rig.bridge.ready_for(Command.START, rig.now)
    assert rig.command(Command.START, task="bottle_to_basket").accepted and rig.phase is Phase.RUNNING


def test_start_waits_for_a_policy_that_is_starting_then_names_what_it_reported() -> None:
    rig = watched()
    assert rig.bridge.wait_s(Command.START, rig.now) == 20.0  # no status yet: policy_wait_s
    refused = rig.command(Command.START, task="bottle_to_basket")
    assert not refused.accepted and f"no policy status on {POLICY_TOPIC}: is policy_node running?" in refused.message
    report(rig, PolicyState.LOADING, "loading backend onnxruntime")
    assert rig.bridge.wait_s(Command.START, rig.now) == 20.0 and not rig.bridge.ready_for(Command.START, rig.now)
    refused = rig.command(Command.START, task="bottle_to_basket")
    assert "not active yet: loading: loading backend onnxruntime (waited 20 s)" in refused.message
    report(rig, PolicyState.RUNNING, "running", age=5.0)  # its last status is older than policy_status_timeout_s
    refused = rig.command(Command.START, task="bottle_to_basket")
    assert not refused.accepted and "no policy status on /roboalign/policy_status for 5.0 s" in refused.message
    # the inputs come first: without a joint state, START waits start_wait_s for it and says so
    fresh = Rig(policy_status_topic=POLICY_TOPIC, start_wait_s=2.0)
    assert fresh.bridge.wait_s(Command.START, fresh.now) == 2.0
    assert "no joint state" in fresh.command(Command.START, task="bottle_to_basket").message


def test_teleop_episodes_and_bridges_without_a_watched_policy_do_not_need_one() -> None:
    rig = watched(mode="leader")
    report(rig, PolicyState.FAULT, LOAD_FAILED)
    assert rig.command(Command.START, task="bottle_to_basket").accepted
    plain = Rig()  # policy_status_topic "": chunks come from elsewhere (a test, a relay)
    plain.step()
    assert plain.bridge.policy_problem(plain.now) is None
    assert plain.command(Command.START, task="bottle_to_basket").accepted


def test_a_missing_chunk_fault_names_the_policys_own_reason() -> None:
    rig = watched()
    report(rig, PolicyState.READY, "ready")
    assert rig.command(Command.START, task="bottle_to_basket").accepted
    report(rig, PolicyState.FAULT, "inference failed: CUDA out of memory")
    rig.step(30)  # 0.6 s > chunk_timeout_s 0.5 without a chunk
    assert rig.phase is Phase.FAULT
    msg = rig.bridge.machine.episode.message
    assert msg.startswith("no chunk message for") and "the policy cannot act: fault: inference failed: CUDA" in msg


def test_deactivate_holds_a_moving_arm_and_commands_nothing_until_activated() -> None:
    rig = running()
    for _ in range(10):
        rig.chunk(START + 0.3)
        rig.step()
    assert np.abs(rig.q - START).max() > 0.01, "the arm moves"
    out = rig.bridge.set_active(False, rig.now)
    rig.collect(out)
    assert out.arm is not None and out.send  # the hold leaves at once
    np.testing.assert_allclose(out.arm, np.tile(out.arm[0], (len(out.arm), 1)))  # every point: the same pose
    assert rig.phase is Phase.STOPPED and "bridge_node deactivated" in rig.bridge.machine.episode.message
    assert out.instruction == ""  # the policy stops
    held, n = rig.q.copy(), len(rig.sent)
    rig.chunk(START + 0.3)
    rig.step(20)
    assert len(rig.sent) == n and np.array_equal(rig.q, held)  # nothing commanded while inactive
    level, message, values = rig.bridge.safety_report()
    assert (level, message, values["active"]) == ("warn", "bridge_node inactive (lifecycle): commanding nothing", False)
    refused = rig.command(Command.START, task="bottle_to_basket")
    assert not refused.accepted and "bridge_node is inactive" in refused.message
    assert "ros2 lifecycle set /bridge_node activate" in refused.message
    assert not rig.command(Command.HOME).accepted
    assert rig.command(Command.STOP).accepted and rig.command(Command.ESTOP).accepted  # stopping is always allowed
    rig.command(Command.RELEASE_ESTOP)
    rig.collect(rig.bridge.set_active(True, rig.now))
    rig.step()
    assert rig.command(Command.START, task="bottle_to_basket").accepted and rig.phase is Phase.RUNNING
