"""policy_node: camera images + joint state + instruction in; action chunks out.

Subscribes (sensor-data QoS for images): ``camera_topics`` (realsense-ros naming, rgb8/bgr8/mono8, padded
``step`` handled), ``joint_states_topic``, ``instruction_topic`` (std_msgs/String, latched; an empty string
stops the policy) and, for the sim-only ``expert`` backend, ``privileged_topic`` (std_msgs/String JSON of
object poses published by sim_robot_node). Publishes per chunk a roboalign_msgs/ActionChunk and, for the
joint-position action space, a trajectory_msgs/JointTrajectory (one point per row, ``time_from_start =
k * dt`` from the observation stamp), plus roboalign_msgs/PolicyStatus and /diagnostics.

Inference runs in its own mutually-exclusive callback group of the multi-threaded executor: in the callback
of the first camera (subscribed there with depth 1, so it always acts on the newest image), at most
``max_inference_rate_hz``, or in the callback of the sim's privileged state (same group) when that
completes an observation. The joint state and the other cameras are only needed as the newest message when an
observation is assembled, so the inference step takes them itself (``roboalign_policy.polling``, stamped with
their DDS reception time) instead of the executor waking up for each of them (100 Hz + 30 Hz of Python
wait-set rebuilds holding the GIL on the trigger's path); the instruction and the sim's privileged state
stay on the executor (the instruction in another group, so it never waits for the model). The model is
loaded after start-up in that group (status LOADING -> READY), so the node answers at once. Bad input (wrong encoding, malformed
message, NaN in the state or the chunk) is logged with the reason, nothing is published for it, and the
node keeps running.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import numpy as np
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from roboalign_msgs.msg import ActionChunk as ActionChunkMsg
from roboalign_msgs.msg import PolicyStatus
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from roboalign.action_space import ACTION_SPACES, FR3_JOINT_NAMES
from roboalign.control.backends import BACKENDS, load_policy
from roboalign.runtime.types import Observation
from roboalign_policy import conversions as conv
from roboalign_policy.diagnostics import ERROR, OK, WARN, DiagnosticUpdater
from roboalign_policy.node_runner import run_node
from roboalign_policy.params import CPU_AFFINITY, ParamSpec, declare_params
from roboalign_policy.polling import PolledGroup, QuietEvents, arrival_s, polled_subscription, take_newest
from roboalign_policy.qos import LATCHED, RELIABLE

PARAMS = [
    ParamSpec("backend", "expert", "policy backend", choices=BACKENDS, read_only=True),
    ParamSpec("checkpoint", "", "checkpoint or export folder (torch/onnxruntime/tensorrt)", read_only=True),
    ParamSpec("backend_options", "{}", "JSON object of extra keyword arguments for the backend", read_only=True),
    ParamSpec("allow_cpu_fallback", False, "onnxruntime: run on the CPU when a configured execution provider "
              "(cuda, tensorrt) is unavailable; false: refuse to load and say which", read_only=True),
    ParamSpec("camera_names", ["agentview", "wrist"], "camera names the policy expects, in order",
              array="str", read_only=True),
    ParamSpec("camera_topics", ["/camera/agentview/color/image_raw", "/camera/wrist/color/image_raw"],
              "image topic of each camera (same order as camera_names); the first triggers inference",
              array="str", read_only=True),
    ParamSpec("joint_states_topic", "/joint_states", "sensor_msgs/JointState topic", read_only=True),
    ParamSpec("state_joint_names", list(FR3_JOINT_NAMES),
              "JointState names forming the policy's state vector, in order", array="str", read_only=True),
    ParamSpec("gripper_joint_names", ["fr3_finger_joint1", "fr3_finger_joint2"],
              "finger joints whose positions add up to the gripper width appended to the state (empty: none)",
              array="str", read_only=True),
    ParamSpec("instruction_topic", "/roboalign/instruction", "std_msgs/String instruction (empty = stop)",
              read_only=True),
    ParamSpec("privileged_topic", "", "sim only: std_msgs/String JSON of privileged poses for the expert",
              read_only=True),
    ParamSpec("chunk_topic", "/roboalign/action_chunk", "roboalign_msgs/ActionChunk output", read_only=True),
    ParamSpec("trajectory_topic", "/roboalign/policy/joint_trajectory",
              "trajectory_msgs/JointTrajectory output (joint-position action space only)", read_only=True),
    ParamSpec("status_topic", "/roboalign/policy_status", "roboalign_msgs/PolicyStatus output", read_only=True),
    ParamSpec("joint_names", list(FR3_JOINT_NAMES), "arm joint names of the published JointTrajectory",
              array="str", read_only=True),
    ParamSpec("max_inference_rate_hz", 10.0, "upper bound on chunks per second", min=0.1, max=500.0),
    ParamSpec("max_image_age_s", 0.5, "skip inference when an image is older than this", min=0.001, max=60.0),
    ParamSpec("max_state_age_s", 0.5, "skip inference when the joint state is older than this", min=0.001, max=60.0),
    ParamSpec("publish_trajectory", True, "also publish each chunk as a JointTrajectory"),
    ParamSpec("row_offset_steps", 1.0, "row k is the target for observation stamp + (k + offset) * dt (the "
              "JointTrajectory header stamp is observation + offset * dt)", min=0.0, max=10.0),
    ParamSpec("instruction", "", "initial instruction (the instruction topic overrides it)"),
    ParamSpec("status_rate_hz", 2.0, "PolicyStatus and /diagnostics rate", min=0.1, max=100.0),
    CPU_AFFINITY,
]


def _rules(v: dict[str, Any]) -> str | None:
    if len(v["camera_names"]) != len(v["camera_topics"]) or not v["camera_topics"]:
        return (f"camera_names ({len(v['camera_names'])}) and camera_topics ({len(v['camera_topics'])}) "
                "must be non-empty and of equal length")
    try:
        opts = json.loads(v["backend_options"])
    except json.JSONDecodeError as e:
        return f"backend_options is not valid JSON: {e}"
    if not isinstance(opts, dict):
        return f"backend_options must be a JSON object, got {type(opts).__name__}"
    if v["backend"] == "expert" and not v["privileged_topic"]:
        return "backend 'expert' needs privileged_topic (sim only: object poses from sim_robot_node)"
    if v["backend"] in ("torch", "onnxruntime", "tensorrt") and not v["checkpoint"]:
        return f"backend {v['backend']!r} needs a checkpoint"
    return None


def privileged_from_json(text: str) -> dict[str, Any]:
    """Decode sim_robot_node's privileged JSON: lists become float arrays, other values stay."""
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError("privileged message must be a JSON object")
    return {k: np.asarray(v, np.float64) if isinstance(v, list) else v for k, v in raw.items()}


