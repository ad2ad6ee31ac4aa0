"""The operator's side of the bridge, for ``roboalign say``, ``roboalign trials`` and ``roboalign demo``.

Sends roboalign_msgs/TaskCommand requests, engages/releases the e-stop (std_srvs/SetBool), follows
roboalign_msgs/EpisodeStatus until the episode ends, and keeps the policy's newest roboalign_msgs/PolicyStatus
(which backend and checkpoint will act, and whether the policy can). Owns its rclpy context and spins it in a background
thread, so callers stay plain blocking Python.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter, parameter_value_to_python
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import qos_profile_sensor_data
from roboalign_msgs.msg import EpisodeStatus, PolicyStatus
from roboalign_msgs.srv import TaskCommand
from sensor_msgs.msg import JointState
from std_srvs.srv import SetBool

from roboalign_policy import qos
from roboalign_policy.executor import spin_until_closed

PHASES = {v: k.removeprefix("PHASE_").lower() for k, v in vars(EpisodeStatus).items() if k.startswith("PHASE_")}
TERMINAL = {"success", "failure", "timeout", "stopped", "fault"}
COMMANDS = {"start": TaskCommand.Request.START, "stop": TaskCommand.Request.STOP, "home": TaskCommand.Request.HOME,
            "reset": TaskCommand.Request.RESET, "estop": TaskCommand.Request.ESTOP,
            "release_estop": TaskCommand.Request.RELEASE_ESTOP}


POLICY_STATES = {v: k.removeprefix("STATE_").lower() for k, v in vars(PolicyStatus).items()
                 if k.startswith("STATE_")}


@dataclass(frozen=True)
class Policy:
    """The policy node's newest status: its state, its own message, and what acts."""

    state: str
    message: str
    backend: str
    checkpoint: str

    @classmethod
    def from_msg(cls, m: PolicyStatus) -> Policy:
        return cls(POLICY_STATES.get(m.state, f"state{m.state}"), m.message, m.backend, m.checkpoint)

    @property
    def active(self) -> bool:
        return self.state in ("ready", "running")


class BridgeUnavailable(RuntimeError):
    """The bridge's service did not answer in time."""


@dataclass(frozen=True)
class Status:
    phase: str
    episode: int
    task: str
    instruction: str
    steps: int
    elapsed_s: float
    dry_run: bool
    message: str
    received: float  # monotonic time of arrival
    init_state: int = -1  # sim only: the LIBERO init state of the episode's scene

    @classmethod
    def from_msg(cls, m: EpisodeStatus) -> Status:
        return cls(PHASES.get(m.phase, f"phase{m.phase}"), m.episode_index, m.task, m.instruction, m.steps,
                   m.elapsed_s, m.dry_run, m.message, time.monotonic(), m.init_state)

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL


