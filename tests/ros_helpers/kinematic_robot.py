"""A kinematic stand-in for the robot hardware in ROS node tests (the hardware boundary, nothing else).

It is a real rclpy node: it takes trajectory_msgs/JointTrajectory on the controller topic (moving to the
first point at once, like a stiff position controller), publishes sensor_msgs/JointState (FR3 names +
fingers) and rgb8 camera images on realsense-style topics at ``rate_hz``, and records every command it
receives with its arrival time. ``cameras_on = False`` simulates a dead camera. It publishes from a thread of
its own on absolute deadlines, as a driver does (an executor timer in the test process ran 66 ms late at load 11
and tripped a 50 ms image watchdog); ``close()`` stops it.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from roboalign.spec.action_space import FR3_HOME, FR3_JOINT_NAMES
from roboalign_policy import conversions as conv

START = np.array(FR3_HOME)


class KinematicRobot(Node):
    def __init__(self, camera_topics: list[str], rate_hz: float = 50.0, start: np.ndarray = START,
                 command_topic: str = "/fr3_arm_controller/joint_trajectory", image_size: int = 32) -> None:
        super().__init__("kinematic_robot")
        self.q = np.array(start, dtype=np.float64)
        self.cameras_on = True
        self.lock = threading.Lock()
        self.commands: list[tuple[float, float, np.ndarray]] = []  # (arrival monotonic, header stamp, (K, 7))
        self.gripper: list[float] = []
        self.image_stamps: list[float] = []
        self.state_stamps: list[float] = []
        self._img = np.random.default_rng(0).integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
        self._cams = [self.create_publisher(Image, t, qos_profile_sensor_data) for t in camera_topics]
        self._js = self.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)
        self.create_subscription(JointTrajectory, command_topic, self._on_traj, 200)
        self.create_subscription(Float64MultiArray, "/fr3_gripper/commands", lambda m: self.gripper.append(m.data[0]), 10)
        self._period = 1.0 / rate_hz
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kinematic_robot", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        deadline = time.monotonic()
        while not self._stop.wait(max(0.0, deadline - time.monotonic())):
            if not self.context.ok():
                return
            self._publish()
            deadline = max(deadline + self._period, time.monotonic() - self._period)  # no burst after a stall

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)

    def _on_traj(self, msg: JointTrajectory) -> None:
        _, pos = conv.trajectory_rows(msg, FR3_JOINT_NAMES)
        with self.lock:
            self.commands.append((time.monotonic(), conv.to_sec(msg.header.stamp), pos))
            self.q = pos[0].copy()

    def _publish(self) -> None:
        now = self.get_clock().now()
        stamp = now.to_msg()
        with self.lock:
            q = self.q.copy()
        self.state_stamps.append(now.nanoseconds * 1e-9)
        self._js.publish(conv.joint_state([*FR3_JOINT_NAMES, "fr3_finger_joint1", "fr3_finger_joint2"],
                                          np.r_[q, 0.04, 0.04], stamp))
        if self.cameras_on:
            self.image_stamps.append(now.nanoseconds * 1e-9)
            for pub in self._cams:
                pub.publish(conv.rgb_to_image(self._img, stamp, "camera_color_optical_frame"))

    def max_step_violation(self, bound: np.ndarray, period: float) -> float:
        """Largest excess over ``bound`` per control tick between consecutive commands received (<= 0: none).

        Received commands may skip ticks (a late receiver under load drops samples of a KEEP_LAST queue), so
        the allowance is ``bound`` times the number of ticks that fit between their header stamps.
        """
        with self.lock:
            cmds = sorted(self.commands, key=lambda c: c[1])
        worst = -np.inf
        for (_, s0, p0), (_, s1, p1) in zip(cmds, cmds[1:], strict=False):
            ticks = max(1, int(np.ceil((s1 - s0) / period + 0.5)))
            worst = max(worst, float(np.max(np.abs(p1[0] - p0[0]) - ticks * bound)))
        return worst

    def command_points(self) -> np.ndarray:
        """Every trajectory point received so far, (N, 7)."""
        with self.lock:
            return np.concatenate([c[2] for c in self.commands]) if self.commands else np.zeros((0, 7))
