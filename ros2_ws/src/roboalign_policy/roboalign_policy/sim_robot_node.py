"""sim_robot_node: the LIBERO simulator (``roboalign.sim.libero_env``) as a ROS 2 robot.

In: trajectory_msgs/JointTrajectory on ``command_topic`` (what a ros2_control JointTrajectoryController
takes; followed by ``roboalign.sim.trajectory.TrajectoryFollower`` at each step's end time) and the gripper command
(std_msgs/Float64MultiArray, -1 open .. +1 closed) on ``gripper_command_topic``.
Out: sensor_msgs/JointState on /joint_states (FR3 names; fingers in the FR3 convention: each finger joint
is half the opening), camera images ``/camera/<name>/color/image_raw`` (rgb8, frame
``<name>_color_optical_frame``, realsense-ros naming), sim time on /clock, the sim success predicate
(std_msgs/Bool) and, for the scripted-expert backend only, privileged object poses as JSON on
``privileged_topic`` (std_msgs/String; sim-only ground truth, never available on a real robot).
Service ``reset_service`` (roboalign_msgs/TaskCommand, command RESET, task = one of the four tasks; empty =
same task) loads the task's scene (of the ``scenes`` set: the real targets, or the LIBERO-Object stand-ins) (first time ~20 s) and a LIBERO init state: the request's ``init_state``
when it is >= 0 (out of range is refused with the reason), else the ``init_state`` parameter, else the next
one (cycling); the response's ``init_state`` says which, so a trial can be repeated exactly.

Stepping (one LIBERO control step = 1 / 20 s of sim time per loop): publish state, privileged data and
images stamped t; when a policy is active (non-empty instruction) wait up to ``lockstep_timeout_s`` of wall
time for its chunk for t; publish /clock = t (the bridge ticks on it); when commands are flowing wait for
the bridge's trajectory for t; step. This lock-step keeps runs reproducible however slow rendering is;
with nothing commanding, the sim idles at ``idle_rate_hz`` holding the last target.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from roboalign_msgs.msg import ActionChunk as ActionChunkMsg
from roboalign_msgs.srv import TaskCommand
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory

from roboalign.sim.constants import DEFAULT_CAMERAS, EXPERT_EXTRAS, JOINT_MAX_DELTA, SIM_CAMERA_SIZE
from roboalign.sim.libero_env import LiberoEnv  # MuJoCo, robosuite and LIBERO load when a scene does
from roboalign.sim.trajectory import TrajectoryFollower, interpolate  # noqa: F401 (interpolate: re-exported)
from roboalign.spec.action_space import FR3_JOINT_NAMES
from roboalign.spec.tasks import DEFAULT_TASKS, SCENE_SETS, sim_task_set
from roboalign_policy import conversions as conv
from roboalign_policy import qos
from roboalign_policy.node_runner import run_node
from roboalign_policy.params import CPU_AFFINITY, ParamSpec, declare_params
from roboalign_policy.polling import QuietEvents
from roboalign_policy.qos import LATCHED, RELIABLE

PARAMS = [
    ParamSpec("task", DEFAULT_TASKS.names[0], "task whose scene is loaded at start-up",
              choices=tuple(DEFAULT_TASKS.names), read_only=True),
    ParamSpec("scenes", "targets", "scene set: the tasks' real targets or the LIBERO-Object stand-ins",
              choices=tuple(SCENE_SETS), read_only=True),
    ParamSpec("init_state", -1, "LIBERO init state for every reset; -1 cycles through them", min=-1, max=10_000),
    ParamSpec("camera_names", list(DEFAULT_CAMERAS), "cameras to render (agentview, wrist)", array="str",
              read_only=True),
    ParamSpec("camera_size", SIM_CAMERA_SIZE, "rendered image size (square)", min=16, max=1024, read_only=True),
    ParamSpec("antialias", False, "MuJoCo multisampling (slower in software GL)", read_only=True),
    ParamSpec("camera_namespace", "/camera", "images go to <ns>/<name>/color/image_raw", read_only=True),
    ParamSpec("joint_names", list(FR3_JOINT_NAMES), "published arm joint names", array="str", length=7,
              read_only=True),
    ParamSpec("finger_joint_names", ["fr3_finger_joint1", "fr3_finger_joint2"],
              "published finger joints (each = half the gripper opening)", array="str", length=2, read_only=True),
    ParamSpec("command_topic", qos.COMMAND, "JointTrajectory input", read_only=True),
    ParamSpec("gripper_command_topic", "/fr3_gripper/commands", "gripper command input (-1 open .. 1 closed)",
              read_only=True),
    ParamSpec("joint_states_topic", qos.JOINT_STATES, "JointState output", read_only=True),
    ParamSpec("privileged_topic", "/sim/privileged", "JSON privileged state for the expert ('' = off)",
              read_only=True),
    ParamSpec("success_topic", "/sim/success", "std_msgs/Bool success predicate output", read_only=True),
    ParamSpec("reset_service", "/sim_robot/reset", "TaskCommand RESET service", read_only=True),
    ParamSpec("instruction_topic", qos.INSTRUCTION, "policy instruction (lock-step: wait for chunks "
              "while it is non-empty)", read_only=True),
    ParamSpec("chunk_topic", qos.ACTION_CHUNK, "policy chunks (lock-step)", read_only=True),
    ParamSpec("lockstep", True, "wait for the policy's chunk and the bridge's command each step"),
    ParamSpec("lockstep_timeout_s", 2.0, "longest wall-time wait for a chunk or a command", min=0.0, max=60.0),
    ParamSpec("idle_rate_hz", 10.0, "wall-clock step rate when nothing commands the robot", min=0.1, max=1000.0),
    ParamSpec("render_every", 1, "render the cameras every n-th step (n > 1 speeds up policies that need no "
              "images every step, e.g. the scripted expert)", min=1, max=100),
    ParamSpec("joint_max_delta", JOINT_MAX_DELTA, "largest PD set-point offset per sim step [rad] (LiberoEnv; "
              "the value `roboalign collect` uses)", min=0.001, max=0.5, read_only=True),
    CPU_AFFINITY,
]


# The privileged JSON: what the scripted expert reads (one list, checked by it) + what trials and people look at.
PRIVILEGED_KEYS = (*EXPERT_EXTRAS, "joint_vel", "gripper_qpos", "object_name", "target_name", "object_pos",
                   "object_quat", "target_pos", "target_quat", "success", "step", "init_state", "task")


def to_jsonable(value: Any) -> Any:
    """numpy arrays/scalars -> lists/floats, recursively (for the privileged JSON)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


