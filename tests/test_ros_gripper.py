"""gripper_relay over real DDS against a real rclpy ActionServer standing in for franka_gripper.

The stand-in serves the franka_msgs Move / Grasp / Homing actions (franka_ros2's, or the compat package
ros2_ws/compat/franka_msgs built by setup.sh). Covers: open -> close -> open commands become Move / Grasp /
Move goals with the configured values, repeated equal commands send nothing, a rejected and a failed goal
are reported while the relay keeps running, a missing server gets the goal once it appears, dry_run sends
nothing, bad parameters are refused.
"""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (make setup)")
pytest.importorskip("franka_msgs.action", reason="needs franka_msgs (make setup builds the stand-in)")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from franka_msgs.action import Grasp, Homing, Move  # noqa: E402
from rclpy.action import ActionServer, GoalResponse  # noqa: E402
from rclpy.callback_groups import ReentrantCallbackGroup  # noqa: E402
from rclpy.parameter import Parameter as P  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402

from roboalign_policy.gripper_relay import GripperRelay  # noqa: E402
from tests.ros_helpers.executor import wait_until  # noqa: E402

TOPIC = "/roboalign/gripper_command"
CONFIG = {"open_width": 0.07, "move_speed": 0.05, "grasp_width": 0.01, "epsilon_inner": 0.004,
          "epsilon_outer": 0.03, "grasp_speed": 0.02, "grasp_force": 25.0}


class FakeFrankaGripper:
    """franka_gripper's three action servers; records every goal; can reject or fail the next one."""

    def __init__(self, add, ns: str = "/franka_gripper") -> None:
        self.node = add(rclpy.create_node("fake_franka_gripper"))
        self.goals: list[tuple[str, object]] = []
        self.results: list[str] = []
        self.reject_next = False
        self.fail_next = ""  # error text of the next goal's failure
        group = ReentrantCallbackGroup()
        for name, action in (("move", Move), ("grasp", Grasp), ("homing", Homing)):
            ActionServer(self.node, action, f"{ns}/{name}", execute_callback=self._execute(name, action),
                         goal_callback=self._on_goal(name), callback_group=group)

    def _on_goal(self, name):
        def cb(goal) -> GoalResponse:
            self.goals.append((name, goal))
            if self.reject_next:
                self.reject_next = False
                return GoalResponse.REJECT
            return GoalResponse.ACCEPT
        return cb

    def _execute(self, name, action):
        def cb(handle):
            time.sleep(0.05)  # the fingers move
            result = action.Result()
            if self.fail_next:
                result.success, result.error = False, self.fail_next
                self.fail_next = ""
                handle.abort()
            else:
                result.success = True
                handle.succeed()
            self.results.append(name if result.success else f"{name} failed")
            return result
        return cb

    def names(self) -> list[str]:
        return [n for n, _ in self.goals]


class Commander:
    """Publishes the bridge's gripper command at 50 Hz (like the bridge's control loop)."""

    def __init__(self, add) -> None:
        self.node = add(rclpy.create_node("gripper_commander"))
        self.pub = self.node.create_publisher(Float64MultiArray, TOPIC, 10)
        self.diags: list[DiagnosticArray] = []
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diags.append, 50)

    def hold(self, value: float, seconds: float = 0.4, ramp_from: float | None = None) -> None:
        """``value`` for ``seconds`` (after a 0.1 s ramp from ``ramp_from``, as the bridge's rate limit does)."""
        if ramp_from is not None:
            for k in range(1, 6):
                self._send(ramp_from + (value - ramp_from) * k / 5)
        for _ in range(int(seconds / 0.02)):
            self._send(value)

    def _send(self, v: float) -> None:
        self.pub.publish(Float64MultiArray(data=[v]))
        time.sleep(0.02)

    def gripper_diag(self) -> list[str]:
        return [s.message for d in self.diags for s in d.status if s.name == "gripper_relay: gripper"]


def relay(**params) -> GripperRelay:
    base = {"dry_run": False, "retry_period_s": 0.1, **CONFIG, **params}
    return GripperRelay(parameter_overrides=[P(k, value=v) for k, v in base.items()])


def _wait_for_server(node: GripperRelay) -> None:
    wait_until(lambda: all(c.server_is_ready() for c in node._actions.values()), 10, "the gripper action servers")


def _started(ros, **relay_params):
    """A stand-in franka_gripper, a command publisher and a relay, connected: (server, commander, relay)."""
    server = FakeFrankaGripper(ros)
    cmd = Commander(ros)
    r = ros(relay(**relay_params))
    _wait_for_server(r)
    wait_until(lambda: cmd.pub.get_subscription_count() >= 1, 5, "the relay's subscription")
    return server, cmd, r


