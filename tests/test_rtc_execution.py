"""Chunk execution modes (ensemble / switch / rtc), the chunk start check, the committed prefix, delay estimation."""

from __future__ import annotations

import numpy as np
import pytest

from roboalign.control.chunk_executor import (
    ChunkExecutor,
    DelayEstimator,
    ExecutorConfig,
    check_rtc_window,
    committed_prefix,
)
from roboalign.control.controller import ArmController
from roboalign.control.safety import SafetyFilter, SafetyLimits

DT = 0.1


def ramp(n: int, start: float, slope: float) -> np.ndarray:
    """(n, 1) rows start + slope * k."""
    return (start + slope * np.arange(n))[:, None]


def _cfg(execution: str, **kw) -> ExecutorConfig:
    return ExecutorConfig(execution=execution, blend_time=0.0, row_offset=0.0, max_chunk_age=1.0, **kw)


def test_switch_follows_the_newest_chunk_from_its_arrival_without_averaging():
    ex = ChunkExecutor(1, _cfg("switch"))
    assert ex.add(ramp(16, 0.0, 0.1), stamp=0.0, dt=DT, now=0.0) is None
    assert ex.add(ramp(16, 5.0, 0.0), stamp=0.2, dt=DT, now=0.45) is None
    np.testing.assert_allclose(ex.sample(0.44), [0.44])  # the old chunk up to the arrival
    np.testing.assert_allclose(ex.sample(0.45), [5.0])  # then the new one alone: a naive jump
    ens = ChunkExecutor(1, ExecutorConfig(blend_time=0.0, row_offset=0.0, max_chunk_age=1.0))
    ens.add(ramp(16, 0.0, 0.1), stamp=0.0, dt=DT, now=0.0)
    ens.add(ramp(16, 5.0, 0.0), stamp=0.2, dt=DT, now=0.45)
    assert 0.45 < ens.sample(0.45)[0] < 5.0  # ensembling averages the two plans


def test_rtc_switches_at_the_first_free_row_and_continues_the_committed_prefix():
    ex = ChunkExecutor(1, _cfg("rtc", rtc_soft_horizon=8))
    old = ramp(16, 0.0, 0.1)
    assert ex.add(old, stamp=0.0, dt=DT, now=0.0) is None
    stamp, d = 0.3, 3  # observed at 0.3, computed for ~0.25 s: the chunk is due from row 3 (t = 0.6)
    prefix = committed_prefix(ex, stamp, DT, 16)
    np.testing.assert_allclose(prefix[:, 0], np.minimum(0.3 + 0.1 * np.arange(16), 1.5))  # held after the end
    new = prefix.copy()  # the head keeps the prefix rows exactly (see test_rtc_head) and, through the soft
    new[d:] = prefix[d] + 0.05 * np.arange(16 - d)[:, None]  # mask, starts its own plan where the prefix is
    assert ex.add(new, stamp=stamp, dt=DT, now=0.55, prefix_len=d) is None
    np.testing.assert_allclose(ex.sample(0.59), [0.59])  # still the old chunk until row d of the new one
    np.testing.assert_allclose(ex.sample(0.61), 0.9 * new[3] + 0.1 * new[4])  # then the new one alone
    np.testing.assert_allclose(ex.sample(0.75), 0.5 * (new[4] + new[5]))
    assert abs(ex.sample(0.75)[0] - 0.75) > 0.05  # (not the old chunk, nor an average of the two)
    ts = np.arange(0.0, 1.5, 0.01)
    path = np.array([ex.sample(t)[0] for t in ts])
    assert np.max(np.abs(np.diff(path))) <= 0.0100001  # continuous across the switch: no step above the slope


def test_rtc_refuses_a_prefix_outside_d_le_s_le_h_minus_d():
    assert check_rtc_window(3, 8, 16) is None and check_rtc_window(0, 0, 16) is None
    assert "set the soft-mask horizon s between 5 and 11" in check_rtc_window(5, 3, 16)
    assert "more than half the chunk" in check_rtc_window(9, 9, 16)
    ex = ChunkExecutor(1, _cfg("rtc", rtc_soft_horizon=4))
    why = ex.add(ramp(16, 0.0, 0.0), stamp=0.0, dt=DT, now=0.05, prefix_len=6)
    assert why.startswith("RTC needs d <= s <= H - d, got d=6") and len(ex) == 0
    assert ex.add(ramp(16, 0.0, 0.0), stamp=0.0, dt=DT, now=0.05, prefix_len=2) is None
    with pytest.raises(ValueError, match="execution='blend'"):
        ExecutorConfig(execution="blend")


def _limits() -> SafetyLimits:
    return SafetyLimits(("j1", "gripper"), np.array([-4.0, 0.0]), np.array([4.0, 1.0]), np.array([2.0, 5.0]),
                        np.array([0.05, 1.0]), max_start_steps=10.0)


@pytest.mark.parametrize("execution", ["ensemble", "switch", "rtc"])
def test_a_chunk_starting_far_from_the_current_command_is_refused_in_every_mode(execution):
    ctrl = ArmController(_limits(), DT, _cfg(execution))
    ctrl.reset(np.array([0.0, 0.5]), now=0.0)
    far = np.tile([3.0, 0.5], (16, 1))  # in range, 3 rad from the current command
    why = ctrl.offer_chunk(far, stamp=0.0, dt=DT, now=0.0)
    assert "chunk starts too far from the current command: j1 would jump 3 from 0 to 3" in why
    assert ctrl.chunks_rejected == 1 and len(ctrl.executor) == 0
    near = np.tile([0.4, 0.0], (16, 1))  # 0.4 < 10 steps of 0.05; the gripper may move its whole range
    assert ctrl.offer_chunk(near, stamp=0.0, dt=DT, now=0.0) is None
    cmds = [ctrl.track(0.1 * k).command for k in range(1, 6)]  # the same safety layer: rate-limited
    assert np.max(np.abs(np.diff([[0.0, 0.5], *cmds], axis=0)[:, 0])) <= 0.05 + 1e-12


