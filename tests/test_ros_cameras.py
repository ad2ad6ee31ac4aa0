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
    opts = {"goal": [0.0, 0.0, 0.0, -1.5, 0.0, 1.5, 0.0], "speed": 0.1}  # inside the FR3 limits: the model loads
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

    def camera_diag(self, name: str = "cam") -> tuple[int, str] | None:
        for d in reversed(self.diags):
            for s in d.status:
                if s.name == f"policy_node: camera {name}":
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


@pytest.mark.serial  # counts the share of 30 Hz frames taken
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
    assert pn._io.waiter.wakeups > 0


def test_full_size_streams_from_a_publisher_without_our_profile_are_carried_or_their_cause_named(ros) -> None:
    """2 x 640x480 rgb8 at 30 Hz, best effort, from a process on FastDDS's defaults (no profile: what a user's own
    camera launch gives): within 2 s of the first frames the policy's /diagnostics either reports each stream
    carried or names what was measured (rate, largest gap, frame size) and the cause with the fix."""
    import os
    import subprocess
    import sys

    from roboalign.spec.action_space import FR3_HOME
    from roboalign_policy.node_runner import PROFILE_VARS

    topics = [CAM, f"{CAM}_1"]  # stream_check's topics for --cameras 2
    env = {k: v for k, v in os.environ.items() if k not in PROFILE_VARS} | {"ROBOALIGN_DDS_PROFILE": "0"}
    pub = subprocess.Popen([sys.executable, "-m", "roboalign_policy.tools.stream_check", "pub", "--topic", CAM,
                            "--cameras", "2", "--size", "640x480", "--fps", "30", "--qos", "best_effort",
                            "--seconds", "30"], env=env, stdout=subprocess.DEVNULL)
    try:
        pn = ros(PolicyNode(parameter_overrides=[
            P("backend", value="reach"), P("backend_options", value=json.dumps({"goal": list(FR3_HOME), "speed": 0.1})),
            P("camera_names", value=["cam", "cam2"]), P("camera_topics", value=topics), P("camera_fps", value=30.0),
            P("status_rate_hz", value=10.0)]))
        w = Watcher(ros)
        wait_until(lambda: w.status and len(w.status[-1].camera_frames) == 2 and all(w.status[-1].camera_frames),
                   30, "the first frames of both cameras")
        n = len(w.diags)
        verdicts: dict[str, tuple[str, int, str]] = {}

        def judged() -> bool:
            for cam in pn._cameras:
                d = w.camera_diag(cam.name) if len(w.diags) > n else None
                if d is None:
                    continue
                if d[0] == 0 and cam.health().rate_hz >= 0.9 * 30.0:
                    verdicts[cam.name] = ("carried", *d)
                elif "Hz received of 30.0 Hz published" in d[1]:
                    verdicts[cam.name] = ("named", *d)
            return len(verdicts) == 2

        wait_until(judged, 2.0, "each stream carried or its cause on /diagnostics")
        for (how, level, message), topic in zip((verdicts["cam"], verdicts["cam2"]), topics, strict=True):
            if how == "named":
                assert level >= 1 and message.startswith(f"{topic}: "), message
                for what in ("largest gap", "frames 900 KiB", "default 512 KiB shared-memory segment",
                             "config/fastdds.xml", "net.core.rmem_max", "match QoS"):
                    assert what in message, (what, message)
    finally:
        pub.kill()
        pub.wait()
