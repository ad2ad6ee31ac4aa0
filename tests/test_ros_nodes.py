"""policy_node and bridge_node over real DDS (rclpy), with a kinematic robot at the hardware boundary.

Covers: chunks and trajectories from the policy node (exact values of the reach policy), bad input kept
out while the node keeps running, parameter validation, a full bridge episode (homing, running, stop),
a stale camera holding the robot within 100 ms with the reason on /diagnostics and the recording kept,
the e-stop topic and service, dry_run, and a property check that no random chunk (NaN, inf, far out of
limits, stale, early, wrong size) ever reaches the command topic outside the limits.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (make setup)")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.parameter import Parameter as P  # noqa: E402
from roboalign_msgs.msg import ActionChunk, EpisodeStatus, PolicyStatus  # noqa: E402
from roboalign_msgs.srv import TaskCommand  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Bool, String  # noqa: E402
from std_srvs.srv import SetBool  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from roboalign.spec.action_space import FR3_LIMITS  # noqa: E402
from roboalign_policy import conversions as conv  # noqa: E402
from roboalign_policy.bridge_node import BridgeNode  # noqa: E402
from roboalign_policy.policy_node import PolicyNode  # noqa: E402
from roboalign_policy.qos import LATCHED  # noqa: E402
from tests.ros_helpers.executor import wait_until  # noqa: E402
from tests.ros_helpers.kinematic_robot import START, KinematicRobot  # noqa: E402

CAM = "/camera/test/color/image_raw"
GOAL = [1.2, -0.5, 0.0, -2.0, 0.0, 1.8, 0.8]
R = TaskCommand.Request


class Listener:
    """A test node recording what the stack publishes and calling its services."""

    def __init__(self, add) -> None:
        self.node = add(rclpy.create_node("listener"))
        self.chunks, self.trajs, self.pstatus, self.estatus, self.diags = [], [], [], [], []
        n = self.node
        n.create_subscription(ActionChunk, "/roboalign/action_chunk", self.chunks.append, 50)
        n.create_subscription(JointTrajectory, "/roboalign/policy/joint_trajectory", self.trajs.append, 50)
        n.create_subscription(PolicyStatus, "/roboalign/policy_status", self.pstatus.append, 50)
        n.create_subscription(EpisodeStatus, "/roboalign/episode_status", self.estatus.append, 50)
        n.create_subscription(DiagnosticArray, "/diagnostics", self.diags.append, 50)
        self.instr = n.create_publisher(String, "/roboalign/instruction", LATCHED)
        self.cmd = n.create_client(TaskCommand, "/roboalign/command")
        self.estop_srv = n.create_client(SetBool, "/roboalign/set_estop")
        self.estop_pub = n.create_publisher(Bool, "/roboalign/estop", 10)

    def call(self, client, req, timeout: float = 10.0):
        assert client.wait_for_service(timeout_sec=timeout), f"service {client.srv_name} not available"
        fut = client.call_async(req)
        wait_until(fut.done, timeout, f"a response from {client.srv_name}")
        return fut.result()

    def command(self, command: int, instruction: str = "", task: str = ""):
        return self.call(self.cmd, R(command=command, instruction=instruction, task=task))

    def phase(self) -> int | None:
        return self.estatus[-1].phase if self.estatus else None

    def diag_messages(self, node: str) -> list[tuple[int, str]]:
        return [(s.level[0], s.message) for d in self.diags for s in d.status if s.name.startswith(node)]


def reach_policy(**extra) -> PolicyNode:
    opts = {"goal": GOAL, "speed": extra.pop("speed", 0.2)}
    return PolicyNode(parameter_overrides=[
        P("backend", value="reach"), P("backend_options", value=json.dumps(opts)),
        P("camera_names", value=["test"]), P("camera_topics", value=[CAM]),
        P("max_inference_rate_hz", value=extra.pop("rate", 20.0)), *[P(k, value=v) for k, v in extra.items()]])


def bridge(**params) -> BridgeNode:
    """A bridge_node; ``policy=False``: no policy node in the test (its chunks come from the test, or none are
    needed), so START does not wait for a policy status."""
    if not params.pop("policy", True):
        params["policy_status_topic"] = ""
    base = {"dry_run": False, "camera_topics": [CAM], "home_first": False, "home_pose": list(START),
            "image_timeout_s": 1.0, "state_timeout_s": 1.0, "chunk_timeout_s": 2.0}  # generous: CI machines are busy
    base.update(params)
    return BridgeNode(parameter_overrides=[P(k, value=v) for k, v in base.items()])


# ---------------------------------------------------------------------------------------------- policy node
def test_policy_node_publishes_the_policys_chunk_as_action_chunk_and_trajectory(ros) -> None:
    pn = ros(reach_policy())
    listen = Listener(ros)
    ros(KinematicRobot([CAM]))
    listen.instr.publish(String(data="put the ketchup in the basket"))
    wait_until(lambda: len(listen.chunks) >= 3 and len(listen.trajs) >= 3, 15, "chunks and trajectories")
    msg = listen.chunks[-1]
    chunk = conv.msg_to_chunk(msg)
    assert (chunk.horizon, chunk.action_dim, chunk.dt, msg.backend) == (16, 8, 0.05, "reach")
    assert msg.instruction == "put the ketchup in the basket" and chunk.action_space == "joint_position"
    assert msg.task == "bottle_to_basket"  # the task the instruction names ("" for free-form text)
    # the robot stands still at START, so every chunk is the reach policy's straight line from START
    dist = np.array(GOAL) - START
    expected = START + np.sign(dist) * np.minimum(0.2 * 0.05 * np.arange(1, 17)[:, None], np.abs(dist))
    np.testing.assert_allclose(chunk.actions[:, :7], expected, atol=1e-5)
    np.testing.assert_allclose(chunk.actions[:, 7], -1.0)
    traj = next(t for t in reversed(listen.trajs)
                if abs(conv.to_sec(t.header.stamp) - (chunk.stamp + 0.05)) < 1e-6)
    times, pos = conv.trajectory_rows(traj, [f"fr3_joint{i}" for i in range(1, 8)])
    np.testing.assert_allclose(times, 0.05 * np.arange(16), atol=1e-9)  # time_from_start = k * dt
    np.testing.assert_allclose(pos, chunk.actions[:, :7], atol=1e-12)
    wait_until(lambda: listen.pstatus and listen.pstatus[-1].state == PolicyStatus.STATE_RUNNING, 5, "RUNNING")
    assert pn._chunks >= 3


def test_policy_node_keeps_bad_input_out_and_keeps_running(ros) -> None:
    pn = ros(reach_policy())
    listen = Listener(ros)
    bad = listen.node.create_publisher(Image, CAM, 10)
    js = listen.node.create_publisher(JointState, "/joint_states", 10)
    listen.instr.publish(String(data="reach the goal"))
    wait_until(lambda: pn._policy is not None, 10, "the policy to load")
    names = [f"fr3_joint{i}" for i in range(1, 8)] + ["fr3_finger_joint1", "fr3_finger_joint2"]

    def publish_bad() -> bool:  # until counted: camera_qos auto subscribes once the publisher is seen (2 Hz)
        stamp = listen.node.get_clock().now().to_msg()
        img = conv.rgb_to_image(np.zeros((8, 8, 3), np.uint8), stamp)
        img.encoding = "16UC1"  # wrong encoding
        bad.publish(img)
        js.publish(conv.joint_state(names, np.r_[START, np.nan, 0.04], stamp))  # NaN finger
        time.sleep(0.03)
        return pn._input_errors >= 10

    wait_until(publish_bad, 15, "the bad messages to be counted")
    assert listen.chunks == []
    wait_until(lambda: listen.pstatus and "waiting for images" in listen.pstatus[-1].message, 5, "a status")
    ros(KinematicRobot([CAM]))  # good input: the same node now works
    wait_until(lambda: len(listen.chunks) >= 2, 15, "chunks after good input")


def test_policy_node_parameters_are_validated(ros) -> None:
    with pytest.raises(ValueError, match="camera_names \\(2\\) and camera_topics \\(1\\)"):
        PolicyNode(parameter_overrides=[P("camera_names", value=["a", "b"]), P("camera_topics", value=["/x"]),
                                        P("backend", value="reach"), P("backend_options", value='{"goal": []}')])
    with pytest.raises(ValueError, match="max_inference_rate_hz.*out of range"):
        reach_policy(rate=1000.0)
    with pytest.raises(ValueError, match="unknown parameters \\['max_inference_hz'\\]"):
        reach_policy(max_inference_hz=5.0)
    pn = ros(reach_policy())
    res = pn.set_parameters([P("max_inference_rate_hz", value=0.0)])[0]
    assert not res.successful and "out of range" in res.reason
    res = pn.set_parameters([P("backend", value="torch")])[0]
    assert not res.successful and "read-only" in res.reason
    assert pn.set_parameters([P("max_inference_rate_hz", value=5.0)])[0].successful
    assert pn.p["max_inference_rate_hz"] == 5.0
    desc = pn.describe_parameter("max_inference_rate_hz")
    assert desc.floating_point_range[0].to_value == 500.0 and desc.description


# ---------------------------------------------------------------------------------------------- bridge node
def test_bridge_runs_an_episode_homing_then_policy_then_stop(ros) -> None:
    robot = KinematicRobot([CAM], start=START + 0.1)
    ros(reach_policy(speed=0.5), bridge(home_first=True, homing_velocity_scale=0.5), robot)
    listen = Listener(ros)
    wait_until(lambda: listen.estatus, 10, "episode status")
    res = listen.command(R.START, instruction="put the ketchup in the basket")
    assert res.accepted and res.task == "bottle_to_basket", res.message
    assert res.instruction == "put the ketchup in the basket"  # the real task's canonical wording
    phases = set()
    wait_until(lambda: phases.add(listen.phase()) or listen.phase() == EpisodeStatus.PHASE_RUNNING, 15, "RUNNING")
    assert EpisodeStatus.PHASE_HOMING in phases
    wait_until(lambda: np.abs(robot.q - np.array(GOAL)).max() < 0.05, 20, "the robot to reach the goal")
    assert listen.command(R.STOP).accepted
    wait_until(lambda: listen.phase() == EpisodeStatus.PHASE_STOPPED, 5, "STOPPED")
    # every command respected the rate limits (velocity_scale 0.5 of FR3 limits, 0.05 rad per tick), and the
    # look-ahead points of one trajectory are within one tick of each other
    bound = np.minimum(0.05, 0.5 * np.array(FR3_LIMITS.velocity) * 3 * 0.02)
    assert robot.max_step_violation(bound, 0.02) <= 1e-9
    assert all(np.all(np.abs(np.diff(c[2], axis=0)) <= bound + 1e-9) for c in robot.commands)
    refused = listen.command(R.START, instruction="make me a sandwich")
    assert not refused.accepted and "valid tasks" in refused.message


def test_the_bridge_passes_the_trials_init_state_to_the_sim_reset_and_reports_the_one_used(ros) -> None:
    """START carries the LIBERO init state to the sim reset service; the sim's answer goes into EpisodeStatus;
    a reset the sim refuses faults the episode with the sim's reason; a real-robot bridge refuses init states."""
    requests = []

    def on_reset(req, res):
        requests.append((req.task, req.init_state))
        if req.init_state >= 50:
            res.accepted, res.message = False, f"init_state {req.init_state} is out of range: 50 init states"
        else:
            res.accepted, res.message = True, "reset"
            res.init_state = req.init_state if req.init_state >= 0 else 7  # -1: the sim's own choice
        return res

    sim = ros(rclpy.create_node("fake_sim_reset"))
    sim.create_service(TaskCommand, "/sim_robot/reset", on_reset)
    ros(KinematicRobot([CAM]), bridge(sim_reset_service="/sim_robot/reset", task_domain="sim", policy=False))
    listen = Listener(ros)
    wait_until(lambda: listen.estatus, 10, "episode status")
    for asked, used in ((12, 12), (-1, 7)):
        res = listen.call(listen.cmd, R(command=R.START, task="shelf_to_tray", init_state=asked))
        assert res.accepted, res.message
        wait_until(lambda u=used: listen.estatus[-1].init_state == u
                   and listen.phase() == EpisodeStatus.PHASE_RUNNING, 10, f"RUNNING from init state {used}")
        assert requests[-1] == ("shelf_to_tray", asked)
        assert listen.command(R.STOP).accepted
        wait_until(lambda: listen.phase() == EpisodeStatus.PHASE_STOPPED, 5, "STOPPED")
    assert listen.call(listen.cmd, R(command=R.START, task="shelf_to_tray", init_state=60)).accepted
    wait_until(lambda: listen.phase() == EpisodeStatus.PHASE_FAULT, 10, "the refused reset to fault the episode")
    assert "out of range" in listen.estatus[-1].message and listen.estatus[-1].init_state == -1