def test_rtc_start_check_compares_with_the_committed_prefix_at_the_switch():
    ex = ChunkExecutor(2, _cfg("rtc"), start_check=SafetyFilter(_limits()).check_start)
    old = np.column_stack([np.linspace(0.0, 1.5, 16), np.zeros(16)])
    assert ex.add(old, stamp=0.0, dt=DT, now=0.0) is None
    new = np.column_stack([np.full(16, 1.0), np.zeros(16)])  # starts at 1.0: the old chunk is at 1.0 at row 10
    why = ex.add(new, stamp=0.0, dt=DT, now=0.05, prefix_len=2, current=np.array([1.0, 0.0]))
    assert "from the committed prefix" in why  # the prefix at t = 0.2 is 0.2, not the given current command
    assert ex.add(new, stamp=0.0, dt=DT, now=0.05, prefix_len=10) is None  # at row 10 it continues the prefix


def test_committed_prefix_is_what_the_executor_commands_and_none_when_starved():
    ex = ChunkExecutor(1, ExecutorConfig(execution="switch", row_offset=1.0, max_chunk_age=1.0))
    assert committed_prefix(ex, 0.0, DT, 4) is None
    ex.add(ramp(5, 1.0, 1.0), stamp=0.0, dt=DT, now=0.0)  # rows at 0.1 .. 0.5
    got = committed_prefix(ex, 0.2, DT, 6)  # rows of a chunk observed at 0.2: 0.3 .. 0.8
    np.testing.assert_allclose(got[:, 0], [3.0, 4.0, 5.0, 5.0, 5.0, 5.0])


def test_delay_estimator_takes_the_largest_recent_delay_plus_margin():
    est = DelayEstimator(window=3, margin_s=0.02)
    assert est.delay_s() == pytest.approx(0.02) and est.steps(0.05, 16) == 1
    for delay in (0.21, 0.12, 0.08):
        est.record(delay)
    assert est.delay_s() == pytest.approx(0.23) and est.steps(0.05, 16) == 5  # ceil(0.23 / 0.05)
    est.record(0.05)  # 0.21 leaves the window
    assert est.delay_s() == pytest.approx(0.14) and est.steps(0.05, 16) == 3
    est.record(5.0)
    assert est.steps(0.05, 16) == 15  # at most H - 1
    assert DelayEstimator().steps(0.05, 16) == 0
    with pytest.raises(ValueError, match="finite number >= 0"):
        est.record(float("nan"))
    with pytest.raises(ValueError, match="window must be >= 1"):
        DelayEstimator(window=0)


def test_safety_start_check_names_the_joint_and_can_be_turned_off():
    f = SafetyFilter(_limits())
    assert f.check_start(np.array([0.49, 1.0]), np.array([0.0, 0.0])) is None
    why = f.check_start(np.array([0.6, 0.0]), np.array([0.0, 0.0]))
    assert why.startswith("j1 would jump 0.6 from 0 to 0.6, more than max_start_steps=10 steps of 0.05")
    off = SafetyLimits(*(getattr(_limits(), k) for k in ("names", "lower", "upper", "max_velocity", "max_step")),
                       max_start_steps=float("inf"))
    assert SafetyFilter(off).check_start(np.array([3.0, 0.0]), np.array([-3.0, 0.0])) is None
    assert SafetyLimits.from_dict({**{k: getattr(off, k) for k in ("names", "lower", "upper", "max_velocity",
                                                                    "max_step")}, "max_start_steps": 4}).max_start_steps == 4
    with pytest.raises(ValueError, match="max_start_steps must be > 0"):
        SafetyLimits(("a",), np.array([0.0]), np.array([1.0]), np.array([1.0]), np.array([0.1]), max_start_steps=0)


def test_prefix_tracker_mirrors_the_executed_chunks_and_estimates_d():
    from roboalign.control.chunk_executor import PrefixTracker

    tr = PrefixTracker(dim=1, horizon=16, dt=DT)
    assert tr.request(0.0) is None  # nothing committed yet
    first = ramp(16, 0.0, 0.1)
    tr.published(first, stamp=0.0, now=0.25, prefix_len=None)  # 0.25 s after its observation
    req = tr.request(0.4)
    assert req.prefix_len == 3 and req.soft_horizon == 13  # ceil(0.25 / 0.1); s = H - d by default
    np.testing.assert_allclose(req.prefix[:4, 0], [0.4, 0.5, 0.6, 0.7])  # row i at 0.4 + (i + 1) * dt
    bridge = ChunkExecutor(1, ExecutorConfig(execution="rtc", max_chunk_age=1.0))  # the bridge, same chunks
    bridge.add(first, 0.0, DT, now=0.25)
    np.testing.assert_allclose(committed_prefix(bridge, 0.4, DT, 16), req.prefix)
    tr.published(np.full((16, 1), 9.0), stamp=0.4, now=0.5, prefix_len=req.prefix_len)
    nxt = tr.request(0.55).prefix[:, 0]  # rows at 0.65, 0.75, ...: the new chunk takes over at 0.8 (its row 3)
    np.testing.assert_allclose(nxt[:2], [0.55, 0.65])
    np.testing.assert_allclose(nxt[2:], 9.0)
    tr.reset()
    assert tr.request(1.0) is None and tr.delays.delay_s() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="soft_horizon must be in"):
        PrefixTracker(1, 16, DT, soft_horizon=17)
