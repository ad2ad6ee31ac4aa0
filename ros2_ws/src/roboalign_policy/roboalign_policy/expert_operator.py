"""A stand-in for the human teleoperator in simulation: the scripted expert drives the bridge's ``leader`` input.

The expert runs as usual in ``policy_node`` (backend ``expert``, sim-only privileged poses), asked by this node's
instruction; its action chunks are not executed by the bridge (in ``leader`` mode the bridge ignores chunks) but
sampled here, as a leader arm would be read, into ``sensor_msgs/JointState`` leader targets and the gripper on the
teleop topics: the target for the next control step, blended across chunks exactly as the bridge would
(``ChunkExecutor``). So a demonstration recorded this way goes through the same path as a human's: leader input,
the bridge's safety layer, the robot, the recorder. Used by ``roboalign record --operator expert``.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from rclpy.node import Node
from roboalign_msgs.msg import ActionChunk as ActionChunkMsg
from std_msgs.msg import Float64, String

from roboalign.action_space import FR3_JOINT_NAMES
from roboalign.control.bridge import to_joint_order
from roboalign.control.chunk_executor import ChunkExecutor, ExecutorConfig
from roboalign_policy import conversions as conv
from roboalign_policy import qos


class ExpertOperator:
    """Runs inside a caller's node: ``start(instruction)`` sets the expert going, ``stop()`` stops it."""

    def __init__(self, node: Node, rate_hz: float = 20.0, row_offset: float = 1.0) -> None:
        self.node, self.period = node, 1.0 / rate_hz
        self._lock = threading.Lock()
        self._exec = ChunkExecutor(8, ExecutorConfig(row_offset=row_offset, max_chunk_age=1.0, max_future=0.2))
        self._active = False
        self.published = 0
        self._instr = node.create_publisher(String, qos.INSTRUCTION, qos.LATCHED)
        self._leader = node.create_publisher(conv.JointState, qos.TELEOP_LEADER, qos.SENSOR)
        self._gripper = node.create_publisher(Float64, qos.TELEOP_GRIPPER, qos.SENSOR)
        node.create_subscription(ActionChunkMsg, qos.ACTION_CHUNK, self._on_chunk, qos.RELIABLE)
        node.create_timer(self.period, self._publish)

    def _now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def start(self, instruction: str) -> None:
        with self._lock:
            self._exec.clear()
            self._active = True
        self._instr.publish(String(data=instruction))

    def stop(self) -> None:
        with self._lock:
            self._active = False
            self._exec.clear()
        self._instr.publish(String(data=""))

    def _on_chunk(self, msg: ActionChunkMsg) -> None:
        try:
            chunk = conv.msg_to_chunk(msg)
            actions = to_joint_order(chunk.action_space, chunk.actions)
        except ValueError as e:
            self.node.get_logger().warning(f"expert chunk ignored: {e}", throttle_duration_sec=2.0)
            return
        with self._lock:
            if self._active:
                self._exec.add(actions, chunk.stamp, chunk.dt, self._now())

    def _publish(self) -> None:
        now = self._now()
        with self._lock:
            target: Any = self._exec.sample(now + self.period) if self._active else None
        if target is None:
            return
        stamp = self.node.get_clock().now().to_msg()
        self._leader.publish(conv.joint_state(list(FR3_JOINT_NAMES), np.asarray(target[:7]), stamp))
        self._gripper.publish(Float64(data=float(np.clip(target[7], -1.0, 1.0))))
        self.published += 1