def test_an_incompatible_qos_peer_is_reported_on_diagnostics(ros) -> None:
    """The nodes have no rclpy QoS event handlers (cheaper executor wake-ups); /diagnostics says it instead."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    b = ros(bridge())
    listen = Listener(ros)
    best_effort = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
    listen.node.create_publisher(ActionChunk, "/roboalign/action_chunk", best_effort)  # the bridge wants RELIABLE
    assert not [w for w in b.waitables if type(w).__name__ == "EventHandler"]
    wait_until(lambda: any(lvl == 1 and "/listener on /roboalign/action_chunk offers incompatible QoS" in m
                           for lvl, m in listen.diag_messages("bridge_node: qos")), 10, "the QoS warning")
    # only that peer: the listener's compatible endpoints (status, diagnostics, ...) are not reported
    # (an entity's own profile says 0 where the graph says "infinite" deadline: compared as mixed, they clash)
    last = [m for lvl, m in listen.diag_messages("bridge_node: qos")][-1]
    assert last.count("incompatible QoS") == 1, last


def test_a_real_robot_bridge_refuses_an_init_state(ros) -> None:
    ros(KinematicRobot([CAM]), bridge(policy=False))
    listen = Listener(ros)
    wait_until(lambda: listen.estatus, 10, "episode status")
    res = listen.call(listen.cmd, R(command=R.START, task="bottle_to_basket", init_state=3))
    assert not res.accepted and "needs a simulator" in res.message


def test_a_start_sent_before_the_first_joint_state_waits_for_it_then_is_refused_with_the_reason(ros) -> None:
    ros(bridge(start_wait_s=5.0, policy=False))  # start-up: the robot's joint states are not there yet
    listen = Listener(ros)
    wait_until(lambda: listen.estatus, 10, "episode status")
    assert listen.cmd.wait_for_service(timeout_sec=10.0)
    fut = listen.cmd.call_async(R(command=R.START, task="bottle_to_basket"))
    time.sleep(0.5)
    assert not fut.done()  # the bridge waits for a first joint state instead of refusing at once
    ros(KinematicRobot([CAM]))
    wait_until(fut.done, 10, "the START answer")
    assert fut.result().accepted, fut.result().message
    assert listen.command(R.STOP).accepted


def test_a_start_with_no_robot_is_refused_after_start_wait_s(ros) -> None:
    ros(bridge(start_wait_s=0.3, joint_states_topic="/nobody/joint_states", policy=False))
    listen = Listener(ros)
    wait_until(lambda: listen.estatus, 10, "episode status")
    t0 = time.monotonic()
    res = listen.command(R.START, task="bottle_to_basket")
    assert not res.accepted and "no joint state on /nobody/joint_states yet" in res.message, res.message
    assert time.monotonic() - t0 >= 0.3


@pytest.mark.serial  # a hold within 100 ms, the share of messages recorded
def test_stale_camera_holds_within_100_ms_reports_on_diagnostics_and_keeps_the_recording(ros, tmp_path) -> None:
    from rosbags.rosbag2 import Reader

    robot = KinematicRobot([CAM], rate_hz=100.0)
    ros(reach_policy(), bridge(image_timeout_s=0.05, record_dir=str(tmp_path)), robot)
    listen = Listener(ros)
    wait_until(lambda: listen.estatus, 10, "episode status")
    assert listen.command(R.START, task="bottle_to_basket").accepted

    def moving_now() -> bool:  # the bridge is past homing and the last commands really move the arm
        if len(robot.commands) < 20:
            return False
        recent = np.array([c[2][0] for c in sorted(robot.commands[-10:], key=lambda c: c[1])])
        return bool(np.any(np.diff(recent, axis=0) != 0))

    wait_until(moving_now, 20, "the robot to be commanded and moving")
    robot.cameras_on = False
    last_image = robot.image_stamps[-1]
    wait_until(lambda: listen.phase() == EpisodeStatus.PHASE_FAULT, 5, "FAULT")
    time.sleep(0.3)
    cmds = sorted(robot.commands, key=lambda c: c[1])
    firsts = np.array([c[2][0] for c in cmds])
    moving = np.flatnonzero(np.any(np.diff(firsts, axis=0) != 0, axis=1))
    held_from = cmds[moving[-1] + 1][1]  # stamp of the first command of the final hold
    assert held_from - last_image <= 0.100, f"held {held_from - last_image:.3f} s after the last image"
    assert len(cmds) - moving[-1] > 5, "the bridge keeps sending the hold"
    assert "stale image" in listen.estatus[-1].message
    wait_until(lambda: any(lvl == 2 and "stale image" in m for lvl, m in listen.diag_messages("bridge_node")),
               5, "an ERROR on /diagnostics")
    meta = json.loads((next(tmp_path.glob("episode_0001_*")) / "episode.json").read_text())
    assert meta["outcome"] == "fault" and "stale image" in meta["message"]
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    stamps: dict[str, list[float]] = {"/joint_states": [], CAM: []}
    log_times = []
    with Reader(next(tmp_path.glob("episode_0001_*")) / "bag") as bag:
        counts = {c.topic: c.msgcount for c in bag.connections}
        for conn, t, raw in bag.messages():
            log_times.append(t)
            if conn.topic in stamps:
                h = store.deserialize_cdr(raw, conn.msgtype).header.stamp
                stamps[conn.topic].append(h.sec + h.nanosec * 1e-9)
    assert counts["/joint_states"] > 10 and counts["/fr3_arm_controller/joint_trajectory"] > 10
    assert counts["/roboalign/action_chunk"] > 0 and counts[CAM] > 10
    assert log_times == sorted(log_times)
    # what the robot published during the episode is in the bag, intact and once (recorded off the executor by
    # the recorder thread; a bounded queue between its passes)
    for topic, published in (("/joint_states", robot.state_stamps), (CAM, robot.image_stamps)):
        got = np.array(stamps[topic])
        pub = np.array(published)
        assert len(np.unique(got)) == len(got), f"{topic}: duplicates in the bag"
        assert np.all(np.min(np.abs(got[:, None] - pub[None, :]), axis=1) < 1e-6), f"{topic}: unknown stamps"
        window = pub[(pub >= got.min()) & (pub <= got.max())]
        assert len(got) >= 0.9 * len(window), f"{topic}: {len(got)} of {len(window)} published messages recorded"


def test_estop_topic_and_service(ros) -> None:
    robot = KinematicRobot([CAM])
    ros(reach_policy(), bridge(), robot)
    listen = Listener(ros)
    wait_until(lambda: listen.estatus, 10, "episode status")
    assert listen.command(R.START, task="can_to_bowl").accepted
    wait_until(lambda: len(robot.commands) > 10, 10, "commands")
    listen.estop_pub.publish(Bool(data=True))
    wait_until(lambda: listen.phase() == EpisodeStatus.PHASE_ESTOP, 5, "ESTOP")
    n, held = len(robot.commands), robot.commands[-1][2][0]
    time.sleep(0.3)
    assert all(np.array_equal(c[2][0], held) for c in robot.commands[n:])
    refused = listen.command(R.START, task="can_to_bowl")
    assert not refused.accepted and "release the e-stop first" in refused.message
    assert listen.call(listen.estop_srv, SetBool.Request(data=False)).success
    wait_until(lambda: listen.phase() == EpisodeStatus.PHASE_IDLE, 5, "IDLE")
    assert listen.call(listen.estop_srv, SetBool.Request(data=True)).success
    wait_until(lambda: listen.phase() == EpisodeStatus.PHASE_ESTOP, 5, "ESTOP by service")


def test_dry_run_sends_nothing(ros) -> None:
    robot = KinematicRobot([CAM])
    br = bridge(dry_run=True)
    ros(reach_policy(), br, robot)
    listen = Listener(ros)
    wait_until(lambda: listen.estatus, 10, "episode status")
    assert listen.command(R.START, task="box_to_plate").accepted
    wait_until(lambda: br.core.counts["dry_run"] > 20, 10, "dry-run commands")
    assert robot.commands == [] and robot.gripper == []
    assert listen.estatus[-1].dry_run


def _random_chunk(rng: np.random.Generator, now: float, q: np.ndarray) -> ActionChunk:
    kind = rng.choice(["good", "nan", "inf", "huge", "out", "stale", "future", "shape"])
    t = int(rng.integers(1, 20))
    a = q + rng.normal(0, 0.05, (t, 8))
    a[:, 7] = rng.uniform(-1, 1, t)
    stamp, d = now - rng.uniform(0, 0.05), 8
    if kind == "nan":
        a[rng.integers(t), rng.integers(8)] = np.nan
    elif kind == "inf":
        a[rng.integers(t), rng.integers(8)] = rng.choice([np.inf, -np.inf])
    elif kind == "huge":
        a[rng.integers(t)] = rng.choice([-1, 1]) * 1e300
    elif kind == "out":
        a[:, :7] += rng.choice([-1, 1], 7) * rng.uniform(0.1, 5.0, 7)  # some just outside (clamped), some far
    elif kind == "stale":
        stamp = now - rng.uniform(0.6, 5.0)
    elif kind == "future":
        stamp = now + rng.uniform(0.1, 2.0)
    elif kind == "shape":
        d = int(rng.choice([7, 9]))
        a = np.resize(a, (t, d))
    msg = ActionChunk(horizon=t, action_dim=d, dt=0.05, action_space="joint_position",
                      action_names=[f"a{i}" for i in range(d)], data=a.reshape(-1).tolist())
    msg.observation_stamp = conv.to_time(stamp)
    return msg


def test_no_random_chunk_reaches_the_command_topic_outside_the_limits(ros) -> None:
    robot = KinematicRobot([CAM], rate_hz=100.0)
    br = bridge(chunk_timeout_s=30.0, max_episode_s=60.0, policy=False)  # the test is the policy
    ros(br, robot)
    listen = Listener(ros)
    pub = listen.node.create_publisher(ActionChunk, "/roboalign/action_chunk", 100)
    wait_until(lambda: listen.estatus, 10, "episode status")
    assert listen.command(R.START, task="shelf_to_tray").accepted
    wait_until(lambda: listen.phase() == EpisodeStatus.PHASE_RUNNING, 5, "RUNNING")
    rng = np.random.default_rng(1234)
    for _ in range(400):
        now = listen.node.get_clock().now().nanoseconds * 1e-9
        pub.publish(_random_chunk(rng, now, np.r_[robot.q, 0.0]))
        time.sleep(0.005)
    time.sleep(0.3)
    assert listen.phase() == EpisodeStatus.PHASE_RUNNING, listen.estatus[-1].message
    pts = robot.command_points()
    assert len(pts) > 100
    assert np.all(np.isfinite(pts))
    assert np.all(pts >= np.array(FR3_LIMITS.lower)) and np.all(pts <= np.array(FR3_LIMITS.upper))
    bound = np.minimum(0.05, 0.5 * np.array(FR3_LIMITS.velocity) * 3 * 0.02) + 1e-9
    assert robot.max_step_violation(bound, 0.02) <= 1e-9
    first = np.array([c[2][0] for c in sorted(robot.commands, key=lambda c: c[1])])
    assert np.ptp(first, axis=0).max() > 0.01, "good chunks must have moved the robot (else the test proves nothing)"
    assert br.core.counts["chunks_rejected"] > 100 and br.core.ctrl.chunks_accepted > 20
    assert np.all(np.abs(np.array(robot.gripper)) <= 1.0)


class ScriptedOperator:
    """The human at the real robot (the boundary we cannot run here): answers prompts from a script and
    presses Enter to stop the second trial early."""

    def __init__(self, verdicts: list[str]) -> None:
        self.verdicts, self.prompts, self._polls = list(verdicts), [], 0

    def ask(self, prompt: str) -> str:
        self.prompts.append(prompt)
        self._polls = 0
        return self.verdicts.pop(0) if "success?" in prompt else ""

    def pressed(self) -> bool:
        self._polls += 1  # poll 1 clears old keystrokes at the start of an episode; poll 2 is during it
        return len(self.verdicts) == 4 and self._polls == 2  # Enter during the second trial


def test_real_mode_trials_ask_the_operator_and_write_the_table(ros, tmp_path) -> None:
    from roboalign.commands.trials import RESULTS_MD, read_trials, run_trials
    from roboalign.spec.tasks import DEFAULT_TASKS
    from roboalign_policy.tools.operator_client import OperatorClient

    ros(reach_policy(), bridge(max_episode_s=1.0, task_domain="real"), KinematicRobot([CAM]))
    client = OperatorClient()
    try:
        client.wait_for_status(timeout=10.0)
        operator = ScriptedOperator(["y", "n", "s", "y", "y"])
        summary = run_trials(client, [DEFAULT_TASKS.get("bottle_to_basket")], "real", 1, tmp_path, "reach",
                             timeout=30.0, echo=lambda s: None, console=operator)
    finally:
        client.close()
    trials = read_trials(tmp_path)
    assert [(t.object, t.success) for t in trials] == [
        ("ketchup", True), ("bbq sauce", False), ("mustard", True)]  # salad dressing was skipped (s)
    assert trials[0].outcome == "operator:y (timeout)" and trials[1].outcome == "operator:n (stopped)"
    assert trials[0].instruction == "put the ketchup in the basket"
    assert sum("set up bottle_to_basket" in p for p in operator.prompts) == 4
    total = next(r for r in summary if r["object"] == "all")
    assert (total["successes"], total["trials"]) == (2, 3)
    assert "| real | bottle_to_basket | **all** | 66.7 (2/3) |" in (tmp_path / RESULTS_MD).read_text()


def test_camera_node_without_a_camera_stops_at_once_with_a_clear_message() -> None:
    import subprocess
    import sys

    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "roboalign_policy.camera_node", "--ros-args", "-p",
                          "camera_name:=wrist"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert ("no RealSense device found" in out.stderr or "pyrealsense2 is not installed" in out.stderr), out.stderr
    assert time.monotonic() - t0 < 15  # the device list is checked first: no 15 s pipeline.start() timeout


def test_sim_robot_trajectory_interpolation_matches_the_controller_semantics() -> None:
    from roboalign_policy.sim_robot_node import interpolate, to_jsonable

    start = np.zeros(2)
    times, pts = np.array([0.05, 0.10]), np.array([[1.0, -1.0], [2.0, -2.0]])
    np.testing.assert_allclose(interpolate(times, pts, start, 0.025), [0.5, -0.5])  # from the start pose
    np.testing.assert_allclose(interpolate(times, pts, start, 0.075), [1.5, -1.5])
    np.testing.assert_allclose(interpolate(times, pts, start, 3.0), [2.0, -2.0])  # held at the end
    assert to_jsonable({"a": np.arange(2), "b": np.float32(1.5), "c": {"d": (np.int64(3),)}}) == \
        {"a": [0, 1], "b": 1.5, "c": {"d": [3]}}
