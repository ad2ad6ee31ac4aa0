"""Two hosts on one machine: camera streams from the "robot" network namespace to the "policy" one over a veth
pair (DDS over UDP only, as between two PCs), raw 640x480 rgb8 and JPEG, at 30 Hz. Skips with the reason when
network namespaces cannot be made (not root, no iproute2, no CAP_NET_ADMIN). Chunk latency and command jitter
across the link: ``roboalign bench ros --netns`` (docs/results.md, "Camera streams between processes")."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.serial]

pytest.importorskip("rclpy", reason="needs ROS 2 (make setup)")
from roboalign.bench.netns import NetnsUnavailable, two_hosts  # noqa: E402
from roboalign_policy.node_runner import PROFILE_VARS, dds_profile_path  # noqa: E402


@pytest.fixture(scope="module")
def hosts():
    try:
        with two_hosts("ratest") as pair:
            yield pair
    except NetnsUnavailable as e:
        pytest.skip(f"network namespaces unavailable: {e}")


def _stream(hosts, *extra: str) -> dict:
    robot, policy = hosts
    udp = str(dds_profile_path("fastdds_udp.xml"))  # shared memory would bypass the link
    env = {**os.environ, **{v: udp for v in PROFILE_VARS}, "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}
    check = [sys.executable, "-m", "roboalign_policy.tools.stream_check"]
    pub = subprocess.Popen([*robot.prefix, *check, "pub", "--qos", "reliable", "--seconds", "12", *extra], env=env,
                           stdout=subprocess.PIPE, text=True)
    try:
        sub = subprocess.run([*policy.prefix, *check, "sub", "--qos", "auto", "--seconds", "3", "--decode", *extra],
                             env=env, capture_output=True, text=True, timeout=60)
    finally:
        pub.kill()
        pub.wait()
    assert sub.returncode == 0, sub.stderr[-2000:]
    return json.loads(sub.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("extra", [(), ("--compressed",)], ids=["raw", "jpeg"])
def test_camera_frames_cross_the_link_at_full_rate(hosts, extra) -> None:
    res = _stream(hosts, "--size", "640x480", "--fps", "30", *extra)
    assert res["qos"] == "RELIABLE", res  # camera_qos auto followed the (reliable) publisher across hosts
    assert res["rate_hz"] >= 27.0 and res["drops"] <= 0.1 * res["received"], res
