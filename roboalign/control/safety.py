"""Safety filter between the policy and the robot: every joint command passes through here.

Guarantees, for any input (NaN, inf, huge values, wrong shape):
- the command is finite and inside the joint position limits;
- it differs from the previous command by at most ``min(max_step, max_velocity * dt)`` per joint
  (when the previous command was inside the limits, which the filter itself ensures);
- a non-finite target never moves the robot: the previous command is held and the reason is returned.

Whole chunks are checked before they are accepted (``check_chunk``): a chunk with a non-finite value or a
target far outside the limits is rejected with a message naming the row and column; targets slightly
outside the limits are clamped by ``command``. ``check_start`` refuses a chunk whose first commanded row lies
more than ``max_start_steps`` control steps (at ``max_step``) from the command it would continue: a far but
in-range chunk would otherwise be driven to at the rate limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from roboalign.spec.action_space import ActionSpace


@dataclass(frozen=True)
class SafetyLimits:
    """Per-dimension limits of the commanded vector (arm joints, then the gripper).

    lower/upper: position limits (rad for joints, the action space's units for the gripper).
    max_velocity: units per second. max_step: largest change in one control step.
    reject_margin: a chunk target further than this outside [lower, upper] rejects the whole chunk.
    max_start_steps: a chunk whose first commanded row is further than ``max_start_steps * max_step`` from the
    command it continues is refused (``inf`` turns the check off).
    """

    names: tuple[str, ...]
    lower: np.ndarray  # (D,)
    upper: np.ndarray  # (D,)
    max_velocity: np.ndarray  # (D,)
    max_step: np.ndarray  # (D,)
    reject_margin: float = 0.2
    max_start_steps: float = 10.0

    def __post_init__(self) -> None:
        d = len(self.names)
        for key in ("lower", "upper", "max_velocity", "max_step"):
            arr = np.asarray(getattr(self, key), dtype=np.float64).reshape(-1)
            if arr.shape != (d,):
                raise ValueError(f"SafetyLimits.{key} has {arr.size} values but there are {d} names {self.names}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"SafetyLimits.{key} must be finite, got {arr.tolist()}")
            arr.setflags(write=False)
            object.__setattr__(self, key, arr)
        bad = [n for n, lo, hi in zip(self.names, self.lower, self.upper, strict=True) if not lo < hi]
        if bad:
            raise ValueError(f"SafetyLimits: lower must be < upper for {bad}")
        for key in ("max_velocity", "max_step"):
            if np.any(getattr(self, key) <= 0):
                raise ValueError(f"SafetyLimits.{key} must be > 0 for every dimension, got {getattr(self, key)}")
        if not (np.isfinite(self.reject_margin) and self.reject_margin >= 0):
            raise ValueError(f"SafetyLimits.reject_margin must be >= 0, got {self.reject_margin}")
        if not self.max_start_steps > 0:  # inf allowed: no start check
            raise ValueError(f"SafetyLimits.max_start_steps must be > 0 (inf: no check), got {self.max_start_steps}")

    @property
    def dim(self) -> int:
        return len(self.names)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SafetyLimits:
        """From a dict with keys names, lower, upper, max_velocity, max_step (lists), reject_margin and
        max_start_steps."""
        required = ("names", "lower", "upper", "max_velocity", "max_step")
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"safety limits are missing {missing}; required keys: {list(required)}")
        return cls(tuple(d["names"]), *(np.asarray(d[k], float) for k in required[1:]),
                   reject_margin=float(d.get("reject_margin", 0.2)),
                   max_start_steps=float(d.get("max_start_steps", 10.0)))

    @classmethod
    def from_action_space(cls, space: ActionSpace, max_joint_step: float = 0.05, gripper_velocity: float = 20.0,
                          gripper_step: float = 2.0, velocity_scale: float = 1.0,
                          reject_margin: float = 0.2, max_start_steps: float = 10.0) -> SafetyLimits:
        """Limits for an absolute joint-position space: its joint limits, then the gripper's [low, high].

        ``velocity_scale`` (0, 1] scales the published joint velocity limits (e.g. 0.5 for first bring-up).
        """
        if space.kind != "absolute" or space.joint_limits is None:
            raise ValueError(f"safety limits need an absolute joint-position action space with joint limits; "
                             f"{space.name!r} is {space.kind} (the bridge cannot execute it)")
        if not 0 < velocity_scale <= 1:
            raise ValueError(f"velocity_scale must be in (0, 1], got {velocity_scale}")
        jl, g = space.joint_limits, space.gripper_index
        lower, upper = np.array(space.low, float), np.array(space.high, float)
        vel, step = np.full(space.dim, float(gripper_velocity)), np.full(space.dim, float(gripper_step))
        arm = space.arm_indices
        lower[arm], upper[arm] = jl.lower, jl.upper
        vel[arm], step[arm] = np.asarray(jl.velocity) * velocity_scale, max_joint_step
        lower[g], upper[g] = min(space.low[g], space.high[g]), max(space.low[g], space.high[g])
        return cls(space.names, lower, upper, vel, step, reject_margin=reject_margin, max_start_steps=max_start_steps)

    def scaled(self, velocity_scale: float) -> SafetyLimits:
        """The same limits with velocities and steps scaled (e.g. 0.2 for slow homing)."""
        if not 0 < velocity_scale <= 1:
            raise ValueError(f"velocity_scale must be in (0, 1], got {velocity_scale}")
        return SafetyLimits(self.names, self.lower, self.upper, self.max_velocity * velocity_scale,
                            self.max_step * velocity_scale, self.reject_margin, self.max_start_steps)


class SafetyFilter:
    """Clamp, rate-limit and sanity-check commands against ``SafetyLimits``."""

    def __init__(self, limits: SafetyLimits) -> None:
        self.limits = limits

    def check_chunk(self, actions: np.ndarray) -> str | None:
        """Why the chunk ``actions`` (T, D) must be rejected, or None when it is acceptable."""
        a = np.asarray(actions)
        lim = self.limits
        if a.ndim != 2 or a.shape[1] != lim.dim or a.shape[0] == 0:
            return f"chunk shape {a.shape} does not match (T>0, {lim.dim}) for {lim.names}"
        if not np.issubdtype(a.dtype, np.number):
            return f"chunk dtype {a.dtype} is not numeric"
        a = a.astype(np.float64, copy=False)
        bad = ~np.isfinite(a)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            return f"chunk has {int(bad.sum())} non-finite values (first: row {r}, {lim.names[c]} = {a[r, c]})"
        over = np.maximum(a - lim.upper, lim.lower - a)  # (T, D) > 0 outside the limits
        far = over > lim.reject_margin
        if far.any():
            r, c = np.argwhere(far)[0]
            return (f"chunk row {r}: {lim.names[c]} = {a[r, c]:.4g} is more than {lim.reject_margin} outside "
                    f"its limits [{lim.lower[c]:.4g}, {lim.upper[c]:.4g}]")
        return None

    def check_start(self, first: np.ndarray, reference: np.ndarray) -> str | None:
        """Why a chunk whose first commanded row is ``first`` (D,) may not continue from ``reference`` (D,)."""
        lim = self.limits
        bound = lim.max_start_steps * lim.max_step  # (D,)
        gap = np.abs(self.clamp(first) - self.clamp(reference))
        far = gap > bound
        if not far.any():
            return None
        c = int(np.argmax(np.where(far, gap / bound, 0.0)))
        return (f"{lim.names[c]} would jump {gap[c]:.4g} from {reference[c]:.4g} to {first[c]:.4g}, more than "
                f"max_start_steps={lim.max_start_steps:g} steps of {lim.max_step[c]:.4g}; home the robot near the "
                "policy's start or raise max_start_steps")

    def clamp(self, position: np.ndarray) -> np.ndarray:
        """``position`` clipped into the position limits (finite input only; ``command`` checks that)."""
        return np.clip(np.asarray(position, np.float64), self.limits.lower, self.limits.upper)

    def command(self, target: np.ndarray, previous: np.ndarray, dt: float) -> tuple[np.ndarray, str | None]:
        """The safe command for ``target`` given the ``previous`` command, ``dt`` seconds later.

        Returns (command (D,), fault reason or None). On a fault the command is ``previous`` (clamped):
        hold position.
        """
        lim = self.limits
        prev = np.asarray(previous, np.float64).reshape(-1)
        if prev.shape != (lim.dim,) or not np.all(np.isfinite(prev)):
            raise ValueError(f"previous command must be {lim.dim} finite values, got {prev}")
        prev = self.clamp(prev)
        tgt = np.asarray(target, np.float64).reshape(-1)
        if tgt.shape != (lim.dim,):
            return prev, f"target has {tgt.size} values, expected {lim.dim} ({', '.join(lim.names)})"
        if not np.all(np.isfinite(tgt)):
            c = int(np.flatnonzero(~np.isfinite(tgt))[0])
            return prev, f"non-finite target for {lim.names[c]} ({tgt[c]}); holding"
        if not (np.isfinite(dt) and dt > 0):
            return prev, f"invalid control interval dt={dt}; holding"
        step = np.minimum(lim.max_step, lim.max_velocity * dt)  # (D,)
        out = prev + np.clip(self.clamp(tgt) - prev, -step, step)
        return self.clamp(out), None
