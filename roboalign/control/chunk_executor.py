"""Execute action chunks at the control rate, continuously across chunk boundaries.

A chunk is a (T, D) array whose row k is the target for time ``stamp + (k + row_offset) * dt`` (``stamp`` =
time of the observation it was computed from). ``row_offset = 1`` (default) fits absolute joint targets the
way LIBERO, the scripted expert and the recorded datasets use them: the action chosen at observation time
``t`` is the pose to reach at ``t + dt``; ``row_offset = 0`` reads row 0 as the pose for ``t`` itself. At any control time ``t`` the executor blends every chunk that covers
``t`` (temporal ensembling, as in ACT: Zhao et al. 2023), each row linearly interpolated in time, with
weights ``w_i = exp(-decay * (t - stamp_i)) * ramp_out_i(t)``. ``decay > 0`` favours newer chunks
(``decay < 0`` favours older ones, ACT's choice); ``ramp_out`` lowers a chunk's weight towards 0 over the last
``blend_time`` of its span. The weighted mean is accumulated in arrival order (an incremental mean), and a
chunk that arrived less than ``blend_time`` ago enters with its share scaled by ``(t - arrival) / blend_time``,
so the blended target is continuous when a chunk arrives or runs out, and equals the plain weighted mean
once every chunk is blended in.

Late chunks are handled by time, not by index: rows whose time has passed are skipped. A chunk whose
observation is older than ``max_chunk_age`` when it arrives, that already ended, that is stamped in the
future (clock mismatch), or that has the wrong shape or non-finite values is refused with a reason.
When no chunk covers ``t`` the executor is *starved* and ``sample`` returns None: the caller holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ExecutorConfig:
    ensemble_decay: float = 4.0  # 1/s
    blend_time: float = 0.1  # s
    max_chunk_age: float = 0.5  # s, observation age at arrival
    max_future: float = 0.05  # s, tolerated clock skew for chunks stamped ahead of the control clock
    max_chunks: int = 8
    row_offset: float = 1.0  # steps between the observation and row 0

    def __post_init__(self) -> None:
        if not math.isfinite(self.ensemble_decay):
            raise ValueError(f"ensemble_decay must be finite, got {self.ensemble_decay}")
        for key in ("blend_time", "max_chunk_age", "max_future", "row_offset"):
            v = getattr(self, key)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"ExecutorConfig.{key} must be a finite number >= 0, got {v}")
        if self.max_chunk_age <= 0:
            raise ValueError(f"ExecutorConfig.max_chunk_age must be > 0, got {self.max_chunk_age}")
        if self.max_chunks < 1:
            raise ValueError(f"ExecutorConfig.max_chunks must be >= 1, got {self.max_chunks}")


@dataclass(frozen=True)
class _Entry:
    actions: np.ndarray  # (T, D) float64
    stamp: float  # observation time
    dt: float
    arrival: float
    t0: float  # time of row 0

    @property
    def end(self) -> float:
        """First time the chunk no longer covers: its last row is held for one dt."""
        return self.t0 + self.actions.shape[0] * self.dt

    def at(self, t: float) -> np.ndarray:
        """Row-interpolated target at time ``t`` (row 0 before ``t0``, inside [stamp, end))."""
        u = max(0.0, (t - self.t0) / self.dt)
        k = int(math.floor(u))
        last = self.actions.shape[0] - 1
        if k >= last:
            return self.actions[last]
        frac = u - k
        return (1.0 - frac) * self.actions[k] + frac * self.actions[k + 1]


class ChunkExecutor:
    """Holds the recent chunks and samples the blended target at any control time."""

    def __init__(self, dim: int, config: ExecutorConfig | None = None) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = dim
        self.config = config or ExecutorConfig()
        self._entries: list[_Entry] = []

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def add(self, actions: np.ndarray, stamp: float, dt: float, now: float) -> str | None:
        """Offer a chunk received at ``now``; returns why it was refused, or None when it was accepted."""
        a = np.asarray(actions, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != self.dim or a.shape[0] < 1:
            return f"chunk shape {a.shape} is not (T>=1, {self.dim})"
        if not np.all(np.isfinite(a)):
            return "chunk has non-finite values"
        if not (math.isfinite(dt) and dt > 0):
            return f"chunk dt={dt} must be > 0"
        cfg = self.config
        age = now - stamp
        if age > cfg.max_chunk_age:
            return f"stale chunk: its observation is {age:.3f} s old (max_chunk_age {cfg.max_chunk_age} s)"
        if -age > cfg.max_future:
            return (f"chunk stamped {-age:.3f} s in the future (max_future {cfg.max_future} s): "
                    "are both nodes on the same clock (use_sim_time)?")
        entry = _Entry(a.copy(), float(stamp), float(dt), float(now), float(stamp) + cfg.row_offset * float(dt))
        if entry.end <= now:
            return f"chunk already ended {now - entry.end:.3f} s before it arrived"
        self.prune(now)
        self._entries.append(entry)
        del self._entries[: max(0, len(self._entries) - cfg.max_chunks)]
        return None

    def prune(self, now: float) -> None:
        """Forget chunks that ended before ``now``."""
        self._entries = [e for e in self._entries if e.end > now]

    def covered_until(self) -> float | None:
        """The time up to which some chunk provides targets (None if there is none)."""
        return max((e.end for e in self._entries), default=None)

    def sample(self, t: float) -> np.ndarray | None:
        """Blended target (D,) at time ``t``, or None when no chunk covers ``t`` (starved: hold)."""
        live = [e for e in self._entries if e.stamp - self.config.max_future <= t < e.end]
        if not live:
            return None
        blend = self.config.blend_time
        logw = np.array([-self.config.ensemble_decay * (t - e.stamp) for e in live])
        w = np.exp(logw - logw.max())  # (N,) relative weights, the largest is 1
        if blend > 0:
            w = w * np.array([min(1.0, max(1e-3, (e.end - t) / blend)) for e in live])
        out, total = live[0].at(t), w[0]
        for e, wi in zip(live[1:], w[1:], strict=True):
            total += wi
            ramp_in = 1.0 if blend <= 0 else min(1.0, max(0.0, (t - e.arrival) / blend))
            out = out + ramp_in * (wi / total) * (e.at(t) - out)
        return out
