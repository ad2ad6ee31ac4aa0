"""A stand-in for the human teleoperator in simulation: the scripted expert drives the bridge's ``leader`` input.

The expert runs as usual in ``policy_node`` (backend ``expert``, sim-only privileged poses), asked by this node's
instruction; its action chunks are not executed by the bridge (in ``leader`` mode the bridge ignores chunks) but
read here, as a leader arm would be, into ``sensor_msgs/JointState`` leader targets and the gripper on the teleop
topics. So a demonstration recorded this way goes through the same path as a human's: leader input, the bridge's
safety layer, the robot, the recorder.

**When the target is published, and which one** (:class:`LeaderSampler`). The bridge's tick at time ``t`` takes
the newest leader message and commands it for ``t + period``. The expert's chunk for the observation at ``t``
(row 0: the pose for ``t + dt``) is what the tick at ``t`` must command, so the operator publishes the moment the
chunk arrives: the newest chunk's pose for ``stamp + period`` (what ``roboalign collect`` executes), stamped
``stamp``. For the bridge to see it in time, the simulator must not publish ``/clock = t`` before it is out: the
operator relays every chunk to :data:`LOCKSTEP_TOPIC` right after its leader target, and the sim graph's
``lockstep_topic`` argument makes each sim step wait for that relay instead of the policy's chunk
(``roboalign record --operator expert`` sets it). Measured from the bags (which expert chunk each bridge command
equals), four shelf→tray takes: an earlier version sampled the chunks on its own sim-clock timer and 322 of 578
commands were the previous step's target (the timer ran after the bridge had ticked on the same ``/clock``), so
the demonstration lagged the expert by a step and took 1.4–1.6× as many steps as the expert driving LIBERO
directly; publishing on arrival without the relay still lost the race to ``/clock`` in 7–20 % of the steps.
"""

from __future__ import annotations

import threading

import numpy as np
from rclpy.node import Node
from roboalign_msgs.msg import ActionChunk as ActionChunkMsg
from std_msgs.msg import Float64, String

from roboalign.control.bridge import to_joint_order
from roboalign.spec.action_space import FR3_JOINT_NAMES
from roboalign_policy import conversions as conv
from roboalign_policy import qos

LOCKSTEP_TOPIC = "/roboalign/teleop/expert_lockstep"  # every expert chunk again, after its leader target


class LeaderSampler:
    """Chunks in, leader targets out: :meth:`offer` gives the target (D,) the bridge should command at its tick at
    the chunk's stamp, i.e. the newest chunk's pose for that tick + ``period`` (row 0 with ``row_offset`` 1: what
    ``roboalign collect`` executes of each expert chunk), or None. Chunks are not blended: the expert's newest
    decision is the operator's hand position (blending in the older chunk at a row boundary, as a policy executor
    does, pulled the target half-way back to the previous step)."""

    def __init__(self, period: float, row_offset: float = 1.0, dim: int = 8) -> None:
        if not (period > 0 and row_offset >= 0):
            raise ValueError(f"period must be > 0 s and row_offset >= 0, got {period}, {row_offset}")
        self.period, self.row_offset, self.dim = period, row_offset, dim
        self._tick: float | None = None  # the tick the newest target is for

    def clear(self) -> None:
        self._tick = None

    def offer(self, actions: np.ndarray, stamp: float, dt: float) -> np.ndarray | None:
        """Take a chunk computed from the observation at ``stamp``; None when it is malformed or older than one
        already used (a target never moves back in time)."""
        a = np.asarray(actions, np.float64)
        if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] != self.dim or not np.all(np.isfinite(a)) or not dt > 0:
            return None
        if self._tick is not None and stamp < self._tick - 1e-9:
            return None
        self._tick = stamp
        u = self.period / dt - self.row_offset  # the (fractional) row for tick + period; held at either end
        return np.array([np.interp(u, np.arange(len(a)), a[:, j]) for j in range(self.dim)])


class ExpertOperator:
    """Runs inside a caller's node: ``start(instruction)`` sets the expert going, ``stop()`` stops it."""

    def __init__(self, node: Node, rate_hz: float = 20.0, row_offset: float = 1.0) -> None:
        self.node = node
        self._lock = threading.Lock()
        self._sampler = LeaderSampler(1.0 / rate_hz, row_offset)
        self._active = False
        self.published = 0
        self._instr = node.create_publisher(String, qos.INSTRUCTION, qos.LATCHED)
        self._leader = node.create_publisher(conv.JointState, qos.TELEOP_LEADER, qos.SENSOR)
        self._gripper = node.create_publisher(Float64, qos.TELEOP_GRIPPER, qos.SENSOR)
        self._relay = node.create_publisher(ActionChunkMsg, LOCKSTEP_TOPIC, qos.RELIABLE)
        node.create_subscription(ActionChunkMsg, qos.ACTION_CHUNK, self._on_chunk, qos.RELIABLE)

    def start(self, instruction: str) -> None:
        with self._lock:
            self._sampler.clear()
            self._active = True
        self._instr.publish(String(data=instruction))

    def stop(self) -> None:
        with self._lock:
            self._active = False
            self._sampler.clear()
        self._instr.publish(String(data=""))

    def _on_chunk(self, msg: ActionChunkMsg) -> None:
        """Leader target first, then the relay the sim steps on (every chunk, started or not: the sim waits)."""
        try:
            self._lead(msg)
        finally:
            self._relay.publish(msg)

    def _lead(self, msg: ActionChunkMsg) -> None:
        try:
            chunk = conv.msg_to_chunk(msg)
            actions = to_joint_order(chunk.action_space, chunk.actions)
        except ValueError as e:
            self.node.get_logger().warning(f"expert chunk ignored: {e}", throttle_duration_sec=2.0)
            return
        with self._lock:
            target = self._sampler.offer(actions, chunk.stamp, chunk.dt) if self._active else None
        if target is not None:
            self._publish(target, chunk.stamp)

    def _publish(self, target: np.ndarray, stamp_s: float) -> None:
        """Gripper first: the bridge pairs the newest leader joints with the newest gripper it has. Stamped with
        the observation time the target was computed from (the sim's clock)."""
        self._gripper.publish(Float64(data=float(np.clip(target[7], -1.0, 1.0))))
        stamp = conv.to_time(stamp_s)
        self._leader.publish(conv.joint_state(list(FR3_JOINT_NAMES), np.asarray(target[:7]), stamp))
        self.published += 1
