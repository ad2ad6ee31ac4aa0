"""policy_node: camera images + joint state + instruction in; action chunks out.

Subscribes ``camera_topics`` (realsense-ros naming, rgb8/bgr8/mono8, padded ``step`` handled; with
``compressed_images`` JPEG on image_transport's ``<topic>/compressed``) with the QoS ``camera_qos`` selects
(``auto``: the publisher's reliability, keep-last 1; ``roboalign_policy.cameras``), ``joint_states_topic``, ``instruction_topic`` (std_msgs/String, latched; an empty string
stops the policy) and, for the sim-only ``expert`` backend, ``privileged_topic`` (std_msgs/String JSON of
object poses published by sim_robot_node). Publishes per chunk a roboalign_msgs/ActionChunk and, for the
joint-position action space, a trajectory_msgs/JointTrajectory (one point per row, ``time_from_start =
k * dt`` from the observation stamp), plus roboalign_msgs/PolicyStatus and /diagnostics.

Camera frames never pass through rclpy's Python executor: a thread of their own waits on the camera
subscriptions alone (``roboalign_policy.frame_waiter``) and takes every frame serialized; each one only updates
the camera's statistics (rate, age, latency, drops: on /diagnostics and in PolicyStatus). A frame of the first
camera kicks the inference thread (at most ``max_inference_rate_hz``), which acts on the newest frames, as does
the sim's privileged state when it completes an observation; only the newest frame of each camera is
deserialised and decoded, when an observation is assembled. The joint state is only needed as the newest message then, so the inference step
takes it itself (``roboalign_policy.polling``, stamped with its DDS reception time) instead of the executor
waking up for each of them at 100 Hz; the instruction and the sim's privileged state stay on the executor
(the instruction in another group, so it never waits for the model). The freshness rules (which input is
missing or too old) are ``roboalign.control.freshness``. Bad input (wrong encoding, malformed message, NaN in
the state or the chunk) is logged with the reason, nothing is published for it, and the node keeps running.

A managed (lifecycle) node: configure checks the parameters, loads the model and creates the inputs and the
chunk publishers (a failure is logged, published as PolicyStatus FAULT with the reason, and the node stays
unconfigured); activate starts inference and publishing; deactivate stops them; cleanup and shutdown release
the model, the threads and the subscriptions. With ``autostart`` (default) the node configures and activates
itself once it spins, after start-up, so it answers at once. PolicyStatus is published in every state (it is
what the bridge quotes when it refuses START): UNCONFIGURED (unconfigured or inactive, the message says which
and what to do), LOADING (starting, configuring), READY / RUNNING (active), FAULT (a failed configure or
inference, with the reason).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import numpy as np
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import qos_profile_sensor_data
from roboalign_msgs.msg import ActionChunk as ActionChunkMsg
from roboalign_msgs.msg import PolicyStatus
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from roboalign.control.backends import BACKENDS, RUNTIME_BACKENDS, load_policy
from roboalign.control.chunk_executor import PrefixTracker
from roboalign.control.freshness import Input, observation_stamp, privileged_lag, wait_reason
from roboalign.spec.action_space import ACTION_SPACES, FR3_JOINT_NAMES
from roboalign.spec.policy_io import Observation
from roboalign.spec.tasks import task_name
from roboalign_policy import conversions as conv
from roboalign_policy import qos as q
from roboalign_policy.cameras import CAMERA_QOS, CameraInput, with_causes
from roboalign_policy.diagnostics import ERROR, OK, WARN, DiagnosticUpdater
from roboalign_policy.frame_waiter import SubscriptionWaiter, Worker
from roboalign_policy.lifecycle import lifecycle_hint, start_autostart
from roboalign_policy.node_runner import run_node
from roboalign_policy.params import AUTOSTART, CPU_AFFINITY, ParamSpec, declare_params
from roboalign_policy.polling import PolledGroup, QuietEvents, arrival_s, polled_subscription, take_newest

PARAMS = [
    AUTOSTART,
    ParamSpec("backend", "expert", "policy backend", choices=BACKENDS, read_only=True),
    ParamSpec("checkpoint", "", "checkpoint or export folder (torch/onnxruntime/tensorrt)", read_only=True),
    ParamSpec("backend_options", "{}", "JSON object of extra keyword arguments for the backend", read_only=True),
    ParamSpec("allow_cpu_fallback", False, "onnxruntime: run on the CPU when a configured execution provider "
              "(cuda, tensorrt) is unavailable; false: refuse to load and say which", read_only=True),
    ParamSpec("camera_names", list(q.CAMERA_NAMES), "camera names the policy expects, in order",
              array="str", read_only=True),
    ParamSpec("camera_topics", list(q.CAMERA_TOPICS),
              "image topic of each camera (same order as camera_names); the first triggers inference",
              array="str", read_only=True),
    CAMERA_QOS,
    ParamSpec("compressed_images", False, "subscribe JPEG sensor_msgs/CompressedImage on <topic>/compressed "
              "(image_transport naming) instead of raw images", read_only=True),
    ParamSpec("camera_fps", 0.0, "nominal camera frame rate for the drop count and the starved-camera warning "
              "(0: estimated from the header stamps)", min=0.0, max=1000.0, read_only=True),
    ParamSpec("joint_states_topic", q.JOINT_STATES, "sensor_msgs/JointState topic", read_only=True),
    ParamSpec("state_joint_names", list(FR3_JOINT_NAMES),
              "JointState names forming the policy's state vector, in order", array="str", read_only=True),
    ParamSpec("gripper_joint_names", ["fr3_finger_joint1", "fr3_finger_joint2"],
              "finger joints whose positions add up to the gripper width appended to the state (empty: none)",
              array="str", read_only=True),
    ParamSpec("instruction_topic", q.INSTRUCTION, "std_msgs/String instruction (empty = stop)",
              read_only=True),
    ParamSpec("privileged_topic", "", "sim only: std_msgs/String JSON of privileged poses for the expert",
              read_only=True),
    ParamSpec("chunk_topic", q.ACTION_CHUNK, "roboalign_msgs/ActionChunk output", read_only=True),
    ParamSpec("trajectory_topic", q.POLICY_TRAJECTORY,
              "trajectory_msgs/JointTrajectory output (joint-position action space only)", read_only=True),
    ParamSpec("status_topic", q.POLICY_STATUS, "roboalign_msgs/PolicyStatus output", read_only=True),
    ParamSpec("joint_names", list(FR3_JOINT_NAMES), "arm joint names of the published JointTrajectory",
              array="str", read_only=True),
    ParamSpec("max_inference_rate_hz", 10.0, "upper bound on chunks per second", min=0.1, max=500.0),
    ParamSpec("max_image_age_s", 0.5, "skip inference when an image is older than this", min=0.001, max=60.0),
    ParamSpec("max_state_age_s", 0.5, "skip inference when the joint state is older than this", min=0.001, max=60.0),
    ParamSpec("publish_trajectory", True, "also publish each chunk as a JointTrajectory"),
    ParamSpec("row_offset_steps", 1.0, "row k is the target for observation stamp + (k + offset) * dt (the "
              "JointTrajectory header stamp is observation + offset * dt)", min=0.0, max=10.0),
    ParamSpec("rtc_prefix", False, "real-time chunking: send each inference the committed prefix (what the bridge "
              "executes from the observation on; run the bridge with execution: rtc)", read_only=True),
    ParamSpec("rtc_soft_horizon", 0, "rtc_prefix: soft-mask horizon s of the head (0: H - d)", min=0, max=64,
              read_only=True),
    ParamSpec("inject_delay_ms", 0.0, "sim only: publish each chunk this much sim time after its observation at the "
              "earliest (a slower model's delay)", min=0.0, max=5000.0, read_only=True),
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
    if v["backend"] in RUNTIME_BACKENDS and not v["checkpoint"]:
        return f"backend {v['backend']!r} needs a checkpoint"
    if v["rtc_prefix"] and v["backend"] not in RUNTIME_BACKENDS:
        return f"rtc_prefix needs a model backend ({', '.join(RUNTIME_BACKENDS)}), not {v['backend']!r}"
    return None


def privileged_from_json(text: str) -> dict[str, Any]:
    """Decode sim_robot_node's privileged JSON: lists become float arrays, other values stay."""
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError("privileged message must be a JSON object")
    return {k: np.asarray(v, np.float64) if isinstance(v, list) else v for k, v in raw.items()}


