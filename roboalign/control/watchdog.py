"""Watchdog over the input streams the bridge depends on (camera images, joint state, policy chunks).

Each stream has a timeout; ``check(now)`` lists the armed streams whose last message is older than that.
A stream is armed by ``arm`` (e.g. chunks only while an episode runs) and a stream that never delivered a
message since it was armed counts as stale once its timeout has passed since arming, so a dead camera is
caught even if it never published at all. A stream may have an explanation (:meth:`Watchdog.explain`): what its
subscriber measured and the likely cause (``roboalign.control.stream_health``), added to a stale stream's message
so the fault names the cause, not only the symptom.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Stream:
    timeout: float
    armed_at: float | None = None
    last: float | None = None


def _valid_timeout(name: str, timeout: float) -> float:
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"watchdog timeout for {name!r} must be > 0 seconds, got {timeout}")
    return float(timeout)


class Watchdog:
    """Staleness checks on named streams, on whatever clock the caller uses (ROS time or sim time)."""

    def __init__(self, timeouts: dict[str, float]) -> None:
        self._streams = {name: _Stream(_valid_timeout(name, t)) for name, t in timeouts.items()}
        self._explain: dict[str, Callable[[], str | None]] = {}

    @property
    def names(self) -> list[str]:
        return list(self._streams)

    def _get(self, name: str) -> _Stream:
        try:
            return self._streams[name]
        except KeyError:
            raise KeyError(f"unknown watchdog stream {name!r}; known: {self.names}") from None

    def set_timeout(self, name: str, timeout: float) -> None:
        """Change the timeout of ``name`` (e.g. a parameter changed at runtime)."""
        self._get(name).timeout = _valid_timeout(name, timeout)

    def explain(self, name: str, why: Callable[[], str | None]) -> None:
        """``why()`` (called when ``name`` is stale) says what was measured and the likely cause, or None."""
        self._get(name)
        self._explain[name] = why

    def _why(self, name: str) -> str:
        why = self._explain.get(name)
        text = why() if why is not None else None
        return f"; {text}" if text else ""

    def feed(self, name: str, now: float) -> None:
        """A message of stream ``name`` arrived at ``now``."""
        s = self._get(name)
        s.last = now if s.last is None else max(s.last, now)

    def arm(self, name: str, now: float, forget: bool = False) -> None:
        """Start checking ``name`` from ``now``. Messages before arming still count as the last one unless
        ``forget`` (e.g. policy chunks of the previous episode must not keep the new one alive)."""
        s = self._get(name)
        s.armed_at = now
        if forget:
            s.last = None

    def disarm(self, name: str) -> None:
        self._get(name).armed_at = None

    def age(self, name: str, now: float) -> float | None:
        """Seconds since the last message of ``name`` (None if there was none)."""
        s = self._get(name)
        return None if s.last is None else now - s.last

    def check(self, now: float) -> list[str]:
        """One message per armed stream that is stale at ``now`` (empty list: all fresh)."""
        problems = []
        for name, s in self._streams.items():
            if s.armed_at is None:
                continue
            if s.last is None:
                if now - s.armed_at > s.timeout:
                    problems.append(f"no {name} message for {now - s.armed_at:.3f} s since armed "
                                    f"(timeout {s.timeout} s){self._why(name)}")
            elif now - s.last > s.timeout:
                problems.append(f"stale {name}: last message {now - s.last:.3f} s ago (timeout {s.timeout} s)"
                                f"{self._why(name)}")
        return problems
