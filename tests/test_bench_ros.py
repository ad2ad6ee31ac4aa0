"""bench ros's arithmetic on the probe's raw timings (no ROS needed)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from roboalign.bench.ros import image_size, overheads_ms, window_rate_min


def test_image_size_parses_wxh_and_refuses_garbage() -> None:
    assert image_size("640x480") == (640, 480) and image_size("1280X720") == (1280, 720) and image_size("96") == (96, 96)
    for bad in ("640x", "x480", "0x480", "axb", "1x2x3"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected WxH"):
            image_size(bad)


def test_overhead_is_publication_to_trajectory_minus_the_policy_time() -> None:
    dt_ns = 50_000_000
    stamps = [1_000_000_000 + k * 33_333_333 for k in range(5)]
    raw = {"published": [(s, s * 1e-9 + 0.001) for s in stamps],
           # trajectories start at obs + dt; the stamp went through float seconds (a few ns off)
           "policy_traj": [(s + dt_ns + 3, s * 1e-9 + 0.001 + 0.012 + k * 0.001) for k, s in enumerate(stamps)],
           "chunks": [(s, 10.0) for s in stamps[:4]] + [(123, 10.0)],  # the last matches no image: left out
           "dt_ns": dt_ns}
    over, model = overheads_ms(raw)
    np.testing.assert_allclose(over, [2.0, 3.0, 4.0, 5.0], atol=1e-6)
    np.testing.assert_allclose(model, 10.0)


def test_window_rate_min_finds_the_worst_five_seconds() -> None:
    t = np.arange(0, 20, 1 / 30)
    assert window_rate_min(t) == pytest.approx(30.0)
    assert window_rate_min(np.r_[t[:300], t[315:]]) == pytest.approx(27.0)  # 15 frames missing in one window
    assert window_rate_min(t[:10]) == 0.0  # shorter than a window
