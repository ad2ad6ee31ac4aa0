"""A process that records an episode with the real BagRecorder until it is killed: ``python -m
tests.ros_helpers.record_until_killed RECORD_DIR``. It publishes 20 Hz joint states and 96x96 camera images
(the image encodes the tick) on its own node, which the recorder subscribes to, and prints each tick."""

from __future__ import annotations

import sys
import time

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from roboalign_policy import conversions as conv
from roboalign_policy.bag_recorder import BagRecorder
from sensor_msgs.msg import Image, JointState

from tests.bag_fixtures import JOINTS, frame_at, q_at


def main(record_dir: str) -> None:
    rclpy.init()
    node = Node("record_until_killed")
    js_pub = node.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)
    cam_pub = node.create_publisher(Image, "/camera/wrist/color/image_raw", qos_profile_sensor_data)
    rec = BagRecorder(node, record_dir, {"/joint_states": JointState, "/camera/wrist/color/image_raw": Image},
                      info={"control_rate_hz": 20.0})
    rec.begin(1, "bottle_to_basket", "put the ketchup in the basket")
    t_start = time.monotonic()
    for k in range(10**6):
        stamp = node.get_clock().now().to_msg()
        names = [*JOINTS, "fr3_finger_joint1", "fr3_finger_joint2"]
        js_pub.publish(conv.joint_state(names, np.r_[q_at(k * 0.05), 0.04, 0.04], stamp, np.zeros(9)))
        cam_pub.publish(conv.rgb_to_image(np.broadcast_to(frame_at(k, 1), (96, 96, 3)).copy(), stamp, "wrist"))
        print(k, flush=True)
        time.sleep(max(0.0, t_start + (k + 1) * 0.05 - time.monotonic()))


if __name__ == "__main__":
    main(sys.argv[1])