def test_open_close_open_sends_move_grasp_move_with_the_configured_values(ros) -> None:
    server, cmd, r = _started(ros)

    cmd.hold(-1.0)  # open, 20 equal commands
    wait_until(lambda: server.results == ["move"], 10, "the Move goal's result")
    cmd.hold(1.0, ramp_from=-1.0)  # close
    wait_until(lambda: server.results == ["move", "grasp"], 10, "the Grasp goal's result")
    cmd.hold(-1.0, ramp_from=1.0)  # open again
    wait_until(lambda: server.results == ["move", "grasp", "move"], 10, "the second Move goal's result")
    cmd.hold(-1.0, 0.3)  # more of the same: nothing new
    time.sleep(0.3)

    assert server.names() == ["move", "grasp", "move"]
    move, grasp = server.goals[0][1], server.goals[1][1]
    assert (move.width, move.speed) == (0.07, 0.05)
    assert (grasp.width, grasp.epsilon.inner, grasp.epsilon.outer, grasp.speed, grasp.force) == \
        (0.01, 0.004, 0.03, 0.02, 25.0)
    assert (server.goals[2][1].width, server.goals[2][1].speed) == (0.07, 0.05)
    wait_until(lambda: r.counts["succeeded"] == 3, 5, "three successes")
    assert r.counts["goals_sent"] == 3 and r.counts["rejected"] == r.counts["failed"] == 0


def test_a_rejected_or_failed_goal_is_reported_and_the_relay_keeps_running(ros) -> None:
    server, cmd, r = _started(ros)

    server.reject_next = True
    cmd.hold(1.0)  # close -> Grasp, rejected
    wait_until(lambda: r.counts["rejected"] == 1, 10, "the rejection")
    assert "REJECTED" in r.last_error and "Grasp" in r.last_error
    wait_until(lambda: any("REJECTED" in m for m in cmd.gripper_diag()), 5, "the rejection on /diagnostics")

    server.fail_next = "Grasp failed: object lost"
    cmd.hold(-1.0, ramp_from=1.0)  # open -> Move, fails
    wait_until(lambda: r.counts["failed"] == 1, 10, "the failure")
    assert "FAILED" in r.last_error and "object lost" in r.last_error and "ABORTED" in r.last_error

    cmd.hold(1.0, ramp_from=-1.0)  # the relay is still there: the next change goes through
    wait_until(lambda: r.counts["succeeded"] == 1, 10, "a successful Grasp after the failures")
    assert server.names() == ["grasp", "move", "grasp"]
    assert r.last_error == ""  # the status clears; the counters keep the history
    assert (r.counts["rejected"], r.counts["failed"], r.counts["goals_sent"]) == (1, 1, 3)


def test_a_missing_server_gets_the_goal_once_it_appears(ros) -> None:
    ns = "/gripper_missing_test"  # a name no earlier test served (DDS discovery may still list old servers)
    cmd = Commander(ros)
    r = ros(relay(**{f"{a}_action": f"{ns}/{a}" for a in ("move", "grasp", "homing")}))
    wait_until(lambda: cmd.pub.get_subscription_count() >= 1, 5, "the relay's subscription")
    cmd.hold(1.0, 0.2)
    wait_until(lambda: r.counts["server_missing"] == 1, 5, "the missing-server report")
    assert "not available" in r.last_error and r.counts["goals_sent"] == 0
    server = FakeFrankaGripper(ros, ns)
    wait_until(lambda: server.names() == ["grasp"], 15, "the pending Grasp goal")
    wait_until(lambda: r.counts["succeeded"] == 1, 10, "its result")


def test_dry_run_sends_no_goal(ros) -> None:
    server, cmd, r = _started(ros, dry_run=True, home_on_start=True)
    cmd.hold(-1.0, 0.2)
    cmd.hold(1.0, 0.3, ramp_from=-1.0)
    wait_until(lambda: r.counts["dry_run_goals"] == 2, 5, "two dry-run goals")
    time.sleep(0.3)
    assert server.goals == [] and r.counts["goals_sent"] == 0


@pytest.mark.parametrize(("params", "error"), [
    ({"grasp_force": 500.0}, "grasp_force"),
    ({"grasp_width": 0.08, "open_width": 0.05}, "grasp_width .* must be below open_width"),
    ({"open_value": 1.0, "closed_value": 1.0}, "must differ"),
    ({"gripper_comand_topic": "/x"}, "unknown parameters"),
])
def test_bad_parameters_are_refused(ros, params, error) -> None:
    with pytest.raises(ValueError, match=error):
        relay(**params)


def test_a_bad_parameter_change_is_refused_at_runtime(ros) -> None:
    r = ros(relay())
    assert not r.set_parameters([P("move_speed", value=5.0)])[0].successful
    assert r.set_parameters([P("grasp_force", value=40.0)])[0].successful
    assert r.goal_for(r.switch.classify(1.0))[1].force == 40.0

