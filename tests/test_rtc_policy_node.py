"""policy_node's real-time chunking settings: refused where they cannot work, with the reason."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (make setup)")
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter as P  # noqa: E402

from roboalign_policy.policy_node import PolicyNode  # noqa: E402


def _node(**params) -> PolicyNode:
    base = {"backend": "reach", "backend_options": json.dumps({"goal": [1.2, -0.5, 0.0, -2.0, 0.0, 1.8, 0.8]}), "autostart": False,
            "camera_names": ["test"], "camera_topics": ["/test/image"]}
    return PolicyNode(parameter_overrides=[P(k, value=v) for k, v in {**base, **params}.items()])


def test_rtc_prefix_needs_a_model_backend(ros) -> None:
    with pytest.raises(ValueError, match="rtc_prefix needs a model backend \\(torch, onnxruntime, tensorrt\\), "
                                         "not 'reach'"):
        _node(rtc_prefix=True)


def test_inject_delay_is_for_the_simulator_only(ros) -> None:
    node = ros(_node(inject_delay_ms=200.0))
    assert node.on_configure(None) == TransitionCallbackReturn.FAILURE
    assert "inject_delay_ms is for the simulator only (use_sim_time: true)" in node._message
    ok = ros(_node())
    assert ok.on_configure(None) == TransitionCallbackReturn.SUCCESS and ok._rtc is None
