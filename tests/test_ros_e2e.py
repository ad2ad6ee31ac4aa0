"""End to end over real DDS, in separate processes started from the same graph/YAML as sim.launch.py:
LIBERO sim robot + policy node + bridge node. First the tiny exported VLA (ONNX Runtime) drives the
robot for a short episode (it moves, every command stays inside the limits, STOP stops it); then the sim
reset service is checked to set up the requested LIBERO init state reproducibly; then the policy node is
restarted with the scripted expert, which solves the task through the whole stack in a `roboalign trials`
run from an explicit init state.

Cost (2 cores): the tiny ONNX export is built once and kept in pytest's cache, keyed on the source that
builds it (~16 s of CPU saved on every later run), and the expert trial renders every 8th step only (it
needs no images; the image watchdogs allow 10 steps).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]

rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (make setup)")
from roboalign_msgs.msg import PolicyStatus  # noqa: E402

from roboalign.spec.action_space import PANDA_LIMITS  # noqa: E402
from roboalign_policy import conversions as conv  # noqa: E402
from roboalign_policy.graph import load_graph  # noqa: E402
from roboalign_policy.tools.process_graph import ProcessGraph  # noqa: E402
from tests.ros_helpers.sim_stack import following  # noqa: E402

ARM = [f"fr3_joint{i}" for i in range(1, 8)]


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stack(tiny_joint_export, tmp_path_factory):
    export = tiny_joint_export
    opts = {"providers": ["cpu"], "action_space": "joint_position", "cameras": ["agentview", "wrist"],
            "num_threads": 1}
    graph = load_graph("sim")
    procs = ProcessGraph(graph, {"backend": "onnxruntime", "checkpoint": str(export), "camera_size": "64",
                                 "init_state": "0", "render_every": "3", "backend_options": json.dumps(opts)},
                         tmp_path_factory.mktemp("logs"), env={"OMP_NUM_THREADS": "1"})
    procs.start()
    for client, seen in following(procs, depth=50):
        yield procs, client, seen
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


def test_the_sim_resets_to_the_requested_init_state_reproducibly(stack) -> None:
    """The sim reset service takes the init state (as `roboalign trials` sends it via the bridge): the same
    state gives the same scene, another state another scene, an out-of-range one is refused."""
    from roboalign_msgs.srv import TaskCommand
    from std_msgs.msg import String

    procs, client, _ = stack
    scenes = []
    client.node.create_subscription(String, "/sim/privileged", lambda m: scenes.append(json.loads(m.data)), 10)
    reset = client.node.create_client(TaskCommand, "/sim_robot/reset")
    assert reset.wait_for_service(timeout_sec=30)

    def reset_to(k: int):
        n0 = len(scenes)
        fut = reset.call_async(TaskCommand.Request(command=TaskCommand.Request.RESET, init_state=k))
        deadline = time.monotonic() + 120
        while not fut.done():
            assert time.monotonic() < deadline and not procs.dead(), "no answer from the sim reset service"
            time.sleep(0.05)
        res = fut.result()
        first = None
        while res.accepted and first is None:  # the scene as the reset left it (step 0), before any idle step
            first = next((m for m in scenes[n0:] if m.get("init_state") == k and m.get("step") == 0), None)
            assert first is not None or time.monotonic() < deadline + 30, "no privileged state from the reset"
            time.sleep(0.05)
        # the scene: where the object, the basket and the arm are (LIBERO-Object keeps some objects in place)
        return res, (np.r_[first["object_pos"], first["target_pos"], first["joint_pos"]] if first else None)

    (r3, a), (r5, b), (r3b, c) = reset_to(3), reset_to(5), reset_to(3)
    assert (r3.accepted, r3.init_state, r5.init_state, r3b.init_state) == (True, 3, 5, 3), r3.message
    np.testing.assert_allclose(a, c, atol=1e-4)  # ~1e-5 apart (LIBERO's settling steps after the reset)
    assert np.abs(a - b).max() > 1e-3, "init states 3 and 5 gave the same scene"
    bad, _ = reset_to(10_000)
    assert not bad.accepted and "out of range" in bad.message


def test_trials_with_the_scripted_expert_write_the_results_table(stack, tmp_path) -> None:
    """One sim trial of the protocol: the expert (sim-only privileged poses) solves the task through the
    whole stack, the sim predicate decides success, and the Table-4 style results are written."""
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    from roboalign.commands.trials import RESULTS_MD, RESULTS_PNG, read_trials, run_trials
    from roboalign.spec.tasks import DEFAULT_TASKS

    procs, client, _ = stack
    procs.restart("policy_node", {"backend": "expert", "checkpoint": "",
                                  "backend_options": '{"action_space": "joint_position"}'})
    sim = AsyncParameterClient(client.node, "sim_robot_node")
    assert sim.wait_for_services(timeout_sec=30)
    fut = sim.set_parameters([Parameter("render_every", value=8)])  # the expert needs no images
    deadline = time.monotonic() + 30
    while not fut.done():
        assert time.monotonic() < deadline, "sim_robot_node did not answer the parameter change"
        time.sleep(0.05)
    assert fut.result().results[0].successful
    seen_status = []
    wait_for_policy = client.node.create_subscription(PolicyStatus, "/roboalign/policy_status", seen_status.append, 10)
    deadline = time.monotonic() + 60
    while not any(st.backend == "expert" and st.state == PolicyStatus.STATE_READY for st in seen_status):
        assert time.monotonic() < deadline and not procs.dead(), "the expert policy node did not come up"
        time.sleep(0.1)
    client.node.destroy_subscription(wait_for_policy)
    run_trials(client, [DEFAULT_TASKS.get("shelf_to_tray")], "sim", 1, tmp_path, "expert", timeout=400.0,
               echo=lambda s: None, first_init_state=2)
    (trial,) = read_trials(tmp_path)
    assert trial.success and trial.outcome == "success" and 40 < trial.steps < 400, trial
    assert trial.init_state == 2  # the plan's init state, as the simulator reported it
    assert trial.instruction == DEFAULT_TASKS.get("shelf_to_tray").sim.instruction  # the scene's instruction
    assert "| sim | shelf_to_tray | alphabet soup | 100.0 (1/1) |" in (tmp_path / RESULTS_MD).read_text()
    assert (tmp_path / RESULTS_PNG).is_file()