class SimRobotNode(QuietEvents, Node):  # no per-entity QoS event handlers: cheaper executor wake-ups
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("sim_robot_node", **kwargs)
        self.p = declare_params(self, PARAMS)
        self.add_post_set_parameters_callback(lambda ps: self.p.update({x.name: x.value for x in ps}))
        self._cv = threading.Condition()
        self._follower: TrajectoryFollower | None = None  # the commanded arm position (set at each reset)
        self._last_traj_wall = -1e9
        self._gripper = -1.0
        self._instruction = ""
        self._chunk_stamp = -1.0
        self._reset_request: tuple[str, int, threading.Event, dict[str, Any]] | None = None
        self._stop = threading.Event()
        self.env = None
        self.t = 0.0
        self._episode = 0

        io = ReentrantCallbackGroup()
        ns = self.p["camera_namespace"].rstrip("/")
        self._img_pubs = {c: self.create_publisher(Image, f"{ns}/{c}/color/image_raw", qos_profile_sensor_data)
                          for c in self.p["camera_names"]}
        self._js_pub = self.create_publisher(JointState, self.p["joint_states_topic"], qos_profile_sensor_data)
        self._clock_pub = self.create_publisher(Clock, "/clock", QoSProfile(depth=10,
                                                                            reliability=ReliabilityPolicy.RELIABLE))
        self._success_pub = self.create_publisher(Bool, self.p["success_topic"], RELIABLE)
        self._priv_pub = (self.create_publisher(String, self.p["privileged_topic"], RELIABLE)
                          if self.p["privileged_topic"] else None)
        self.create_subscription(JointTrajectory, self.p["command_topic"], self._on_traj, RELIABLE, callback_group=io)
        self.create_subscription(Float64MultiArray, self.p["gripper_command_topic"], self._on_gripper, RELIABLE,
                                 callback_group=io)
        self.create_subscription(String, self.p["instruction_topic"], self._on_instruction, LATCHED, callback_group=io)
        self.create_subscription(ActionChunkMsg, self.p["chunk_topic"], self._on_chunk, RELIABLE, callback_group=io)
        self.create_service(TaskCommand, self.p["reset_service"], self._on_reset,
                            callback_group=MutuallyExclusiveCallbackGroup())
        self._thread = threading.Thread(target=self._run, name="sim_loop", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ inputs
    def _on_traj(self, msg: JointTrajectory) -> None:
        try:
            times, pos = conv.trajectory_rows(msg, self.p["joint_names"])
        except ValueError as e:
            self.get_logger().warning(f"ignoring trajectory: {e}", throttle_duration_sec=2.0)
            return
        with self._cv:
            if self._follower is None:
                return
            try:
                self._follower.set_trajectory(conv.to_sec(msg.header.stamp), times, pos)
            except ValueError as e:
                self.get_logger().warning(f"ignoring trajectory: {e}", throttle_duration_sec=2.0)
                return
            self._last_traj_wall = time.monotonic()
            self._cv.notify_all()

    def _on_gripper(self, msg: Float64MultiArray) -> None:
        if len(msg.data) != 1 or not np.isfinite(msg.data[0]):
            self.get_logger().warning(f"ignoring gripper command {list(msg.data)}: need one finite value",
                                      throttle_duration_sec=2.0)
            return
        self._gripper = float(np.clip(msg.data[0], -1.0, 1.0))

    def _on_instruction(self, msg: String) -> None:
        with self._cv:
            self._instruction = msg.data.strip()
            self._cv.notify_all()

    def _on_chunk(self, msg: ActionChunkMsg) -> None:
        with self._cv:
            self._chunk_stamp = max(self._chunk_stamp, conv.to_sec(msg.observation_stamp))
            self._cv.notify_all()

    def _on_reset(self, req: TaskCommand.Request, res: TaskCommand.Response) -> TaskCommand.Response:
        if req.command != TaskCommand.Request.RESET:
            res.accepted, res.message = False, "the sim robot only takes RESET"
            return res
        done, out = threading.Event(), {}
        with self._cv:
            self._reset_request = (req.task, int(req.init_state), done, out)
            self._cv.notify_all()
        if not done.wait(timeout=300.0):
            res.accepted, res.message = False, "sim reset timed out"
            return res
        res.accepted, res.task, res.message = out["ok"], out.get("task", ""), out["message"]
        res.instruction, res.init_state = out.get("instruction", ""), int(out.get("init_state", -1))
        return res

    # ------------------------------------------------------------------ the sim loop
    def _load(self, task: str) -> None:
        if self.env is not None and self.env.task_name == task:
            return
        if self.env is not None:
            self.env.close()
        self.get_logger().info(f"loading LIBERO scene for {task} (this takes a while the first time)")
        self.env = LiberoEnv(task=task, scenes=self.p["scenes"], action_space="joint_position", camera_size=self.p["camera_size"],
                             cameras=tuple(self.p["camera_names"]), antialias=self.p["antialias"],
                             joint_max_delta=self.p["joint_max_delta"], max_steps=10**9)

    def _reset(self, task: str, init_state: int = -1) -> dict[str, Any]:
        task = task or (self.env.task_name if self.env is not None else self.p["task"])
        try:
            task = sim_task_set(self.p["scenes"]).get(task).name
            self._load(task)
            n = self.env.num_init_states
            if init_state >= n:
                raise ValueError(f"init_state {init_state} is out of range: {task} has {n} init states (0..{n - 1})")
            if init_state >= 0:
                k = init_state
            else:
                k = (self.p["init_state"] if self.p["init_state"] >= 0 else self._episode) % n
            self._episode += 1
            self.env.set_render(True)
            obs = self.env.reset(init_state=k)
            self.t += self.env.dt  # sim time never goes back: a reset is one more step
        except Exception as e:  # unknown task, LIBERO failure: refuse with the reason, keep the old scene
            self.get_logger().error(f"sim reset failed: {e}")
            return {"ok": False, "message": f"sim reset failed: {e}"}
        with self._cv:
            self._follower = TrajectoryFollower(obs.extras["joint_pos"])
            self._gripper = -1.0
        self._publish(obs)
        return {"ok": True, "task": task, "instruction": self.env.instruction, "init_state": k,
                "message": f"reset {task} init_state={k}"}

    def _run(self) -> None:
        try:
            out = self._reset(self.p["task"])
            if not out["ok"]:
                raise RuntimeError(out["message"])
            self.get_logger().info(f"sim robot ready: {out['message']}")
            while not self._stop.is_set():
                self._loop_once()
        except Exception as e:  # the node stays up to report it; nothing else can move the sim
            if not self._stop.is_set():
                self.get_logger().fatal(f"sim loop stopped: {e!r}")

    def _loop_once(self) -> None:
        with self._cv:
            request, self._reset_request = self._reset_request, None
        if request is not None:
            task, init_state, done, out = request
            out.update(self._reset(task, init_state))
            done.set()
            return
        t = self.t
        w0 = time.perf_counter()
        if self.p["lockstep"] and self._instruction:
            self._wait(lambda: self._chunk_stamp >= t - 1e-9 or not self._instruction or self._reset_request)
            time.sleep(0.002)  # let the bridge take the chunk before its tick
        w1 = time.perf_counter()
        self._clock_pub.publish(Clock(clock=conv.to_time(t)))
        commanding = time.monotonic() - self._last_traj_wall < 1.0
        if self.p["lockstep"] and commanding:
            self._wait(lambda: self._follower.stamp is not None and self._follower.stamp >= t - 1e-9
                       or bool(self._reset_request))
        elif not self._instruction:
            time.sleep(1.0 / self.p["idle_rate_hz"])
        w2 = time.perf_counter()
        if self._reset_request:
            return
        self._step(t + self.env.dt)
        if self._instruction or commanding:  # idle steps sleep 1 / idle_rate_hz: not the bridge's time
            self._timing(w1 - w0, w2 - w1, time.perf_counter() - w2)

    def _timing(self, policy_s: float, bridge_s: float, step_s: float) -> None:
        """Log where the wall time of a sim step goes, every 100 steps while commanded."""
        acc = self._times = getattr(self, "_times", np.zeros(4))
        acc += (policy_s, bridge_s, step_s, 1)
        if acc[3] >= 100:
            ms = acc[:3] / acc[3] * 1e3
            self.get_logger().info(f"{acc[3] / acc[:3].sum():.2f} steps/s: sim step {ms[2]:.0f} ms, waiting for "
                                   f"the policy {ms[0]:.0f} ms and the bridge {ms[1]:.0f} ms per step")
            self._times = np.zeros(4)

    def _wait(self, ready) -> None:
        with self._cv:
            self._cv.wait_for(lambda: ready() or self._stop.is_set(), timeout=self.p["lockstep_timeout_s"])

    def _step(self, t_next: float) -> None:
        with self._cv:
            row = np.r_[self._follower.target(t_next), self._gripper]
        self._steps = getattr(self, "_steps", 0) + 1
        self.env.set_render(self._steps % self.p["render_every"] == 0)
        res = self.env.step(row)
        self.t = t_next
        self._publish(res.obs)

    def _publish(self, obs) -> None:
        stamp = conv.to_time(self.t)
        ex = obs.extras
        f = np.asarray(ex["gripper_qpos"], np.float64)  # LIBERO: (+w/2, -w/2); FR3: both +w/2
        names = [*self.p["joint_names"], *self.p["finger_joint_names"]]
        self._js_pub.publish(conv.joint_state(names, np.r_[ex["joint_pos"], f[0], -f[1]], stamp,
                                              np.r_[ex["joint_vel"], 0.0, 0.0]))
        self._success_pub.publish(Bool(data=bool(ex["success"])))
        if self._priv_pub is not None:
            payload = {k: to_jsonable(ex[k]) for k in PRIVILEGED_KEYS if k in ex}
            payload["stamp"] = self.t
            self._priv_pub.publish(String(data=json.dumps(payload)))
        for name, img in obs.images.items():
            self._img_pubs[name].publish(conv.rgb_to_image(img, stamp, f"{name}_color_optical_frame"))

    def close(self) -> None:
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        self._thread.join(timeout=10.0)
        if self.env is not None:
            self.env.close()


def main(args: list[str] | None = None) -> int:
    return run_node(SimRobotNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
