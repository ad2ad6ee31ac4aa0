"""Safety filter and the command path (ArmController): no input can produce a command outside the limits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from roboalign.control.controller import ArmController
from roboalign.control.safety import SafetyFilter, SafetyLimits
from roboalign.spec.action_space import FR3_HOME, FR3_LIMITS, eef_delta, joint_position

NAMES = tuple(f"fr3_joint{i}" for i in range(1, 8)) + ("gripper",)
LOWER = np.array([*FR3_LIMITS.lower, -1.0])
UPPER = np.array([*FR3_LIMITS.upper, 1.0])
VEL = np.array([2.62, 2.62, 2.62, 2.62, 5.26, 4.18, 5.26, 10.0])
STEP = np.array([0.05] * 7 + [1.0])
HOME = np.array([*FR3_HOME, -1.0])  # the FR3 ready pose, gripper open
PERIOD = 0.02


def limits() -> SafetyLimits:
    return SafetyLimits.from_action_space(joint_position, max_joint_step=0.05, gripper_velocity=10.0,
                                          gripper_step=1.0, reject_margin=0.2)


def test_limits_come_from_the_action_space_spec() -> None:
    lim = limits()
    assert lim.names == NAMES
    np.testing.assert_array_equal(lim.lower, LOWER)
    np.testing.assert_array_equal(lim.upper, UPPER)
    np.testing.assert_array_equal(lim.max_velocity, VEL)
    np.testing.assert_allclose(SafetyLimits.from_action_space(joint_position, velocity_scale=0.5).max_velocity[:7],
                               VEL[:7] / 2)
    with pytest.raises(ValueError, match="'eef_delta' is delta"):
        SafetyLimits.from_action_space(eef_delta)


def within(cmd: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(cmd)) and np.all(cmd >= LOWER) and np.all(cmd <= UPPER))


def test_limits_validate_their_inputs() -> None:
    with pytest.raises(ValueError, match="lower must be < upper.*fr3_joint2"):
        SafetyLimits(NAMES, LOWER, np.where(np.arange(8) == 1, -5.0, UPPER), VEL, STEP)
    with pytest.raises(ValueError, match="max_velocity has 3 values but there are 8"):
        SafetyLimits(NAMES, LOWER, UPPER, VEL[:3], STEP)
    with pytest.raises(ValueError, match="finite"):
        SafetyLimits(NAMES, LOWER, UPPER, np.where(np.arange(8) == 0, np.nan, VEL), STEP)
    with pytest.raises(ValueError, match="missing \\['max_step'\\]"):
        SafetyLimits.from_dict({"names": NAMES, "lower": LOWER, "upper": UPPER, "max_velocity": VEL})


def test_command_clamps_rate_limits_and_holds_on_nan() -> None:
    f = SafetyFilter(limits())
    cmd, why = f.command(UPPER + 1.0, HOME, dt=0.02)
    assert why is None
    # velocity limit 2.62 rad/s * 0.02 s = 0.0524 > max_step 0.05: the step limit binds for joint 1
    np.testing.assert_allclose(cmd[0] - HOME[0], 0.05)
    # the gripper (velocity 10/s) may move 0.2 in 0.02 s
    np.testing.assert_allclose(cmd[7], -0.8)
    slow, _ = f.command(UPPER + 1.0, HOME, dt=0.001)
    np.testing.assert_allclose(slow[0] - HOME[0], 2.62 * 0.001)
    held, why = f.command(np.where(np.arange(8) == 3, np.nan, HOME + 0.01), HOME, dt=0.02)
    assert "fr3_joint4" in why and "non-finite" in why
    np.testing.assert_array_equal(held, HOME)
    held, why = f.command(np.zeros(5), HOME, dt=0.02)
    assert "5 values, expected 8" in why


def test_check_chunk_names_the_offending_row_and_joint() -> None:
    f = SafetyFilter(limits())
    chunk = np.tile(HOME, (10, 1))
    assert f.check_chunk(chunk) is None
    chunk[4, 2] = np.inf
    assert "row 4, fr3_joint3" in f.check_chunk(chunk)
    chunk = np.tile(HOME, (10, 1))
    chunk[7, 5] = UPPER[5] + 0.5
    assert "row 7: fr3_joint6" in f.check_chunk(chunk)
    chunk[7, 5] = UPPER[5] + 0.1  # within the reject margin: accepted, then clamped by command()
    assert f.check_chunk(chunk) is None
    assert "shape (10, 7)" in f.check_chunk(chunk[:, :7])


def test_controller_tracks_a_good_chunk_and_rejects_bad_ones() -> None:
    c = ArmController(limits(), PERIOD, lookahead=3)
    c.reset(HOME, now=0.0)
    ramp = HOME + np.outer(np.arange(20) * 0.01, np.r_[np.ones(7), 0.0])  # (20, 8) slow ramp
    assert c.offer_chunk(ramp, stamp=0.0, dt=0.05, now=0.01) is None
    tick = c.track(0.02)  # its command is for 0.04, before row 0 is due (observation + one dt): row 0 itself
    assert tick.status == "tracking" and tick.plan.shape == (3, 8)
    np.testing.assert_allclose(tick.command, HOME, atol=1e-9)
    t = 0.07
    tick = c.track(t)  # point k is the chunk's pose for t + k * PERIOD (k = 1..3): when the robot is to be there
    for k in range(3):
        due = t + (k + 1) * PERIOD
        np.testing.assert_allclose(tick.plan[k, :7], HOME[:7] + 0.01 * (due - 0.05) / 0.05, atol=1e-9)
    bad = ramp.copy()
    bad[3, 0] = np.nan
    assert "non-finite" in c.offer_chunk(bad, stamp=0.02, dt=0.05, now=0.03)
    assert c.chunks_rejected == 1 and c.chunks_accepted == 1
    # starved once the only chunk has ended: hold the last command
    last = c.track(0.5).command
    tick = c.track(2.0)
    assert tick.status == "starved"
    np.testing.assert_array_equal(tick.command, last)


def test_homing_converges_slowly_and_reports_homed() -> None:
    c = ArmController(limits(), PERIOD)
    start = HOME + 0.3
    start[7] = 1.0
    c.reset(start, now=0.0)
    statuses, prev = [], c.last_command
    for k in range(1, 400):
        tick = c.home(HOME, now=k * PERIOD, velocity_scale=0.25)
        assert np.all(np.abs(tick.command - prev) <= STEP * 0.25 + 1e-12)
        prev = tick.command
        statuses.append(tick.status)
        if tick.status == "homed":
            break
    assert statuses[-1] == "homed" and len(statuses) > 10
    np.testing.assert_allclose(c.last_command, HOME, atol=1e-3)


finite_or_not = st.one_of(
    st.floats(-10, 10), st.sampled_from([np.nan, np.inf, -np.inf, 1e300, -1e300]))
chunks = st.tuples(
    hnp.arrays(np.float64, st.tuples(st.integers(1, 12), st.just(8)), elements=finite_or_not),
    st.floats(-0.3, 0.3),  # stamp offset from now (late, on time, early)
    st.sampled_from([0.02, 0.05, 0.1]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(chunks, min_size=1, max_size=6), st.integers(0, 2**31 - 1))
def test_no_chunk_sequence_produces_a_command_outside_the_limits(seq, seed) -> None:
    """Property: whatever chunks arrive (NaN, inf, huge, late, early), every planned point is finite,
    inside the limits and within one step of the point before it."""
    rng = np.random.default_rng(seed)
    c = ArmController(limits(), PERIOD, lookahead=3)
    c.reset(np.clip(HOME + rng.normal(0, 0.5, 8), LOWER, UPPER), now=0.0)
    now, prev = 0.0, c.last_command
    for actions, offset, dt in seq:
        # mix in a plausible chunk near the current command so tracking really happens
        if rng.random() < 0.5:
            actions = prev + rng.normal(0, 0.3, actions.shape)
        c.offer_chunk(actions, stamp=now + offset, dt=dt, now=now)
        for _ in range(int(rng.integers(1, 8))):
            now += PERIOD * float(rng.uniform(0.5, 4.0))  # jittery, sometimes very late ticks
            tick = c.track(now)
            pts = np.vstack([prev[None], tick.plan])
            assert all(within(p) for p in tick.plan)
            # a late tick buys at most max_interval of motion, each look-ahead point one period
            bound = np.minimum(STEP, VEL * c.max_interval) + 1e-9
            assert np.all(np.abs(np.diff(pts, axis=0)) <= bound)
            prev = tick.command