class _Inputs:
    """What a configured policy node holds (configure creates it, cleanup and shutdown release it): the chunk
    and trajectory lifecycle publishers, the subscriptions, the camera thread and the inference thread."""

    def __init__(self, node: PolicyNode) -> None:
        p = node.p
        self.chunk_pub = node.create_lifecycle_publisher(ActionChunkMsg, p["chunk_topic"], q.RELIABLE)
        self.traj_pub = node.create_lifecycle_publisher(JointTrajectory, p["trajectory_topic"], q.RELIABLE)
        # Every camera's frames are counted by the camera thread, also while the model runs in the inference
        # thread (counting in the inference's own thread lost 12 % of the frames at load 12 on 2 cores)
        polled = PolledGroup()  # taken by the camera thread and _poll_inputs, never by the executor
        node._cameras = [
            CameraInput(node, name, topic, p["camera_qos"], p["compressed_images"], group=polled,
                        expected_hz=p["camera_fps"], on_bad=node._bad_input)
            for name, topic in zip(p["camera_names"], p["camera_topics"], strict=True)]
        self.state_sub = polled_subscription(node, polled, JointState, p["joint_states_topic"],
                                             qos_profile_sensor_data)
        self.subs = [node.create_subscription(String, p["instruction_topic"], node._on_instruction, q.LATCHED,
                                              callback_group=MutuallyExclusiveCallbackGroup())]
        if p["privileged_topic"]:
            self.subs.append(node.create_subscription(String, p["privileged_topic"], node._on_privileged,
                                                      qos_profile_sensor_data, callback_group=node._infer_group))
        for cam in node._cameras:
            node._diag.add(f"camera {cam.name}", lambda c=cam: c.diagnostic(node.p["max_image_age_s"]))
        self.worker = Worker(node._infer, "policy_inference", node._thread_error)
        self.waiter = SubscriptionWaiter(node.context, node._camera_subs, node._on_frames, "policy_cameras",
                                         on_error=node._thread_error)

    def release(self, node: PolicyNode, cameras: list[CameraInput]) -> None:
        """Stop the threads, then destroy the subscriptions and publishers."""
        self.waiter.close()
        self.worker.close()
        subs = [cam.sub for cam in cameras if cam.sub is not None] + [self.state_sub, *self.subs]
        for sub in subs:
            node.destroy_subscription(sub)
        node.destroy_lifecycle_publisher(self.chunk_pub)
        node.destroy_lifecycle_publisher(self.traj_pub)


