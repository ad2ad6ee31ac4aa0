"""bridge_node: the ROS adapter of the robot side; every decision is made by ``roboalign.control.bridge.Bridge``.

In: TaskCommand service (START/STOP/HOME/RESET/ESTOP/RELEASE_ESTOP), e-stop topic and service, policy chunks,
the sim's success topic; the newest joint state and camera arrivals (raw, never deserialised) are taken by the
control tick itself with their DDS reception time (``roboalign_policy.polling``). Out: JointTrajectory for a
ros2_control JointTrajectoryController (``lookahead_steps`` points), the gripper (Float64MultiArray), the latched
instruction for the policy, EpisodeStatus, /diagnostics; nothing to the robot in ``dry_run``. Wall clock: a
control thread on absolute deadlines (``DeadlineLoop``); sim time: a timer on the simulator's clock. With
``record_dir`` every episode is written as a rosbag2 (``roboalign_policy.bag_recorder``).

A managed (lifecycle) node: configure builds the core, the inputs and outputs, the recorder and the control loop
(which from then on takes the inputs); activate lets it arm (START, HOME) and command the robot (the command
and gripper publishers are lifecycle publishers); deactivate stops a moving episode, sends the hold at once and
then commands nothing; cleanup and shutdown stop the loop, close the recording and release everything. With
``autostart`` (default) it configures and activates itself once it spins. A policy START waits for, then needs,
an active policy: the PolicyStatus on ``policy_status_topic`` (its reason is quoted when START is refused).
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from typing import Any

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from roboalign_msgs.msg import ActionChunk as ActionChunkMsg
from roboalign_msgs.msg import EpisodeStatus, PolicyStatus
from roboalign_msgs.srv import TaskCommand
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray, String
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory

from roboalign.control import bridge as core
from roboalign.control.bridge import Bridge, BridgeConfig, Inputs, Output, PolicyReport, Request
from roboalign.control.deadline_loop import DeadlineLoop
from roboalign.spec.action_space import JOINT_LIMITS
from roboalign_policy import conversions as conv
from roboalign_policy import qos
from roboalign_policy.bridge_inputs import SimResetCall, TeleopInputs
from roboalign_policy.cameras import CAMERA_QOS, stream_causes, watched_cameras
from roboalign_policy.diagnostics import ERROR, OK, WARN, DiagnosticUpdater
from roboalign_policy.lifecycle import Created, lifecycle_hint, start_autostart
from roboalign_policy.node_runner import make_realtime, run_node
from roboalign_policy.params import AUTOSTART, CPU_AFFINITY, ParamSpec, declare_params, specs_from_config
from roboalign_policy.polling import PolledGroup, QuietEvents, arrival_s, polled_subscription, take_newest
from roboalign_policy.qos import LATCHED, RELIABLE, SENSOR


def _wiring(name: str, default: Any, what: str, array: str | None = None) -> ParamSpec:
    return ParamSpec(name, default, what, read_only=True, array=array)


PARAMS = [  # the bridge's own settings (defaults, ranges, descriptions) come from the core's BridgeConfig
    AUTOSTART,
    *specs_from_config(BridgeConfig),
    _wiring("joint_states_topic", qos.JOINT_STATES, "sensor_msgs/JointState of the robot"),
    _wiring("command_topic", qos.COMMAND, "JointTrajectoryController input"),
    _wiring("gripper_command_topic", "/fr3_gripper/commands", "gripper command (std_msgs/Float64MultiArray)"),
    _wiring("chunk_topic", qos.ACTION_CHUNK, "roboalign_msgs/ActionChunk from the policy"),
    _wiring("instruction_topic", qos.INSTRUCTION, "std_msgs/String to the policy (latched)"),
    _wiring("episode_status_topic", qos.EPISODE_STATUS, "roboalign_msgs/EpisodeStatus output"),
    _wiring("command_service", qos.COMMAND_SERVICE, "roboalign_msgs/TaskCommand service"),
    _wiring("estop_topic", qos.ESTOP, "std_msgs/Bool: true engages the e-stop"),
    _wiring("estop_service", qos.ESTOP_SERVICE, "std_srvs/SetBool: true engages, false releases"),
    _wiring("camera_topics", [], "image topics watched for staleness while running", array="str"), CAMERA_QOS,
    _wiring("policy_status_topic", qos.POLICY_STATUS, "roboalign_msgs/PolicyStatus of the policy: a policy START "
            "needs it active and is refused with its reason otherwise; empty: chunks come from elsewhere, no check"),
    _wiring("success_topic", "", "std_msgs/Bool success predicate (sim); empty: operator decides"),
    _wiring("sim_reset_service", "", "TaskCommand service that resets the sim scene; empty: none"),
    _wiring("teleop_twist_topic", qos.TELEOP_TWIST, "geometry_msgs/TwistStamped end-effector velocity (mode teleop)"),
    _wiring("leader_topic", qos.TELEOP_LEADER, "sensor_msgs/JointState leader-arm targets (mode leader)"),
    _wiring("teleop_gripper_topic", qos.TELEOP_GRIPPER, "std_msgs/Float64 gripper, -1 open .. +1 closed (teleop)"),
    ParamSpec("record_dir", "", "write every episode here; empty: no recording", read_only=True),
    ParamSpec("status_rate_hz", 10.0, "EpisodeStatus rate", min=0.1, max=100.0, read_only=True),
    ParamSpec("realtime_priority", 0, "SCHED_FIFO priority of the control thread (wall clock only; 0: normal "
              "scheduling; needs CAP_SYS_NICE or an rtprio limit)", min=0, max=98, read_only=True),
    CPU_AFFINITY,
]
_LEVELS = {"ok": OK, "warn": WARN, "error": ERROR}


class _Done:
    """A core ``Output`` in the shape ``BridgeNode._locked`` applies (a reply with an output)."""

    def __init__(self, output: Output) -> None:
        self.output = output


def _config(values: dict[str, Any]) -> BridgeConfig:
    return BridgeConfig.from_mapping({**values, "watch_cameras": bool(values["camera_topics"])})



def _rules(values: dict[str, Any]) -> str | None:
    return _config(values).problem() if values["joint_limits"] in JOINT_LIMITS else None


class BridgeNode(QuietEvents, LifecycleNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("bridge_node", **kwargs)
        self.p = declare_params(self, PARAMS, [_rules])
        self.add_post_set_parameters_callback(self._on_params_set)
        self._lock = threading.RLock()
        self._sim_time = bool(self.get_parameter("use_sim_time").value)
        self.core: Bridge | None = None
        self._created: Created | None = None  # what configure created; cleanup destroys it
        self._recorder = None
        self._stop, self._control_thread = threading.Event(), None
        start_autostart(self, on_failure=lambda what: self.get_logger().error(
            f"autostart: {what} failed (see above); the node stays {self._state_machine.current_state[1]}"))

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Build the bridge (core, inputs, outputs, recorder, control loop); it arms nothing until activated."""
        self._created = Created(self)
        try:
            self._configure()
        except Exception as e:  # say why and stay unconfigured
            self.get_logger().error(f"configure failed: {e} (the node stays unconfigured; fix it, then: "
                                    f"{lifecycle_hint(self, 'configure')})")
            self._release("configure failed")
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def _configure(self) -> None:
        io = ReentrantCallbackGroup()
        self._sim = SimResetCall(self, self.p["sim_reset_service"], io) if self.p["sim_reset_service"] else None
        self.core = Bridge(_config({**self.p, "node_name": self.get_name()}), self._sim.ready if self._sim else None)
        self.core.active = False  # activate arms it
        if self.p["record_dir"]:
            from roboalign_policy.bag_recorder import bridge_recorder

            self._recorder = bridge_recorder(self, self.p)
        self._make_entities(io)
        self._stop = threading.Event()
        # wall clock: each command is computed 3 ms before its deadline and published on it
        self._loop = DeadlineLoop(self.core.period, self._tick, lambda: self._stop.is_set() or not self.context.ok(),
                                  min(0.003, 0.2 * self.core.period), self._tick_failed)
        tick_group = MutuallyExclusiveCallbackGroup()
        if self._sim_time:  # sim time: tick on the clock the simulator publishes
            self.create_timer(self.core.period, self._tick, callback_group=tick_group)
        else:  # wall clock: a dedicated thread on absolute deadlines, not an executor timer
            sys.setswitchinterval(0.001)  # hand the GIL to the control thread within 1 ms
            self._control_thread = threading.Thread(target=self._control_loop, name="bridge_control", daemon=True)
            self._control_thread.start()
        self.create_timer(1.0 / self.p["status_rate_hz"], self._publish_status, callback_group=tick_group)
        self.create_timer(1.0, self._diag.update, callback_group=MutuallyExclusiveCallbackGroup())
        self._created.mark()
        self._instr_pub.publish(String(data=""))
        self.get_logger().info(f"bridge configured; control at {self.p['control_rate_hz']:g} Hz; inactive until "
                               f"activated ({lifecycle_hint(self, 'activate')})")

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        ret = super().on_activate(state)  # the command publishers first: a START may follow at once
        self._locked(lambda now: _Done(self.core.set_active(True, now)))
        mode = "DRY RUN: nothing is sent to the robot" if self.p["dry_run"] else f"commanding {self.p['command_topic']}"
        self.get_logger().info(f"bridge active ({mode})")
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop a moving episode, send the hold at once, then command nothing."""
        self._locked(lambda now: _Done(self.core.set_active(False, now)))
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release("cleaned up")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.core is not None and self.core.active:
            self.on_deactivate(state)
        self._release("node shut down")
        return TransitionCallbackReturn.SUCCESS

    def _release(self, why: str) -> None:
        """Stop the control loop, close the episode being recorded (its data stays on disk), destroy what
        configure created; safe to call twice and in any state."""
        self._stop.set()
        if self._control_thread is not None:
            self._control_thread.join(timeout=2.0)
            self._control_thread = None
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            recorder.close("interrupted", why)
        created, self._created = self._created, None
        if created is not None:
            created.mark()  # what a failed configure created before it failed
            created.release()
        self.core = None

    def _make_entities(self, io: ReentrantCallbackGroup) -> None:
        p = self.p
        # robot-facing: lifecycle publishers, silent unless the node is active
        self._cmd_pub = self.create_lifecycle_publisher(JointTrajectory, p["command_topic"], RELIABLE)
        self._grip_pub = self.create_lifecycle_publisher(Float64MultiArray, p["gripper_command_topic"], RELIABLE)
        self._instr_pub = self.create_publisher(String, p["instruction_topic"], LATCHED)
        self._status_pub = self.create_publisher(EpisodeStatus, p["episode_status_topic"], RELIABLE)
        polled = PolledGroup()  # taken by the control tick (_inputs), never by the executor
        self._state_sub = polled_subscription(self, polled, JointState, p["joint_states_topic"], SENSOR)
        self._teleop = TeleopInputs(self, polled, p["teleop_twist_topic"], p["leader_topic"], p["teleop_gripper_topic"],
                                    p["joint_names"])
        self.create_subscription(ActionChunkMsg, p["chunk_topic"], self._on_chunk, RELIABLE, callback_group=io)
        self.create_subscription(Bool, p["estop_topic"], self._on_estop_topic, RELIABLE, callback_group=io)
        if p["success_topic"]:
            self.create_subscription(Bool, p["success_topic"], self._on_success, RELIABLE, callback_group=io)
        if p["policy_status_topic"]:
            self.create_subscription(PolicyStatus, p["policy_status_topic"], self._on_policy_status, LATCHED,
                                     callback_group=io)
        self.create_service(TaskCommand, p["command_service"], self._on_command, callback_group=io)
        self.create_service(SetBool, p["estop_service"], self._on_estop_service, callback_group=io)
        self._diag = DiagnosticUpdater(self, hardware_id="bridge")
        self._diag.add("safety", lambda: self._report(self.core.safety_report))
        self._diag.add("episode", lambda: self._report(self.core.episode_report))
        self._diag.add_qos_check()  # cameras: raw (the watchdog needs arrivals only), QoS following the publisher
        self._cameras = watched_cameras(self, p["camera_topics"], p["camera_qos"], polled, self._diag, lambda: p["image_timeout_s"])
        self.core.watchdog.explain("image", lambda: stream_causes(self._cameras))  # a stale image's cause, measured

    def _on_params_set(self, params: list) -> None:
        self.p.update({x.name: x.value for x in params})
        with self._lock:
            if self.core is not None:  # unconfigured: configure builds the core from self.p
                self.core.reconfigure(**{x.name: x.value for x in params if x.name in core.RUNTIME_SETTINGS})

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # ------------------------------------------------------------------ messages in
    def _inputs(self, now: float) -> Inputs:
        """The newest joint state, camera arrivals and the sim reset's answer (taken by the tick)."""
        q, t, error = None, 0.0, None
        if (newest := take_newest(self._state_sub)) is not None:
            t = arrival_s(newest[1], now, self._sim_time)
            try:
                q = conv.joint_positions(newest[0], self.p["joint_names"])
            except ValueError as e:
                error = str(e)
        images = tuple(a for cam in self._cameras if (a := cam.poll()) is not None)
        teleop, leader = self._teleop.take(now, self._sim_time)
        return Inputs(q, t, error, images, self._sim.answer() if self._sim else None, teleop, leader)

    def _on_chunk(self, msg: ActionChunkMsg) -> None:
        now = self._now()
        with self._lock:
            try:
                chunk = conv.msg_to_chunk(msg)
                reason = self.core.offer_chunk(chunk.action_space, chunk.actions, chunk.stamp, chunk.dt, now)
            except Exception as e:  # a malformed message must never take the bridge down
                reason = self.core.reject_chunk(f"malformed chunk: {e}")
        if reason:
            self.get_logger().warning(f"chunk {msg.sequence} rejected: {reason}", throttle_duration_sec=1.0)

    def _on_policy_status(self, msg: PolicyStatus) -> None:
        report = PolicyReport(msg.state, msg.message, self._now(), msg.backend, msg.checkpoint)
        with self._lock:
            if self.core is not None:
                self.core.policy_status(report)

    def _on_success(self, msg: Bool) -> None:
        if msg.data:
            with self._lock:
                self.core.success(self._now())

    def _on_command(self, req: TaskCommand.Request, res: TaskCommand.Response) -> TaskCommand.Response:
        t0 = time.monotonic()  # the control thread takes the inputs; the policy may still be loading
        while time.monotonic() - t0 < self.core.wait_s(req.command, self._now()):
            time.sleep(0.01)
        reply = self._locked(lambda now: self.core.command(Request(req.command, req.task, req.instruction,
                                                                   req.init_state), now))
        res.accepted, res.message, res.task, res.instruction = reply.accepted, reply.message, reply.task, reply.instruction
        self.get_logger().info(f"command {req.command} {req.task or req.instruction!r}: "
                               f"{'accepted' if res.accepted else 'refused'}: {res.message}")
        self._publish_status()
        return res

    def _on_estop_topic(self, msg: Bool) -> None:
        if msg.data:
            self._locked(lambda now: self.core.set_estop(True, f"e-stop on {self.p['estop_topic']}", now))

    def _on_estop_service(self, req: SetBool.Request, res: SetBool.Response) -> SetBool.Response:
        reply = self._locked(lambda now: self.core.set_estop(req.data, f"e-stop from {self.p['estop_service']}", now))
        res.success, res.message = reply.accepted, reply.message
        return res

    def _locked(self, call: Any) -> Any:
        """``call(now)`` on the core under the lock, its output applied; returns its reply. ``now`` is read under
        the lock: a tick holds it until its command left on its deadline, so a hold (e-stop, deactivate) that
        stops that command follows it in stamp as well as in arrival."""
        with self._lock:
            now = self._now()
            reply = call(now)
            self._apply(reply.output, now)
        return reply

    # ------------------------------------------------------------------ control loop
    def _control_loop(self) -> None:
        why = make_realtime(self.p["realtime_priority"])
        if why:
            self.get_logger().warning(why)
        self._loop.run()

    def _tick_failed(self, e: Exception) -> None:  # a tick error holds the robot; the loop goes on
        self.get_logger().error(f"control tick failed: {e!r}", throttle_duration_sec=1.0)
        with self._lock:
            self._apply(self.core.fault(f"control tick failed: {e!r}", self._now()), self._now())

    def _tick(self, deadline: float | None = None) -> None:
        """One control step; with a ``deadline`` (monotonic) the command is for that time and leaves on it."""
        wait = 0.0 if deadline is None else max(0.0, deadline - time.monotonic())
        now = self._now() + wait
        with self._lock:  # held until published: an e-stop's hold can never be overtaken by this command
            out = self.core.tick(now, self._inputs(now))
            self._apply(out, now, deadline)

    # ------------------------------------------------------------------ messages out
    def _apply(self, out: Output, now: float, deadline: float | None = None) -> None:
        """Do what the core said: commands (on the deadline), sim reset, events (log, recording), instruction."""
        if out.arm is not None:
            self._send(out, now, deadline)
        if out.sim_reset is not None:
            self._sim.call(out.sim_reset)
        for e in out.events:
            self._event(e)
        if out.instruction is not None:  # after a new recording began, so the bag has it
            self._instr_pub.publish(String(data=out.instruction))
        if out.phase_changed:
            self._publish_status()

    def _send(self, out: Output, now: float, deadline: float | None) -> None:
        traj = conv.trajectory(self.p["joint_names"], out.arm, self.core.period, conv.to_time(now), first=1)
        grip = Float64MultiArray(data=[out.gripper])
        if self._recorder is not None:
            self._recorder.write(self.p["command_topic"], traj)
            self._recorder.write(self.p["gripper_command_topic"], grip)
        if not out.send:
            return
        if deadline is not None:
            self._loop.wait_for(deadline)
        self._cmd_pub.publish(traj)
        self._grip_pub.publish(grip)

    def _event(self, e: Any) -> None:
        self._log(e)
        ep = self.core.machine.episode
        if self._recorder is not None and e.kind == "episode_begin":
            self._recorder.begin(ep.index, ep.task, ep.instruction)
        elif self._recorder is not None and e.kind == "episode_end":
            self._recorder.end(e.outcome, e.text)
        if e.kind == "phase" and self.core.phase.name in ("FAULT", "ESTOP"):
            self._diag.force_update()

    def _log(self, e: Any) -> None:  # one call site per severity and throttle: rclpy caches them per site
        log = self.get_logger()
        if e.level == "error":
            return log.error(e.text)
        if e.level == "warning" and e.throttle_s:
            return log.warning(e.text, throttle_duration_sec=e.throttle_s)
        if e.level == "warning":
            return log.warning(e.text)
        log.info(e.text)

    def _publish_status(self) -> None:
        with self._lock:
            if self.core is None:
                return
            s = self.core.status(self._now())
        msg = EpisodeStatus(**{**dataclasses.asdict(s), "phase": int(s.phase)})
        msg.header.stamp = self.get_clock().now().to_msg()
        self._status_pub.publish(msg)

    def _report(self, report) -> tuple[bytes, str, dict[str, Any]]:
        with self._lock:
            level, message, values = report()
        return _LEVELS[level], message, values

    def destroy_node(self) -> None:  # the control thread stops before the entities it polls are destroyed
        self.close()
        super().destroy_node()

    def close(self) -> None:
        """Called on shutdown: hold a moving arm, stop the control thread, close the episode being recorded
        (its data stays on disk) and release what configure created."""
        if self.core is not None and self.core.active:
            try:
                self._locked(lambda now: _Done(self.core.set_active(False, now)))
            except Exception as e:  # the context may be gone already (a signal): nothing can be sent then
                self.get_logger().warning(f"could not send the hold on shutdown: {e}")
        self._release("node shut down")


def main(args: list[str] | None = None) -> int:
    return run_node(BridgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
