"""Input freshness for a policy: when an observation is fit to act on, and how each camera stream is doing.

ROS-free (the policy node feeds it arrival times): :func:`wait_reason` says why no observation can be
assembled yet (an input missing or older than its limit), :class:`StreamStats` keeps a camera's receive rate,
the age of its newest frame, header-stamp -> arrival latency, the frames missing from its stamp sequence, its
largest gap and frame size (:meth:`StreamStats.health`, explained by ``roboalign.control.stream_health``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from roboalign.control.stream_health import StreamHealth


@dataclass(frozen=True)
class Input:
    """One input as the freshness rules see it: its label (a topic), and when its newest message arrived."""

    label: str
    arrival: float | None  # [s] on the caller's clock; None: nothing yet
    max_age_s: float
    missing: str = ""  # what to say while nothing has arrived (default "waiting for <label>")


def wait_reason(now: float, inputs: Sequence[Input]) -> str | None:
    """Why the newest inputs are not fit for an observation at ``now`` (the first missing or stale one), or
    None when every input has arrived and is at most ``max_age_s`` old."""
    for i in inputs:
        if i.arrival is None:
            return i.missing or f"waiting for {i.label}"
        if now - i.arrival > i.max_age_s:
            return f"{i.label} is {now - i.arrival:.3f} s old (limit {i.max_age_s:g} s)"
    return None


def privileged_lag(image_stamp: float, privileged_stamp: float | None, label: str) -> str | None:
    """Sim only: the privileged state must be of the image's instant or newer (the expert acts on both)."""
    if privileged_stamp is None or privileged_stamp < image_stamp - 1e-6:
        return f"waiting for privileged state of t={image_stamp:.3f} on {label}"
    return None


def observation_stamp(image_stamp: float, privileged_stamp: float | None) -> float:
    """The observation's stamp: the newest input (the sim's privileged state may be newer than a frame)."""
    return image_stamp if privileged_stamp is None else max(image_stamp, privileged_stamp)


@dataclass
class StreamStats:
    """Receive statistics of one camera stream (frames fed in arrival order).

    ``drops`` counts frames missing from the header-stamp sequence: a gap of ``k`` nominal periods means
    ``k - 1`` frames never arrived (or were overwritten while the reader was busy). The nominal period is
    ``1 / expected_hz`` when given, else the 10th percentile of recent stamp spacings (robust to the gaps).
    """

    window_s: float = 5.0
    expected_hz: float = 0.0
    frames: int = 0
    drops: int = 0
    _arrivals: deque = field(default_factory=lambda: deque(maxlen=2048))
    _spacings: deque = field(default_factory=lambda: deque(maxlen=64))
    _last_stamp: float | None = None
    _last_latency: float = 0.0
    frame_bytes: int = 0  # size of the newest frame as received (0: not given)

    def add(self, stamp: float, arrival: float, size: int = 0) -> None:
        """A frame with header ``stamp`` and ``size`` bytes arrived at ``arrival`` (same clock for both where
        possible)."""
        if self._last_stamp is not None:
            spacing = stamp - self._last_stamp
            if spacing <= 0:  # a repeated or reordered stamp (a publisher restart): start the sequence again
                self._spacings.clear()
            else:
                self._spacings.append(spacing)
                self.drops += self._missing(spacing)
        self._last_stamp = stamp
        self._last_latency = arrival - stamp
        self._arrivals.append(arrival)
        self.frames += 1
        self.frame_bytes = size or self.frame_bytes

    def _missing(self, spacing: float) -> int:
        period = self.period_s()
        return 0 if period <= 0 else max(0, int(round(spacing / period)) - 1)

    def period_s(self) -> float:
        """The nominal frame period [s] (0 while unknown)."""
        if self.expected_hz > 0:
            return 1.0 / self.expected_hz
        return float(np.percentile(self._spacings, 10)) if len(self._spacings) >= 3 else 0.0

    def _recent(self, now: float) -> list[float]:
        return [a for a in self._arrivals if now - a <= self.window_s]

    def rate_hz(self, now: float, recent: list[float] | None = None) -> float:
        """Frames received per second over the last ``window_s``."""
        recent = self._recent(now) if recent is None else recent
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-9)

    def max_gap_s(self, now: float, recent: list[float] | None = None) -> float:
        """The longest time between two arrivals over the last ``window_s``, up to ``now`` (a stream that stopped
        has a gap that keeps growing)."""
        recent = self._recent(now) if recent is None else recent
        if not recent:
            return 0.0
        return float(max(np.diff(recent, append=now).max(), 0.0))

    def health(self, now: float, label: str) -> StreamHealth:
        """Rate, the publisher's rate (nominal or from the stamps), largest gap and frame size, to explain."""
        period, recent = self.period_s(), self._recent(now)
        return StreamHealth(label, self.rate_hz(now, recent), 1.0 / period if period > 0 else 0.0,
                            self.max_gap_s(now, recent), self.frame_bytes, len(recent))

    def age_s(self, now: float) -> float | None:
        """Time since the newest frame arrived (None: none yet)."""
        return now - self._arrivals[-1] if self._arrivals else None

    def summary(self, now: float) -> dict[str, float]:
        age = self.age_s(now)
        return {"rate_hz": self.rate_hz(now), "age_ms": -1.0 if age is None else age * 1e3,
                "latency_ms": self._last_latency * 1e3, "drops": self.drops, "frames": self.frames}


def starved(stats: Mapping[str, StreamStats], now: float, min_hz: float) -> list[str]:
    """Names of the streams receiving fewer than ``min_hz`` frames per second (an operator's early warning,
    before a watchdog trips on a stale frame)."""
    return [name for name, s in stats.items() if s.rate_hz(now) < min_hz]
