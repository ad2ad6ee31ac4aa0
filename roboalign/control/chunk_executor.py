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

``execution`` chooses how chunks take over: ``ensemble`` (the blending above, the default), ``switch`` (the
newest chunk is followed alone from its arrival on: naive switching) or ``rtc`` (real-time chunking: a chunk
computed with a committed prefix of ``d`` rows takes over at its first free row, time ``t0 + d * dt``, with no
averaging; the prefix is what this executor commands until then, :func:`committed_prefix`). In ``rtc`` mode,
with ``rtc_soft_horizon`` s configured, a chunk whose ``d`` breaks ``d <= s <= H - d`` is refused.

A chunk-level check runs in every mode when a ``start_check`` is given (the safety layer's): the chunk's first
row that will be commanded is compared with the current command (in ``rtc`` mode with the committed prefix
at the switch time), and a chunk that starts too far away is refused with the reason.

:class:`DelayEstimator` estimates ``d`` from the measured observation-to-chunk delays of recent chunks plus a
margin (as LeRobot's latency tracker does).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

EXECUTIONS = ("ensemble", "switch", "rtc")
StartCheck = Callable[[np.ndarray, np.ndarray], "str | None"]  # (first row, reference) -> refusal or None


@dataclass(frozen=True)
class ExecutorConfig:
    ensemble_decay: float = 4.0  # 1/s
    blend_time: float = 0.1  # s
    max_chunk_age: float = 0.5  # s, observation age at arrival
    max_future: float = 0.05  # s, tolerated clock skew for chunks stamped ahead of the control clock
    max_chunks: int = 8
    row_offset: float = 1.0  # steps between the observation and row 0
    execution: str = "ensemble"  # ensemble | switch | rtc
    rtc_soft_horizon: int = 0  # s of real-time chunking; > 0: chunks must satisfy d <= s <= H - d

    def __post_init__(self) -> None:
        if self.execution not in EXECUTIONS:
            raise ValueError(f"ExecutorConfig.execution={self.execution!r}; valid: {', '.join(EXECUTIONS)}")
        if self.rtc_soft_horizon < 0:
            raise ValueError(f"ExecutorConfig.rtc_soft_horizon must be >= 0 (0 = unchecked), got {self.rtc_soft_horizon}")
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
    start: float  # first time this chunk is followed (its own rows only in switch / rtc mode)

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


def check_rtc_window(prefix_len: int, soft_horizon: int, horizon: int) -> str | None:
    """Why ``d``, ``s`` and the horizon ``H`` break RTC's feasibility ``d <= s <= H - d``, or None."""
    d, s, h = int(prefix_len), int(soft_horizon), int(horizon)
    if d < 0:
        return f"RTC prefix length d={d} must be >= 0"
    if d <= s <= h - d:
        return None
    return (f"RTC needs d <= s <= H - d, got d={d} (delay in control steps), s={s} (soft-mask horizon), H={h}: "
            + ("the delay takes more than half the chunk; make inference faster or the chunk longer"
               if 2 * d > h else f"set the soft-mask horizon s between {d} and {h - d}"))


class ChunkExecutor:
    """Holds the recent chunks and samples the target at any control time (see the module docstring)."""

    def __init__(self, dim: int, config: ExecutorConfig | None = None, start_check: StartCheck | None = None) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = dim
        self.config = config or ExecutorConfig()
        self.start_check = start_check
        self._entries: list[_Entry] = []

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def _refusal(self, a: np.ndarray, stamp: float, dt: float, now: float) -> str | None:
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
        return None

    def _start(self, a: np.ndarray, stamp: float, dt: float, now: float, prefix_len: int | None) -> float:
        """When the chunk takes over: at its observation (ensemble), arrival (switch), first free row (rtc)."""
        mode = self.config.execution
        if mode == "ensemble":
            return float(stamp)
        if mode == "switch" or prefix_len is None:
            return float(now)
        return max(float(now), float(stamp) + (self.config.row_offset + int(prefix_len)) * float(dt))

    def add(self, actions: np.ndarray, stamp: float, dt: float, now: float, prefix_len: int | None = None,
            current: np.ndarray | None = None) -> str | None:
        """Offer a chunk received at ``now``; returns why it was refused, or None when it was accepted.

        ``prefix_len``: the committed prefix ``d`` the chunk was computed with (``rtc`` mode; None: switch at
        arrival). ``current``: the current command, the reference of the start check (default: this
        executor's target at ``now``).
        """
        a = np.asarray(actions, dtype=np.float64)
        why = self._refusal(a, stamp, dt, now)
        if why:
            return why
        cfg = self.config
        if cfg.execution == "rtc" and cfg.rtc_soft_horizon and prefix_len is not None:
            why = check_rtc_window(prefix_len, cfg.rtc_soft_horizon, a.shape[0])
            if why:
                return why
        entry = _Entry(a.copy(), float(stamp), float(dt), float(now), float(stamp) + cfg.row_offset * float(dt),
                       self._start(a, stamp, dt, now, prefix_len))
        if entry.end <= now:
            return f"chunk already ended {now - entry.end:.3f} s before it arrived"
        if entry.end <= entry.start:
            return f"chunk ends before its first free row (prefix_len d={prefix_len} of {a.shape[0]} rows)"
        self.prune(now)
        why = self._check_start(entry, now, current)
        if why:
            return why
        self._entries.append(entry)
        del self._entries[: max(0, len(self._entries) - cfg.max_chunks)]
        return None

    def _check_start(self, entry: _Entry, now: float, current: np.ndarray | None) -> str | None:
        """The start check: the chunk's first commanded row against what is commanded at that time."""
        if self.start_check is None:
            return None
        at = max(now, entry.start)
        ref, against = (self.sample(at), "the committed prefix") if self.config.execution == "rtc" else (None, "")
        if ref is None:
            ref, against = (current if current is not None else self.sample(now)), "the current command"
        if ref is None:
            return None
        why = self.start_check(entry.at(at), np.asarray(ref, np.float64))
        return None if why is None else f"chunk starts too far from {against}: {why}"

    def prune(self, now: float) -> None:
        """Forget chunks that ended before ``now``."""
        self._entries = [e for e in self._entries if e.end > now]

    def covered_until(self) -> float | None:
        """The time up to which some chunk provides targets (None if there is none)."""
        return max((e.end for e in self._entries), default=None)

    def sample(self, t: float) -> np.ndarray | None:
        """Target (D,) at time ``t``, or None when no chunk covers ``t`` (starved: hold)."""
        if self.config.execution == "ensemble":
            return self._blend(t)
        for e in reversed(self._entries):  # the newest chunk that has taken over and still covers t
            if e.start <= t < e.end:
                return e.at(t)
        for e in reversed(self._entries):  # before any took over (the previous chunk ran out): its prefix rows
            if e.stamp - self.config.max_future <= t < e.end:
                return e.at(t)
        return None

    def _blend(self, t: float) -> np.ndarray | None:
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


def committed_prefix(executor: ChunkExecutor, stamp: float, dt: float, horizon: int) -> np.ndarray | None:
    """What ``executor`` commands at the rows of a chunk observed at ``stamp``: (H, D), row i at
    ``stamp + (i + row_offset) * dt``, the last covered target held after its chunks end; None when starved."""
    times = stamp + (executor.config.row_offset + np.arange(horizon)) * dt
    rows: list[np.ndarray] = []
    for t in times:
        target = executor.sample(float(t))
        if target is None:
            if not rows:
                return None
            target = rows[-1]
        rows.append(target)
    return np.stack(rows)


class DelayEstimator:
    """Observation-to-chunk delays of recent chunks -> the prefix length ``d`` for the next inference."""

    def __init__(self, window: int = 10, margin_s: float = 0.0) -> None:
        if window < 1:
            raise ValueError(f"DelayEstimator window must be >= 1, got {window}")
        if not (math.isfinite(margin_s) and margin_s >= 0):
            raise ValueError(f"DelayEstimator margin_s must be a finite number >= 0, got {margin_s}")
        self.margin_s = float(margin_s)
        self._delays: deque[float] = deque(maxlen=window)

    def __len__(self) -> int:
        return len(self._delays)

    def record(self, delay_s: float) -> None:
        """One measured delay: the chunk's arrival time minus its observation's time (s)."""
        if not (math.isfinite(delay_s) and delay_s >= 0):
            raise ValueError(f"a measured delay must be a finite number >= 0 s, got {delay_s}")
        self._delays.append(float(delay_s))

    def delay_s(self) -> float:
        """The largest recent delay plus the margin (the margin alone before any chunk arrived)."""
        return max(self._delays, default=0.0) + self.margin_s

    def steps(self, dt: float, horizon: int) -> int:
        """``d``: control steps covered by :meth:`delay_s`, rounded up, at most ``horizon - 1``."""
        if not (math.isfinite(dt) and dt > 0):
            raise ValueError(f"control step dt must be > 0, got {dt}")
        return int(min(max(horizon - 1, 0), math.ceil(self.delay_s() / dt - 1e-9)))


@dataclass(frozen=True)
class PrefixRequest:
    """What the policy sends with one inference: the committed prefix (H, D), d and the soft-mask horizon s."""

    prefix: np.ndarray
    prefix_len: int
    soft_horizon: int


class PrefixTracker:
    """The policy side of RTC: mirrors what the bridge executes (an ``rtc`` executor fed the published
    chunks) and estimates ``d`` from the measured observation-to-publication delays."""

    def __init__(self, dim: int, horizon: int, dt: float, soft_horizon: int = 0, window: int = 10,
                 margin_s: float = 0.0, row_offset: float = 1.0) -> None:
        if not 0 <= soft_horizon <= horizon:
            raise ValueError(f"soft_horizon must be in [0, horizon={horizon}] (0: H - d), got {soft_horizon}")
        self.horizon, self.dt, self.soft_horizon = int(horizon), float(dt), int(soft_horizon)
        self.mirror = ChunkExecutor(dim, ExecutorConfig(execution="rtc", row_offset=row_offset,
                                                        max_chunk_age=1e9, max_future=1e9))
        self.delays = DelayEstimator(window=window, margin_s=margin_s)

    def request(self, stamp: float) -> PrefixRequest | None:
        """The prefix for a chunk observed at ``stamp`` (None before the first chunk: nothing committed)."""
        prefix = committed_prefix(self.mirror, stamp, self.dt, self.horizon)
        if prefix is None:
            return None
        d = self.delays.steps(self.dt, self.horizon)
        d = min(d, self.horizon // 2)  # keep d <= H - d
        s = self.horizon - d if self.soft_horizon == 0 else min(max(self.soft_horizon, d), self.horizon - d)
        return PrefixRequest(prefix, d, s)

    def published(self, actions: np.ndarray, stamp: float, now: float, prefix_len: int | None) -> None:
        """Record a chunk published at ``now`` from an observation at ``stamp``."""
        self.delays.record(max(0.0, now - stamp))
        self.mirror.prune(now)
        self.mirror.add(actions, stamp, self.dt, now, prefix_len=prefix_len)

    def reset(self) -> None:
        """A new episode: nothing committed (the delay history is kept)."""
        self.mirror.clear()
