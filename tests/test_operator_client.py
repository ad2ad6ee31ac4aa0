"""OperatorClient: a failing callback is logged and kept, and the client goes on serving the others."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (make setup)")
from std_msgs.msg import String  # noqa: E402

from roboalign_policy.tools.operator_client import OperatorClient  # noqa: E402


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


def _latched_listener(topic: str):
    """A node in a context of its own with a latched subscription to ``topic``; returns (context, node, seen)."""
    from rclpy.context import Context

    from roboalign_policy import qos

    ctx = Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("latched_listener", context=ctx)
    seen: list[str] = []
    node.create_subscription(String, topic, lambda m: seen.append(m.data), qos.LATCHED)
    return ctx, node, seen


def _spin_for(ctx, node, seconds: float, done=lambda: False) -> None:
    from rclpy.executors import SingleThreadedExecutor

    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not done():
        ex.spin_once(timeout_sec=0.05)
    ex.shutdown()
    node.destroy_node()
    rclpy.try_shutdown(context=ctx)


def test_a_closed_client_leaves_no_participant_behind():
    """Every node of a closed client (``add_node`` ones too) is gone from DDS: a latched message one of them sent
    (the expert operator's empty instruction) never reaches a later subscriber. A leaked participant did exactly
    that: it stopped the policy of every later test in the process ~1-3 s into it (its discovery period)."""
    from roboalign_policy import qos

    topic = "/h4/latched_instruction"
    client = OperatorClient(command_service="/h4/command", status_topic="/h4/status", joint_states_topic="")
    try:
        pub = client.add_node("latched_source").create_publisher(String, topic, qos.LATCHED)
        pub.publish(String(data="stale"))
        ctx, node, seen = _latched_listener(topic)  # the control: while the client lives, it is delivered
        _spin_for(ctx, node, 10.0, lambda: bool(seen))
        assert seen == ["stale"]
    finally:
        client.close()
    ctx, node, seen = _latched_listener(topic)
    _spin_for(ctx, node, 4.0)  # > FastDDS's 3 s participant announcement period
    assert seen == [], "a closed OperatorClient's node still serves its latched message"
