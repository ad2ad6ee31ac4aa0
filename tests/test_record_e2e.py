"""Teach the robot, the whole loop in sim over real DDS: the scripted expert plays the teleoperator on the bridge's
leader input, `roboalign record` keeps a demonstration (rosbag2 -> our episode format), a head is trained on it
(`roboalign train vla`, a few steps), exported (ONNX) and deployed (`roboalign trials`), all from the same running
sim stack (sim_robot_node + policy_node + bridge_node processes, the graph of sim.launch.py).

Small N (one demonstration, three training steps): it proves that the path connects and loses nothing on the way
(every commanded step is in the episode, commanded and measured actions both kept), not that the head is good;
the measured comparison with demos collected directly in sim is in the README.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]

rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (make setup)")
from roboalign_policy.graph import load_graph  # noqa: E402
from roboalign_policy.operator_client import OperatorClient  # noqa: E402
from roboalign_policy.process_graph import ProcessGraph  # noqa: E402

from roboalign.record import ExpertOperatorRole, Recorder, read_takes  # noqa: E402
from roboalign.tasks import DEFAULT_TASKS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TASK = DEFAULT_TASKS.get("shelf_to_tray")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("record")
    procs = ProcessGraph(load_graph("sim"), {"record_dir": str(out / "bags"), "camera_size": "64"}, out / "logs")
    procs.start()
    client = OperatorClient()
    try:
        client.wait_for_bridge(timeout=240.0)
        assert client.wait_for_status(timeout=240.0) is not None, procs.log_tail("sim_robot_node")
        yield procs, client, out
    finally:
        client.close()
        procs.stop()


def test_record_a_demo_train_export_and_deploy(sim) -> None:
    procs, client, out = sim
    rec = Recorder(client, out, "leader", ExpertOperatorRole(client), None, timeout=240.0)
    assert rec.record(TASK, TASK.sim_object, 1, sim=True) == 1, procs.log_tail("bridge_node")
    takes = read_takes(out)
    keep = [t for t in takes if t.verdict == "keep"]
    assert len(keep) == 1 and keep[0].outcome == "success" and keep[0].mode == "leader", takes

    from roboalign.data.bag_streams import read_bag_episode
    from roboalign.data.dataset import EpisodeDataset

    bag = read_bag_episode(out / "bags" / keep[0].bag)  # the leader input is in the raw log, as provenance
    assert len(bag.streams["/roboalign/teleop/leader_joint_states"]) > 50 and len(bag.by_role("joint_states")) == 1

    ds = EpisodeDataset(out / "dataset")
    (ep,) = [ds[i] for i in range(len(ds))]
    n = ep.actions["joint_position"].shape[0]
    assert abs(n - keep[0].steps) <= 2, f"{n} grid steps for {keep[0].steps} commanded ones"
    assert ep.robot["joint_position_command"].shape == (n, 8) and ep.images["agentview"].shape[1:] == (64, 64, 3)
    assert ep.meta["complete"] and ep.meta["outcome"] == "success"
    # the leader (the expert) moved the arm: the measured action follows the commanded one
    cmd, meas = ep.robot["joint_position_command"][:, :7], ep.actions["joint_position"][:, :7]
    assert np.ptp(meas, axis=0).max() > 0.1 and np.abs(cmd - meas).max() < 0.2

    from roboalign.training.cli import main as train

    from roboalign.export.cli import main as export

    head = out / "head"
    assert train(["vla", "--config", str(ROOT / "training/configs/vla_tiny_joint.yaml"), "--set",
                  f"dataset={out / 'dataset'}", "--set", "steps=3", "--set", f"output_dir={head}"]) == 0
    assert json.loads((head / "metrics.json").read_text())["steps"] == 3 and (head / "checkpoint").is_dir()
    assert export(["--checkpoint", str(head / "checkpoint"), "--out", str(out / "export")]) == 0

    from roboalign.trials import RESULTS_MD, read_trials, run_trials

    client.set_parameters("bridge_node", {"mode": "policy"})
    opts = {"providers": ["cpu"], "num_threads": 1}
    procs.restart("policy_node", {"backend": "onnxruntime", "checkpoint": str(out / "export"),
                                  "backend_options": json.dumps(opts)})
    run_trials(client, [TASK], "sim", 1, out / "trials", "recorded", timeout=10.0, echo=lambda s: None)
    (trial,) = read_trials(out / "trials")
    assert trial.label == "recorded" and trial.steps > 0 and trial.init_state == 0, trial
    assert "recorded" in (out / "trials" / RESULTS_MD).read_text()
