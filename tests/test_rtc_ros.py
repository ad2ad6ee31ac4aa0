"""Real-time chunking over real DDS: the sim graph with an injected 200 ms inference delay, the policy node sending
the committed prefix with each inference and the bridge executing ``rtc`` mode. Each chunk's first rows (the
delay's worth) equal what the previous chunk commands at the same times, and the bridge's commands are
continuous within the per-step limit at every chunk switch."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]

rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (make setup)")

from roboalign_policy import conversions as conv  # noqa: E402
from roboalign_policy.graph import load_graph  # noqa: E402
from roboalign_policy.tools.process_graph import ProcessGraph  # noqa: E402
from tests.ros_helpers.sim_stack import following  # noqa: E402

ARM = [f"fr3_joint{i}" for i in range(1, 8)]
DELAY_S = 0.2


@pytest.fixture(scope="module")
def rtc_stack(tiny_joint_export, tmp_path_factory):
    opts = {"providers": ["cpu"], "action_space": "joint_position", "cameras": ["agentview", "wrist"],
            "num_threads": 1}
    procs = ProcessGraph(load_graph("sim"), {"backend": "onnxruntime", "checkpoint": str(tiny_joint_export),
                                             "camera_size": "64", "init_state": "0", "render_every": "2",
                                             "backend_options": json.dumps(opts)},
                         tmp_path_factory.mktemp("logs"), env={"OMP_NUM_THREADS": "1"},
                         params={"policy_node": {"rtc_prefix": True, "inject_delay_ms": DELAY_S * 1e3},
                                 "bridge_node": {"execution": "rtc"}})
    procs.start()
    for client, seen in following(procs, depth=200):
        yield procs, client, seen


def _rows(msg) -> tuple[float, float, np.ndarray]:
    """(observation time, dt, (T, D) rows) of an ActionChunk."""
    stamp = msg.observation_stamp.sec + msg.observation_stamp.nanosec * 1e-9
    return stamp, float(msg.dt), np.asarray(msg.data, np.float64).reshape(msg.horizon, msg.action_dim)


def _run_episode(procs, client, steps: int) -> None:
    res = client.command("start", instruction="put the alphabet soup in the basket")
    assert res.accepted, res.message
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert not procs.dead(), {k: procs.log_tail(k) for k in procs.dead()}
        st = client.wait_for_status(lambda s: s.episode == 1 and (s.steps >= steps or s.terminal), timeout=1.0)
        if st is not None:
            assert st.phase == "running", st.message
            break
    else:
        raise AssertionError(f"the episode did not reach {steps} steps")
    assert client.command("stop").accepted
    assert client.wait_for_status(lambda s: s.episode == 1 and s.phase == "stopped", timeout=30) is not None


def test_rtc_chunks_continue_the_committed_prefix_and_the_bridge_switches_smoothly(rtc_stack):
    procs, client, seen = rtc_stack
    _run_episode(procs, client, steps=40)
    chunks = [_rows(c) for c in seen["chunks"] if c.backend == "onnxruntime"]
    assert len(chunks) >= 4, len(chunks)
    checked = 0
    for (s0, dt, prev), (s1, _, new) in zip(chunks, chunks[1:], strict=False):
        shift = int(round((s1 - s0) / dt))  # rows of prev before the new chunk's row 0
        d = int(np.ceil(DELAY_S / dt - 1e-9))  # the prefix the policy node committed (its delay estimate)
        rows = list(range(min(d, prev.shape[0] - shift)))
        if shift < 0 or not rows:
            continue
        np.testing.assert_allclose(new[rows], prev[[shift + i for i in rows]], atol=2e-3)  # the prefix, held
        checked += 1
    assert checked >= 3, checked
    status = client.wait_for_status(timeout=2.0)
    limit = 0.1  # the bridge's max_joint_step (config/sim.yaml)
    pts = np.concatenate([conv.trajectory_rows(t, ARM)[1][:1] for t in seen["trajs"]])  # the command of each tick
    assert len(pts) > 20 and status is not None
    assert np.max(np.abs(np.diff(pts, axis=0))) <= limit + 1e-9  # continuous at every switch: within the step
