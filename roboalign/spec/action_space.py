"""The one definition of the action spaces a policy can emit, and the Franka joint limits.

Two spaces, both 8-dimensional, both with the gripper last and the LIBERO gripper convention
(``-1`` = open, ``+1`` = close):

``eef_delta``
    LIBERO/robosuite ``OSC_POSE``: 6 end-effector deltas ``(dx, dy, dz, droll, dpitch, dyaw)`` in the
    robot base frame, normalised to [-1, 1]; the controller scales them by 0.05 m (position) and
    0.5 rad (axis-angle rotation) per control step (20 Hz), then the gripper command.
``joint_position``
    7 *absolute* joint position targets in radians (what the real Franka bridge sends to a
    ``JointTrajectoryController``), then the gripper command. Joint names default to the Franka
    Research 3 ``fr3_joint1..7`` + ``gripper`` and can be renamed with :meth:`ActionSpace.with_joint_names`.
    In simulation (a Panda, same kinematic structure) the env converts targets to robosuite's
    ``JOINT_POSITION`` deltas (see ``roboalign.sim.libero_env``).

The joint limits (position, velocity) are used by the safety layer: :class:`JointLimits` with the
published FR3 values (``FR3_LIMITS``) and the Panda values of the simulated arm (``PANDA_LIMITS``).
An ``ActionSpace`` is saved beside each checkpoint (``to_dict``/``from_dict``/``save``/``load``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from roboalign.spec.loader import build, read_spec_file, spec_path

GRIPPER_OPEN = -1.0
GRIPPER_CLOSE = 1.0
# LIBERO / robosuite control frequency: the rate of an action chunk's rows (ActionSpace.dt), sim and real alike.
# Not the robot command rate: the real-robot bridge interpolates between rows and commands at its own
# control_rate_hz (50 Hz, roboalign.control.bridge.BridgeConfig).
CONTROL_HZ = 20.0


@dataclass(frozen=True)
class JointLimits:
    """Per-joint position limits [rad] and velocity limits [rad/s] of a 7-DoF Franka arm."""

    name: str
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    velocity: tuple[float, ...]

    def __post_init__(self) -> None:
        n = len(self.lower)
        if not (len(self.upper) == len(self.velocity) == n):
            raise ValueError(f"JointLimits {self.name!r}: lower/upper/velocity lengths differ")
        for i, (lo, hi, v) in enumerate(zip(self.lower, self.upper, self.velocity, strict=True)):
            if not lo < hi:
                raise ValueError(f"JointLimits {self.name!r}: joint {i} lower {lo} >= upper {hi}")
            if v <= 0:
                raise ValueError(f"JointLimits {self.name!r}: joint {i} velocity limit {v} must be > 0")

    def clip(self, q: np.ndarray) -> np.ndarray:
        """Clamp joint positions (..., 7) into the position limits."""
        return np.clip(q, np.asarray(self.lower), np.asarray(self.upper))

    def violations(self, q: np.ndarray) -> list[int]:
        """Indices of joints of ``q`` (7,) outside the position limits."""
        q = np.asarray(q, dtype=np.float64)
        return [i for i in range(len(self.lower)) if not self.lower[i] <= q[i] <= self.upper[i]]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "lower": list(self.lower), "upper": list(self.upper), "velocity": list(self.velocity)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "JointLimits") -> JointLimits:
        return build(cls, d, source)


# Franka Research 3 (libfranka "limits for Franka Research 3", datasheet values).
FR3_LIMITS = JointLimits(
    name="fr3",
    lower=(-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159),
    upper=(2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159),
    velocity=(2.62, 2.62, 2.62, 2.62, 5.26, 4.18, 5.26),
)
# Franka Emika Panda (the arm robosuite/LIBERO simulate).
PANDA_LIMITS = JointLimits(
    name="panda",
    lower=(-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973),
    upper=(2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973),
    velocity=(2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61),
)
JOINT_LIMITS = {lim.name: lim for lim in (FR3_LIMITS, PANDA_LIMITS)}

FR3_JOINT_NAMES = tuple(f"fr3_joint{i}" for i in range(1, 8))
# The FR3 "ready" pose [rad] (franka_ros2 / libfranka examples): the bridge's home pose and the start of tests.
FR3_HOME = (0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785)
# The proprioceptive state that goes with these spaces (Observation.state): 7 joint positions [rad] +
# gripper opening [m] (distance between the fingers).
STATE_NAMES = FR3_JOINT_NAMES + ("gripper_width",)


@dataclass(frozen=True)
class ActionSpace:
    """What one action row means: names per dimension, which one is the gripper, units and limits.

    name: registry key (``eef_delta`` | ``joint_position``).
    names: one name per dimension, gripper included.
    gripper_index: index of the gripper command in a row.
    kind: ``delta`` (relative to the current pose) or ``absolute`` (targets).
    units: per dimension, e.g. ``normalized``, ``rad``, ``command``.
    low / high: per-dimension bounds of valid values (actions outside are clipped by the executor).
    joint_limits: arm limits the safety layer enforces on absolute joint targets (None for eef_delta).
    dt: seconds between consecutive rows of an action chunk.
    """

    name: str
    names: tuple[str, ...]
    gripper_index: int
    kind: str
    units: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    joint_limits: JointLimits | None = None
    dt: float = 1.0 / CONTROL_HZ
    gripper_open: float = GRIPPER_OPEN
    gripper_close: float = GRIPPER_CLOSE
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        d = len(self.names)
        if len(set(self.names)) != d:
            raise ValueError(f"ActionSpace {self.name!r}: duplicate dimension names {self.names}")
        for attr in ("units", "low", "high"):
            if len(getattr(self, attr)) != d:
                raise ValueError(f"ActionSpace {self.name!r}: {attr} has {len(getattr(self, attr))} entries, names has {d}")
        if not 0 <= self.gripper_index < d:
            raise ValueError(f"ActionSpace {self.name!r}: gripper_index {self.gripper_index} outside 0..{d - 1}")
        if self.kind not in ("delta", "absolute"):
            raise ValueError(f"ActionSpace {self.name!r}: kind {self.kind!r}; valid: delta, absolute")
        if self.dt <= 0:
            raise ValueError(f"ActionSpace {self.name!r}: dt must be > 0, got {self.dt}")

    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    def arm_indices(self) -> list[int]:
        return [i for i in range(self.dim) if i != self.gripper_index]

    def with_joint_names(self, joint_names: tuple[str, ...] | list[str]) -> ActionSpace:
        """The same space with other arm joint names (e.g. a UR or a renamed FR3); gripper name kept."""
        joint_names = tuple(joint_names)
        if len(joint_names) != self.dim - 1:
            raise ValueError(f"{self.name}: need {self.dim - 1} joint names, got {len(joint_names)}")
        names = list(joint_names)
        names.insert(self.gripper_index, self.names[self.gripper_index])
        return replace(self, names=tuple(names))

    def validate(self, actions: np.ndarray, where: str = "actions") -> np.ndarray:
        """Check shape (..., D) and finiteness; return float32. Raises naming the first bad row."""
        a = np.asarray(actions, dtype=np.float32)
        if a.ndim == 0 or a.shape[-1] != self.dim:
            raise ValueError(f"{where}: last dimension must be {self.dim} for action space {self.name!r}, got {a.shape}")
        bad = ~np.isfinite(a).all(axis=-1)
        if bad.any():
            idx = np.argwhere(bad)[0].tolist()
            raise ValueError(f"{where}: non-finite value in row {idx} for action space {self.name!r}")
        return a

    def clip(self, actions: np.ndarray) -> np.ndarray:
        """Clip (..., D) to ``low``/``high`` (and the joint position limits for absolute joint targets)."""
        a = np.clip(self.validate(actions), np.asarray(self.low, np.float32), np.asarray(self.high, np.float32))
        return a

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "names": list(self.names),
            "gripper_index": self.gripper_index,
            "kind": self.kind,
            "units": list(self.units),
            "low": list(self.low),
            "high": list(self.high),
            "joint_limits": None if self.joint_limits is None else self.joint_limits.to_dict(),
            "dt": self.dt,
            "gripper_open": self.gripper_open,
            "gripper_close": self.gripper_close,
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "ActionSpace") -> ActionSpace:
        return build(cls, d, source)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: str | Path) -> None:
        """Write ``action_space.json`` (or the given file) beside a checkpoint."""
        p = Path(path)
        if p.is_dir():
            p = p / "action_space.json"
        p.write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> ActionSpace:
        p = spec_path(path, "action_space.json")
        return cls.from_dict(read_spec_file(p, "action space file"), source=str(p))


def make_eef_delta() -> ActionSpace:
    return ActionSpace(
        name="eef_delta",
        names=("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"),
        gripper_index=6,
        kind="delta",
        units=("normalized",) * 6 + ("command",),
        low=(-1.0,) * 7,
        high=(1.0,) * 7,
        joint_limits=None,
        description=(
            "robosuite OSC_POSE: base-frame EEF delta, [-1,1] scaled by 0.05 m / 0.5 rad per step; "
            "gripper -1 open, +1 close"
        ),
    )


def make_joint_position(
    joint_names: tuple[str, ...] = FR3_JOINT_NAMES, limits: JointLimits = FR3_LIMITS
) -> ActionSpace:
    if len(joint_names) != 7:
        raise ValueError(f"joint_position needs 7 joint names, got {len(joint_names)}")
    return ActionSpace(
        name="joint_position",
        names=tuple(joint_names) + ("gripper",),
        gripper_index=7,
        kind="absolute",
        units=("rad",) * 7 + ("command",),
        low=tuple(limits.lower) + (-1.0,),
        high=tuple(limits.upper) + (1.0,),
        joint_limits=limits,
        description="absolute joint position targets [rad] for the next control step; gripper -1 open, +1 close",
    )


eef_delta = make_eef_delta()
joint_position = make_joint_position()

ACTION_SPACES: dict[str, ActionSpace] = {s.name: s for s in (eef_delta, joint_position)}


def get_action_space(name: str) -> ActionSpace:
    """The registered action space called ``name``; raises listing the valid names."""
    try:
        return ACTION_SPACES[name]
    except KeyError:
        raise ValueError(f"unknown action space {name!r}; valid: {', '.join(ACTION_SPACES)}") from None
