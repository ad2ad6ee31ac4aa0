"""Device readings -> twist and gripper (roboalign.control.teleop_devices): axis maps, dead zone, scaling, buttons."""

from __future__ import annotations

import numpy as np
import pytest

from roboalign.control.teleop_devices import (
    GAMEPAD_DEFAULT,
    SPACEMOUSE_DEFAULT,
    AxisMap,
    GripperButton,
    deadzone,
    twist,
)

PUCK = {"x": 0.5, "y": -0.25, "z": 1.0, "roll": 0.0, "pitch": 0.2, "yaw": -1.0}


def test_an_axis_map_picks_flips_and_skips_axes_and_names_a_missing_one() -> None:
    m = AxisMap.parse(SPACEMOUSE_DEFAULT)
    np.testing.assert_allclose(m.read(PUCK), [-0.5, 0.25, 1.0, -0.0, -0.2, -1.0])
    pad = AxisMap.parse(GAMEPAD_DEFAULT)
    np.testing.assert_allclose(pad.read({"0": 0.3, "1": 0.9, "3": -0.4, "4": 0.1}), [0.9, 0.3, 0.1, 0, 0, -0.4])
    with pytest.raises(ValueError, match="axis '4'"):
        pad.read({"0": 0.0, "1": 0.0, "3": 0.0})
    with pytest.raises(ValueError, match="6 entries"):
        AxisMap.parse("x,y,z")


def test_the_dead_zone_is_continuous_and_full_deflection_is_the_speed_limit() -> None:
    v = np.array([0.05, -0.1, 0.55, 1.0, -1.0, 0.1000001])
    np.testing.assert_allclose(deadzone(v, 0.1), [0, 0, 0.5, 1.0, -1.0, 0.0], atol=1e-6)
    t = twist([1.0, 0.0, -1.0, 0.0, 0.0, 2.0], max_linear=0.1, max_angular=0.5, zone=0.1)
    np.testing.assert_allclose(t, [0.1, 0, -0.1, 0, 0, 0.5])  # clipped to [-1, 1] first
    with pytest.raises(ValueError):
        deadzone(v, 1.0)


def test_the_gripper_button_toggles_on_press_or_closes_while_held() -> None:
    toggle = GripperButton("toggle")
    assert [toggle.update(b) for b in (0, 1, 1, 0, 0, 1, 0)] == [-1, 1, 1, 1, 1, -1, -1]
    hold = GripperButton("hold")
    assert [hold.update(b) for b in (0, 1, 1, 0)] == [-1, 1, 1, -1]
    with pytest.raises(ValueError):
        GripperButton("tap")
