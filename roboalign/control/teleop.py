"""Teleoperation targets for the bridge: an end-effector twist becomes joint targets by differential IK, and a
leader arm's joint targets are taken as they are; both then pass the bridge's safety layer like policy chunks.

Devices (SpaceMouse, gamepad, ``/joy``, a GELLO-style leader arm) live at the hardware boundary
(``roboalign_policy.teleop_node``); here is only what turns their messages into targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roboalign.control.kinematics import FR3Kinematics

MODES = ("policy", "teleop", "leader", "kinesthetic")  # where a running episode's targets come from


@dataclass(frozen=True)
class TwistCommand:
    """An end-effector velocity in the robot base frame: [vx, vy, vz] m/s, [wx, wy, wz] rad/s, and the
    gripper (-1 open .. +1 closed)."""

    twist: np.ndarray  # (6,)
    gripper: float
    stamp: float  # arrival time


@dataclass(frozen=True)
class JointTargets:
    """A leader arm's joint positions (7,) [rad] and gripper (-1 open .. +1 closed)."""

    positions: np.ndarray
    gripper: float
    stamp: float


def _finite(values: np.ndarray, size: int, what: str) -> np.ndarray:
    v = np.asarray(values, np.float64).reshape(-1)
    if v.shape != (size,) or not np.all(np.isfinite(v)):
        raise ValueError(f"{what} must be {size} finite values, got {v.tolist()}")
    return v


class TwistFollower:
    """Twist -> next joint target: speeds clipped to the configured maxima, one damped IK step per tick, a weak
    pull towards the home pose in the null space (keeps the elbow where the operator expects it)."""

    def __init__(self, home: np.ndarray, max_linear: float = 0.15, max_angular: float = 0.6,
                 damping: float = 0.05, nullspace_gain: float = 0.5, kinematics: FR3Kinematics | None = None) -> None:
        if not (max_linear > 0 and max_angular > 0):
            raise ValueError(f"teleop speed limits must be > 0, got {max_linear} m/s, {max_angular} rad/s")
        self.kin = kinematics or FR3Kinematics()
        self.home = _finite(home, self.kin.nq, "home pose")
        self.max_linear, self.max_angular = max_linear, max_angular
        self.damping, self.nullspace_gain = damping, nullspace_gain

    def clip(self, twist: np.ndarray) -> np.ndarray:
        """The twist with its linear and angular parts scaled down to the speed limits (direction kept)."""
        v = _finite(twist, 6, "twist").copy()
        for part, limit in ((slice(0, 3), self.max_linear), (slice(3, 6), self.max_angular)):
            norm = float(np.linalg.norm(v[part]))
            if norm > limit:
                v[part] *= limit / norm
        return v

    def target(self, q: np.ndarray, twist: np.ndarray, dt: float) -> np.ndarray:
        """Joint target (7,) ``dt`` s after ``q`` following ``twist``."""
        return self.kin.ik_step(q, self.clip(twist), dt, self.damping, self.home, self.nullspace_gain)


def leader_target(cmd: JointTargets) -> np.ndarray:
    """[7 joints, gripper] of a leader arm's message, checked."""
    return np.r_[_finite(cmd.positions, 7, "leader joint targets"), float(np.clip(cmd.gripper, -1.0, 1.0))]
