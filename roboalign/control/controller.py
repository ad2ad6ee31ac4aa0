"""Chunks in, safe commands out: the command path the bridge runs at every control tick.

    policy chunk --SafetyFilter.check_chunk--> ChunkExecutor --sample(t)--> SafetyFilter.command --> robot

Every command this class returns has passed ``SafetyFilter.command`` starting from the previous command, so
it is finite, inside the position limits and rate-limited, whatever chunks were offered. ``plan`` returns
the next few commands as well (for a JointTrajectory with look-ahead points), each filtered from the one
before it. Holding (on a fault, an e-stop or when starved) repeats the last command.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roboalign.control.chunk_executor import ChunkExecutor, ExecutorConfig
from roboalign.control.safety import SafetyFilter, SafetyLimits


@dataclass(frozen=True)
class Tick:
    """What to send now. plan: (K, D) commands for now + k * period, k = 1..K (plan[0] is the command)."""

    plan: np.ndarray
    status: str  # "tracking" | "starved" | "holding" | "homing" | "homed" | "fault"
    reason: str | None = None

    @property
    def command(self) -> np.ndarray:
        return self.plan[0]


class ArmController:
    """Safety-checked chunk execution plus hold and homing, on the caller's clock."""

    def __init__(self, limits: SafetyLimits, period: float, executor: ExecutorConfig | None = None,
                 lookahead: int = 1, max_interval_factor: float = 3.0) -> None:
        if not period > 0:
            raise ValueError(f"control period must be > 0 s, got {period}")
        if lookahead < 1:
            raise ValueError(f"lookahead must be >= 1, got {lookahead}")
        self.limits = limits
        self.safety = SafetyFilter(limits)
        self.executor = ChunkExecutor(limits.dim, executor, start_check=self.safety.check_start)
        self.period = period
        self.lookahead = lookahead
        self.max_interval = max_interval_factor * period  # a late tick may not buy a bigger step than this
        self._last: np.ndarray | None = None
        self._last_time: float | None = None
        self.chunks_accepted = 0
        self.chunks_rejected = 0

    @property
    def last_command(self) -> np.ndarray | None:
        return None if self._last is None else self._last.copy()

    def reset(self, position: np.ndarray, now: float) -> None:
        """Start from the measured ``position`` (clamped into the limits); forget all chunks."""
        pos = np.asarray(position, np.float64).reshape(-1)
        if pos.shape != (self.limits.dim,) or not np.all(np.isfinite(pos)):
            raise ValueError(f"reset position must be {self.limits.dim} finite values "
                             f"({', '.join(self.limits.names)}), got {pos.tolist()}")
        self._last = self.safety.clamp(pos)
        self._last_time = now
        self.executor.clear()

    def offer_chunk(self, actions: np.ndarray, stamp: float, dt: float, now: float,
                    prefix_len: int | None = None) -> str | None:
        """Accept a policy chunk, or say why not (the previous chunks keep running). ``prefix_len``: the
        committed prefix the chunk was computed with (``rtc`` execution)."""
        reason = self.safety.check_chunk(actions) or self.executor.add(
            np.clip(np.asarray(actions, np.float64), self.limits.lower, self.limits.upper), stamp, dt, now,
            prefix_len=prefix_len, current=self._last)
        if reason:
            self.chunks_rejected += 1
        else:
            self.chunks_accepted += 1
        return reason

    def _require_reset(self) -> np.ndarray:
        if self._last is None:
            raise RuntimeError("ArmController.reset(position) must be called before the first tick")
        return self._last

    def _interval(self, now: float) -> float:
        last_t = self._last_time if self._last_time is not None else now - self.period
        return float(np.clip(now - last_t, 1e-6, self.max_interval))

    def _filtered_plan(self, targets: list[np.ndarray | None], first_dt: float) -> tuple[np.ndarray, str | None]:
        prev, out, fault = self._require_reset(), [], None
        for k, tgt in enumerate(targets):
            dt = first_dt if k == 0 else self.period
            if tgt is None:  # beyond what the chunks cover: stay
                cmd = prev
            else:
                cmd, why = self.safety.command(tgt, prev, dt)
                fault = fault or why
            out.append(cmd)
            prev = cmd
        return np.stack(out), fault

    def _commit(self, plan: np.ndarray, now: float) -> None:
        self._last = plan[0].copy()
        self._last_time = now

    def hold(self, now: float, reason: str | None = None) -> Tick:
        last = self._require_reset()
        plan = np.repeat(last[None], self.lookahead, axis=0)
        self._last_time = now
        return Tick(plan, "holding" if reason is None else "fault", reason)

    def track(self, now: float) -> Tick:
        """The plan at tick ``now`` from the chunks (hold when starved): point k (k = 1..K) is the chunks' pose
        for ``now + k * period``, the time the robot is to reach it."""
        self._require_reset()
        self.executor.prune(now)
        targets = [self.executor.sample(now + k * self.period) for k in range(1, self.lookahead + 1)]
        if targets[0] is None:
            return Tick(self.hold(now).plan, "starved", "no chunk covers the next control step")
        plan, fault = self._filtered_plan(targets, self._interval(now))
        if fault:
            return self.hold(now, fault)
        self._commit(plan, now)
        return Tick(plan, "tracking")

    def follow(self, target: np.ndarray, now: float) -> Tick:
        """Command for ``now`` towards a direct ``target`` (D,) (teleoperation), rate-limited like chunk rows;
        the look-ahead points continue towards it and then stay."""
        plan, fault = self._filtered_plan([np.asarray(target, np.float64)] * self.lookahead, self._interval(now))
        if fault:
            return self.hold(now, fault)
        self._commit(plan, now)
        return Tick(plan, "tracking")

    def home(self, home: np.ndarray, now: float, velocity_scale: float = 0.25, tol: float = 1e-3) -> Tick:
        """One step towards ``home`` at ``velocity_scale`` of the limits; status "homed" once there."""
        home = self.safety.clamp(np.asarray(home, np.float64).reshape(-1))
        slow = SafetyFilter(self.limits.scaled(velocity_scale))
        prev, out = self._require_reset(), []
        dt = self._interval(now)
        for k in range(self.lookahead):
            cmd, _ = slow.command(home, prev, dt if k == 0 else self.period)
            out.append(cmd)
            prev = cmd
        plan = np.stack(out)
        self._commit(plan, now)
        done = bool(np.max(np.abs(plan[0] - home)) <= tol)
        return Tick(plan, "homed" if done else "homing")
