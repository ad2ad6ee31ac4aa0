"""A small, real policy for bring-up and tests: move the arm in a straight joint-space line to a goal pose.

It needs no model and no privileged state, only the joint positions at the start of ``obs.state``, so
the whole ROS graph (cameras -> policy -> bridge -> robot) can be exercised on a real robot (in
``dry_run`` first) or in the simulator. Each chunk moves at most ``speed`` rad/s towards ``goal`` and
keeps the gripper command constant.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from roboalign.spec.action_space import ActionSpace, joint_position
from roboalign.spec.policy_io import ActionChunk, Observation


@dataclass
class ReachPolicy:
    """BasePolicy: chunks of ``horizon`` rows, ``dt`` apart, from the current joints towards ``goal``.

    goal: (7,) joint targets [rad]; gripper: the gripper command (-1 open, +1 close).
    """

    goal: np.ndarray
    gripper: float = -1.0
    speed: float = 0.5  # rad/s per joint
    horizon: int = 16
    action_space: ActionSpace = joint_position
    compute_s: float = 0.0  # stand-in model time: each chunk takes this long (sleeping, the GIL released, as a model)

    def __post_init__(self) -> None:
        g = np.asarray(self.goal, np.float64).reshape(-1)
        n_arm = len(self.action_space.arm_indices)
        if self.action_space.name != "joint_position" or g.shape != (n_arm,) or not np.all(np.isfinite(g)):
            raise ValueError(f"ReachPolicy needs the joint_position space and {n_arm} finite goal values, got {g}")
        if self.action_space.joint_limits is not None and self.action_space.joint_limits.violations(g):
            raise ValueError(f"ReachPolicy goal {g.tolist()} is outside the joint limits at joints "
                             f"{self.action_space.joint_limits.violations(g)}")
        if not (self.speed > 0 and self.horizon >= 1 and self.compute_s >= 0):
            raise ValueError(f"speed must be > 0, horizon >= 1 and compute_s >= 0, got {self.speed}, "
                             f"{self.horizon}, {self.compute_s}")
        self.goal = g

    def reset(self) -> None:
        """Stateless: nothing to forget."""

    def act(self, obs: Observation) -> ActionChunk:
        t0 = time.perf_counter()
        n_arm = len(self.goal)
        q = np.asarray(obs.state, np.float64).reshape(-1)[:n_arm]
        if q.shape != (n_arm,) or not np.all(np.isfinite(q)):
            raise ValueError(f"ReachPolicy: obs.state must start with {n_arm} finite joint positions, got {obs.state}")
        dt = self.action_space.dt
        k = np.arange(1, self.horizon + 1)[:, None]  # (T, 1)
        step = np.clip(self.goal - q, -self.speed * dt, self.speed * dt)  # (7,) per-row step, capped
        remaining = np.abs(self.goal - q)
        arm = q + np.sign(step) * np.minimum(np.abs(step) * k, remaining)  # (T, 7), stops at the goal
        actions = np.empty((self.horizon, self.action_space.dim), np.float32)  # (T, D)
        actions[:, self.action_space.arm_indices] = arm
        actions[:, self.action_space.gripper_index] = self.gripper
        if self.compute_s:
            time.sleep(self.compute_s)
        ms = (time.perf_counter() - t0) * 1e3
        # row k is the target for stamp + k * dt; row 0 already one step ahead of the observed pose
        return ActionChunk(actions, self.action_space.name, self.action_space.names, dt, stamp=obs.stamp,
                           timings={"preprocess": 0.0, "model": ms, "total": ms})
