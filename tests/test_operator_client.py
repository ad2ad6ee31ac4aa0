"""OperatorClient: a failing callback is logged and kept, and the client goes on serving the others."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (make setup)")
from roboalign_policy.operator_client import OperatorClient  # noqa: E402
from std_msgs.msg import String  # noqa: E402


def _wait(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.02)
    return predicate()


def test_callback_errors_are_logged_not_swallowed(capfd):
    client = OperatorClient(command_service="/h4/command", status_topic="/h4/status", joint_states_topic="")
    seen: list[str] = []

    def on_message(msg: String) -> None:
        seen.append(msg.data)
        if msg.data.startswith("bad"):
            raise RuntimeError(f"cannot handle {msg.data}")

    try:
        client.node.create_subscription(String, "/h4/operator_test", on_message, 10)
        pub = client.node.create_publisher(String, "/h4/operator_test", 10)
        for data in ("bad 1", "good", "bad 2"):
            pub.publish(String(data=data))
            assert _wait(lambda d=data: d in seen), f"{data} never arrived: the client stopped spinning"
        assert _wait(lambda: len(client.errors) == 2)
        assert list(client.errors) == ["RuntimeError: cannot handle bad 1", "RuntimeError: cannot handle bad 2"]
    finally:
        client.close()
    assert "operator client callback failed: RuntimeError: cannot handle bad 1" in capfd.readouterr().err
