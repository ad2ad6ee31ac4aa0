"""Chunk executor: time-aligned sampling, continuity across chunk boundaries, late and stale chunks."""

from __future__ import annotations

import numpy as np
import pytest

from roboalign.control.chunk_executor import ChunkExecutor, ExecutorConfig


def line(t0: float, n: int, dt: float, slope: float, offset: float = 0.0) -> np.ndarray:
    """(n, 1) chunk sampling x(t) = offset + slope * t at t0 + k * dt."""
    return (offset + slope * (t0 + dt * np.arange(n)))[:, None]


def test_sampling_interpolates_rows_by_time_and_skips_the_past() -> None:
    ex = ChunkExecutor(1, ExecutorConfig(blend_time=0.0, row_offset=0.0))
    # a chunk computed from an observation at t=1.0 arrives late, at t=1.12
    assert ex.add(line(1.0, 10, 0.05, slope=2.0), stamp=1.0, dt=0.05, now=1.12) is None
    for t in (1.12, 1.13, 1.2, 1.4437):
        np.testing.assert_allclose(ex.sample(t), [2.0 * t], atol=1e-12)
    # the last row is held for one dt, then the executor is starved
    np.testing.assert_allclose(ex.sample(1.49), [2.0 * 1.45])
    assert ex.sample(1.5) is None


def test_default_row_offset_makes_row_0_the_pose_one_step_after_the_observation() -> None:
    """A closed-loop one-row chunk computed at t (the scripted expert) is the target for t + dt."""
    ex = ChunkExecutor(1, ExecutorConfig(blend_time=0.0))
    assert ex.add(np.array([[5.0]]), stamp=1.0, dt=0.05, now=1.001) is None
    np.testing.assert_allclose(ex.sample(1.05), [5.0])
    np.testing.assert_allclose(ex.sample(1.0999), [5.0])
    assert ex.sample(1.1) is None
    two = ChunkExecutor(1, ExecutorConfig(blend_time=0.0))
    two.add(np.array([[1.0], [2.0]]), stamp=0.0, dt=0.1, now=0.0)
    np.testing.assert_allclose(two.sample(0.15), [1.5])  # rows at 0.1 and 0.2


def test_refusals_say_why() -> None:
    ex = ChunkExecutor(2, ExecutorConfig(max_chunk_age=0.3, max_future=0.05, row_offset=0.0))
    good = np.zeros((5, 2))
    assert "stale chunk" in ex.add(good, stamp=0.0, dt=0.1, now=0.31)
    assert "in the future" in ex.add(good, stamp=1.0, dt=0.1, now=0.5)
    short = ChunkExecutor(2, ExecutorConfig(max_chunk_age=1.0, row_offset=0.0))
    assert "already ended" in short.add(np.zeros((2, 2)), stamp=0.0, dt=0.1, now=0.25)
    assert "shape (5, 3)" in ex.add(np.zeros((5, 3)), stamp=0.0, dt=0.1, now=0.0)
    assert "non-finite" in ex.add(np.full((5, 2), np.nan), stamp=0.0, dt=0.1, now=0.0)
    assert "dt=0" in ex.add(good, stamp=0.0, dt=0.0, now=0.0)
    assert len(ex) == 0
    with pytest.raises(ValueError, match="max_chunks"):
        ExecutorConfig(max_chunks=0)


def test_blending_is_continuous_when_a_disagreeing_chunk_arrives() -> None:
    """Two chunks that disagree by 1.0: without blending the target would jump by ~0.5 or more."""
    cfg = ExecutorConfig(ensemble_decay=4.0, blend_time=0.1, row_offset=0.0)
    ex = ChunkExecutor(1, cfg)
    period = 0.002
    ex.add(line(0.0, 40, 0.05, slope=1.0), stamp=0.0, dt=0.05, now=0.0)
    ts = np.arange(0.0, 2.3, period)
    out = []
    for t in ts:
        if abs(t - 0.5) < period / 2:  # a new chunk 1.0 above the first one arrives at t = 0.5
            assert ex.add(line(0.45, 40, 0.05, slope=1.0, offset=1.0), stamp=0.45, dt=0.05, now=t) is None
        out.append(ex.sample(t)[0])
    out = np.array(out)
    jumps = np.abs(np.diff(out))
    assert jumps.max() < 0.05  # continuous: the slope is 1/s plus a 1.0 step spread over blend_time
    # after the blend the newer chunk dominates (decay favours new chunks)...
    assert out[ts.searchsorted(1.2)] - 1.2 > 0.75
    # ...and once the first chunk has run out only the second remains
    np.testing.assert_allclose(out[ts.searchsorted(2.1)], 1.0 + ts[ts.searchsorted(2.1)], atol=1e-9)
    # without ramps the same arrival is a jump: the test above would catch a broken blend
    raw = ChunkExecutor(1, ExecutorConfig(ensemble_decay=4.0, blend_time=0.0, row_offset=0.0))
    raw.add(line(0.0, 40, 0.05, slope=1.0), stamp=0.0, dt=0.05, now=0.0)
    before = raw.sample(0.5)[0]
    raw.add(line(0.45, 40, 0.05, slope=1.0, offset=1.0), stamp=0.45, dt=0.05, now=0.5)
    assert raw.sample(0.5)[0] - before > 0.4


def test_negative_decay_favours_older_chunks_like_act() -> None:
    ex = ChunkExecutor(1, ExecutorConfig(ensemble_decay=-10.0, blend_time=0.0, row_offset=0.0))
    ex.add(np.zeros((20, 1)), stamp=0.0, dt=0.05, now=0.0)
    ex.add(np.ones((20, 1)), stamp=0.3, dt=0.05, now=0.3)
    w_new = 1.0 / (1.0 + np.exp(10.0 * 0.3))  # weights exp(+10 * age): the older chunk weighs more
    np.testing.assert_allclose(ex.sample(0.4), [w_new], atol=1e-9)
    assert ex.sample(0.4)[0] < 0.5


def test_max_chunks_drops_the_oldest() -> None:
    ex = ChunkExecutor(1, ExecutorConfig(max_chunks=2, blend_time=0.0, ensemble_decay=0.0, row_offset=0.0))
    for k in range(3):
        ex.add(np.full((50, 1), float(k)), stamp=0.01 * k, dt=0.05, now=0.01 * k)
    assert len(ex) == 2
    np.testing.assert_allclose(ex.sample(0.1), [1.5])
    assert ex.covered_until() == pytest.approx(0.02 + 2.5)