class PolicyNode(QuietEvents, Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("policy_node", **kwargs)
        self.p = declare_params(self, PARAMS, [_rules])
        self.add_post_set_parameters_callback(self._on_params_changed)
        self._lock = threading.Lock()
        self._images: dict[str, tuple[np.ndarray, float, float]] = {}  # name -> (rgb, stamp, arrival)
        self._state: tuple[np.ndarray, float] | None = None  # (state, arrival)
        self._extras: dict[str, Any] = {}
        self._instruction = self.p["instruction"]
        self._reset_pending = True
        self._policy = None
        self._state_code, self._message = PolicyStatus.STATE_UNCONFIGURED, "starting"
        self._chunks = 0
        self._last_latency_ms = 0.0
        self._last_start = -1e9
        self._chunk_times: list[float] = []
        self._input_errors = 0

        self._infer_group = MutuallyExclusiveCallbackGroup()
        io = MutuallyExclusiveCallbackGroup()
        self._chunk_pub = self.create_publisher(ActionChunkMsg, self.p["chunk_topic"], RELIABLE)
        self._traj_pub = self.create_publisher(JointTrajectory, self.p["trajectory_topic"], RELIABLE)
        self._status_pub = self.create_publisher(PolicyStatus, self.p["status_topic"], RELIABLE)
        # The first camera triggers inference: its callback runs in the inference group itself (one thread
        # hop less than waking another callback), keeping only the newest image while the model runs; the
        # other cameras, the state and the instruction are taken by the io group meanwhile.
        newest_only = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT,
                                 durability=DurabilityPolicy.VOLATILE)
        self._sim_time = bool(self.get_parameter("use_sim_time").value)
        polled = PolledGroup()  # taken in _poll_inputs, never by the executor
        self._polled_images: dict[str, Any] = {}
        for i, (name, topic) in enumerate(zip(self.p["camera_names"], self.p["camera_topics"], strict=True)):
            if i == 0:
                self.create_subscription(Image, topic, lambda m, n=name: self._on_image(m, n, True, self._now()),
                                         newest_only, callback_group=self._infer_group)
            else:
                self._polled_images[name] = polled_subscription(self, polled, Image, topic, qos_profile_sensor_data)
        self._state_sub = polled_subscription(self, polled, JointState, self.p["joint_states_topic"],
                                              qos_profile_sensor_data)
        self.create_subscription(String, self.p["instruction_topic"], self._on_instruction, LATCHED, callback_group=io)
        if self.p["privileged_topic"]:
            # in the inference group: a completed observation runs the model in this callback (no extra hop)
            self.create_subscription(String, self.p["privileged_topic"], self._on_privileged,
                                     qos_profile_sensor_data, callback_group=self._infer_group)
        self._load_timer = self.create_timer(0.0, self._load, callback_group=self._infer_group)
        self._diag = DiagnosticUpdater(self, hardware_id=f"policy:{self.p['backend']}")
        self._diag.add("policy", self._diag_check)
        self._diag.add_qos_check()
        self._status_timer = self.create_timer(1.0 / self.p["status_rate_hz"], self._publish_status,
                                               callback_group=MutuallyExclusiveCallbackGroup())

    # ------------------------------------------------------------------ parameters and loading
    def _on_params_changed(self, params: list[rclpy.parameter.Parameter]) -> None:
        for prm in params:
            self.p[prm.name] = prm.value
            if prm.name == "instruction":
                self._set_instruction(prm.value)
            if prm.name == "status_rate_hz":
                self._status_timer.timer_period_ns = int(1e9 / prm.value)

    def _load(self) -> None:
        self._load_timer.cancel()
        self._set_status(PolicyStatus.STATE_LOADING, f"loading backend {self.p['backend']}")
        try:
            opts = json.loads(self.p["backend_options"])
            if self.p["backend"] == "onnxruntime":
                opts.setdefault("allow_cpu_fallback", self.p["allow_cpu_fallback"])
            self._policy = load_policy(self.p["backend"], self.p["checkpoint"], opts)
        except Exception as e:  # keep running and say why: the status and /diagnostics carry it
            self.get_logger().error(f"could not load the policy: {e}")
            self._set_status(PolicyStatus.STATE_FAULT, f"load failed: {e}")
            return
        self._set_status(PolicyStatus.STATE_READY, "ready; waiting for an instruction")
        self.get_logger().info(f"policy ready: backend={self.p['backend']} checkpoint={self.p['checkpoint']!r}")

    def _set_status(self, code: int, message: str) -> None:
        self._state_code, self._message = code, message

    # ------------------------------------------------------------------ inputs
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _bad_input(self, what: str, e: Exception) -> None:
        self._input_errors += 1
        self.get_logger().warning(f"ignoring {what}: {e}", throttle_duration_sec=2.0)

    def _poll_inputs(self) -> None:
        """Take the newest joint state and non-trigger camera images (any thread; takes the lock)."""
        now = self._now()
        with self._lock:
            polled = [(n, take_newest(s)) for n, s in self._polled_images.items()]
            state = take_newest(self._state_sub)
        for name, got in polled:
            if got is not None:
                self._on_image(got[0], name, False, arrival_s(got[1], now, self._sim_time))
        if state is not None:
            self._on_state(state[0], arrival_s(state[1], now, self._sim_time))

    def _on_image(self, msg: Image, name: str, first: bool, now: float) -> None:
        try:
            rgb = conv.image_to_rgb(msg)
        except ValueError as e:
            self._bad_input(f"image on camera {name!r}", e)
            return
        with self._lock:
            self._images[name] = (rgb, conv.to_sec(msg.header.stamp), now)
        if first and self._due(now):
            self._infer()  # we are in the inference group already

    def _due(self, now: float) -> bool:
        return self._policy is not None and bool(self._instruction) and \
            now - self._last_start >= 1.0 / self.p["max_inference_rate_hz"]

    def _on_state(self, msg: JointState, now: float) -> None:
        try:
            q = conv.joint_positions(msg, self.p["state_joint_names"])
            if self.p["gripper_joint_names"]:
                q = np.r_[q, conv.joint_positions(msg, self.p["gripper_joint_names"]).sum()]
        except ValueError as e:
            self._bad_input("joint state", e)
            return
        with self._lock:
            self._state = (q.astype(np.float32), now)

    def _on_privileged(self, msg: String) -> None:
        try:
            extras = privileged_from_json(msg.data)
        except ValueError as e:  # json.JSONDecodeError is a ValueError
            self._bad_input("privileged state", e)
            return
        with self._lock:
            self._extras = extras
        if self._due(self._now()):  # the image of the same instant may have arrived first
            self._infer()  # we are in the inference group

    def _on_instruction(self, msg: String) -> None:
        self._set_instruction(msg.data)

    def _set_instruction(self, text: str) -> None:
        text = text.strip()
        with self._lock:
            self._instruction = text
            self._reset_pending = True  # every instruction message starts a new episode
        if self._policy is not None:
            self._set_status(PolicyStatus.STATE_READY if not text else PolicyStatus.STATE_RUNNING,
                             "stopped (empty instruction)" if not text else f"running: {text}")
        self.get_logger().info(f"instruction: {text!r}")

    # ------------------------------------------------------------------ inference
    def _observation(self, now: float) -> Observation | str:
        """The observation to act on, or why there is none yet."""
        self._poll_inputs()
        with self._lock:
            images, state, extras, instruction = dict(self._images), self._state, self._extras, self._instruction
        for name, topic in zip(self.p["camera_names"], self.p["camera_topics"], strict=True):
            if name not in images:
                return f"waiting for images on {topic}"
            if now - images[name][2] > self.p["max_image_age_s"]:
                return f"image on {topic} is {now - images[name][2]:.3f} s old"
        if state is None:
            return f"waiting for {self.p['joint_states_topic']}"
        if now - state[1] > self.p["max_state_age_s"]:
            return f"joint state is {now - state[1]:.3f} s old"
        first = self.p["camera_names"][0]
        if self.p["privileged_topic"] and extras.get("stamp", -1.0) < images[first][1] - 1e-6:
            return f"waiting for privileged state of t={images[first][1]:.3f} on {self.p['privileged_topic']}"
        # stamp: the newest input (the sim's privileged state may be newer than images it renders sparsely)
        stamp = max(images[first][1], float(extras.get("stamp", -1.0))) if self.p["privileged_topic"] \
            else images[first][1]
        return Observation(images={n: images[n][0] for n in self.p["camera_names"]}, state=state[0],
                           instruction=instruction, stamp=stamp, extras=extras)

    def _infer(self) -> None:
        if self._policy is None or not self._instruction:
            return
        now = self._now()
        obs = self._observation(now)
        if isinstance(obs, str):
            self._set_status(PolicyStatus.STATE_READY, obs)
            return
        self._last_start = now
        with self._lock:
            reset, self._reset_pending = self._reset_pending, False
        try:
            if reset:
                self._policy.reset()
            t0 = time.perf_counter()
            chunk = self._policy.act(obs)
        except Exception as e:
            self._set_status(PolicyStatus.STATE_FAULT, f"inference failed: {e}")
            self.get_logger().error(f"inference failed: {e}", throttle_duration_sec=2.0)
            return
        latency_ms = (time.perf_counter() - t0) * 1e3
        actions = np.asarray(chunk.actions)
        if actions.ndim != 2 or not np.all(np.isfinite(actions)):
            self._set_status(PolicyStatus.STATE_FAULT, f"policy produced a bad chunk {actions.shape} (non-finite?)")
            self.get_logger().error("policy produced non-finite actions; not published", throttle_duration_sec=2.0)
            return
        if not chunk.stamp:
            chunk.stamp = obs.stamp
        # ActionChunk.model_latency_ms = all of Policy.act but its pre-processing (model + post-processing),
        # so preprocess_ms + model_latency_ms is the policy's whole time and the rest is ROS overhead
        pre = float(chunk.timings.get("preprocess", 0.0))
        chunk.timings = {**chunk.timings, "model": max(0.0, latency_ms - pre)}
        self._publish_chunk(chunk, obs.instruction)
        self._last_latency_ms = float(chunk.timings.get("total", latency_ms))
        self._chunks += 1
        self._chunk_times = [t for t in self._chunk_times if now - t < 5.0] + [now]
        self._set_status(PolicyStatus.STATE_RUNNING, f"running: {obs.instruction}")

    def _publish_chunk(self, chunk, instruction: str) -> None:
        stamp = self.get_clock().now().to_msg()
        if self.p["publish_trajectory"] and chunk.action_space in ACTION_SPACES \
                and ACTION_SPACES[chunk.action_space].kind == "absolute":
            arm = ACTION_SPACES[chunk.action_space].arm_indices
            rows = np.asarray(chunk.actions, np.float64)[:, arm]  # (T, 7)
            if rows.shape[1] == len(self.p["joint_names"]):
                start = chunk.stamp + self.p["row_offset_steps"] * chunk.dt
                self._traj_pub.publish(conv.trajectory(self.p["joint_names"], rows, chunk.dt, conv.to_time(start)))
        self._chunk_pub.publish(conv.chunk_to_msg(chunk, stamp, self._chunks, instruction, backend=self.p["backend"]))

    # ------------------------------------------------------------------ status
    def _rate(self) -> float:
        ts = self._chunk_times
        return 0.0 if len(ts) < 2 else (len(ts) - 1) / max(ts[-1] - ts[0], 1e-9)

    def _image_age_ms(self) -> float:
        with self._lock:
            arrivals = [a for _, _, a in self._images.values()]
        return -1.0 if not arrivals else (self._now() - min(arrivals)) * 1e3

    def _publish_status(self) -> None:
        self._poll_inputs()  # the ages below are of the newest messages, also while no inference runs
        now = self._now()
        last = self._chunk_times[-1] if self._chunk_times else -1e18
        if self._policy is not None and self._instruction and now - last > max(1.0, 3.0 / self.p["max_inference_rate_hz"]):
            why = self._observation(now)  # no chunk for a while: say what is missing
            if isinstance(why, str):
                self._set_status(PolicyStatus.STATE_READY, why)
        msg = PolicyStatus(state=self._state_code, backend=self.p["backend"], checkpoint=self.p["checkpoint"],
                           instruction=self._instruction, chunks_published=self._chunks,
                           last_latency_ms=self._last_latency_ms, inference_rate_hz=self._rate(),
                           image_age_ms=self._image_age_ms(), message=self._message)
        msg.header.stamp = self.get_clock().now().to_msg()
        self._status_pub.publish(msg)
        self._diag.update()

    def _diag_check(self) -> tuple[bytes, str, dict[str, Any]]:
        level = {PolicyStatus.STATE_FAULT: ERROR, PolicyStatus.STATE_RUNNING: OK}.get(self._state_code, OK)
        if self._state_code == PolicyStatus.STATE_READY and self._instruction:
            level = WARN  # has an instruction but cannot run (inputs missing or stale)
        return level, self._message, {"chunks": self._chunks, "latency_ms": f"{self._last_latency_ms:.2f}",
                                      "rate_hz": f"{self._rate():.2f}", "input_errors": self._input_errors}


def main(args: list[str] | None = None) -> int:
    return run_node(PolicyNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
