"""Publish one known ActionChunk (repeatedly until a subscriber sees it) from a separate process."""

from __future__ import annotations

import sys
import time

import numpy as np
import rclpy
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy
from roboalign_msgs.msg import ActionChunk


def known_chunk() -> ActionChunk:
    rng = np.random.default_rng(7)
    data = rng.normal(size=(16, 8))
    data[0, 0], data[1, 1], data[2, 2] = 1e-300, -1e300, np.pi
    msg = ActionChunk()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1234, 567_890_123
    msg.header.frame_id = "fr3_link0"
    msg.observation_stamp.sec, msg.observation_stamp.nanosec = 1233, 999_999_999
    msg.sequence = 2**40 + 3
    msg.instruction = "put the alphabet soup in the basket — ünïcode ok"
    msg.task = "alphabet_soup_to_basket"
    msg.action_space = "joint_position"
    msg.action_names = [f"fr3_joint{i}" for i in range(1, 8)] + ["gripper"]
    msg.horizon, msg.action_dim, msg.dt = 16, 8, 0.05
    msg.data = data.ravel().tolist()
    msg.preprocess_ms, msg.model_latency_ms, msg.backend = 1.25, 12.5, "onnxruntime"
    return msg


def main() -> int:
    rclpy.init()
    node = rclpy.create_node("chunk_publisher")
    qos = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE,
                     durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
    pub = node.create_publisher(ActionChunk, sys.argv[1] if len(sys.argv) > 1 else "chunk_test", qos)
    msg = known_chunk()
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        pub.publish(msg)
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
