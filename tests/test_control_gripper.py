"""GripperSwitch: open/closed from a continuous gripper command, with hysteresis and a hold time."""

from __future__ import annotations

import math

import pytest

from roboalign.control.gripper import GripperState, GripperSwitch

OPEN, CLOSED = GripperState.OPEN, GripperState.CLOSED


def test_first_command_sets_the_state_and_equal_commands_report_nothing() -> None:
    s = GripperSwitch()
    assert s.update(-1.0, 0.0) is OPEN
    assert [s.update(-1.0, 0.02 * k) for k in range(1, 50)] == [None] * 49
    assert s.update(1.0, 1.0) is CLOSED and s.state is CLOSED


def test_hysteresis_band_and_non_finite_values_change_nothing() -> None:
    s = GripperSwitch(hysteresis=0.1)
    s.update(-1.0, 0.0)
    for v in (0.0, 0.19, -0.19, math.nan, math.inf):  # u in (0.4, 0.6) or not a number
        assert s.update(v, 1.0) is None
    assert s.update(0.21, 1.0) is CLOSED


def test_a_new_state_must_hold_before_it_counts() -> None:
    s = GripperSwitch(hold_s=0.05)
    assert s.update(-1.0, 0.0) is None and s.update(-1.0, 0.06) is OPEN
    assert s.update(1.0, 1.00) is None  # one tick closed ...
    assert s.update(-1.0, 1.02) is None  # ... then open again: no change
    assert s.update(1.0, 1.04) is None and s.update(1.0, 1.08) is None and s.update(1.0, 1.09) is CLOSED


def test_controller_units_and_reversed_ranges() -> None:
    s = GripperSwitch(open_value=0.04, closed_value=0.0)  # finger position [m]: open is the larger value
    assert s.update(0.04, 0.0) is OPEN and s.update(0.001, 0.1) is CLOSED


@pytest.mark.parametrize("kwargs", [{"open_value": 1.0, "closed_value": 1.0}, {"hysteresis": 0.5}, {"hold_s": -1.0}])
def test_bad_configuration_is_refused(kwargs) -> None:
    with pytest.raises(ValueError):
        GripperSwitch(**kwargs)