class OperatorClient:
    def __init__(self, command_service: str = qos.COMMAND_SERVICE, status_topic: str = qos.EPISODE_STATUS,
                 estop_service: str = qos.ESTOP_SERVICE, joint_states_topic: str = qos.JOINT_STATES,
                 policy_status_topic: str = qos.POLICY_STATUS) -> None:
        self._ctx = Context()
        rclpy.init(context=self._ctx)
        self.node = rclpy.create_node(f"roboalign_operator_{threading.get_ident() % 100000}", context=self._ctx)
        self._nodes = [self.node]  # every node of this context: close() destroys them all
        self._cmd = self.node.create_client(TaskCommand, command_service)
        self._estop = self.node.create_client(SetBool, estop_service)
        self._cond = threading.Condition()
        self.status: Status | None = None
        self.policy: Policy | None = None
        self.joints: dict[str, float] = {}
        self.node.create_subscription(EpisodeStatus, status_topic, self._on_status, 10)
        if policy_status_topic:
            self.node.create_subscription(PolicyStatus, policy_status_topic, self._on_policy, qos.LATCHED)
        if joint_states_topic:  # "" : no joint states (they wake this client's executor at the robot's rate)
            self.node.create_subscription(JointState, joint_states_topic, self._on_joints, qos_profile_sensor_data)
        self.errors: deque[str] = deque(maxlen=20)  # the latest callback failures (also in the node's log)
        self._closing = threading.Event()
        self._executor = SingleThreadedExecutor(context=self._ctx)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        """Spin until :meth:`close`; a failing callback is logged and kept in ``errors``, the others go on."""
        spin_until_closed(self._executor, self._closing, self._ctx, self._callback_failed)

    def _callback_failed(self, why: str) -> None:
        self.errors.append(why)
        self.node.get_logger().error(f"operator client callback failed: {why}")

    def _on_status(self, msg: EpisodeStatus) -> None:
        with self._cond:
            self.status = Status.from_msg(msg)
            self._cond.notify_all()

    def _on_policy(self, msg: PolicyStatus) -> None:
        with self._cond:
            self.policy = Policy.from_msg(msg)
            self._cond.notify_all()

    def wait_for_policy(self, timeout: float = 2.0) -> Policy | None:
        """The policy's newest status (waiting up to ``timeout`` for a first one); None: none arrived."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.policy is None and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(timeout=left)
            return self.policy

    def _on_joints(self, msg: JointState) -> None:
        self.joints = dict(zip(msg.name, msg.position, strict=False))

    def wait_for_bridge(self, timeout: float = 30.0) -> None:
        if not self._cmd.wait_for_service(timeout_sec=timeout):
            raise BridgeUnavailable(f"no bridge answers on {self._cmd.srv_name} after {timeout:g} s: is the stack "
                                    "running (roboalign demo / ros2 launch roboalign_policy ...) and bridge_node "
                                    "configured (ros2 lifecycle get /bridge_node)?")

    def wait_for_status(self, predicate: Callable[[Status], bool] = lambda s: True,
                        timeout: float = 30.0) -> Status | None:
        """The first status (arriving from now on, or the current one) satisfying ``predicate``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self.status is not None and predicate(self.status):
                    return self.status
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait(timeout=left):
                    return self.status if self.status is not None and predicate(self.status) else None

    def command(self, name: str, task: str = "", instruction: str = "", timeout: float = 30.0,
                init_state: int = -1) -> TaskCommand.Response:
        """Send a TaskCommand; ``init_state`` >= 0 picks the sim scene's LIBERO init state (START / RESET)."""
        if name not in COMMANDS:
            raise ValueError(f"unknown command {name!r}; valid: {', '.join(COMMANDS)}")
        self.wait_for_bridge(timeout)
        fut = self._cmd.call_async(TaskCommand.Request(command=COMMANDS[name], task=task, instruction=instruction,
                                                       init_state=init_state))
        return self._wait(fut, timeout, f"the bridge's {name} command")

    def set_estop(self, engage: bool, timeout: float = 10.0) -> SetBool.Response:
        if not self._estop.wait_for_service(timeout_sec=timeout):
            raise BridgeUnavailable(f"no e-stop service {self._estop.srv_name}")
        return self._wait(self._estop.call_async(SetBool.Request(data=engage)), timeout, "the e-stop service")

    def add_node(self, name: str, use_sim_time: bool = False):
        """Another node in this client's context, spun by its executor (e.g. a teleop stand-in on sim time)."""
        node = rclpy.create_node(name, context=self._ctx,
                                 parameter_overrides=[Parameter("use_sim_time", value=use_sim_time)])
        self._executor.add_node(node)
        self._nodes.append(node)
        return node

    def _wait(self, fut, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while not fut.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not fut.done():
            raise BridgeUnavailable(f"{what} did not answer within {timeout:g} s")
        return fut.result()

    def get_parameters(self, node: str, names: list[str], timeout: float = 10.0) -> dict[str, object]:
        """Values of ``names`` on the running node ``node`` (e.g. the bridge's record_dir)."""
        client = AsyncParameterClient(self.node, node)
        if not client.wait_for_services(timeout_sec=timeout):
            raise BridgeUnavailable(f"node {node} offers no parameter services: is it running?")
        res = self._wait(client.get_parameters(names), timeout, f"{node}'s get_parameters")
        return {n: parameter_value_to_python(v) for n, v in zip(names, res.values, strict=True)}

    def set_parameters(self, node: str, values: dict[str, object], timeout: float = 10.0) -> None:
        """Set parameters on the running node ``node``; raises ValueError with the node's reason if refused."""
        client = AsyncParameterClient(self.node, node)
        if not client.wait_for_services(timeout_sec=timeout):
            raise BridgeUnavailable(f"node {node} offers no parameter services: is it running?")
        res = self._wait(client.set_parameters([Parameter(k, value=v) for k, v in values.items()]), timeout,
                         f"{node}'s set_parameters")
        refused = [f"{k}: {r.reason}" for k, r in zip(values, res.results, strict=True) if not r.successful]
        if refused:
            raise ValueError(f"{node} refused " + "; ".join(refused))

    def follow(self, episode: int, on_update: Callable[[Status], None] | None = None,
               timeout: float = 600.0, period: float = 1.0) -> Status | None:
        """Follow ``episode`` until it ends (terminal phase or e-stop); ``on_update`` on every phase change
        and every ``period`` seconds. Returns the final status (None on timeout)."""
        deadline = time.monotonic() + timeout
        last_phase, last_print = None, 0.0
        while time.monotonic() < deadline:
            st = self.wait_for_status(lambda s: s.episode >= episode, timeout=min(1.0, deadline - time.monotonic()))
            if st is None or st.episode != episode:
                continue
            now = time.monotonic()
            if on_update is not None and (st.phase != last_phase or now - last_print >= period):
                on_update(st)
                last_phase, last_print = st.phase, now
            if st.terminal or st.phase == "estop":
                return st
            with self._cond:
                self._cond.wait(timeout=0.2)
        return None

    def close(self) -> None:
        if self._closing.is_set():
            return
        self._closing.set()
        self._thread.join(timeout=1.0)
        self._executor.shutdown(timeout_sec=1.0)
        for node in self._nodes:  # a node left alive keeps the DDS participant (and its latched data) alive
            node.destroy_node()
        rclpy.try_shutdown(context=self._ctx)
        self._thread.join(timeout=2.0)
        self._ctx.destroy()  # the participant goes now, not whenever the context is garbage-collected
