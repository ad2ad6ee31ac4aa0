"""The bridge's configuration, inputs and outputs: what ``roboalign.control.bridge.Bridge`` is told and says."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Any

import numpy as np

from roboalign.control.episode import Phase
from roboalign.control.teleop import MODES, JointTargets, TwistCommand
from roboalign.spec.action_space import FR3_HOME, FR3_JOINT_NAMES, JOINT_LIMITS
from roboalign.spec.tasks import SCENE_SETS
from roboalign.spec.topics import JOINT_STATES


class Command(IntEnum):
    """Operator commands, numbered like roboalign_msgs/TaskCommand."""

    START = 0
    STOP = 1
    HOME = 2
    RESET = 3
    ESTOP = 4
    RELEASE_ESTOP = 5


NEEDS_STATE = frozenset({Command.START, Command.HOME})  # commands refused until the robot's first joint state


class PolicyState(IntEnum):
    """What the policy node says of itself, numbered like roboalign_msgs/PolicyStatus."""

    UNCONFIGURED = 0  # lifecycle unconfigured or inactive (its message says which)
    LOADING = 1  # starting or configuring: loading the model
    READY = 2  # active, waiting for an instruction or for inputs
    RUNNING = 3  # active, publishing chunks
    FAULT = 4  # a configure or an inference failed (its message says why)


@dataclass(frozen=True)
class PolicyReport:
    """The policy node's newest status (roboalign_msgs/PolicyStatus): its state in its own words, what acts
    (backend, checkpoint) and when it arrived (on the bridge's clock)."""

    state: int
    message: str
    received: float
    backend: str = ""
    checkpoint: str = ""

    @property
    def state_name(self) -> str:
        try:
            return PolicyState(self.state).name.lower()
        except ValueError:
            return f"state {self.state}"


def setting(default: Any, doc: str, lo: float | None = None, hi: float | None = None,
            choices: tuple[str, ...] | None = None, runtime: bool = False) -> Any:
    """A config field with what a parameter declaration needs: description, range, choices, runtime-settable."""
    meta = {"doc": doc, "min": lo, "max": hi, "choices": choices, "runtime": runtime}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class BridgeConfig:
    """Every setting of the bridge, with its default, description and range (one definition: the ROS node
    declares its parameters from these fields)."""

    joint_names: tuple[str, ...] = setting(FR3_JOINT_NAMES, "arm joints, in the order of the action space")
    joint_limits: str = setting("fr3", "which published joint limits to enforce", choices=tuple(JOINT_LIMITS))
    control_rate_hz: float = setting(50.0, "command rate", 1.0, 1000.0)
    lookahead_steps: int = setting(2, "points per published trajectory", 1, 50)
    velocity_scale: float = setting(0.5, "fraction of the published joint velocity limits", 0.01, 1.0)
    max_joint_step: float = setting(0.05, "largest joint change per control step [rad]", 1e-4, 0.5)
    reject_margin: float = setting(0.2, "chunks further than this outside the limits are rejected", 0.0, 3.0)
    gripper_velocity: float = setting(20.0, "gripper command rate limit [1/s]", 0.1, 1000.0)
    gripper_open_value: float = setting(-1.0, "value sent for an open gripper (action -1)", -10.0, 10.0, runtime=True)
    gripper_closed_value: float = setting(1.0, "value sent for a closed gripper (action +1)", -10.0, 10.0,
                                          runtime=True)
    dry_run: bool = setting(True, "compute and check commands but publish nothing to the robot", runtime=True)
    home_first: bool = setting(True, "move to home_pose before each episode", runtime=True)
    home_pose: tuple[float, ...] = setting(FR3_HOME, "home joint positions [rad]", runtime=True)
    home_gripper: float = setting(-1.0, "gripper command at home (-1 open)", -1.0, 1.0, runtime=True)
    homing_velocity_scale: float = setting(0.25, "speed while homing, fraction of the limits", 0.01, 1.0,
                                           runtime=True)
    image_timeout_s: float = setting(0.2, "images older than this fault a running episode", 0.001, 60.0,
                                     runtime=True)
    state_timeout_s: float = setting(0.1, "joint state older than this faults a moving episode", 0.001, 60.0,
                                     runtime=True)
    start_wait_s: float = setting(2.0, "a START (HOME) sent before the first joint state and camera image (joint "
                                  "state) waits this long for them before it is refused (at start-up the "
                                  "subscriptions may still be matching)", 0.0, 60.0, runtime=True)
    policy_status_timeout_s: float = setting(3.0, "a policy status older than this counts as no policy (policy_node "
                                             "publishes one at its status_rate_hz)", 0.1, 600.0, runtime=True)
    policy_wait_s: float = setting(20.0, "a START sent while the policy is starting or loading its model waits this "
                                   "long for it to become active, then is refused with what the policy reports",
                                   0.0, 600.0, runtime=True)
    chunk_timeout_s: float = setting(1.0, "no accepted chunk for this long faults a running episode", 0.001, 60.0,
                                     runtime=True)
    sim_reset_timeout_s: float = setting(30.0, "a sim reset not done in this time faults the episode", 0.1, 600.0,
                                         runtime=True)
    max_episode_s: float = setting(60.0, "episode time limit", 0.1, 3600.0, runtime=True)
    ensemble_decay: float = setting(4.0, "temporal ensembling: weight exp(-decay * age) [1/s]", -100.0, 100.0)
    blend_time_s: float = setting(0.1, "chunk blend-in / blend-out time", 0.0, 5.0)
    max_chunk_age_s: float = setting(0.5, "chunks whose observation is older are dropped", 0.001, 10.0)
    max_chunk_future_s: float = setting(0.05, "chunks stamped further ahead of this node's clock are dropped",
                                        0.0, 10.0)
    row_offset_steps: float = setting(1.0, "row k of a chunk is the target for stamp + (k + offset) * dt", 0.0, 10.0)
    execution: str = setting("ensemble", "how a new chunk takes over: blended with the others in time (ensemble), "
                             "alone from its arrival (switch), or alone from its first row after the committed "
                             "prefix it was computed with (rtc, real-time chunking)", choices=("ensemble", "switch", "rtc"))
    rtc_soft_horizon: int = setting(0, "rtc: soft-mask horizon s; > 0 refuses chunks whose prefix d breaks "
                                    "d <= s <= H - d (0: unchecked)", 0, 64)
    max_start_steps: float = setting(10.0, "a chunk whose first commanded row is further than this many "
                                     "max_joint_step from the command it continues is refused", 1.0, 1000.0)
    task_domain: str = setting("any", "match free text to real tasks, sim tasks or both",
                               choices=("real", "sim", "any"), runtime=True)
    instruction_mode: str = setting("canonical", "send the task's canonical instruction or the operator's words",
                                    choices=("canonical", "verbatim"), runtime=True)
    scenes: str = setting("targets", "sim scene set whose instructions the bridge sends (the sim robot's scenes)",
                          choices=tuple(SCENE_SETS))
    mode: str = setting("policy", "where a running episode's targets come from (taken at START): policy chunks, "
                        "teleop (end-effector twist, differential IK), leader (joint targets), kinesthetic (the arm "
                        "is moved by hand: nothing is sent, the episode is only recorded)", choices=MODES, runtime=True)
    teleop_timeout_s: float = setting(0.25, "teleop twist / leader targets older than this fault a teleop episode",
                                      0.001, 60.0, runtime=True)
    teleop_max_linear_speed: float = setting(0.15, "teleop end-effector speed limit [m/s]", 0.001, 1.0)
    teleop_max_angular_speed: float = setting(0.6, "teleop end-effector rotation speed limit [rad/s]", 0.001, 3.0)
    # set by the adapter from its wiring, not parameters of their own
    watch_cameras: bool = False  # camera arrivals are watched for staleness while running
    policy_status_topic: str = ""  # the policy's PolicyStatus; non-empty: a policy START needs an active policy
    node_name: str = "bridge_node"  # named in messages only
    joint_states_topic: str = JOINT_STATES  # named in messages only
    sim_reset_service: str = ""  # named in messages only

    def __post_init__(self) -> None:
        object.__setattr__(self, "joint_names", tuple(self.joint_names))
        object.__setattr__(self, "home_pose", tuple(float(v) for v in self.home_pose))
        why = self.problem()
        if why:
            raise ValueError(why)

    def problem(self) -> str | None:
        """Why this configuration is unsafe or inconsistent, or None."""
        if self.joint_limits not in JOINT_LIMITS:
            return f"joint_limits {self.joint_limits!r} unknown; valid: {sorted(JOINT_LIMITS)}"
        if len(self.home_pose) != len(self.joint_names) or not np.all(np.isfinite(self.home_pose)):
            return f"home_pose must be {len(self.joint_names)} finite values, got {list(self.home_pose)}"
        lim = JOINT_LIMITS[self.joint_limits]
        bad = lim.violations(np.asarray(self.home_pose))
        if bad:
            return f"home_pose is outside the {lim.name} joint limits at joints {[j + 1 for j in bad]}"
        for f in fields(self):  # every setting with choices (task_domain, instruction_mode, scenes, mode)
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                return f"{f.name} {getattr(self, f.name)!r}: valid are {', '.join(choices)}"
        return None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> BridgeConfig:
        """The config of the known keys of ``values`` (e.g. a node's parameters); other keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    @property
    def period(self) -> float:
        return 1.0 / self.control_rate_hz


@dataclass(frozen=True)
class Request:
    """An operator command: a task by name and/or free text; ``init_state`` (sim only, -1: the sim's choice)."""

    command: int
    task: str = ""
    instruction: str = ""
    init_state: int = -1


@dataclass(frozen=True)
class SimReset:
    """Ask the simulator to reset its scene to ``task`` (and LIBERO init state ``init_state``, -1: its choice)."""

    task: str
    init_state: int = -1


@dataclass(frozen=True)
class SimResetResult:
    """The simulator's answer to a ``SimReset``."""

    accepted: bool
    message: str = ""
    init_state: int = -1


@dataclass(frozen=True)
class Inputs:
    """What arrived since the last tick. joint_state: (7,) arm joints in ``joint_names`` order."""

    joint_state: np.ndarray | None = None
    joint_state_time: float = 0.0
    joint_state_error: str | None = None  # a joint state message that could not be read, and why
    image_times: tuple[float, ...] = ()  # arrival times of camera frames
    sim_reset: SimResetResult | None = None
    teleop: TwistCommand | None = None  # the newest teleop twist
    leader: JointTargets | None = None  # the newest leader-arm targets


@dataclass(frozen=True)
class Event:
    """Something the adapter reports. kind: log | phase | episode_begin | episode_end."""

    kind: str
    level: str  # info | warning | error
    text: str
    outcome: str = ""  # episode_end: the phase name (success, fault, ...)
    throttle_s: float = 0.0  # log no more often than this


@dataclass
class Output:
    """What to do after an entry point. arm: (K, 7) joint targets for now + k * period, k = 1..K."""

    arm: np.ndarray | None = None
    gripper: float | None = None  # in the gripper controller's units
    send: bool = False  # False in dry run: record, do not publish
    instruction: str | None = None  # publish to the policy ("" stops it)
    sim_reset: SimReset | None = None
    events: list[Event] = field(default_factory=list)

    @property
    def phase_changed(self) -> bool:
        return any(e.kind == "phase" for e in self.events)


@dataclass
class Reply:
    """The answer to a ``Request`` plus what to do."""

    accepted: bool
    message: str
    task: str = ""
    instruction: str = ""
    output: Output = field(default_factory=Output)


@dataclass(frozen=True)
class Status:
    """The episode status (roboalign_msgs/EpisodeStatus)."""

    phase: Phase
    task: str
    instruction: str
    episode_index: int
    steps: int
    elapsed_s: float
    dry_run: bool
    message: str
    init_state: int


# settings a running node may change (the rest shape the controller and are fixed at start)
RUNTIME_SETTINGS = frozenset(f.name for f in fields(BridgeConfig) if f.metadata.get("runtime"))
