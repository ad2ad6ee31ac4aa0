"""`roboalign record` with a person at the robot (the hardware boundary: a scripted console and a kinematic arm
moved by hand), over real DDS: kinesthetic takes are recorded by the bridge, kept / discarded as the operator says,
converted into the dataset at once, resumed by a second run, and a bag no take mentions is listed unreviewed."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (make setup)")
from roboalign.commands.record import HumanOperator, Recorder, read_takes  # noqa: E402
from roboalign.spec.tasks import DEFAULT_TASKS  # noqa: E402
from roboalign_policy.tools.operator_client import OperatorClient  # noqa: E402
from tests.ros_helpers.executor import wait_until  # noqa: E402
from tests.ros_helpers.kinematic_robot import START, KinematicRobot  # noqa: E402
from tests.test_ros_nodes import CAM, bridge  # noqa: E402

TASK = DEFAULT_TASKS.get("bottle_to_basket")


class Hand:
    """The person: answers prompts from a script; during a take moves the arm by hand, then presses Enter."""

    def __init__(self, robot: KinematicRobot, verdicts: list[str]) -> None:
        self.robot, self.verdicts, self.prompts = robot, list(verdicts), []
        self._done = threading.Event()

    def ask(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if "keep, discard or redo" in prompt:
            return self.verdicts.pop(0)
        self._done.clear()
        threading.Thread(target=self._move, daemon=True).start()  # Enter: the take starts; the hand moves
        return ""

    def _move(self) -> None:
        time.sleep(0.5)
        for k in range(40):
            with self.robot.lock:
                self.robot.q = START + 0.005 * k
            time.sleep(0.02)
        self._done.set()

    def pressed(self) -> bool:
        return self._done.is_set()


def test_kinesthetic_takes_are_recorded_kept_or_discarded_and_resumed(ros, tmp_path) -> None:
    robot = KinematicRobot([CAM], rate_hz=50.0)
    ros(bridge(record_dir=str(tmp_path / "bags"), chunk_timeout_s=30.0), robot)
    client = OperatorClient()
    try:
        client.wait_for_bridge(10.0)
        wait_until(lambda: client.wait_for_status(timeout=0.5) is not None, 10, "episode status")
        hand = Hand(robot, ["k"])
        rec = Recorder(client, tmp_path, "kinesthetic", HumanOperator(hand, echo=lambda s: None), hand,
                       echo=lambda s: None)
        assert rec.record(TASK, "ketchup", 1, sim=False) == 1
        assert robot.commands == [], "kinesthetic: the bridge sent nothing to the arm"
        (take,) = read_takes(tmp_path)
        assert take.verdict == "keep" and take.mode == "kinesthetic" and take.object == "ketchup"
        assert "ketchup" in hand.prompts[0]

        from roboalign.data.dataset import EpisodeDataset

        ep = EpisodeDataset(tmp_path / "dataset")[0]
        q = ep.state[:, :7]
        assert np.ptp(q[:, 0]) > 0.1, "the hand's motion is in the episode"
        assert ep.meta["complete"]

        hand.verdicts = ["d", "k"]  # a second run continues: one discarded take, then a kept one
        rec2 = Recorder(client, tmp_path, "kinesthetic", HumanOperator(hand, echo=lambda s: None), hand,
                        echo=lambda s: None)
        assert rec2.record(TASK, "ketchup", 2, sim=False) == 2
        takes = read_takes(tmp_path)
        assert [t.verdict for t in takes] == ["keep", "discard", "keep"] and [t.take for t in takes] == [0, 1, 2]
        assert len(EpisodeDataset(tmp_path / "dataset")) == 2, "the discarded take is not in the dataset"

        shutil.copytree(tmp_path / "bags" / takes[1].bag, tmp_path / "bags" / "episode_0099_bottle_to_basket")
        rec2.adopt_crashed()  # a bag no take mentions: listed, never converted by itself
        assert read_takes(tmp_path)[-1].verdict == "unreviewed"
        assert len(EpisodeDataset(tmp_path / "dataset")) == 2
    finally:
        client.close()


def test_record_refuses_a_bridge_that_records_nothing(ros) -> None:
    ros(KinematicRobot([CAM]), bridge())
    client = OperatorClient()
    try:
        client.wait_for_bridge(10.0)
        with pytest.raises(RuntimeError, match="records nothing: start it with record_dir"):
            Recorder(client, None, "teleop", None, None)
    finally:
        client.close()
