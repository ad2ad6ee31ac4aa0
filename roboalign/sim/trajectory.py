"""Joint-trajectory following as a ros2_control JointTrajectoryController does it, for the simulated robot.

A trajectory is (stamp, times (K,), points (K, D)): point k is to be reached ``times[k]`` seconds after
``stamp``. Before the first point the position moves linearly from the last commanded position (at the
stamp) to that point; after the last point it holds the last point. A newer trajectory replaces the current
one from the position reached, like the controller's "replace on receipt" rule. The sim node calls :meth:`TrajectoryFollower.target` once per sim step with the
step's end time and sends the result to :class:`~roboalign.sim.libero_env.LiberoEnv` as joint targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def interpolate(times: np.ndarray, points: np.ndarray, start: np.ndarray, tau: float) -> np.ndarray:
    """Position at ``tau`` seconds after a trajectory's stamp: linear from ``start`` (at 0) through
    ``points`` (K, D) at ``times`` (K,); held at the last point afterwards (and at ``start`` before 0)."""
    ts = np.r_[0.0, np.asarray(times, np.float64)]  # (K+1,)
    ps = np.vstack([np.asarray(start, np.float64)[None], np.asarray(points, np.float64)])  # (K+1, D)
    if tau >= ts[-1]:
        return ps[-1].copy()
    return np.array([np.interp(tau, ts, ps[:, j]) for j in range(ps.shape[1])])


@dataclass
class _Trajectory:
    stamp: float
    times: np.ndarray  # (K,)
    points: np.ndarray  # (K, D)


class TrajectoryFollower:
    """The commanded joint position over time from a stream of joint trajectories (see module doc)."""

    def __init__(self, position: np.ndarray) -> None:
        self.reset(position)

    def reset(self, position: np.ndarray) -> None:
        """Forget any trajectory and hold ``position`` (D,)."""
        self.position = np.asarray(position, np.float64).copy()
        self._traj: _Trajectory | None = None

    @property
    def stamp(self) -> float | None:
        """Stamp of the active trajectory (None when holding)."""
        return None if self._traj is None else self._traj.stamp

    def set_trajectory(self, stamp: float, times: np.ndarray, points: np.ndarray) -> None:
        """Make (stamp, times, points) the active trajectory; refuses shapes that do not fit."""
        times, points = np.asarray(times, np.float64), np.asarray(points, np.float64)
        if points.ndim != 2 or points.shape[1] != len(self.position) or len(times) != len(points) or not len(times):
            raise ValueError(f"trajectory needs K >= 1 times (K,) and points (K, {len(self.position)}), got "
                             f"{times.shape} and {points.shape}")
        if np.any(np.diff(times) <= 0) or times[0] < 0:
            raise ValueError(f"trajectory times must start >= 0 and increase, got {times.tolist()}")
        self._traj = _Trajectory(float(stamp), times, points)

    def target(self, t: float) -> np.ndarray:
        """The commanded position at time ``t`` (advances the follower: the next segment starts from it)."""
        if self._traj is not None:
            tr = self._traj
            self.position = interpolate(tr.times, tr.points, self.position, t - tr.stamp)
        return self.position.copy()
