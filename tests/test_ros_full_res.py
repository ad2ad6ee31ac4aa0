"""Full-size camera streams through the real-robot graph: 2 x 640x480 rgb8 at 30 Hz (RealSense's default
profile, one camera with a padded row stride) into policy_node + bridge_node started as processes from
config/real_robot_graph.yaml (tiny ONNX model on the CPU, ``dry_run`` off), with an operator episode on a stiff
position-controlled stand-in robot (``roboalign_policy.tools.bench_robot.StandInRobot`` inside
``roboalign_policy.tools.bench_probe.Probe``, the hardware boundary).

Asserts: no fault for 20 s, >= 90 % of the frames published reach the policy (PolicyStatus.camera_frames),
every command inside the FR3 limits; then bad input on one camera (wrong encoding, truncated data) is counted
and skipped, and the policy acts again once good frames return. ~35 s on 2 cores.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.serial, pytest.mark.skipif(
    __import__("os").environ.get("ROBOALIGN_DDS_PROFILE") == "0",
    reason="ROBOALIGN_DDS_PROFILE=0: without the shipped FastDDS profile a 640x480 frame does not fit the default "
           "shared-memory segment")]

rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (make setup)")
from roboalign_msgs.msg import PolicyStatus  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from roboalign.spec.action_space import FR3_LIMITS  # noqa: E402
from roboalign_policy import conversions as conv  # noqa: E402
from roboalign_policy.graph import load_graph  # noqa: E402
from roboalign_policy.tools.bench_probe import Probe, camera_image  # noqa: E402
from roboalign_policy.tools.operator_client import OperatorClient  # noqa: E402
from roboalign_policy.tools.process_graph import ProcessGraph  # noqa: E402
from tests.ros_helpers.executor import wait_until  # noqa: E402

TOPICS = ["/camera/agentview/color/image_raw", "/camera/wrist/color/image_raw"]
W, H, FPS, SECONDS = 640, 480, 30.0, 20.0


def padded(rgb: np.ndarray, pad: int = 64) -> Image:
    """An rgb8 Image with ``pad`` garbage bytes after each row (``step`` > width * 3, as some drivers send)."""
    h, w, _ = rgb.shape
    rows = np.concatenate([rgb.reshape(h, -1), np.full((h, pad), 201, np.uint8)], axis=1)
    msg = Image(height=h, width=w, encoding="rgb8", step=rows.shape[1], header=conv.rgb_to_image(rgb).header)
    msg.header.frame_id = "wrist_color_optical_frame"
    msg.data = rows.tobytes()
    return msg


@pytest.fixture
def graph(tiny_joint_export, tmp_path_factory, ros):
    export = tiny_joint_export
    opts = {"providers": ["cpu"], "action_space": "joint_position", "cameras": ["agentview", "wrist"],
            "num_threads": 1}
    procs = ProcessGraph(load_graph("real_robot"),
                         {"backend": "onnxruntime", "checkpoint": str(export), "dry_run": "false",
                          "gripper": "topic", "camera_driver": "none"},
                         tmp_path_factory.mktemp("logs"), env={"OMP_NUM_THREADS": "1"},
                         params={"policy_node": {"backend_options": json.dumps(opts), "allow_cpu_fallback": True},
                                 # the stand-in robot is Python at normal priority in this (test) process: on a
                                 # shared 2-core CI machine (load 15 measured) its sensor thread stalls > 0.1 s
                                 "bridge_node": {"state_timeout_s": 0.3, "image_timeout_s": 0.5,
                                                 # the untrained tiny model starts its chunks ~1 rad from home
                                                 "max_start_steps": 200.0}})
    probe = Probe({"image_size": [W, H], "camera_topics": TOPICS, "publisher_qos": "reliable", "compressed": False,
                   "fps": FPS})
    probe.cams[1] = (probe.cams[1][0], padded(camera_image(W, H)))  # the wrist camera pads its rows
    ros(probe.node)
    procs.start()
    client = OperatorClient(joint_states_topic="")
    statuses: list[PolicyStatus] = []
    probe.node.create_subscription(PolicyStatus, "/roboalign/policy_status", statuses.append, 10)
    try:
        yield procs, probe, client, statuses
    finally:
        client.close()
        probe.stop()
        procs.stop()


def _frames(statuses: list[PolicyStatus]) -> tuple[float, np.ndarray]:
    s = statuses[-1]
    return time.time(), np.array(s.camera_frames, dtype=np.int64)


def test_full_size_cameras_reach_the_policy_through_the_real_robot_graph(graph) -> None:
    procs, probe, client, statuses = graph
    client.wait_for_bridge(60.0)
    wait_until(lambda: statuses and statuses[-1].state == PolicyStatus.STATE_READY and
               all(statuses[-1].camera_frames), 90, "the policy loaded and receiving both cameras")
    res = client.command("start", task="bottle_to_basket")
    assert res.accepted, res.message
    assert client.wait_for_status(lambda s: s.phase == "running", timeout=30.0), client.status
    wait_until(lambda: probe.rec["chunks"], 10, "chunks from the policy")
    probe.clear()
    n0 = len(statuses)
    _, frames0 = _frames(statuses)
    time.sleep(SECONDS)
    with probe.lock:
        published = len(probe.rec["published"])
        faults = list(probe.rec["faults"])
    with probe.robot.lock:
        commands = len(probe.robot.rec["cmd_times"])
    _, frames1 = _frames(statuses)
    assert not faults, faults
    assert client.status.phase == "running", client.status
    assert not procs.dead(), {n: procs.log_tail(n) for n in procs.dead()}
    received = frames1 - frames0
    assert np.all(received >= 0.9 * published), (received, published)  # every camera, >= 90 % of its frames
    assert published >= 0.9 * SECONDS * FPS, f"the probe published only {published} frames per camera"
    assert commands >= 0.9 * SECONDS * 50, f"only {commands} commands at 50 Hz"
    window = statuses[n0:]
    assert all(min(s.camera_rate_hz) > 0 for s in window) and all(s.camera_qos == ["reliable"] * 2 for s in window)
    assert all(s.state == PolicyStatus.STATE_RUNNING for s in window[2:]), [s.message for s in window]
    cmd = probe.robot.q  # the stand-in follows every command: where the bridge took it is inside the limits
    assert np.all(cmd >= np.array(FR3_LIMITS.lower)) and np.all(cmd <= np.array(FR3_LIMITS.upper))
    _bad_wrist_frames_are_skipped(probe, client, procs)


def _bad_wrist_frames_are_skipped(probe: Probe, client, procs) -> None:
    """Wrong encoding, then truncated data on the wrist camera, each in an episode of its own: logged with the
    reason and skipped (the policy holds, so the bridge faults on the stale chunk stream and holds the robot),
    the node keeps running, and a new episode on good frames runs again."""
    good = probe.cams[1][1]
    wrong = padded(camera_image(W, H))
    wrong.encoding = "16UC1"
    truncated = padded(camera_image(W, H))
    truncated.data = bytes(truncated.data[: len(truncated.data) // 2])
    log = procs.log_path("policy_node")
    for bad, reason in ((wrong, "Image.encoding '16UC1' is not supported"), (truncated, "Image.data has 476160 bytes")):
        probe.cams[1] = (probe.cams[1][0], bad)
        if client.status.phase != "running":
            assert client.command("start", task="bottle_to_basket").accepted
        wait_until(lambda r=reason: r in log.read_text(), 10, f"the policy log to say {reason!r}")
        assert client.wait_for_status(lambda s: s.phase == "fault" and "chunk" in s.message, timeout=10.0), \
            client.status
    probe.cams[1] = (probe.cams[1][0], good)
    n = len(probe.rec["chunks"])
    assert client.command("start", task="bottle_to_basket").accepted
    wait_until(lambda: len(probe.rec["chunks"]) > n + 5, 10, "chunks again on good frames")
    assert client.wait_for_status(lambda s: s.phase == "running", timeout=5.0), client.status
    assert not procs.dead(), {k: procs.log_tail(k) for k in procs.dead()}
