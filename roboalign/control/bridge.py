"""The ROS-free bridge: operator commands, the episode state machine, watchdogs and safe chunk execution.

The ROS node (``roboalign_policy.bridge_node``) only converts messages. Everything it decides lives here, on the
caller's clock (``now`` in seconds: ROS time, sim time or a test's counter):

    command(Request, now) -> Reply          operator commands (START, STOP, HOME, RESET, ESTOP, RELEASE_ESTOP)
    tick(now, Inputs) -> Output             one control step: newest joint state, camera arrivals, sim reset
    offer_chunk(space, actions, ...) -> str | None      a policy chunk (None: accepted or not running)
    estop(reason, now) / fault(reason, now) -> Output   hold at once
    success(now)                            the sim's success predicate turned true
    policy_status(PolicyReport)             what the policy node says of itself (a policy START needs it active)
    set_active(active, now) -> Output       lifecycle: inactive holds the robot and commands nothing

Every entry point returns what the adapter must do (an ``Output``): the command to publish (or, in dry run,
only to record), the instruction for the policy, a sim reset to request, and events (phase changes, log
lines, the start and end of an episode for the recorder). Commands always come from
``ArmController`` (limits, per-step change, velocity), so whatever chunks arrive, nothing unsafe leaves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from roboalign.control.bridge_io import (  # noqa: F401  (re-exported: the bridge's whole interface in one import)
    NEEDS_STATE,
    RUNTIME_SETTINGS,
    BridgeConfig,
    Command,
    Event,
    Inputs,
    Output,
    PolicyReport,
    PolicyState,
    Reply,
    Request,
    SimReset,
    SimResetResult,
    Status,
    setting,
)
from roboalign.control.chunk_executor import ExecutorConfig
from roboalign.control.controller import ArmController, Tick
from roboalign.control.episode import EpisodeMachine, Phase, TransitionError
from roboalign.control.safety import SafetyLimits
from roboalign.control.teleop import JointTargets, TwistCommand, TwistFollower, leader_target
from roboalign.control.watchdog import Watchdog
from roboalign.spec.action_space import ACTION_SPACES, JOINT_LIMITS, make_joint_position
from roboalign.spec.tasks import TaskError, TaskSet, sim_task_set


def to_joint_order(action_space: str, actions: np.ndarray, dim: int = 8) -> np.ndarray:
    """(T, D) chunk columns of ``action_space`` reordered to [arm joints, gripper]; absolute joint spaces only."""
    space = ACTION_SPACES.get(action_space)
    if space is None or space.kind != "absolute" or space.dim != dim:
        raise ValueError(f"the bridge executes joint_position chunks ({dim} values); got action "
                         f"space {action_space!r}: export a joint-position policy or add IK for it")
    a = np.asarray(actions, np.float64)
    if a.ndim != 2 or a.shape[1] != space.dim:
        raise ValueError(f"chunk has shape {a.shape}, action space {space.name} needs (T, {space.dim})")
    return a[:, [*space.arm_indices, space.gripper_index]]


@dataclass
class _PendingReset:
    requested_at: float
    answered_at: float | None = None




class Bridge:
    """The bridge's logic; one instance per robot. Not thread-safe: the adapter serialises calls."""

    def __init__(self, config: BridgeConfig | None = None, sim_ready: Callable[[], bool] | None = None,
                 tasks: TaskSet | None = None) -> None:
        """``sim_ready``: None for a real robot; for a simulator, whether its reset service answers now.
        ``tasks``: default, the four tasks on ``config.scenes``."""
        self.config = c = config or BridgeConfig()
        self.tasks = tasks if tasks is not None else sim_task_set(c.scenes)
        self._sim_ready = sim_ready
        self.space = make_joint_position(c.joint_names, JOINT_LIMITS[c.joint_limits])
        self.limits = SafetyLimits.from_action_space(
            self.space, max_joint_step=c.max_joint_step, gripper_velocity=c.gripper_velocity,
            velocity_scale=c.velocity_scale, reject_margin=c.reject_margin, max_start_steps=c.max_start_steps)
        self.period = c.period
        self.ctrl = ArmController(self.limits, self.period, ExecutorConfig(
            ensemble_decay=c.ensemble_decay, blend_time=c.blend_time_s, max_chunk_age=c.max_chunk_age_s,
            max_future=c.max_chunk_future_s, row_offset=c.row_offset_steps, execution=c.execution,
            rtc_soft_horizon=c.rtc_soft_horizon), lookahead=c.lookahead_steps)
        self.machine = EpisodeMachine(max_duration=c.max_episode_s, home_first=c.home_first)
        self.watchdog = Watchdog(self._timeouts(c))
        self.counts = {"published": 0, "dry_run": 0, "chunks_rejected": 0, "bad_state": 0, "faults": 0}
        self.last_rejection = ""
        self.rejected_in_a_row = 0  # chunks rejected since the last accepted one (or since the episode armed)
        self.init_state = -1  # the sim's init state of the current episode's scene (-1: none / not yet)
        self._state: np.ndarray | None = None  # (7,) last measured arm joints
        self._state_time = -1e18
        self._success = False
        self._reset: _PendingReset | None = None
        self._last_phase = self.machine.phase
        self.episode_mode = c.mode  # the mode of the current episode (taken at START)
        self._teleop: TwistCommand | None = None
        self._leader: JointTargets | None = None
        self._follower: TwistFollower | None = None  # built on first use (pinocchio)
        self._policy: PolicyReport | None = None  # the policy node's newest status
        self.active = True  # lifecycle: an inactive bridge arms nothing and sends nothing

    @staticmethod
    def _timeouts(c: BridgeConfig) -> dict[str, float]:
        return {"image": c.image_timeout_s, "state": c.state_timeout_s, "chunk": c.chunk_timeout_s,
                "teleop": c.teleop_timeout_s, "leader": c.teleop_timeout_s}

    @property
    def has_sim(self) -> bool:
        return self._sim_ready is not None

    @property
    def phase(self) -> Phase:
        return self.machine.phase

    @property
    def has_state(self) -> bool:
        return self._state is not None

    def ready_for(self, command: int, now: float | None = None) -> bool:
        """Whether ``command`` has what it needs: a joint state (START, HOME), when the cameras are watched a
        first image (START) and, with ``now`` and a watched policy, a policy that is not still starting."""
        return self.wait_s(command, now) == 0.0

    def wait_s(self, command: int, now: float | None = None) -> float:
        """How long ``command`` may wait for what it lacks now (0: nothing to wait for; it is carried out or
        refused with the reason): the inputs ``start_wait_s``, a policy still starting ``policy_wait_s``."""
        if command not in NEEDS_STATE:
            return 0.0
        if not self.has_state or (command == Command.START and not self._seen_images()):
            return self.config.start_wait_s
        if command == Command.START and now is not None and self._needs_policy():
            problem = self.policy_problem(now)
            if problem is not None and problem[1]:
                return self.config.policy_wait_s
        return 0.0

    def _seen_images(self) -> bool:
        return not self.config.watch_cameras or self.watchdog.age("image", 0.0) is not None

    # ------------------------------------------------------------------ the policy and the lifecycle
    def policy_status(self, report: PolicyReport) -> None:
        """The policy node's newest status (``received`` on this bridge's clock)."""
        self._policy = report

    @property
    def policy(self) -> PolicyReport | None:
        return self._policy

    def _needs_policy(self) -> bool:
        return bool(self.config.policy_status_topic) and self.config.mode == "policy"

    def policy_problem(self, now: float) -> tuple[str, bool] | None:
        """Why the policy cannot act now, in its own words, and whether waiting may help (it is starting or
        loading); None when it is active (READY or RUNNING) or no policy is watched."""
        topic, p = self.config.policy_status_topic, self._policy
        if not topic:
            return None
        if p is None:
            return f"no policy status on {topic}: is policy_node running?", True
        age = now - p.received
        if age > self.config.policy_status_timeout_s:
            return (f"no policy status on {topic} for {age:.1f} s (its last: {p.state_name}: {p.message}): "
                    "is policy_node running?", True)
        if p.state == PolicyState.LOADING:
            return f"the policy is not active yet: {p.state_name}: {p.message}", True
        if p.state in (PolicyState.READY, PolicyState.RUNNING):
            return None
        return f"the policy cannot act: {p.state_name}: {p.message}", False

    def _require_policy(self, now: float) -> None:
        if not self._needs_policy():
            return
        problem = self.policy_problem(now)
        if problem is not None:
            waited = f" (waited {self.config.policy_wait_s:g} s)" if problem[1] else ""
            raise TransitionError(problem[0] + waited)

    def _require_active(self, what: str) -> None:
        if not self.active:
            name = self.config.node_name
            raise TransitionError(f"cannot {what}: {name} is inactive (lifecycle); activate it: "
                                  f"ros2 lifecycle set /{name} activate")

    def set_active(self, active: bool, now: float) -> Output:
        """Lifecycle activate / deactivate. Deactivating stops a moving episode, holds the arm where it is
        commanded (the hold is in the output, to be sent at once) and then commands nothing until activated."""
        out = Output()
        if not active and self.active:
            reason = f"{self.config.node_name} deactivated: holding position"
            if self.machine.phase.moving:
                self.machine.stop(reason)
            if self.ctrl.last_command is not None:
                self._emit(self.ctrl.hold(now, reason), out)
            out.events.append(Event("log", "warning", reason))
        self.active = active
        return self._after(now, out)

    def reconfigure(self, **changes: Any) -> None:
        """Apply runtime settings (``RUNTIME_SETTINGS``); raises ValueError naming a fixed or invalid one."""
        fixed = sorted(set(changes) - RUNTIME_SETTINGS)
        if fixed:
            raise ValueError(f"{fixed} cannot change while the bridge runs; runtime settings: "
                             f"{sorted(RUNTIME_SETTINGS)}")
        self.config = c = replace(self.config, **changes)
        self.machine.max_duration, self.machine.home_first = c.max_episode_s, c.home_first
        for name, timeout in self._timeouts(c).items():
            self.watchdog.set_timeout(name, timeout)

    # ------------------------------------------------------------------ operator commands
    def command(self, req: Request, now: float) -> Reply:
        """Carry out an operator command; a refused one changes nothing and says why."""
        out = Output()
        try:
            reply = self._command(req, now, out)
        except (TransitionError, TaskError) as e:
            reply = Reply(False, str(e))
        reply.output = self._after(now, out)
        return reply

    def _command(self, req: Request, now: float, out: Output) -> Reply:
        handlers = {Command.START: self._cmd_start, Command.STOP: self._cmd_stop, Command.HOME: self._cmd_home,
                    Command.RESET: self._cmd_reset, Command.ESTOP: self._cmd_estop,
                    Command.RELEASE_ESTOP: self._cmd_release}
        if req.command not in set(Command):
            valid = " ".join(f"{c.name}={c.value}" for c in Command)
            raise TransitionError(f"unknown command {req.command}; valid: {valid}")
        return handlers[Command(req.command)](req, now, out)

    def _cmd_start(self, req: Request, now: float, out: Output) -> Reply:
        task, instruction = self.resolve(req)
        if self._state is None:
            raise TransitionError(f"no joint state on {self.config.joint_states_topic} yet; is the robot up?")
        if not self._seen_images():
            raise TransitionError("no camera image yet (the bridge watches the cameras); are the cameras up?")
        self._require_active("start")
        self._require_policy(now)
        self._require_sim()
        self._check_init_state(req)
        self.machine.start(task, instruction, now)
        self.episode_mode, self._teleop, self._leader = self.config.mode, None, None
        self._begin_episode(now, req.init_state, out)
        return Reply(True, f"episode {self.machine.episode.index}: {self.machine.episode.message}", task,
                     instruction)

    def _cmd_stop(self, req: Request, now: float, out: Output) -> Reply:
        self.machine.stop()
        return Reply(True, self.machine.episode.message)

    def _cmd_home(self, req: Request, now: float, out: Output) -> Reply:
        if self._state is None:
            raise TransitionError("no joint state yet")
        self._require_active("go home")
        self.machine.home()
        self.ctrl.reset(self._measured(), now)
        self.watchdog.arm("state", now)
        return Reply(True, "homing")

    def _cmd_reset(self, req: Request, now: float, out: Output) -> Reply:
        self._check_init_state(req)
        self.machine.reset()
        if self._sim_ready is None:
            return Reply(True, "reset")
        task = self.resolve(req)[0] if (req.task or req.instruction) else self.machine.episode.task
        self._request_sim_reset(task, req.init_state, now, out)
        return Reply(True, "reset (scene reset requested)")

    def _cmd_estop(self, req: Request, now: float, out: Output) -> Reply:
        self._engage_estop("e-stop from the command service", now, out)
        return Reply(True, "e-stop engaged")

    def _cmd_release(self, req: Request, now: float, out: Output) -> Reply:
        self.machine.release_estop()
        return Reply(True, "e-stop released; idle")

    def _check_init_state(self, req: Request) -> None:
        if req.init_state >= 0 and self._sim_ready is None:
            raise TransitionError(f"init_state {req.init_state} needs a simulator (sim_reset_service); this bridge "
                                  "drives a real robot: send -1")

    def resolve(self, req: Request) -> tuple[str, str]:
        """(task name, instruction for the policy) of a command; raises TaskError listing the valid tasks."""
        domain = self.config.task_domain
        if req.task:
            task, obj = self.tasks.get(req.task), None
            if req.instruction.strip():  # keep the object the operator named (a real task has four)
                try:
                    m = self.tasks.match(req.instruction, domain=domain)
                    obj, domain = (m.object, m.domain) if m.task.name == task.name else (None, domain)
                except TaskError:
                    pass
        else:
            m = self.tasks.match(req.instruction, domain=domain)
            task, obj, domain = m.task, m.object, m.domain
        if self.config.instruction_mode == "verbatim" and req.instruction.strip():
            return task.name, req.instruction.strip()
        if domain == "sim" or self.config.task_domain == "sim":
            return task.name, task.sim.instruction
        return task.name, task.instruction(obj, domain="real")

    # ------------------------------------------------------------------ e-stop, faults, success
    def estop(self, reason: str, now: float) -> Output:
        """Engage the e-stop (any phase); the hold is in the output, to be sent at once."""
        out = Output()
        self._engage_estop(reason, now, out)
        return self._after(now, out)

    def release_estop(self, now: float) -> Reply:
        """Leave the e-stop for idle; refused (with the reason) when not in e-stop."""
        return self.command(Request(Command.RELEASE_ESTOP), now)

    def set_estop(self, engage: bool, reason: str, now: float) -> Reply:
        """Engage (with ``reason``) or release the e-stop, as an e-stop switch or service does."""
        if not engage:
            return self.release_estop(now)
        return Reply(True, "e-stop engaged", output=self.estop(reason, now))

    def fault(self, reason: str, now: float) -> Output:
        """Fault the episode from outside (e.g. the control loop caught an error): hold from the next tick."""
        out = Output()
        self._fault(reason, out)
        return self._after(now, out)

    def success(self, now: float) -> None:
        """The success predicate is true; only a running episode's own scene counts (not before its reset)."""
        if self.machine.phase is Phase.RUNNING and self._reset is None:
            self._success = True

    def _engage_estop(self, reason: str, now: float, out: Output) -> None:
        self.machine.estop(reason)
        out.events.append(Event("log", "error", reason))
        if self.ctrl.last_command is not None:
            self._emit(self.ctrl.hold(now, reason), out)  # hold at once, not at the next tick

    def _fault(self, reason: str, out: Output) -> None:
        if self.machine.phase not in (Phase.FAULT, Phase.ESTOP):
            self.counts["faults"] += 1
            out.events.append(Event("log", "error", f"FAULT, holding position: {reason}"))
        self.machine.fault(reason)

    # ------------------------------------------------------------------ chunks
    def offer_chunk(self, action_space: str, actions: np.ndarray, stamp: float, dt: float, now: float) -> str | None:
        """Offer a policy chunk received at ``now``; why it was rejected, or None (accepted, or not running)."""
        if self.machine.phase is not Phase.RUNNING or self.episode_mode != "policy":
            return None
        try:
            reason = self.ctrl.offer_chunk(self.to_joint_order(action_space, actions), stamp, dt, now)
        except Exception as e:  # a malformed chunk must never take the bridge down
            reason = f"malformed chunk: {e}"
        if reason:
            return self.reject_chunk(reason)
        self.rejected_in_a_row = 0
        self.watchdog.feed("chunk", now)
        return None

    def reject_chunk(self, reason: str) -> str | None:
        """Count a chunk that could not even be read (while running); returns the reason, or None if idle."""
        if self.machine.phase is not Phase.RUNNING:
            return None
        self.counts["chunks_rejected"] += 1
        self.rejected_in_a_row += 1
        self.last_rejection = reason
        return reason

    def to_joint_order(self, action_space: str, actions: np.ndarray) -> np.ndarray:
        """(T, D) chunk columns reordered to [7 arm joints, gripper]; only absolute joint spaces run here."""
        return to_joint_order(action_space, actions, self.space.dim)

    # ------------------------------------------------------------------ the control tick
    def tick(self, now: float, inputs: Inputs | None = None) -> Output:
        """One control step at ``now``: take the inputs, check the watchdogs, compute the command."""
        out = Output()
        self._take(inputs or Inputs(), now, out)
        if not self.active:  # inactive (lifecycle): inputs are kept, nothing is commanded
            return self._after(now, out)
        tick = self._step(now, out)
        if tick is not None:
            self._emit(tick, out)
        return self._after(now, out)

    def _take(self, inputs: Inputs, now: float, out: Output) -> None:
        if inputs.joint_state_error is not None:
            self.counts["bad_state"] += 1
            out.events.append(Event("log", "warning", f"ignoring joint state: {inputs.joint_state_error}",
                                    throttle_s=2.0))
        if inputs.joint_state is not None:
            self._state, self._state_time = np.asarray(inputs.joint_state, np.float64), inputs.joint_state_time
            self.watchdog.feed("state", inputs.joint_state_time)
        for t in inputs.image_times:
            self.watchdog.feed("image", t)
        for name, cmd in (("teleop", inputs.teleop), ("leader", inputs.leader)):
            if cmd is not None:
                setattr(self, f"_{name}", cmd)
                self.watchdog.feed(name, cmd.stamp)
        if inputs.sim_reset is not None and self._reset is not None and self._reset.answered_at is None:
            self._answer_sim_reset(inputs.sim_reset, now, out)

    def _step(self, now: float, out: Output) -> Tick | None:
        m = self.machine
        if self.ctrl.last_command is None:
            if self._state is None:
                return None
            self.ctrl.reset(self._measured(), now)
        if m.phase.moving:
            problems = self.watchdog.check(now)
            if problems:
                self._fault("; ".join(self._with_policy_cause(p, now) for p in problems), out)
        if self._reset is not None:
            self._wait_for_sim_reset(now, out)
            return None
        if m.phase is Phase.HOMING:
            return self._home(now, out)
        if m.phase is Phase.RUNNING:
            return self._run(now, out)
        if m.phase in (Phase.FAULT, Phase.ESTOP) and self.episode_mode != "kinesthetic":
            return self.ctrl.hold(now, m.episode.message)
        return None

    def _with_policy_cause(self, problem: str, now: float) -> str:
        """A chunk watchdog's text plus its cause: every chunk since the last good one was rejected (and why), or
        what the policy says of itself when it cannot act."""
        if "chunk" not in problem.split(":")[0]:
            return problem
        if self.rejected_in_a_row:
            return f"{problem}; the {self.rejected_in_a_row} chunk(s) received were rejected, last: {self.last_rejection}"
        why = self.policy_problem(now)
        return problem if why is None else f"{problem}; {why[0]}"

    def _home(self, now: float, out: Output) -> Tick:
        home = np.r_[self.config.home_pose, self.config.home_gripper]
        tick = self.ctrl.home(home, now, self.config.homing_velocity_scale)
        if tick.status == "homed" and self.machine.homed(now) is Phase.RUNNING:
            self._start_running(now, out)
        return tick

    def _run(self, now: float, out: Output) -> Tick:
        m = self.machine
        if m.step(now) is not Phase.RUNNING:
            return self.ctrl.hold(now)
        if self._success:
            m.succeed("success predicate true")
            return self.ctrl.hold(now)
        tick = self._track(now, out)
        if tick is not None and tick.status == "fault":
            self._fault(tick.reason or "command fault", out)
        return tick

    def _track(self, now: float, out: Output) -> Tick | None:
        """This tick's command from the episode's target source (None: kinesthetic, nothing is sent)."""
        mode = self.episode_mode
        if mode == "policy":
            return self.ctrl.track(now)
        if mode == "kinesthetic":  # the hand moves the arm: follow the measurement so a later command starts there
            self.ctrl.reset(self._measured(), now)
            return None
        if (self._teleop if mode == "teleop" else self._leader) is None:  # nothing from the device yet
            return Tick(self.ctrl.hold(now).plan, "starved", f"waiting for the {mode} input")
        try:
            target = self._teleop_target() if mode == "teleop" else leader_target(self._leader)
        except ValueError as e:  # a malformed teleop message: hold, say why
            out.events.append(Event("log", "warning", f"teleop input ignored: {e}", throttle_s=2.0))
            return self.ctrl.hold(now)
        return self.ctrl.follow(target, now)

    def _teleop_target(self) -> np.ndarray:
        if self._follower is None:
            c = self.config
            self._follower = TwistFollower(np.asarray(c.home_pose), c.teleop_max_linear_speed,
                                           c.teleop_max_angular_speed)
        last = self.ctrl.last_command
        arm = self._follower.target(last[:-1], self._teleop.twist, self.period)
        return np.r_[arm, float(np.clip(self._teleop.gripper, -1.0, 1.0))]

    def _emit(self, tick: Tick, out: Output) -> None:
        """Put the commands of one tick into ``out`` (to publish, or only to record in dry run)."""
        c = self.config
        g = float(tick.command[-1])  # -1 open .. +1 closed -> controller units
        out.arm = tick.plan[:, :-1].copy()  # (K, 7)
        out.gripper = c.gripper_open_value + (g + 1.0) * 0.5 * (c.gripper_closed_value - c.gripper_open_value)
        out.send = not c.dry_run
        self.counts["published" if out.send else "dry_run"] += 1

    # ------------------------------------------------------------------ episodes
    def _measured(self) -> np.ndarray:
        last = self.ctrl.last_command
        grip = self.config.home_gripper if last is None else last[-1]
        return np.r_[self._state, grip]

    def _begin_episode(self, now: float, init_state: int, out: Output) -> None:
        self._success = False
        if self._sim_ready is not None:
            self._request_sim_reset(self.machine.episode.task, init_state, now, out)
        else:
            self.ctrl.reset(self._measured(), now)
        self.watchdog.arm("state", now)
        out.events.append(Event("episode_begin", "info", f"episode {self.machine.episode.index} begins"))
        if self.machine.phase is Phase.RUNNING and self._reset is None:
            self._start_running(now, out)

    def _require_sim(self) -> None:
        if self._sim_ready is not None and not self._sim_ready():
            raise TransitionError(f"sim reset service {self.config.sim_reset_service} is not available")

    def _request_sim_reset(self, task: str, init_state: int, now: float, out: Output) -> None:
        self._require_sim()
        out.sim_reset = SimReset(task, init_state)
        self._reset = _PendingReset(requested_at=now)
        self.init_state = -1

    def _answer_sim_reset(self, result: SimResetResult, now: float, out: Output) -> None:
        if not result.accepted:
            self._reset = None
            self._fault(f"sim reset failed: {result.message or 'no response'}", out)
            return
        self._reset.answered_at = now  # then wait for a joint state that arrives after this tick
        self.init_state = int(result.init_state)

    def _wait_for_sim_reset(self, now: float, out: Output) -> None:
        """Running starts once the sim answered and a joint state from after its reset arrived."""
        r = self._reset
        if now - r.requested_at > self.config.sim_reset_timeout_s:
            self._reset = None
            what = "did not answer" if r.answered_at is None else "sent no joint state after resetting"
            self._fault(f"sim reset {what} within {self.config.sim_reset_timeout_s:g} s", out)
            return
        if r.answered_at is None or self._state_time <= r.answered_at:  # wait for a post-reset joint state
            return
        self._reset = None
        self.ctrl.reset(self._measured(), now)
        if self.machine.phase is Phase.RUNNING:  # no homing: the episode clock starts now
            self.machine.episode.started_at = now
            self._start_running(now, out)

    def _start_running(self, now: float, out: Output) -> None:
        self._success = False
        self.ctrl.executor.clear()
        source = {"policy": "chunk", "teleop": "teleop", "leader": "leader"}.get(self.episode_mode)
        if source:
            self.watchdog.arm(source, now, forget=True)
        self.rejected_in_a_row = 0
        if self.config.watch_cameras:
            self.watchdog.arm("image", now)
        if self.episode_mode == "policy":  # the policy runs only in policy episodes
            out.instruction = self.machine.episode.instruction

    def _after(self, now: float, out: Output) -> Output:
        """Side effects of a phase change: stop the policy, disarm watchdogs, end the recorded episode."""
        phase = self.machine.phase
        if phase is self._last_phase:
            return out
        prev, self._last_phase = self._last_phase, phase
        ep = self.machine.episode
        out.events.append(Event("phase", "info", f"episode {ep.index}: {prev.name} -> {phase.name}: {ep.message}"))
        if prev is Phase.RUNNING:
            out.instruction = "" if self.episode_mode == "policy" else None  # the policy stops
            for name in ("chunk", "image", "teleop", "leader"):
                self.watchdog.disarm(name)
        if not phase.moving:
            self.watchdog.disarm("state")
        if phase.terminal or phase is Phase.ESTOP:
            out.events.append(Event("episode_end", "info", ep.message, outcome=phase.name.lower()))
        return out

    # ------------------------------------------------------------------ status and diagnostics
    def status(self, now: float) -> Status:
        ep = self.machine.episode
        return Status(self.machine.phase, ep.task, ep.instruction, ep.index, ep.steps, float(ep.elapsed(now)),
                      bool(self.config.dry_run), ep.message, self.init_state)

    def safety_report(self) -> tuple[str, str, dict[str, Any]]:
        """(level ok|warn|error, message, values) of the safety layer."""
        phase = self.machine.phase
        values = dict(self.counts, phase=phase.name, dry_run=self.config.dry_run, active=self.active,
                      chunks_accepted=self.ctrl.chunks_accepted, last_rejection=self.last_rejection)
        if phase in (Phase.FAULT, Phase.ESTOP):
            return "error", f"{phase.name}: holding position: {self.machine.episode.message}", values
        if not self.active:
            return "warn", f"{self.config.node_name} inactive (lifecycle): commanding nothing", values
        if self.counts["chunks_rejected"] or self.counts["bad_state"]:
            return "warn", f"rejected inputs (last: {self.last_rejection or 'bad joint state'})", values
        return "ok", "dry run: nothing sent" if self.config.dry_run else "ok", values

    def episode_report(self) -> tuple[str, str, dict[str, Any]]:
        ep = self.machine.episode
        return "ok", self.machine.phase.name.lower(), {"episode": ep.index, "task": ep.task, "steps": ep.steps}