class PolicyNode(QuietEvents, LifecycleNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("policy_node", **kwargs)
        self.p = declare_params(self, PARAMS, [_rules])
        self.add_post_set_parameters_callback(self._on_params_changed)
        self._lock = threading.Lock()
        self._state: tuple[np.ndarray, float] | None = None  # (state, arrival)
        self._extras: dict[str, Any] = {}
        self._instruction = self.p["instruction"]
        self._reset_pending = True
        self._policy = None
        self._rtc: PrefixTracker | None = None  # rtc_prefix: what the bridge executes, and the delay d
        self._active = False  # lifecycle: only an active node runs the model and publishes chunks
        self._chunks = 0
        self._last_latency_ms = 0.0
        self._last_start = -1e9
        self._chunk_times: list[float] = []
        self._input_errors = 0
        self._cameras: list[CameraInput] = []
        self._io: _Inputs | None = None  # what configure creates and cleanup releases
        self._sim_time = bool(self.get_parameter("use_sim_time").value)
        self._infer_group = MutuallyExclusiveCallbackGroup()
        # the status is published in every lifecycle state: it says why the node cannot act (the bridge quotes it)
        self._status_pub = self.create_publisher(PolicyStatus, self.p["status_topic"], q.LATCHED)
        self._diag = DiagnosticUpdater(self, hardware_id=f"policy:{self.p['backend']}")
        self._diag.add("policy", self._diag_check)
        self._diag.add_qos_check()
        self._status_timer = self.create_timer(1.0 / self.p["status_rate_hz"], self._publish_status,
                                               callback_group=MutuallyExclusiveCallbackGroup())
        self._autostarting = bool(self.p["autostart"])  # until activated: inactive is a step, not a state to report
        if self._autostarting:
            self._set_status(PolicyStatus.STATE_LOADING, "starting: configure and activate (autostart)")
        else:
            self._set_status(PolicyStatus.STATE_UNCONFIGURED,
                             f"unconfigured (autostart false): {lifecycle_hint(self, 'configure')}")
        start_autostart(self, self._infer_group)

    def close(self) -> None:
        """Release the model, the camera and inference threads and the inputs (before the node is destroyed);
        safe to call twice."""
        self._active = False
        io, self._io = self._io, None
        cameras, self._cameras = self._cameras, []  # the status timer stops following them first
        if io is not None:
            io.release(self, cameras)
        self._policy = None
        self._diag.remove_prefix("camera ")

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Check the parameters, load the model, create the inputs and outputs; a failure says why and leaves
        the node unconfigured (its status FAULT, with the reason)."""
        backend, ckpt = self.p["backend"], self.p["checkpoint"]
        self._set_status(PolicyStatus.STATE_LOADING, f"configuring: loading backend {backend}"
                         + (f" from {ckpt}" if ckpt else ""))
        self._publish_status()
        try:
            why = _rules(self.p)
            if why:
                raise ValueError(why)
            if self.p["inject_delay_ms"] > 0 and not self._sim_time:
                raise ValueError("inject_delay_ms is for the simulator only (use_sim_time: true); set it to 0")
            self._policy = load_policy(backend, ckpt, self._backend_options())
            specs = getattr(self._policy, "specs", None)
            self._rtc = None if not self.p["rtc_prefix"] else PrefixTracker(
                specs.action_dim, specs.horizon, specs.dt, soft_horizon=self.p["rtc_soft_horizon"],
                row_offset=self.p["row_offset_steps"])
            self._io = _Inputs(self)
        except Exception as e:  # stay unconfigured and say why: the status and /diagnostics carry it
            self._autostarting = False
            self.close()
            self.get_logger().error(f"configure failed: could not load the policy: {e}")
            self._set_status(PolicyStatus.STATE_FAULT, f"configure failed: could not load the policy: {e} "
                             f"(the node stays unconfigured; fix it, then: {lifecycle_hint(self, 'configure')})")
            self._publish_status()
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"policy loaded: backend={backend} checkpoint={ckpt!r}")
        if self._autostarting:  # activate follows at once: a START meanwhile waits instead of being refused
            self._set_status(PolicyStatus.STATE_LOADING, f"loaded backend {backend}; activating (autostart)")
        else:
            self._set_inactive("configured")
        return TransitionCallbackReturn.SUCCESS

    def _backend_options(self) -> dict[str, Any]:
        opts = json.loads(self.p["backend_options"])
        if self.p["backend"] == "onnxruntime":
            opts.setdefault("allow_cpu_fallback", self.p["allow_cpu_fallback"])
        return opts

    def _set_inactive(self, what: str) -> None:
        self._set_status(PolicyStatus.STATE_UNCONFIGURED, f"inactive ({what}; backend {self.p['backend']} "
                         f"loaded, publishing nothing): {lifecycle_hint(self, 'activate')}")
        self._publish_status()

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self._reset_pending = True  # the model starts afresh
        self._active, self._autostarting = True, False
        text = self._instruction
        self._set_status(PolicyStatus.STATE_RUNNING if text else PolicyStatus.STATE_READY,
                         f"running: {text}" if text else "ready; waiting for an instruction")
        self._publish_status()
        self.get_logger().info(f"active: backend={self.p['backend']} checkpoint={self.p['checkpoint']!r}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False  # an inference under way may still finish: its chunk is dropped once inactive
        ret = super().on_deactivate(state)
        self._set_inactive("deactivated")
        return ret

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        self._set_status(PolicyStatus.STATE_UNCONFIGURED,
                         f"unconfigured (cleaned up): {lifecycle_hint(self, 'configure')}")
        self._publish_status()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        self._set_status(PolicyStatus.STATE_UNCONFIGURED, "shut down")
        self._publish_status()
        return TransitionCallbackReturn.SUCCESS

    # ------------------------------------------------------------------ parameters
    def _on_params_changed(self, params: list[rclpy.parameter.Parameter]) -> None:
        for prm in params:
            self.p[prm.name] = prm.value
            if prm.name == "instruction":
                self._set_instruction(prm.value)
            if prm.name == "status_rate_hz":
                self._status_timer.timer_period_ns = int(1e9 / prm.value)

    def _set_status(self, code: int, message: str) -> None:
        self._state_code, self._message = code, message

    # ------------------------------------------------------------------ inputs
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _bad_input(self, what: str, e: Exception) -> None:
        self._input_errors += 1
        self.get_logger().warning(f"ignoring {what}: {e}", throttle_duration_sec=2.0)

    def _poll_inputs(self) -> None:
        """Take the newest joint state (any thread; takes the lock)."""
        now = self._now()
        io = self._io
        if io is None:
            return
        with self._lock:
            state = take_newest(io.state_sub)
        if state is not None:
            self._on_state(state[0], arrival_s(state[1], now, self._sim_time))

    def _camera_subs(self) -> list[Any]:  # the camera thread's wait set
        return [cam.sub for cam in self._cameras if cam.sub is not None]

    def _on_frames(self) -> None:
        """Camera thread: count every waiting frame; a new frame of the first camera starts inference if due."""
        arrivals = [cam.poll() for cam in self._cameras]
        if arrivals[0] is not None and self._due(arrivals[0]):
            self._io.worker.kick()

    def _thread_error(self, e: Exception) -> None:
        self.get_logger().error(f"policy thread error (still running): {e!r}", throttle_duration_sec=2.0)

    def _due(self, now: float) -> bool:
        return self._active and self._policy is not None and bool(self._instruction) and \
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
            self._io.worker.kick()

    def _on_instruction(self, msg: String) -> None:
        self._set_instruction(msg.data)

    def _set_instruction(self, text: str) -> None:
        text = text.strip()
        with self._lock:
            self._instruction = text
            self._reset_pending = True  # every instruction message starts a new episode
        if self._active:
            self._set_status(PolicyStatus.STATE_READY if not text else PolicyStatus.STATE_RUNNING,
                             "stopped (empty instruction)" if not text else f"running: {text}")
        self.get_logger().info(f"instruction: {text!r}")

    # ------------------------------------------------------------------ inference
    def _observation(self, now: float) -> Observation | str:
        """The observation to act on, or why there is none yet (``roboalign.control.freshness``)."""
        self._poll_inputs()
        frames = {cam.name: cam.frame() for cam in self._cameras}  # decodes the newest frame of each camera
        with self._lock:
            state, extras, instruction = self._state, self._extras, self._instruction
        inputs = [Input(f"image on {c.topic}", None if frames[c.name] is None else frames[c.name][2],
                        self.p["max_image_age_s"], f"waiting for images on {c.topic}") for c in self._cameras]
        inputs.append(Input("joint state", None if state is None else state[1], self.p["max_state_age_s"],
                            f"waiting for {self.p['joint_states_topic']}"))
        why = wait_reason(now, inputs)
        if why:
            return with_causes(why, self._cameras)  # a slow camera: what was measured and the likely cause
        image_stamp = frames[self._cameras[0].name][1]
        privileged = float(extras["stamp"]) if "stamp" in extras else None
        if self.p["privileged_topic"]:
            why = privileged_lag(image_stamp, privileged, self.p["privileged_topic"])
            if why:
                return why
        # stamp: the newest input (the sim's privileged state may be newer than images it renders sparsely)
        stamp = observation_stamp(image_stamp, privileged if self.p["privileged_topic"] else None)
        return Observation(images={n: f[0] for n, f in frames.items()}, state=state[0],
                           instruction=instruction, stamp=stamp, extras=extras)

    def _infer(self) -> None:
        policy = self._policy
        if not self._active or policy is None or not self._instruction:
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
                policy.reset()
                if self._rtc is not None:
                    self._rtc.reset()
            t0 = time.perf_counter()
            req = None if self._rtc is None else self._rtc.request(obs.stamp)
            chunk = policy.act(obs) if req is None else policy.act(
                obs, prefix=req.prefix, prefix_len=req.prefix_len, soft_horizon=req.soft_horizon)
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
        self._hold_until(obs.stamp + self.p["inject_delay_ms"] / 1e3)
        self._publish_chunk(chunk, obs.instruction)
        if self._rtc is not None:  # the bridge switches at arrival: so does the mirror
            self._rtc.published(actions, obs.stamp, self._now(), prefix_len=None)
        self._last_latency_ms = float(chunk.timings.get("total", latency_ms))
        self._chunks += 1
        self._chunk_times = [t for t in self._chunk_times if now - t < 5.0] + [now]
        self._set_status(PolicyStatus.STATE_RUNNING, f"running: {obs.instruction}")

    def _hold_until(self, t: float) -> None:
        """Wait (sim time) until ``t``: inject_delay_ms emulates a slower model while the robot moves on."""
        while self._active and self.p["inject_delay_ms"] > 0 and self._now() < t:
            time.sleep(0.002)

    def _publish_chunk(self, chunk, instruction: str) -> None:
        io = self._io
        if io is None:
            return
        stamp = self.get_clock().now().to_msg()
        if self.p["publish_trajectory"] and chunk.action_space in ACTION_SPACES \
                and ACTION_SPACES[chunk.action_space].kind == "absolute":
            arm = ACTION_SPACES[chunk.action_space].arm_indices
            rows = np.asarray(chunk.actions, np.float64)[:, arm]  # (T, 7)
            if rows.shape[1] == len(self.p["joint_names"]):
                start = chunk.stamp + self.p["row_offset_steps"] * chunk.dt
                io.traj_pub.publish(conv.trajectory_cdr(self.p["joint_names"], rows, chunk.dt, conv.to_time(start)))
        io.chunk_pub.publish(conv.chunk_to_msg(chunk, stamp, self._chunks, instruction, task_name(instruction),
                                                backend=self.p["backend"]))

    # ------------------------------------------------------------------ status
    def _rate(self) -> float:
        ts = self._chunk_times
        return 0.0 if len(ts) < 2 else (len(ts) - 1) / max(ts[-1] - ts[0], 1e-9)

    def _image_age_ms(self, cams: list[dict[str, Any]]) -> float:
        ages = [c["age_ms"] for c in cams]
        return -1.0 if not ages or min(ages) < 0 else max(ages)

    def _publish_status(self) -> None:
        self._poll_inputs()  # the ages below are of the newest messages, also while no inference runs
        cameras = list(self._cameras)
        for cam in cameras:
            cam.ensure_subscribed()  # auto: subscribe once a publisher appears, follow a change of its QoS
        now = self._now()
        last = self._chunk_times[-1] if self._chunk_times else -1e18
        if self._active and self._instruction and now - last > max(1.0, 3.0 / self.p["max_inference_rate_hz"]):
            why = self._observation(now)  # no chunk for a while: say what is missing
            if isinstance(why, str):
                self._set_status(PolicyStatus.STATE_READY, why)
        cams = [c.summary() for c in cameras]
        msg = PolicyStatus(state=self._state_code, backend=self.p["backend"], checkpoint=self.p["checkpoint"],
                           instruction=self._instruction, chunks_published=self._chunks,
                           last_latency_ms=self._last_latency_ms, inference_rate_hz=self._rate(),
                           image_age_ms=self._image_age_ms(cams), message=self._message,
                           camera_names=[c.name for c in cameras], camera_topics=[c["topic"] for c in cams],
                           camera_rate_hz=[c["rate_hz"] for c in cams], camera_age_ms=[c["age_ms"] for c in cams],
                           camera_latency_ms=[c["latency_ms"] for c in cams],
                           camera_drops=[int(c["drops"]) for c in cams], camera_qos=[c["qos"] for c in cams],
                           camera_frames=[int(c["frames"]) for c in cams])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._status_pub.publish(msg)
        self._diag.update()

    def _diag_check(self) -> tuple[bytes, str, dict[str, Any]]:
        level = {PolicyStatus.STATE_FAULT: ERROR, PolicyStatus.STATE_UNCONFIGURED: WARN}.get(self._state_code, OK)
        if self._state_code == PolicyStatus.STATE_READY and self._instruction:
            level = WARN  # has an instruction but cannot run (inputs missing or stale)
        return level, self._message, {"chunks": self._chunks, "latency_ms": f"{self._last_latency_ms:.2f}",
                                      "rate_hz": f"{self._rate():.2f}", "input_errors": self._input_errors}


def main(args: list[str] | None = None) -> int:
    return run_node(PolicyNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
