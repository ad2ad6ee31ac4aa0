"""The colcon workspace is importable from the venv, and custom messages cross processes over DDS intact."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[1]


def test_workspace_imports_from_the_plain_venv_python() -> None:
    """No sourcing needed: the build is installed into the venv prefix."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMENT", "LD_LIBRARY", "_ROS_WHEELS"))}
    code = (
        "import roboalign_msgs.msg as m, roboalign_msgs.srv as s, roboalign_policy;"
        "from ament_index_python.packages import get_package_share_directory as g;"
        "print(m.ActionChunk.__name__, s.TaskCommand.Request.ESTOP, g('roboalign_policy'))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    name, estop, share = out.stdout.split()
    assert (name, estop) == ("ActionChunk", "4")
    assert (Path(share) / "package.xml").is_file()


def test_interfaces_have_the_fields_the_stack_relies_on() -> None:
    from roboalign_msgs.msg import ActionChunk, EpisodeStatus, PolicyStatus
    from roboalign_msgs.srv import TaskCommand

    fields = ActionChunk.get_fields_and_field_types()
    assert fields["data"] == "sequence<double>" and fields["action_names"] == "sequence<string>"
    assert {"header", "observation_stamp", "instruction", "horizon", "dt", "model_latency_ms"} <= set(fields)
    assert PolicyStatus.STATE_FAULT != PolicyStatus.STATE_RUNNING
    assert EpisodeStatus.PHASE_ESTOP == 8
    req = TaskCommand.Request(command=TaskCommand.Request.START, instruction="put the soup in the basket")
    assert req.instruction.endswith("basket")


def test_action_chunk_published_by_another_process_arrives_intact() -> None:
    import rclpy
    from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy
    from roboalign_msgs.msg import ActionChunk

    sys.path.insert(0, str(ROOT / "tests"))
    from ros_helpers.publish_chunk import known_chunk

    topic = f"chunk_test_{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests/ros_helpers/publish_chunk.py"), topic])
    rclpy.init()
    try:
        node = rclpy.create_node("chunk_listener")
        got: list[ActionChunk] = []
        qos = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE,
                         durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(ActionChunk, topic, got.append, qos)
        deadline = time.monotonic() + 30.0
        while not got and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        assert got, "no ActionChunk received from the publisher process within 30 s"
        msg, ref = got[0], known_chunk()
        assert msg == ref  # every field, bit for bit
        data = np.asarray(msg.data).reshape(msg.horizon, msg.action_dim)
        assert data[1, 1] == -1e300 and data[0, 0] == 1e-300
        assert msg.instruction == "put the alphabet soup in the basket — ünïcode ok"
        node.destroy_node()
    finally:
        rclpy.shutdown()
        proc.terminate()
        proc.wait(timeout=10)
