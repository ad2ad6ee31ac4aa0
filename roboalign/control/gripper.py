"""Open/closed gripper state from a stream of continuous gripper commands (ROS-free).

The bridge publishes the gripper as one number per control tick (rate-limited, -1 open .. +1 closed by
default). A real gripper driven by actions (franka_gripper Move / Grasp) needs discrete goals, sent once per
change: ``GripperSwitch`` classifies each value with hysteresis around the midpoint and reports a new state
only after it has held for ``hold_s`` (so a value crossing the midpoint for one tick sends nothing).
"""

from __future__ import annotations

import enum
import math


class GripperState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class GripperSwitch:
    """Debounced open/closed state of a gripper command stream."""

    def __init__(self, open_value: float = -1.0, closed_value: float = 1.0, hysteresis: float = 0.1,
                 hold_s: float = 0.0) -> None:
        if open_value == closed_value:
            raise ValueError("open_value and closed_value must differ")
        if not 0.0 <= hysteresis < 0.5:
            raise ValueError(f"hysteresis must be in [0, 0.5), got {hysteresis}")
        if hold_s < 0.0:
            raise ValueError(f"hold_s must be >= 0, got {hold_s}")
        self.open_value, self.closed_value = float(open_value), float(closed_value)
        self.hysteresis, self.hold_s = float(hysteresis), float(hold_s)
        self.state: GripperState | None = None  # None until the first command
        self._candidate: GripperState | None = None
        self._since = 0.0

    def classify(self, value: float) -> GripperState | None:
        """OPEN / CLOSED for a value clearly on one side, None inside the hysteresis band (or not finite)."""
        if not math.isfinite(value):
            return None
        u = (value - self.open_value) / (self.closed_value - self.open_value)  # 0 open .. 1 closed
        if u >= 0.5 + self.hysteresis:
            return GripperState.CLOSED
        if u <= 0.5 - self.hysteresis:
            return GripperState.OPEN
        return None

    def update(self, value: float, now: float) -> GripperState | None:
        """Feed one command; returns the new state when it changes (the first command always sets it)."""
        c = self.classify(value)
        if c is None or c is self.state:
            self._candidate = None
            return None
        if c is not self._candidate:
            self._candidate, self._since = c, now
        if now - self._since < self.hold_s:
            return None
        self.state, self._candidate = c, None
        return c
