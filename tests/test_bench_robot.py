"""The bench's robot stand-in as its own process (``roboalign_policy.tools.bench_robot``): it follows the commands it
receives, publishes where they put it, records each command's DDS timestamps, and writes them on SIGINT."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (make setup)")
from sensor_msgs.msg import JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from roboalign.spec.action_space import FR3_HOME, FR3_JOINT_NAMES  # noqa: E402
from roboalign_policy import conversions as conv  # noqa: E402
from roboalign_policy import qos as q  # noqa: E402
from roboalign_policy.tools.bench_robot import between  # noqa: E402
from tests.ros_helpers.executor import wait_until  # noqa: E402


def _trajectory(node, pos: np.ndarray) -> JointTrajectory:
    stamp = node.get_clock().now().to_msg()
    return conv.trajectory(list(FR3_JOINT_NAMES), pos[None], 0.02, stamp)


def test_the_robot_process_follows_commands_and_writes_their_timestamps_on_sigint(ros, tmp_path) -> None:
    out = tmp_path / "robot.json"
    proc = subprocess.Popen([sys.executable, "-m", "roboalign_policy.tools.bench_robot", str(out), "--priority", "0"],
                            env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    node = ros(rclpy.create_node("bench_robot_test"))
    states: list[JointState] = []
    node.create_subscription(JointState, q.JOINT_STATES, states.append, q.SENSOR)
    pub = node.create_publisher(JointTrajectory, q.COMMAND, q.RELIABLE)
    try:
        wait_until(lambda: states, 30, "joint states from the stand-in")
        assert np.allclose(states[-1].position[:7], FR3_HOME) and states[-1].name[:7] == list(FR3_JOINT_NAMES)
        goal = np.array(FR3_HOME) + 0.1
        wait_until(lambda: pub.get_subscription_count() > 0, 10, "the stand-in's command subscription")
        for _ in range(5):
            pub.publish(_trajectory(node, goal))
        wait_until(lambda: np.allclose(states[-1].position[:7], goal), 10, "the stand-in at the commanded pose")
    finally:
        proc.send_signal(signal.SIGINT)
        log = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, log
    rec = json.loads(out.read_text())
    assert len(rec["cmd_times"]) == len(rec["cmd_sent"]) == len(rec["cmd_stamps"]) == 5
    sent, got = np.array(rec["cmd_sent"]), np.array(rec["cmd_times"])
    assert np.all(got >= sent) and np.all(got - sent < 1.0)  # write() before reception, both on the wall clock
    assert between(rec, got[1], got[3])["cmd_times"] == list(got[1:4])
