"""`roboalign record` supervises the nodes it records on: the bridge (a real process of the real-robot graph's
parameters) SIGKILLed during the third take stops the run at once, naming the node and the signal with the end of
its log, exit status 1; both kept takes stay in the dataset, and the cut take's recording is left for
``roboalign dataset repair`` (the bridge is reaped: its pid is no live recorder). The person at the robot (a
scripted console moving a kinematic arm by hand) is the hardware boundary."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.serial]  # serial: it times a SIGKILL and the takes around it

rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (make setup)")
from roboalign.commands.dataset import main as dataset_main  # noqa: E402
from roboalign.commands.record import main as record_main  # noqa: E402
from roboalign.commands.record import read_takes  # noqa: E402
from roboalign_policy.graph import NodeSpec, load_graph  # noqa: E402
from roboalign_policy.tools.process_graph import ProcessGraph  # noqa: E402
from tests.ros_helpers.kinematic_robot import START, KinematicRobot  # noqa: E402

CAM = "/camera/supervised/color/image_raw"
TIMEOUT_S = 120.0  # the per-take limit: supervision must end the cut take long before it


class KillingHand:
    """The person: keeps the first takes (moving the arm by hand, then Enter); during the third take, after some
    motion, the bridge process is SIGKILLed (the time noted) and Enter never comes."""

    def __init__(self, robot: KinematicRobot, procs: ProcessGraph, kill_take: int) -> None:
        self.robot, self.procs, self.kill_take = robot, procs, kill_take
        self.takes = 0
        self.killed_at: float | None = None
        self._done = threading.Event()

    def ask(self, prompt: str) -> str:
        if "keep, discard or redo" in prompt:
            return "k"
        self.takes += 1
        self._done.clear()
        threading.Thread(target=self._move, args=(self.takes == self.kill_take,), daemon=True).start()
        return ""

    def _move(self, kill: bool) -> None:
        time.sleep(0.5)
        for k in range(100 if kill else 40):
            with self.robot.lock:
                self.robot.q = START + 0.004 * k
            time.sleep(0.02)
        if kill:  # 2 s into the take: the recorder has written chunks of it (flushed every second)
            os.kill(self.procs.procs["bridge_node"].pid, signal.SIGKILL)
            self.killed_at = time.monotonic()
            return
        self._done.set()

    def pressed(self) -> bool:
        return self._done.is_set()


@pytest.fixture
def bridge_process(tmp_path):
    """bridge_node alone, as a supervised process, with the real-robot parameters file and the test's camera."""
    real = load_graph("real_robot")
    graph = dataclasses.replace(real, nodes=(NodeSpec("bridge_node", "bridge_node"),))
    params = {"camera_topics": [CAM], "home_first": False, "home_pose": [float(v) for v in START],
              "realtime_priority": 0, "image_timeout_s": 1.0, "state_timeout_s": 1.0, "chunk_timeout_s": 30.0,
              "start_wait_s": 30.0}  # a take started before the first joint state arrives waits for it (busy CI)
    procs = ProcessGraph(graph, {"record_dir": str(tmp_path / "bags")}, tmp_path / "logs",
                         params={"bridge_node": params}, supervise=True)
    procs.start()
    try:
        yield procs
    finally:
        procs.stop()


def test_a_node_killed_during_record_is_named_and_nothing_kept_is_lost(ros, tmp_path, bridge_process, capsys):
    procs, out = bridge_process, tmp_path / "out"
    robot = KinematicRobot([CAM], rate_hz=50.0)
    ros(robot)
    hand = KillingHand(robot, procs, kill_take=3)
    code = record_main(["--task", "bottle_to_basket", "--object", "ketchup", "--episodes", "3", "--mode",
                        "kinesthetic", "--out", str(out), "--timeout", str(TIMEOUT_S)], procs=procs, console=hand)
    reported = time.monotonic()
    err = capsys.readouterr().err
    assert code == 1, err
    assert hand.killed_at is not None, err
    with capsys.disabled():
        print(f"\nbridge_node SIGKILLed -> record reported it {reported - hand.killed_at:.2f} s later")
    assert reported - hand.killed_at < TIMEOUT_S / 4, "the take's timeout ended the run, not the supervision"
    assert "[record] error: node bridge_node killed by SIGKILL; last lines of" in err, err
    assert "stopped during take 2 of bottle_to_basket/ketchup: 2 kept demonstrations" in err, err
    assert "roboalign dataset repair" in err, err
    assert "bridge_node" in procs.dead() and procs.dead()["bridge_node"] == -signal.SIGKILL

    from roboalign.data.dataset import EpisodeDataset

    takes = read_takes(out)
    assert [t.verdict for t in takes] == ["keep", "keep"], takes
    data = EpisodeDataset(out / "dataset")
    assert len(data) == 2 and all(data[k].meta["complete"] for k in range(2))
    metas = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "bags").glob("*/episode.json")}
    (cut,) = [name for name, m in metas.items() if name not in {t.bag for t in takes}]
    assert metas[cut]["outcome"] == "running"  # the bridge died holding it open
    assert dataset_main(["repair", str(tmp_path / "bags")]) == 0
    assert "1 crashed episode(s) repaired" in capsys.readouterr().out
    repaired = json.loads((tmp_path / "bags" / cut / "episode.json").read_text())
    assert repaired["outcome"] == "incomplete" and "messages recovered" in repaired["message"], repaired
