"""bridge_node: the robot side. Operator commands, episodes, safe chunk execution, e-stop and diagnostics.

- ``command_service`` (roboalign_msgs/TaskCommand): START a task by name or free text (matched to the four
  tasks of ``roboalign.tasks``), STOP, HOME, RESET, ESTOP, RELEASE_ESTOP.
- Episodes (``roboalign.control.episode``): optional scene reset (sim: ``sim_reset_service``; the command's
  ``init_state`` is passed on and the init state the sim reports goes into EpisodeStatus), homing at a
  reduced speed, then running: the instruction goes to the policy on ``instruction_topic`` (latched), chunks
  come back on ``chunk_topic`` and are executed at ``control_rate_hz`` with temporal ensembling
  (``roboalign.control.controller.ArmController``); success from ``success_topic`` (sim predicate), or
  timeout / operator stop. The episode status is published on ``episode_status_topic``.
- Output: trajectory_msgs/JointTrajectory to a ros2_control JointTrajectoryController (``command_topic``,
  ``lookahead_steps`` points ``k / control_rate_hz`` apart, FR3 joint names by default) and the gripper
  command as std_msgs/Float64MultiArray (``gripper_command_topic``, ForwardCommandController style).
  With ``dry_run`` nothing is sent to the robot (the commands are computed, logged and counted).
- Safety: position/step/velocity limits on every command, chunk checks (NaN, far out of limits), watchdog
  on stale images, joint state and chunks, e-stop topic (std_msgs/Bool) and service (std_srvs/SetBool).
  On any fault the last command is held and the reason goes to /diagnostics and the log.
- Inputs the control loop needs only the newest of (joint states, camera arrivals for the watchdog) are
  taken by the control tick itself (``roboalign_policy.polling``), stamped with their DDS reception time:
  the executor never wakes up for them, so its Python wait-set loop does not hold the GIL 160 times a second
  while the control thread waits for it. Chunks, e-stop, services and timers stay on the executor; no
  entity has rclpy's per-entity QoS event handlers (``polling.QuietEvents``; /diagnostics "qos" reports
  incompatible peers instead).
- Recording: with ``record_dir`` every episode is written as a rosbag2 (``roboalign_policy.bag_recorder``,
  off the executor and the control thread); an episode that ends in a fault or is interrupted keeps what was
  recorded.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from roboalign_msgs.msg import ActionChunk as ActionChunkMsg
from roboalign_msgs.msg import EpisodeStatus
from roboalign_msgs.srv import TaskCommand
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float64MultiArray, String
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory

from roboalign.action_space import ACTION_SPACES, FR3_HOME, FR3_JOINT_NAMES, JOINT_LIMITS, make_joint_position
from roboalign.control.chunk_executor import ExecutorConfig
from roboalign.control.controller import ArmController, Tick
from roboalign.control.episode import EpisodeMachine, Phase, TransitionError
from roboalign.control.safety import SafetyLimits
from roboalign.control.watchdog import Watchdog
from roboalign.tasks import DEFAULT_TASKS, TaskError
from roboalign_policy import conversions as conv
from roboalign_policy.diagnostics import ERROR, OK, WARN, DiagnosticUpdater
from roboalign_policy.node_runner import make_realtime, run_node
from roboalign_policy.params import CPU_AFFINITY, ParamSpec, declare_params
from roboalign_policy.polling import PolledGroup, QuietEvents, arrival_s, polled_subscription, take_newest
from roboalign_policy.qos import LATCHED, RELIABLE

PARAMS = [
    ParamSpec("joint_names", list(FR3_JOINT_NAMES), "arm joints, in the order of the action space",
              array="str", length=7, read_only=True),
    ParamSpec("joint_limits", "fr3", "which published joint limits to enforce", choices=tuple(JOINT_LIMITS),
              read_only=True),
    ParamSpec("joint_states_topic", "/joint_states", "sensor_msgs/JointState of the robot", read_only=True),
    ParamSpec("command_topic", "/fr3_arm_controller/joint_trajectory",
              "JointTrajectoryController input (trajectory_msgs/JointTrajectory)", read_only=True),
    ParamSpec("gripper_command_topic", "/fr3_gripper/commands",
              "gripper command (std_msgs/Float64MultiArray, one value)", read_only=True),
    ParamSpec("gripper_open_value", -1.0, "value sent for an open gripper (action -1)", min=-10.0, max=10.0),
    ParamSpec("gripper_closed_value", 1.0, "value sent for a closed gripper (action +1)", min=-10.0, max=10.0),
    ParamSpec("chunk_topic", "/roboalign/action_chunk", "roboalign_msgs/ActionChunk from the policy",
              read_only=True),
    ParamSpec("instruction_topic", "/roboalign/instruction", "std_msgs/String to the policy (latched)",
              read_only=True),
    ParamSpec("episode_status_topic", "/roboalign/episode_status", "roboalign_msgs/EpisodeStatus output",
              read_only=True),
    ParamSpec("command_service", "/roboalign/command", "roboalign_msgs/TaskCommand service", read_only=True),
    ParamSpec("estop_topic", "/roboalign/estop", "std_msgs/Bool: true engages the e-stop", read_only=True),
    ParamSpec("estop_service", "/roboalign/set_estop", "std_srvs/SetBool: true engages, false releases",
              read_only=True),
    ParamSpec("camera_topics", [], "image topics watched for staleness while running", array="str",
              read_only=True),
    ParamSpec("success_topic", "", "std_msgs/Bool success predicate (sim); empty: operator decides",
              read_only=True),
    ParamSpec("sim_reset_service", "", "TaskCommand service that resets the sim scene; empty: none",
              read_only=True),
    ParamSpec("dry_run", True, "compute and check commands but publish nothing to the robot"),
    ParamSpec("control_rate_hz", 50.0, "command rate", min=1.0, max=1000.0, read_only=True),
    ParamSpec("lookahead_steps", 2, "points per published trajectory", min=1, max=50, read_only=True),
    ParamSpec("velocity_scale", 0.5, "fraction of the published joint velocity limits", min=0.01, max=1.0,
              read_only=True),
    ParamSpec("max_joint_step", 0.05, "largest joint change per control step [rad]", min=1e-4, max=0.5,
              read_only=True),
    ParamSpec("reject_margin", 0.2, "chunks further than this outside the limits are rejected", min=0.0,
              max=3.0, read_only=True),
    ParamSpec("gripper_velocity", 20.0, "gripper command rate limit [1/s]", min=0.1, max=1000.0, read_only=True),
    ParamSpec("home_first", True, "move to home_pose before each episode"),
    ParamSpec("home_pose", list(FR3_HOME), "home joint positions [rad]", array="float", length=7),
    ParamSpec("home_gripper", -1.0, "gripper command at home (-1 open)", min=-1.0, max=1.0),
    ParamSpec("homing_velocity_scale", 0.25, "speed while homing, fraction of the limits", min=0.01, max=1.0),
    ParamSpec("image_timeout_s", 0.2, "images older than this fault a running episode", min=0.001, max=60.0),
    ParamSpec("state_timeout_s", 0.1, "joint state older than this faults a moving episode", min=0.001, max=60.0),
    ParamSpec("chunk_timeout_s", 1.0, "no accepted chunk for this long faults a running episode",
              min=0.001, max=60.0),
    ParamSpec("max_episode_s", 60.0, "episode time limit", min=0.1, max=3600.0),
    ParamSpec("ensemble_decay", 4.0, "temporal ensembling: weight exp(-decay * age) [1/s]", min=-100.0,
              max=100.0, read_only=True),
    ParamSpec("blend_time_s", 0.1, "chunk blend-in / blend-out time", min=0.0, max=5.0, read_only=True),
    ParamSpec("max_chunk_age_s", 0.5, "chunks whose observation is older are dropped", min=0.001, max=10.0,
              read_only=True),
    ParamSpec("max_chunk_future_s", 0.05, "chunks stamped further ahead of this node's clock are dropped",
              min=0.0, max=10.0, read_only=True),
    ParamSpec("row_offset_steps", 1.0, "row k of a chunk is the target for stamp + (k + offset) * dt",
              min=0.0, max=10.0, read_only=True),
    ParamSpec("task_domain", "any", "match free text to real tasks, sim tasks or both",
              choices=("real", "sim", "any")),
    ParamSpec("instruction_mode", "canonical", "send the task's canonical instruction or the operator's words",
              choices=("canonical", "verbatim")),
    ParamSpec("record_dir", "", "write every episode here; empty: no recording", read_only=True),
    ParamSpec("status_rate_hz", 10.0, "EpisodeStatus rate", min=0.1, max=100.0, read_only=True),
    ParamSpec("realtime_priority", 0, "SCHED_FIFO priority of the control thread (wall clock only; 0: normal "
              "scheduling; needs CAP_SYS_NICE or an rtprio limit)", min=0, max=98, read_only=True),
    CPU_AFFINITY,
]


def _rules(v: dict[str, Any]) -> str | None:
    if not np.all(np.isfinite(v["home_pose"])):
        return "home_pose must be finite"
    lim = JOINT_LIMITS[v["joint_limits"]]
    bad = lim.violations(np.asarray(v["home_pose"]))
    if bad:
        return f"home_pose is outside the {lim.name} joint limits at joints {[j + 1 for j in bad]}"
    return None


class BridgeNode(QuietEvents, Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("bridge_node", **kwargs)
        self.p = declare_params(self, PARAMS, [_rules])
        self.add_post_set_parameters_callback(lambda ps: self.p.update({x.name: x.value for x in ps}))
        self._lock = threading.RLock()
        self.space = make_joint_position(tuple(self.p["joint_names"]), JOINT_LIMITS[self.p["joint_limits"]])
        self.limits = SafetyLimits.from_action_space(
            self.space, max_joint_step=self.p["max_joint_step"], gripper_velocity=self.p["gripper_velocity"],
            velocity_scale=self.p["velocity_scale"], reject_margin=self.p["reject_margin"])
        self.period = 1.0 / self.p["control_rate_hz"]
        self.ctrl = ArmController(self.limits, self.period, ExecutorConfig(
            ensemble_decay=self.p["ensemble_decay"], blend_time=self.p["blend_time_s"],
            max_chunk_age=self.p["max_chunk_age_s"], max_future=self.p["max_chunk_future_s"],
            row_offset=self.p["row_offset_steps"]), lookahead=self.p["lookahead_steps"])
        self.machine = EpisodeMachine(max_duration=self.p["max_episode_s"], home_first=self.p["home_first"])
        self.watchdog = Watchdog({"image": self.p["image_timeout_s"], "state": self.p["state_timeout_s"],
                                  "chunk": self.p["chunk_timeout_s"]})
        self._state: np.ndarray | None = None  # (7,) last measured arm joints
        self._state_time = -1e18
        self._success = False
        self._reset_future = None
        self._reset_done_at: float | None = None
        self._init_state = -1  # the sim's init state of the current episode's scene (-1: none / not yet)
        self._last_phase = self.machine.phase
        self._last_reason = ""
        self._counts = {"published": 0, "dry_run": 0, "chunks_rejected": 0, "bad_state": 0, "faults": 0}
        self._last_reject = ""
        self._recorder = None
        if self.p["record_dir"]:
            from roboalign_policy.bag_recorder import BagRecorder

            topics = {self.p["joint_states_topic"]: JointState, self.p["chunk_topic"]: ActionChunkMsg,
                      self.p["instruction_topic"]: String, **{t: Image for t in self.p["camera_topics"]}}
            self._recorder = BagRecorder(self, self.p["record_dir"], topics)

        self._tick_group = MutuallyExclusiveCallbackGroup()
        io = ReentrantCallbackGroup()
        self._cmd_pub = self.create_publisher(JointTrajectory, self.p["command_topic"], RELIABLE)
        self._grip_pub = self.create_publisher(Float64MultiArray, self.p["gripper_command_topic"], RELIABLE)
        self._instr_pub = self.create_publisher(String, self.p["instruction_topic"], LATCHED)
        self._status_pub = self.create_publisher(EpisodeStatus, self.p["episode_status_topic"], RELIABLE)
        polled = PolledGroup()  # taken by the control tick (_poll_inputs), never by the executor
        self._state_sub = polled_subscription(self, polled, JointState, self.p["joint_states_topic"],
                                              qos_profile_sensor_data)
        self.create_subscription(ActionChunkMsg, self.p["chunk_topic"], self._on_chunk, RELIABLE, callback_group=io)
        self.create_subscription(Bool, self.p["estop_topic"], self._on_estop_topic, RELIABLE, callback_group=io)
        # raw: the watchdog needs the arrival only, not a decoded image (less time holding the GIL)
        self._image_subs = [polled_subscription(self, polled, Image, topic, qos_profile_sensor_data, raw=True)
                            for topic in self.p["camera_topics"]]
        self._sim_time = bool(self.get_parameter("use_sim_time").value)
        if self.p["success_topic"]:
            self.create_subscription(Bool, self.p["success_topic"], self._on_success, RELIABLE, callback_group=io)
        self._reset_client = None
        if self.p["sim_reset_service"]:
            self._reset_client = self.create_client(TaskCommand, self.p["sim_reset_service"], callback_group=io)
        self.create_service(TaskCommand, self.p["command_service"], self._on_command, callback_group=io)
        self.create_service(SetBool, self.p["estop_service"], self._on_estop_service, callback_group=io)
        self._diag = DiagnosticUpdater(self, hardware_id="bridge")
        self._diag.add("safety", self._diag_safety)
        self._diag.add("episode", self._diag_episode)
        self._diag.add_qos_check()
        self._stop = threading.Event()
        self._control_thread = None
        # the wall-clock loop computes each command this long before its deadline and publishes it on the deadline
        self._lead = min(0.003, 0.2 * self.period)
        if self._sim_time:  # sim time: tick on the clock the simulator publishes
            self.create_timer(self.period, self._tick, callback_group=self._tick_group)
        else:  # wall clock: a dedicated thread on absolute deadlines, not an executor timer
            sys.setswitchinterval(0.001)  # hand the GIL to the control thread within 1 ms
            self._control_thread = threading.Thread(target=self._control_loop, name="bridge_control", daemon=True)
            self._control_thread.start()
        self.create_timer(1.0 / self.p["status_rate_hz"], self._publish_status, callback_group=self._tick_group)
        self.create_timer(1.0, self._diag.update, callback_group=MutuallyExclusiveCallbackGroup())
        self._instr_pub.publish(String(data=""))
        mode = "DRY RUN: nothing is sent to the robot" if self.p["dry_run"] else f"commanding {self.p['command_topic']}"
        self.get_logger().info(f"bridge ready ({mode}); control at {self.p['control_rate_hz']:g} Hz")

    # ------------------------------------------------------------------ inputs
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _poll_inputs(self, now: float) -> None:
        """Take the newest joint state and camera arrivals (called by the tick, with the lock held)."""
        newest = take_newest(self._state_sub)
        if newest is not None:
            self._on_state(newest[0], arrival_s(newest[1], now, self._sim_time))
        for sub in self._image_subs:
            got = take_newest(sub)
            if got is not None:
                self._on_image(got[0], arrival_s(got[1], now, self._sim_time))

    def _on_state(self, msg: JointState, now: float) -> None:
        try:
            q = conv.joint_positions(msg, self.p["joint_names"])
        except ValueError as e:
            self._counts["bad_state"] += 1
            self.get_logger().warning(f"ignoring joint state: {e}", throttle_duration_sec=2.0)
            return
        with self._lock:
            self._state, self._state_time = q, now
            self.watchdog.feed("state", now)

    def _on_image(self, msg: bytes, now: float) -> None:
        self.watchdog.feed("image", now)

    def _on_success(self, msg: Bool) -> None:
        with self._lock:  # only a running episode's own scene counts (not the previous one before a reset)
            if msg.data and self.machine.phase is Phase.RUNNING and self._reset_future is None:
                self._success = True

    def _on_chunk(self, msg: ActionChunkMsg) -> None:
        now = self._now()
        with self._lock:
            if self.machine.phase is not Phase.RUNNING:
                return
            try:
                chunk = conv.msg_to_chunk(msg)
                actions = self._to_space(chunk.action_space, chunk.actions)
                reason = self.ctrl.offer_chunk(actions, chunk.stamp, chunk.dt, now)
            except Exception as e:  # a malformed chunk must never take the bridge down
                reason = f"malformed chunk: {e}"
            if reason:
                self._counts["chunks_rejected"] += 1
                self._last_reject = reason
                self.get_logger().warning(f"chunk {msg.sequence} rejected: {reason}", throttle_duration_sec=1.0)
                return
            self.watchdog.feed("chunk", now)

    def _to_space(self, action_space: str, actions: np.ndarray) -> np.ndarray:
        """(T, D) chunk columns reordered to [7 arm joints, gripper]; only absolute joint spaces run here."""
        space = ACTION_SPACES.get(action_space)
        if space is None or space.kind != "absolute" or space.dim != self.space.dim:
            raise ValueError(f"the bridge executes joint_position chunks ({self.space.dim} values); got action "
                             f"space {action_space!r}: export a joint-position policy or add IK for it")
        a = np.asarray(actions, np.float64)
        if a.ndim != 2 or a.shape[1] != space.dim:
            raise ValueError(f"chunk has shape {a.shape}, action space {space.name} needs (T, {space.dim})")
        return a[:, [*space.arm_indices, space.gripper_index]]

    # ------------------------------------------------------------------ operator commands
    def _on_command(self, req: TaskCommand.Request, res: TaskCommand.Response) -> TaskCommand.Response:
        now = self._now()
        try:
            with self._lock:
                res = self._command(req, res, now)
        except (TransitionError, TaskError) as e:
            res.accepted, res.message = False, str(e)
        self.get_logger().info(f"command {req.command} {req.task or req.instruction!r}: "
                               f"{'accepted' if res.accepted else 'refused'}: {res.message}")
        self._publish_status()
        return res

    def _command(self, req: TaskCommand.Request, res: TaskCommand.Response, now: float) -> TaskCommand.Response:
        R = TaskCommand.Request
        if req.command == R.START:
            task, instruction = self._match(req)
            if self._state is None:
                raise TransitionError(f"no joint state on {self.p['joint_states_topic']} yet; is the robot up?")
            if self._reset_client is not None and not self._reset_client.service_is_ready():
                raise TransitionError(f"sim reset service {self.p['sim_reset_service']} is not available")
            self._check_init_state(req)
            self.machine.start(task, instruction, now)
            self._begin_episode(now, req.init_state)
            res.task, res.instruction = task, instruction
            res.message = f"episode {self.machine.episode.index}: {self.machine.episode.message}"
        elif req.command == R.STOP:
            self.machine.stop()
            res.message = self.machine.episode.message
        elif req.command == R.HOME:
            if self._state is None:
                raise TransitionError("no joint state yet")
            self.machine.home()
            self.ctrl.reset(self._measured(), now)
            self.watchdog.arm("state", now)
            res.message = "homing"
        elif req.command == R.RESET:
            self._check_init_state(req)
            self.machine.reset()
            if self._reset_client is not None:
                task = self._match(req)[0] if (req.task or req.instruction) else self.machine.episode.task
                self._request_sim_reset(task, req.init_state)
            res.message = "reset" + (" (scene reset requested)" if self._reset_client else "")
        elif req.command == R.ESTOP:
            self._engage_estop("e-stop from the command service", now)
            res.message = "e-stop engaged"
        elif req.command == R.RELEASE_ESTOP:
            self.machine.release_estop()
            res.message = "e-stop released; idle"
        else:
            raise TransitionError(f"unknown command {req.command}; valid: START=0 STOP=1 HOME=2 RESET=3 ESTOP=4 "
                                  "RELEASE_ESTOP=5")
        res.accepted = True
        return res

    def _check_init_state(self, req: TaskCommand.Request) -> None:
        if req.init_state >= 0 and self._reset_client is None:
            raise TransitionError(f"init_state {req.init_state} needs a simulator (sim_reset_service); this bridge "
                                  "drives a real robot: send -1")

    def _match(self, req: TaskCommand.Request) -> tuple[str, str]:
        """(task name, instruction for the policy) of a command; raises TaskError listing valid tasks."""
        domain = self.p["task_domain"]
        if req.task:
            task, obj = DEFAULT_TASKS.get(req.task), None
            if req.instruction.strip():  # keep the object the operator named (a real task has four)
                try:
                    m = DEFAULT_TASKS.match(req.instruction, domain=domain)
                    obj, domain = (m.object, m.domain) if m.task.name == task.name else (None, domain)
                except TaskError:
                    pass
        else:
            m = DEFAULT_TASKS.match(req.instruction, domain=domain)
            task, obj, domain = m.task, m.object, m.domain
        if self.p["instruction_mode"] == "verbatim" and req.instruction.strip():
            return task.name, req.instruction.strip()
        if domain == "sim" or self.p["task_domain"] == "sim":
            return task.name, task.sim.instruction
        return task.name, task.instruction(obj, domain="real")

    def _measured(self) -> np.ndarray:
        last = self.ctrl.last_command
        grip = self.p["home_gripper"] if last is None else last[-1]
        return np.r_[self._state, grip]

    def _begin_episode(self, now: float, init_state: int = -1) -> None:
        self._success = False
        if self._reset_client is not None:
            self._request_sim_reset(self.machine.episode.task, init_state)
        else:
            self.ctrl.reset(self._measured(), now)
        self.watchdog.arm("state", now)
        if self._recorder is not None:
            self._recorder.begin(self.machine.episode.index, self.machine.episode.task,
                                 self.machine.episode.instruction)
        if self.machine.phase is Phase.RUNNING and self._reset_future is None:
            self._start_running(now)

    def _request_sim_reset(self, task: str, init_state: int = -1) -> None:
        if not self._reset_client.service_is_ready():
            raise TransitionError(f"sim reset service {self.p['sim_reset_service']} is not available")
        self._reset_future = self._reset_client.call_async(TaskCommand.Request(command=TaskCommand.Request.RESET,
                                                                               task=task, init_state=init_state))
        self._reset_done_at = None
        self._init_state = -1

    def _start_running(self, now: float) -> None:
        self._success = False
        self.ctrl.executor.clear()
        self.watchdog.arm("chunk", now, forget=True)
        if self.p["camera_topics"]:
            self.watchdog.arm("image", now)
        self._instr_pub.publish(String(data=self.machine.episode.instruction))

    def _on_estop_topic(self, msg: Bool) -> None:
        if msg.data:
            with self._lock:
                self._engage_estop(f"e-stop on {self.p['estop_topic']}", self._now())

    def _on_estop_service(self, req: SetBool.Request, res: SetBool.Response) -> SetBool.Response:
        with self._lock:
            if req.data:
                self._engage_estop(f"e-stop from {self.p['estop_service']}", self._now())
                res.success, res.message = True, "e-stop engaged"
            else:
                try:
                    self.machine.release_estop()
                    res.success, res.message = True, "e-stop released"
                except TransitionError as e:
                    res.success, res.message = False, str(e)
        return res

    def _engage_estop(self, reason: str, now: float) -> None:
        self.machine.estop(reason)
        self.get_logger().error(reason)
        if self.ctrl.last_command is not None:
            self._send(self.ctrl.hold(now, reason), now)  # hold at once, not at the next tick
        self._after_tick(now)

    # ------------------------------------------------------------------ control loop
    def _control_loop(self) -> None:
        why = make_realtime(self.p["realtime_priority"])
        if why:
            self.get_logger().warning(why)
        deadline = time.monotonic()
        while not self._stop.is_set():
            deadline += self.period
            delay = deadline - self._lead - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif -delay > self.period:  # fell more than a period behind: skip, do not burst
                deadline = time.monotonic() + self._lead
            if not self.context.ok():  # shutting down
                return
            try:
                self._tick(deadline)
            except Exception as e:  # the loop must not die; a tick error holds the robot
                self.get_logger().error(f"control tick failed: {e!r}", throttle_duration_sec=1.0)
                with self._lock:
                    self._fault(f"control tick failed: {e!r}")

    def _tick(self, deadline: float | None = None) -> None:
        """One control step. With a ``deadline`` (monotonic, wall-clock thread) the command is computed for the
        deadline's time and published at the deadline: the commands leave on a steady 1/rate grid however
        long the computation took (it starts ``_lead`` s ahead); the sim-time timer publishes at once."""
        wait = 0.0 if deadline is None else max(0.0, deadline - time.monotonic())
        now = self._now() + wait
        with self._lock:  # held until published: an e-stop's hold can never be overtaken by this command
            self._poll_inputs(now)
            tick = self._step(now)
            out = self._build(tick, now) if tick is not None else None
            if out is not None:
                left = 0.0 if deadline is None else deadline - time.monotonic()
                if left > 0:
                    time.sleep(left)
                self._publish_command(*out)
            self._after_tick(now)

    def _step(self, now: float) -> Tick | None:
        m = self.machine
        if self.ctrl.last_command is None:
            if self._state is None:
                return None
            self.ctrl.reset(self._measured(), now)
        if m.phase.moving:
            problems = self.watchdog.check(now)
            if problems:
                self._fault("; ".join(problems))
        if self._reset_future is not None:
            return self._wait_for_sim_reset(now)
        if m.phase is Phase.HOMING:
            home = np.r_[self.p["home_pose"], self.p["home_gripper"]]
            tick = self.ctrl.home(home, now, self.p["homing_velocity_scale"])
            if tick.status == "homed" and m.homed(now) is Phase.RUNNING:
                self._start_running(now)
            return tick
        if m.phase is Phase.RUNNING:
            if m.step(now) is not Phase.RUNNING:
                return self.ctrl.hold(now)
            if self._success:
                m.succeed("success predicate true")
                return self.ctrl.hold(now)
            tick = self.ctrl.track(now)
            if tick.status == "fault":
                self._fault(tick.reason or "command fault")
            return tick
        if m.phase in (Phase.FAULT, Phase.ESTOP):
            return self.ctrl.hold(now, m.episode.message)
        return None

    def _wait_for_sim_reset(self, now: float) -> Tick | None:
        fut = self._reset_future
        if self._reset_done_at is None:
            if not fut.done():
                return None
            res = fut.result()
            if res is None or not res.accepted:
                self._reset_future = None
                self._fault(f"sim reset failed: {getattr(res, 'message', 'no response')}")
                return None
            self._reset_done_at = now
            self._init_state = int(res.init_state)
            return None
        if self._state_time <= self._reset_done_at:  # wait for a joint state from after the reset
            return None
        self._reset_future = None
        self.ctrl.reset(self._measured(), now)
        if self.machine.phase is Phase.RUNNING:  # no homing: the episode clock starts now
            self.machine.episode.started_at = now
            self._start_running(now)
        return None

    def _fault(self, reason: str) -> None:
        if self.machine.phase not in (Phase.FAULT, Phase.ESTOP):
            self._counts["faults"] += 1
            self.get_logger().error(f"FAULT, holding position: {reason}")
        self.machine.fault(reason)

    def _send(self, tick: Tick, now: float) -> None:
        out = self._build(tick, now)
        if out is not None:
            self._publish_command(*out)

    def _build(self, tick: Tick, now: float) -> tuple[JointTrajectory, Float64MultiArray] | None:
        """The commands of one tick, recorded; None in dry run (counted, never sent)."""
        arm = tick.plan[:, :7]  # (K, 7)
        traj = conv.trajectory(self.p["joint_names"], arm, self.period, conv.to_time(now), first=1)
        g = float(tick.command[-1])  # -1 open .. +1 closed -> controller units
        lo, hi = self.p["gripper_open_value"], self.p["gripper_closed_value"]
        grip = Float64MultiArray(data=[lo + (g + 1.0) * 0.5 * (hi - lo)])
        if self._recorder is not None:
            self._recorder.write(self.p["command_topic"], traj)
            self._recorder.write(self.p["gripper_command_topic"], grip)
        if self.p["dry_run"]:
            self._counts["dry_run"] += 1
            return None
        return traj, grip

    def _publish_command(self, traj: JointTrajectory, grip: Float64MultiArray) -> None:
        self._cmd_pub.publish(traj)
        self._grip_pub.publish(grip)
        self._counts["published"] += 1

    def _after_tick(self, now: float) -> None:
        phase = self.machine.phase
        if phase is self._last_phase:
            return
        prev, self._last_phase = self._last_phase, phase
        self.get_logger().info(f"episode {self.machine.episode.index}: {prev.name} -> {phase.name}: "
                               f"{self.machine.episode.message}")
        if prev is Phase.RUNNING:
            self._instr_pub.publish(String(data=""))  # the policy stops
            self.watchdog.disarm("chunk")
            self.watchdog.disarm("image")
        if not phase.moving:
            self.watchdog.disarm("state")
        if phase.terminal or phase is Phase.ESTOP:
            if self._recorder is not None:
                self._recorder.end(phase.name.lower(), self.machine.episode.message)
        if phase in (Phase.FAULT, Phase.ESTOP):
            self._diag.force_update()
        self._publish_status()

    # ------------------------------------------------------------------ status
    def _publish_status(self) -> None:
        now = self._now()
        with self._lock:
            ep = self.machine.episode
            msg = EpisodeStatus(phase=int(self.machine.phase), task=ep.task, instruction=ep.instruction,
                                episode_index=ep.index, steps=ep.steps, elapsed_s=float(ep.elapsed(now)),
                                dry_run=bool(self.p["dry_run"]), message=ep.message, init_state=self._init_state)
        msg.header.stamp = self.get_clock().now().to_msg()
        self._status_pub.publish(msg)

    def _diag_safety(self) -> tuple[bytes, str, dict[str, Any]]:
        phase = self.machine.phase
        values = dict(self._counts, phase=phase.name, dry_run=self.p["dry_run"],
                      chunks_accepted=self.ctrl.chunks_accepted, last_rejection=self._last_reject)
        if phase in (Phase.FAULT, Phase.ESTOP):
            return ERROR, f"{phase.name}: holding position: {self.machine.episode.message}", values
        if self._counts["chunks_rejected"] or self._counts["bad_state"]:
            return WARN, f"rejected inputs (last: {self._last_reject or 'bad joint state'})", values
        return OK, "dry run: nothing sent" if self.p["dry_run"] else "ok", values

    def _diag_episode(self) -> tuple[bytes, str, dict[str, Any]]:
        ep = self.machine.episode
        return OK, self.machine.phase.name.lower(), {"episode": ep.index, "task": ep.task, "steps": ep.steps}

    def close(self) -> None:
        """Called on shutdown: stop the control thread; close the episode being recorded (data stays on disk)."""
        self._stop.set()
        if self._control_thread is not None:
            self._control_thread.join(timeout=2.0)
        if self._recorder is not None:
            self._recorder.close("interrupted", "node shut down")


def main(args: list[str] | None = None) -> int:
    return run_node(BridgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())

