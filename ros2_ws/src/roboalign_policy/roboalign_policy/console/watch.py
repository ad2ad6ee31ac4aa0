"""The console's ROS side: its own subscriptions (cameras, joints, commands, policy status, episode, diagnostics)
and the e-stop publisher, on a context and executor of its own.

Cameras are taken serialized on keep-last-1 subscriptions of their own (the publisher's reliability, as
``qos.camera_qos`` picks it for the policy: a best-effort reader of a reliable stream loses most frames), so
nothing old queues, and nothing is decoded until a page asks for a JPEG (at the page's reduced rate); the bytes
received per camera are counted, so the image bandwidth the console costs is measured.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from roboalign_msgs.msg import EpisodeStatus, PolicyStatus
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool
from trajectory_msgs.msg import JointTrajectory

from roboalign.control.policy_words import describe_policy
from roboalign_policy import qos
from roboalign_policy.console.settings import PARAMS
from roboalign_policy.conversions import raw_image_to_rgb, rgb_to_compressed
from roboalign_policy.executor import spin_until_closed
from roboalign_policy.params import declare_params

PHASES = {v: k.removeprefix("PHASE_").lower() for k, v in vars(EpisodeStatus).items() if k.startswith("PHASE_")}
POLICY_STATES = {v: k.removeprefix("STATE_").lower() for k, v in vars(PolicyStatus).items() if k.startswith("STATE_")}
LEVELS = {0: "ok", 1: "warn", 2: "error", 3: "stale"}
PLOT_SECONDS, PLOT_PERIOD = 10.0, 0.05  # plots keep 10 s of samples, one per 50 ms at most


class CameraFeed:
    """The newest serialized frame of one camera, its arrival statistics and a JPEG made on demand."""

    def __init__(self, name: str, topic: str) -> None:
        self.name, self.topic = name, topic
        self.raw: bytes | None = None
        self.subscribed = ""  # the reliability subscribed with ("" while no publisher was found)
        self.frames, self.bytes = 0, 0
        self._arrivals: deque[tuple[float, int]] = deque()
        self._jpeg: tuple[int, bytes] = (-1, b"")
        self.jpeg_bytes_sent = 0
        self._lock = threading.Lock()

    def on_raw(self, raw: bytes) -> None:
        now = time.monotonic()
        with self._lock:
            self.raw, self.frames, self.bytes = raw, self.frames + 1, self.bytes + len(raw)
            self._arrivals.append((now, len(raw)))
            while self._arrivals and now - self._arrivals[0][0] > 5.0:
                self._arrivals.popleft()

    def jpeg(self, quality: int = 70) -> bytes | None:
        """The newest frame as JPEG (encoded once per frame, whoever asks)."""
        with self._lock:
            raw, n = self.raw, self.frames
            if raw is None:
                return None
            if self._jpeg[0] == n:
                return self._jpeg[1]
        data = rgb_to_compressed(raw_image_to_rgb(raw), quality)
        with self._lock:
            self._jpeg = (n, data)
        return data

    def summary(self) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            window = [a for a in self._arrivals if now - a[0] <= 5.0]
            span = 5.0 if window else 1.0
            age = now - self._arrivals[-1][0] if self._arrivals else -1.0
            return {"name": self.name, "topic": self.topic, "qos": self.subscribed, "frames": self.frames,
                    "rate_hz": len(window) / span,
                    "age_ms": age * 1000.0 if age >= 0 else -1.0,
                    "received_bytes_per_s": sum(b for _, b in window) / span, "jpeg_bytes_sent": self.jpeg_bytes_sent}


class ConsoleWatch:
    """A node ``roboalign_console`` (name and parameters from ``args``, i.e. ``--ros-args``), spun in a thread."""

    def __init__(self, args: list[str] | None = None, on_change: Callable[[], None] | None = None,
                 node_name: str = "roboalign_console") -> None:
        self.ctx = Context()
        rclpy.init(args=args, context=self.ctx)
        self.node = rclpy.create_node(node_name, context=self.ctx, allow_undeclared_parameters=False)
        try:
            self.p = declare_params(self.node, PARAMS)
        except ValueError:
            self.close()
            raise
        if len(self.p["camera_names"]) != len(self.p["camera_topics"]):
            self.close()
            raise ValueError(f"camera_names {self.p['camera_names']} and camera_topics {self.p['camera_topics']} "
                             "must have the same length")
        self.on_change = on_change or (lambda: None)
        self._lock = threading.Lock()
        self.episode: dict[str, Any] = {}
        self.policy: dict[str, Any] = {}
        self.diagnostics: dict[str, dict[str, Any]] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=30)  # faults, e-stops, outcomes
        self.joints: deque[tuple[float, list[str], list[float]]] = deque()
        self.commands: deque[tuple[float, list[str], list[float]]] = deque()
        self.cameras = {n: CameraFeed(n, t) for n, t in zip(self.p["camera_names"], self.p["camera_topics"],
                                                              strict=True)}
        self._subscribe()
        self._estop_pub = self.node.create_publisher(Bool, qos.ESTOP, qos.RELIABLE)
        self._executor = MultiThreadedExecutor(num_threads=3, context=self.ctx)
        self._executor.add_node(self.node)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True, name="console-ros")
        self._thread.start()

    def _subscribe(self) -> None:
        n = self.node
        self._find_cameras()
        self._camera_timer = n.create_timer(1.0, self._find_cameras)
        n.create_subscription(JointState, qos.JOINT_STATES, self._on_joints, qos_profile_sensor_data)
        n.create_subscription(JointTrajectory, qos.COMMAND, self._on_command, qos.RELIABLE)
        n.create_subscription(PolicyStatus, qos.POLICY_STATUS, self._on_policy, qos.RELIABLE)
        n.create_subscription(EpisodeStatus, qos.EPISODE_STATUS, self._on_episode, qos.RELIABLE)
        n.create_subscription(DiagnosticArray, qos.DIAGNOSTICS, self._on_diagnostics, qos.RELIABLE)

    def _find_cameras(self) -> None:
        """Subscribe each camera once its publisher is known (its reliability decides the subscription's)."""
        for cam in self.cameras.values():
            if cam.subscribed:
                continue
            profile, _ = qos.camera_qos(self.node, cam.topic, "auto")
            if profile is not None:
                self.node.create_subscription(Image, cam.topic, cam.on_raw, profile, raw=True)
                cam.subscribed = profile.reliability.name.lower()

    def _spin(self) -> None:  # a bad message must not end the console's view
        spin_until_closed(self._executor, self._closing, self.ctx,
                          lambda why: self.node.get_logger().error(f"console callback failed: {why}"))

    @staticmethod
    def _sample(buf: deque, names: list[str], values: list[float]) -> None:
        now = time.monotonic()
        if buf and now - buf[-1][0] < PLOT_PERIOD:
            return
        buf.append((now, list(names), [float(v) for v in values]))
        while buf and now - buf[0][0] > PLOT_SECONDS:
            buf.popleft()

    def _on_joints(self, msg: JointState) -> None:
        with self._lock:
            self._sample(self.joints, list(msg.name), list(msg.position))

    def _on_command(self, msg: JointTrajectory) -> None:
        if msg.points:
            with self._lock:
                self._sample(self.commands, list(msg.joint_names), list(msg.points[0].positions))

    def _on_policy(self, msg: PolicyStatus) -> None:
        cams = [{"name": n, "rate_hz": r, "age_ms": a, "drops": int(d), "frames": int(f)}
                for n, r, a, d, f in zip(msg.camera_names, msg.camera_rate_hz, msg.camera_age_ms, msg.camera_drops,
                                         msg.camera_frames, strict=False)]
        with self._lock:
            changed = (self.policy.get("backend"), self.policy.get("checkpoint")) != (msg.backend, msg.checkpoint)
            words = describe_policy(msg.backend, msg.checkpoint) if changed else self.policy.get("live", "")
            self.policy = {"state": POLICY_STATES.get(msg.state, str(msg.state)), "backend": msg.backend,
                           "checkpoint": msg.checkpoint, "instruction": msg.instruction, "live": words,
                           "chunks": int(msg.chunks_published), "last_latency_ms": msg.last_latency_ms,
                           "rate_hz": msg.inference_rate_hz, "image_age_ms": msg.image_age_ms,
                           "message": msg.message, "cameras": cams, "received": time.monotonic()}

    def _on_episode(self, msg: EpisodeStatus) -> None:
        st = {"phase": PHASES.get(msg.phase, str(msg.phase)), "episode": int(msg.episode_index), "task": msg.task,
              "instruction": msg.instruction, "steps": int(msg.steps), "elapsed_s": round(float(msg.elapsed_s), 2),
              "dry_run": bool(msg.dry_run), "message": msg.message, "init_state": int(msg.init_state)}
        with self._lock:
            old = self.episode
            self.episode = st
            moved = (old.get("phase"), old.get("episode")) != (st["phase"], st["episode"])
            if moved and st["phase"] in ("fault", "estop", "success", "failure", "timeout", "stopped"):
                self.events.append({"time": time.time(), "phase": st["phase"], "episode": st["episode"],
                                    "message": st["message"]})
        if moved:
            self.on_change()

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self._lock:
            for s in msg.status:
                level = int.from_bytes(s.level, "little") if isinstance(s.level, bytes) else int(s.level)
                self.diagnostics[s.name] = {"level": LEVELS.get(level, str(level)), "message": s.message,
                                            "time": time.time(), "values": {kv.key: kv.value for kv in s.values}}

    def engage_estop(self) -> None:
        """Publish ``true`` on the e-stop topic: the bridge holds on arrival (no service round trip)."""
        self._estop_pub.publish(Bool(data=True))

    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, as plain JSON-able data."""
        now = time.monotonic()
        with self._lock:
            policy = dict(self.policy)
            if policy:
                policy["age_s"] = round(now - policy.pop("received"), 2)
            return {"episode": dict(self.episode), "policy": policy, "events": list(self.events),
                    "diagnostics": dict(self.diagnostics),
                    "cameras": [c.summary() for c in self.cameras.values()],
                    "joints": _series(self.joints, now), "commands": _series(self.commands, now)}

    def close(self) -> None:
        if getattr(self, "_closing", None) is not None:
            if self._closing.is_set():
                return
            self._closing.set()
            self._thread.join(timeout=2.0)
            self._executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)
        self.ctx.destroy()


def _series(buf: deque, now: float) -> dict[str, Any]:
    """Plot data: seconds before now and, per joint name, its values (arm joints and the gripper)."""
    if not buf:
        return {"t": [], "names": [], "values": []}
    names = buf[-1][1]
    rows = [(t, dict(zip(n, v, strict=False))) for t, n, v in buf]
    return {"t": [round(t - now, 3) for t, _ in rows], "names": names,
            "values": [[None if r.get(k) is None else round(r[k], 4) for _, r in rows] for k in names]}
