"""Camera subscriptions over real DDS: QoS follows the publisher (camera_qos), an absent or incompatible publisher
and the per-camera statistics are reported on /diagnostics and in PolicyStatus."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (make setup)")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.parameter import Parameter as P  # noqa: E402
from rclpy.qos import ReliabilityPolicy  # noqa: E402
from roboalign_msgs.msg import PolicyStatus  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from roboalign_policy import conversions as conv  # noqa: E402
from roboalign_policy import qos as q  # noqa: E402
from roboalign_policy.policy_node import PolicyNode  # noqa: E402
from tests.ros_helpers.executor import wait_until  # noqa: E402

CAM = "/camera/qos_test/color/image_raw"


def _policy(mode: str) -> PolicyNode:
    opts = {"goal": [0.0] * 7, "speed": 0.1}
    return PolicyNode(parameter_overrides=[
        P("backend", value="reach"), P("backend_options", value=json.dumps(opts)), P("camera_names", value=["cam"]),
        P("camera_topics", value=[CAM]), P("camera_qos", value=mode), P("status_rate_hz", value=10.0)])


class Watcher:
    def __init__(self, add) -> None:
        self.node = add(rclpy.create_node("camera_watcher"))
        self.diags: list[DiagnosticArray] = []
        self.status: list[PolicyStatus] = []
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diags.append, 50)
        self.node.create_subscription(PolicyStatus, "/roboalign/policy_status", self.status.append, 50)

    def camera_diag(self) -> tuple[int, str] | None:
        for d in reversed(self.diags):
            for s in d.status:
                if s.name == "policy_node: camera cam":
                    return s.level[0], s.message
        return None


def _publish(node, reliability: ReliabilityPolicy, n: int = 30) -> None:
    pub = node.create_publisher(Image, CAM, q.camera_profile(reliability))
    for k in range(n):
        pub.publish(conv.rgb_to_image(np.zeros((4, 4, 3), np.uint8), conv.to_time(100.0 + k / 30), "f"))
        rclpy.spin_once(node, timeout_sec=1 / 30)


def test_auto_waits_for_a_publisher_then_follows_its_best_effort(ros) -> None:
    ros(_policy("auto"))
    w = Watcher(ros)
    wait_until(lambda: (d := w.camera_diag()) and d[0] == 2 and "no publisher yet" in d[1] and CAM in d[1], 10,
               "'no publisher' on /diagnostics")
    pub_node = rclpy.create_node("be_camera")  # spun here, not by the executor
    pub = pub_node.create_publisher(Image, CAM, q.camera_profile(ReliabilityPolicy.BEST_EFFORT))
    wait_until(lambda: w.status and w.status[-1].camera_qos == ["best_effort"], 10, "a best-effort subscription")
    rclpy.spin_once(pub_node, timeout_sec=0.5)  # let the subscription match
    for k in range(60):
        if k not in (31, 32, 33):  # three frames never sent: three gaps in the stamp sequence
            pub.publish(conv.rgb_to_image(np.zeros((4, 4, 3), np.uint8), conv.to_time(100.0 + k / 30), "f"))
        rclpy.spin_once(pub_node, timeout_sec=1 / 30)
    wait_until(lambda: w.status[-1].camera_frames[0] >= 40, 10, "frames counted")
    rclpy.spin_once(pub_node, timeout_sec=0.3)
    st = w.status[-1]
    assert st.camera_names == ["cam"] and st.camera_topics == [CAM] and st.camera_age_ms[0] >= 0
    frames, drops = st.camera_frames[0], st.camera_drops[0]
    assert drops >= 3 and frames + drops <= 60, (frames, drops)
    pub_node.destroy_node()


def test_a_reliable_subscription_reports_a_best_effort_only_publisher(ros) -> None:
    ros(_policy("reliable"))
    w = Watcher(ros)
    pub_node = rclpy.create_node("be_camera2")
    _publish(pub_node, ReliabilityPolicy.BEST_EFFORT, 10)
    wait_until(lambda: (d := w.camera_diag()) and d[0] == 2 and "incompatible QoS" in d[1] and "be_camera2" in d[1],
               10, "the incompatible publisher on /diagnostics")
    assert w.status[-1].camera_frames[0] == 0
    pub_node.destroy_node()


def test_every_frame_is_counted_while_a_slow_model_runs(ros) -> None:
    """Frames are taken by the camera thread, not between inferences: with a model three frame periods long
    and keep-last 1 queues, counting in the inference's thread would miss two frames of every three."""
    from roboalign_msgs.msg import ActionChunk

    from tests.ros_helpers.kinematic_robot import START, KinematicRobot

    opts = {"goal": [float(x) + 0.3 for x in START], "speed": 0.1, "compute_s": 0.1}
    pn = ros(PolicyNode(parameter_overrides=[
        P("backend", value="reach"), P("backend_options", value=json.dumps(opts)), P("camera_names", value=["cam"]),
        P("camera_topics", value=[CAM]), P("max_inference_rate_hz", value=50.0), P("status_rate_hz", value=10.0),
        P("instruction", value="reach")]))
    w = Watcher(ros)
    chunks: list = []
    w.node.create_subscription(ActionChunk, "/roboalign/action_chunk", chunks.append, 50)
    robot = ros(KinematicRobot([CAM], rate_hz=30.0))
    wait_until(lambda: len(chunks) >= 2 and w.status and w.status[-1].camera_frames, 20, "chunks and a status")
    frames0, sent0, chunks0 = pn._cameras[0].stats.frames, len(robot.image_stamps), len(chunks)
    wait_until(lambda: len(robot.image_stamps) - sent0 >= 90, 10, "90 more frames")  # ~3 s
    frames, sent = pn._cameras[0].stats.frames - frames0, len(robot.image_stamps) - sent0
    assert len(chunks) - chunks0 >= 5, "inference did not keep running"
    assert frames >= 0.95 * sent - 2, f"the policy counted {frames} of {sent} frames while its model ran"
    assert pn._waiter.wakeups > 0
