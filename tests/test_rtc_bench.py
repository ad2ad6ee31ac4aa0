"""``roboalign bench rtc``: Wilson intervals, the summary line, and a short delayed closed loop in LIBERO."""

from __future__ import annotations

import math

import numpy as np
import pytest

from roboalign.bench.rtc import BenchConfig, Trace, rms_jerk, run_episode, summary_line, switch_jumps, wilson

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_wilson_interval_matches_the_formula():
    lo, hi = wilson(7, 20)
    assert (round(lo, 4), round(hi, 4)) == (0.1812, 0.5671)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0 and wilson(0, 0) == (0.0, 1.0)


def test_jumps_jerk_and_the_summary_line():
    t = Trace(targets=[np.full(8, v) for v in (0.0, 0.0, 0.0, 1.0, 1.0)], eef=[np.zeros(3)] * 3 + [np.ones(3)] * 2,
              switch_steps=[3], switch_gaps=[1.0])
    assert switch_jumps(t) == (1.0, pytest.approx(math.sqrt(3)))
    assert rms_jerk(t, 0.5) == pytest.approx(math.sqrt((8.0 ** 2 + 16.0 ** 2) / 2))  # 3rd diffs 1, -2 over 0.5^3
    fig = {"max_joint_jump": 0.3, "success": 0.5}
    res = {"switch": {"200": fig, "300": fig, "0": fig},
           "rtc": {"200": {**fig, "max_joint_jump": 0.06}, "300": fig, "0": fig}}
    line = summary_line(res, trained_head=False)
    assert line.startswith("rtc: jump_ratio_200ms=0.200 ") and "trained_head=no" in line


@pytest.fixture(scope="module")
def tiny_joint_policy(tmp_path_factory):
    from roboalign.control.tiny_model import make_tiny_joint_checkpoint
    from roboalign.runtime.policy import Policy

    ckpt = make_tiny_joint_checkpoint(tmp_path_factory.mktemp("rtc") / "vla")
    return Policy.from_checkpoint(ckpt, backend="torch", action_space="joint_position", num_threads=1)


@pytest.mark.sim
def test_delayed_closed_loop_rtc_continues_the_prefix_where_switching_jumps(tiny_joint_policy):
    from roboalign.sim.libero_env import LiberoEnv, LiberoEnvConfig

    cfg = BenchConfig(episodes=1, max_steps=34, execute_steps=8)
    with LiberoEnv(LiberoEnvConfig(task="bottle_to_basket", action_space="joint_position", max_steps=34)) as env:
        naive = run_episode(env, tiny_joint_policy, "switch", 200, 0, cfg)
        rtc = run_episode(env, tiny_joint_policy, "rtc", 200, 0, cfg)
    assert len(naive.targets) == len(rtc.targets) == 34  # the robot keeps executing while chunks are computed
    assert naive.chunks == rtc.chunks == 4 and len(rtc.switch_steps) == 3
    assert rtc.switch_steps == [12, 20, 28]  # asked at 8, 16, 24; 4 steps (200 ms) of committed prefix each
    # the first chunk arrives after the delay: the robot holds its start pose until then (step 4)
    np.testing.assert_array_equal(naive.targets[0], naive.targets[3])
    assert max(rtc.switch_gaps) < 0.5 * max(naive.switch_gaps), (rtc.switch_gaps, naive.switch_gaps)
