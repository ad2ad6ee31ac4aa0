"""End to end over real DDS, in separate processes started from the same graph/YAML as sim.launch.py:
LIBERO sim robot + policy node + bridge node. First the tiny exported VLA (ONNX Runtime) drives the
robot for a short episode (it moves, every command stays inside the limits, STOP stops it); then the
policy node is restarted with the scripted expert, which solves the task through the whole stack.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]

rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (make setup)")
from roboalign_msgs.msg import ActionChunk  # noqa: E402
from roboalign_policy import conversions as conv  # noqa: E402
from roboalign_policy.graph import load_graph  # noqa: E402
from roboalign_policy.operator_client import OperatorClient  # noqa: E402
from roboalign_policy.process_graph import ProcessGraph  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from roboalign.action_space import PANDA_LIMITS  # noqa: E402

ARM = [f"fr3_joint{i}" for i in range(1, 8)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from roboalign.control.tiny_model import ensure_tiny_export

    export = ensure_tiny_export(tmp_path_factory.mktemp("tiny"))
    opts = {"providers": ["cpu"], "action_space": "joint_position", "cameras": ["agentview", "wrist"],
            "num_threads": 1}
    graph = load_graph("sim")
    procs = ProcessGraph(graph, {"backend": "onnxruntime", "checkpoint": str(export), "camera_size": "64",
                                 "init_state": "0", "render_every": "3", "backend_options": json.dumps(opts)},
                         tmp_path_factory.mktemp("logs"), env={"OMP_NUM_THREADS": "1"})
    procs.start()
    client = OperatorClient()
    seen = {"chunks": [], "trajs": []}
    client.node.create_subscription(ActionChunk, "/roboalign/action_chunk", seen["chunks"].append, 50)
    client.node.create_subscription(JointTrajectory, "/fr3_arm_controller/joint_trajectory", seen["trajs"].append, 50)
    try:
        deadline = time.monotonic() + 240
        while not (client.wait_for_status(timeout=1.0) and client.joints):
            assert not procs.dead(), {n: procs.log_tail(n) for n in procs.dead()}
            assert time.monotonic() < deadline, "the sim stack did not come up in 240 s"
        yield procs, client, seen
    finally:
        client.close()
        procs.stop()
        for name, p in procs.procs.items():
            assert p.returncode is not None, name


def _steps(client, episode: int, n: int, procs, timeout: float = 180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert not procs.dead(), {k: procs.log_tail(k) for k in procs.dead()}
        st = client.wait_for_status(lambda s: s.episode == episode and (s.steps >= n or s.terminal), timeout=1.0)
        if st is not None:
            return st
    raise AssertionError(f"episode {episode} did not reach {n} steps in {timeout} s")


def test_tiny_onnx_model_drives_the_sim_robot_through_the_bridge(stack) -> None:
    procs, client, seen = stack
    res = client.command("start", instruction="put the alphabet soup in the basket")
    assert res.accepted and res.task == "shelf_to_tray", res.message
    st = _steps(client, 1, 2, procs)
    q0 = np.array([client.joints[j] for j in ARM])
    st = _steps(client, 1, 14, procs)
    assert st.phase == "running", st.message
    q1 = np.array([client.joints[j] for j in ARM])
    assert np.abs(q1 - q0).sum() > 0.01, "the robot did not move"
    assert client.command("stop").accepted
    assert client.wait_for_status(lambda s: s.episode == 1 and s.phase == "stopped", timeout=30) is not None
    chunks = [c for c in seen["chunks"] if c.backend == "onnxruntime"]
    assert len(chunks) >= 5 and all((c.horizon, c.action_dim) == (16, 8) for c in chunks)
    assert all(0 < c.model_latency_ms < 5000 for c in chunks)
    pts = np.concatenate([conv.trajectory_rows(t, ARM)[1] for t in seen["trajs"]])
    assert len(pts) > 10 and np.all(np.isfinite(pts))
    assert np.all(pts >= np.array(PANDA_LIMITS.lower)) and np.all(pts <= np.array(PANDA_LIMITS.upper))


def test_trials_with_the_scripted_expert_write_the_results_table(stack, tmp_path) -> None:
    """One sim trial of the protocol: the expert (sim-only privileged poses) solves the task through the
    whole stack, the sim predicate decides success, and the Table-4 style results are written."""
    from roboalign.tasks import DEFAULT_TASKS
    from roboalign.trials import RESULTS_MD, RESULTS_PNG, read_trials, run_trials

    procs, client, _ = stack
    procs.restart("policy_node", {"backend": "expert", "checkpoint": "",
                                  "backend_options": '{"action_space": "joint_position"}'})
    time.sleep(3.0)
    run_trials(client, [DEFAULT_TASKS.get("shelf_to_tray")], "sim", 1, tmp_path, "expert", timeout=400.0,
               echo=lambda s: None)
    (trial,) = read_trials(tmp_path)
    assert trial.success and trial.outcome == "success" and 40 < trial.steps < 400, trial
    assert trial.instruction == "pick up the alphabet soup and place it in the basket"
    assert "| sim | shelf_to_tray | alphabet soup | 100.0 (1/1) |" in (tmp_path / RESULTS_MD).read_text()
    assert (tmp_path / RESULTS_PNG).is_file()
