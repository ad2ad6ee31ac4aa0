"""Teleoperation device readings -> an end-effector twist and a gripper command (device-independent mapping).

A device gives named axes in [-1, 1] (SpaceMouse: x y z roll pitch yaw; gamepad / ``sensor_msgs/Joy``: numbered
axes) and buttons. ``AxisMap`` says which axis drives which twist component (with a sign), ``twist`` applies a
dead zone (rescaled so the response starts at 0) and scales full deflection to the speed limits; ``GripperButton``
turns a button into -1 open / +1 closed (toggle on press, or closed while held). The device drivers themselves
(pyspacemouse, evdev, a joy node) live at the hardware boundary in ``roboalign_policy.teleop_node``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

TWIST_COMPONENTS = ("vx", "vy", "vz", "wx", "wy", "wz")


@dataclass(frozen=True)
class AxisMap:
    """For each twist component (vx vy vz wx wy wz): the device axis driving it ("" for none), "-" prefix to flip."""

    axes: tuple[str, str, str, str, str, str]

    @classmethod
    def parse(cls, text: str | Sequence[str]) -> AxisMap:
        """From "x,y,z,roll,pitch,yaw" style text (or a list): six entries, each an axis name or index, "-" to
        flip, "" or "none" for a component no axis drives."""
        parts = [p.strip() for p in (text.split(",") if isinstance(text, str) else text)]
        if len(parts) != 6:
            raise ValueError(f"an axis map needs 6 entries ({', '.join(TWIST_COMPONENTS)}), got {len(parts)}: {parts}")
        return cls(tuple("" if p.lower() == "none" else p for p in parts))  # type: ignore[arg-type]

    def read(self, axes: Mapping[str, float]) -> np.ndarray:
        """(6,) raw deflections in [-1, 1] for the twist components; raises naming an axis the device lacks."""
        out = np.zeros(6)
        for i, name in enumerate(self.axes):
            if not name:
                continue
            sign, key = (-1.0, name[1:]) if name.startswith("-") else (1.0, name)
            if key not in axes:
                raise ValueError(f"axis {key!r} (for {TWIST_COMPONENTS[i]}) is not one of the device's: {sorted(axes)}")
            out[i] = sign * float(axes[key])
        return np.clip(out, -1.0, 1.0)


# SpaceMouse with pyspacemouse's ROS axis convention (x forward, y left, z up, right-handed), operator facing
# the robot from its front: the puck's forward push moves the TCP away from the operator (-x of the base).
SPACEMOUSE_DEFAULT = "-x,-y,z,-roll,-pitch,yaw"
# Xbox-style gamepad through joy_node: left stick (axes 1 up, 0 left) in the table plane, right stick up/down
# (axis 4) for height, right stick left/right (axis 3) for yaw.
GAMEPAD_DEFAULT = "1,0,4,none,none,3"


def deadzone(values: np.ndarray, zone: float) -> np.ndarray:
    """Zero within ``zone`` of 0; beyond it rescaled so the response is continuous and reaches 1 at 1."""
    if not 0 <= zone < 1:
        raise ValueError(f"dead zone must be in [0, 1), got {zone}")
    v = np.asarray(values, np.float64)
    return np.sign(v) * np.clip((np.abs(v) - zone) / (1.0 - zone), 0.0, None)


def twist(deflection: np.ndarray, max_linear: float, max_angular: float, zone: float = 0.1) -> np.ndarray:
    """(6,) twist [m/s, rad/s] of (6,) deflections in [-1, 1]: dead zone, then full deflection = the limit."""
    d = deadzone(np.clip(np.asarray(deflection, np.float64), -1.0, 1.0), zone)
    return np.r_[d[:3] * max_linear, d[3:] * max_angular]


class GripperButton:
    """-1 open / +1 closed from a button: ``toggle`` flips on each press, ``hold`` is closed while pressed."""

    def __init__(self, mode: str = "toggle", closed: bool = False) -> None:
        if mode not in ("toggle", "hold"):
            raise ValueError(f"gripper button mode {mode!r}: valid are toggle, hold")
        self.mode, self.closed, self._was = mode, closed, False

    def update(self, pressed: bool) -> float:
        if self.mode == "hold":
            self.closed = bool(pressed)
        elif pressed and not self._was:
            self.closed = not self.closed
        self._was = bool(pressed)
        return 1.0 if self.closed else -1.0
