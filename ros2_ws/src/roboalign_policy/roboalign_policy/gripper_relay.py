"""gripper_relay: the bridge's gripper command (std_msgs/Float64MultiArray) -> franka_gripper action goals.

On a Franka FR3 the gripper is not a ros2_control joint: franka_ros2's ``franka_gripper`` node serves
``move`` (franka_msgs/action/Move), ``grasp`` (Grasp) and ``homing`` (Homing). This node subscribes to the
bridge's one-value gripper command on ``gripper_command_topic`` (``open_value`` .. ``closed_value``), turns it into
an open/closed state with hysteresis and a hold time (``roboalign.control.gripper.GripperSwitch``) and sends
one goal per change of state: Move(``open_width``, ``move_speed``) to open, Grasp(``grasp_width``,
``epsilon_inner``/``epsilon_outer``, ``grasp_speed``, ``grasp_force``) to close. Equal commands send nothing.

It is a node of its own, not a part of the bridge: the bridge's control loop stays free of action-client
callbacks (goal responses, results, status and feedback topics) and keeps one output format for every
robot (a ForwardCommandController takes the same topic), and the relay only starts where the gripper is
a franka_gripper. Everything is asynchronous (``send_goal_async`` + done callbacks): nothing waits on the
gripper. A goal sent while another one runs cancels the older one. A rejected or failed goal, or a missing
action server, is logged as an error with the reason and counted on /diagnostics; the relay keeps running
and sends the next change (a goal that could not be sent because the server was missing is sent once it
appears). With ``dry_run`` (default true, like the bridge) goals are logged, never sent.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from action_msgs.msg import GoalStatus
from franka_msgs.action import Grasp, Homing, Move
from rclpy.action import ActionClient
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from std_msgs.msg import Float64MultiArray

from roboalign.control.gripper import GripperState, GripperSwitch
from roboalign_policy import qos
from roboalign_policy.diagnostics import ERROR, OK, WARN, DiagnosticUpdater
from roboalign_policy.node_runner import run_node
from roboalign_policy.params import CPU_AFFINITY, ParamSpec, declare_params
from roboalign_policy.qos import RELIABLE

PARAMS = [
    ParamSpec("gripper_command_topic", qos.GRIPPER_COMMAND,
              "the bridge's gripper command (std_msgs/Float64MultiArray, one value)", read_only=True),
    ParamSpec("open_value", -1.0, "command value meaning open (the bridge's gripper_open_value)",
              min=-10.0, max=10.0, read_only=True),
    ParamSpec("closed_value", 1.0, "command value meaning closed (the bridge's gripper_closed_value)",
              min=-10.0, max=10.0, read_only=True),
    ParamSpec("hysteresis", 0.1, "dead band around the midpoint, as a fraction of open..closed", min=0.0,
              max=0.45, read_only=True),
    ParamSpec("hold_s", 0.05, "a new state must hold this long before a goal is sent [s]", min=0.0, max=5.0,
              read_only=True),
    ParamSpec("move_action", "/franka_gripper/move", "franka_msgs/action/Move server (open)", read_only=True),
    ParamSpec("grasp_action", "/franka_gripper/grasp", "franka_msgs/action/Grasp server (close)", read_only=True),
    ParamSpec("homing_action", "/franka_gripper/homing", "franka_msgs/action/Homing server", read_only=True),
    ParamSpec("open_width", 0.08, "finger distance of an open gripper [m]", min=0.0, max=0.08),
    ParamSpec("move_speed", 0.1, "opening speed [m/s]", min=0.001, max=0.2),
    ParamSpec("grasp_width", 0.0, "expected object width of a grasp [m]", min=0.0, max=0.08),
    ParamSpec("epsilon_inner", 0.005, "a grasp succeeds down to grasp_width - epsilon_inner [m]", min=0.0, max=0.08),
    ParamSpec("epsilon_outer", 0.08, "... and up to grasp_width + epsilon_outer [m]", min=0.0, max=0.08),
    ParamSpec("grasp_speed", 0.05, "closing speed [m/s]", min=0.001, max=0.2),
    ParamSpec("grasp_force", 30.0, "grasping force [N] (Franka Hand: 70 N continuous)", min=1.0, max=70.0),
    ParamSpec("home_on_start", False, "send a Homing goal once the server is up (calibrates the fingers)",
              read_only=True),
    ParamSpec("dry_run", True, "log the goals, send nothing to the gripper"),
    ParamSpec("retry_period_s", 1.0, "how often a goal waiting for its action server is retried [s]",
              min=0.05, max=60.0, read_only=True),
    CPU_AFFINITY,
]


def _rules(v: dict[str, Any]) -> str | None:
    if v["open_value"] == v["closed_value"]:
        return "open_value and closed_value must differ"
    if v["grasp_width"] >= v["open_width"]:
        return f"grasp_width ({v['grasp_width']}) must be below open_width ({v['open_width']})"
    return None


class GripperRelay(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("gripper_relay", **kwargs)
        self.p = declare_params(self, PARAMS, [_rules])
        self.add_post_set_parameters_callback(lambda ps: self.p.update({x.name: x.value for x in ps}))
        self._lock = threading.RLock()  # a done callback may run inside send_goal_async's caller
        self.switch = GripperSwitch(self.p["open_value"], self.p["closed_value"], self.p["hysteresis"],
                                    self.p["hold_s"])
        self.counts = {"goals_sent": 0, "dry_run_goals": 0, "rejected": 0, "failed": 0, "succeeded": 0,
                       "superseded": 0, "bad_commands": 0, "server_missing": 0}
        self.last_error = ""
        self._seq = 0
        self._active = None  # ClientGoalHandle of the newest accepted goal
        self._pending: GripperState | None = None  # a change waiting for its action server
        self._homing_due = bool(self.p["home_on_start"])
        group = ReentrantCallbackGroup()
        self._actions = {
            GripperState.OPEN: ActionClient(self, Move, self.p["move_action"], callback_group=group),
            GripperState.CLOSED: ActionClient(self, Grasp, self.p["grasp_action"], callback_group=group),
        }
        self._names = {GripperState.OPEN: self.p["move_action"], GripperState.CLOSED: self.p["grasp_action"]}
        self._homing = ActionClient(self, Homing, self.p["homing_action"], callback_group=group)
        self.create_subscription(Float64MultiArray, self.p["gripper_command_topic"], self._on_command, RELIABLE,
                                 callback_group=group)
        self.create_timer(self.p["retry_period_s"], self._retry, callback_group=group)
        self._diag = DiagnosticUpdater(self, hardware_id="franka_gripper")
        self._diag.add("gripper", self._diag_check)
        self.create_timer(1.0, self._diag.update, callback_group=group)
        mode = "DRY RUN: no goal is sent" if self.p["dry_run"] else \
            f"goals to {self.p['move_action']} / {self.p['grasp_action']}"
        self.get_logger().info(f"gripper relay ready ({mode}); commands from {self.p['gripper_command_topic']}")

    # ------------------------------------------------------------------ input
    def _on_command(self, msg: Float64MultiArray) -> None:
        if len(msg.data) != 1:
            with self._lock:
                self.counts["bad_commands"] += 1
            self.get_logger().warning(f"ignoring a gripper command with {len(msg.data)} values (expected 1)",
                                      throttle_duration_sec=2.0)
            return
        with self._lock:
            state = self.switch.update(float(msg.data[0]), time.monotonic())
            if state is not None:
                self._send(state)

    def _retry(self) -> None:
        with self._lock:
            if self._pending is not None:
                self._send(self._pending)
            if self._homing_due and not self.p["dry_run"] and self._homing.server_is_ready():
                self._homing_due = False
                self.get_logger().info(f"homing the gripper ({self.p['homing_action']})")
                self._track(self._homing.send_goal_async(Homing.Goal()), "Homing", supersedes=False)

    # ------------------------------------------------------------------ goals
    def goal_for(self, state: GripperState) -> tuple[str, Any]:
        """The action name and goal that put the gripper in ``state``, from the current parameters."""
        p = self.p
        if state is GripperState.OPEN:
            return "Move", Move.Goal(width=p["open_width"], speed=p["move_speed"])
        goal = Grasp.Goal(width=p["grasp_width"], speed=p["grasp_speed"], force=p["grasp_force"])
        goal.epsilon.inner, goal.epsilon.outer = p["epsilon_inner"], p["epsilon_outer"]
        return "Grasp", goal

    def _send(self, state: GripperState) -> None:
        """Called with the lock held; never waits."""
        name, goal = self.goal_for(state)
        if self.p["dry_run"]:
            self._pending = None
            self.counts["dry_run_goals"] += 1
            self.get_logger().info(f"DRY RUN: gripper {state.value}: would send {name} {goal}")
            return
        client = self._actions[state]
        if not client.server_is_ready():
            if self._pending is not state:
                self.counts["server_missing"] += 1
                self._error(f"gripper {state.value}: action server {self._names[state]} is not available; "
                            f"the {name} goal is sent when it appears")
            self._pending = state
            return
        self._pending = None
        if self._active is not None:  # the newer command wins; the older goal's result is not a failure
            self._active.cancel_goal_async()
            self._active = None
        self.counts["goals_sent"] += 1
        self.get_logger().info(f"gripper {state.value}: sending {name} {goal}")
        self._track(client.send_goal_async(goal), name)

    def _track(self, future: Any, name: str, supersedes: bool = True) -> None:
        self._seq += 1
        seq = self._seq if supersedes else -1
        future.add_done_callback(lambda f: self._on_response(f, name, seq))

    def _on_response(self, future: Any, name: str, seq: int) -> None:
        handle = future.result()
        with self._lock:
            if handle is None or not handle.accepted:
                self.counts["rejected"] += 1
                self._error(f"gripper {name} goal REJECTED by the action server")
                return
            if seq == self._seq:
                self._active = handle
            elif seq != -1:  # a newer goal was sent while this one was on its way
                handle.cancel_goal_async()
        handle.get_result_async().add_done_callback(lambda f: self._on_result(f, name, seq))

    def _on_result(self, future: Any, name: str, seq: int) -> None:
        res = future.result()
        with self._lock:
            if seq == self._seq:
                self._active = None
            superseded = seq not in (-1, self._seq)
            status = GoalStatus.STATUS_UNKNOWN if res is None else res.status
            result = None if res is None else res.result
            if status == GoalStatus.STATUS_SUCCEEDED and result is not None and result.success:
                self.counts["succeeded"] += 1
                self.last_error = ""  # the counters keep the history; the status says how things are now
                self.get_logger().info(f"gripper {name} goal succeeded")
            elif superseded and status in (GoalStatus.STATUS_CANCELED, GoalStatus.STATUS_ABORTED):
                self.counts["superseded"] += 1
                self.get_logger().info(f"gripper {name} goal superseded by a newer command")
            else:
                self.counts["failed"] += 1
                why = (result.error if result is not None else "") or "no error message"
                self._error(f"gripper {name} goal FAILED (status {_STATUS.get(status, status)}): {why}")

    def _error(self, text: str) -> None:
        self.last_error = text
        self.get_logger().error(text)

    # ------------------------------------------------------------------ diagnostics
    def _diag_check(self) -> tuple[bytes, str, dict[str, Any]]:
        with self._lock:
            values = dict(self.counts, state=self.switch.state.value if self.switch.state else "unknown",
                          dry_run=self.p["dry_run"], last_error=self.last_error)
            if self._pending is not None:
                return ERROR, f"gripper action server missing; {self._pending.value} goal pending", values
            if self.last_error:
                return WARN, self.last_error, values
        return OK, "dry run: no goal sent" if self.p["dry_run"] else "ok", values


_STATUS = {getattr(GoalStatus, k): k.removeprefix("STATUS_") for k in dir(GoalStatus) if k.startswith("STATUS_")}


def main(args: list[str] | None = None) -> int:
    return run_node(GripperRelay, args)


if __name__ == "__main__":
    raise SystemExit(main())
