"""The ROS side of ``roboalign bench ros``: the robot and the cameras, the node processes, the raw timings.

    python -m roboalign_policy.tools.bench_probe CONFIG.json RESULTS.json

Started by ``roboalign/bench/ros.py`` (the core never imports rclpy), which writes CONFIG (node parameters,
image size, cameras, rate, seconds) and turns RESULTS into figures. This process starts policy_node and
bridge_node as processes (as deployed), is the robot (N rgb8 cameras at ``fps`` from their own thread on
absolute deadlines, as a camera driver, optionally also as JPEG on ``<topic>/compressed``; /joint_states at
100 Hz; the bridge's commands taken), runs an operator episode, restarts it after a fault (counted), and
records with DDS reception stamps (``MessageInfo.received_timestamp``, so this process's own executor adds
nothing): each image publication, each policy JointTrajectory, each chunk's policy time, each bridge command,
the policy's per-camera receive rates (PolicyStatus) and every fault.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from roboalign_policy import qos as q
from roboalign_policy.graph import ros_value
from roboalign_policy.tools.bench_robot import StandInRobot, between


def node_cmd(executable: str, params: dict[str, Any]) -> list[str]:
    cmd = [sys.executable, "-m", f"roboalign_policy.{executable}", "--ros-args"]
    for k, v in params.items():
        if isinstance(v, list) and not v:  # an empty list has no type on the command line: keep the default
            continue
        cmd += ["-p", f"{k}:={ros_value(v)}"]
    return cmd


def camera_image(width: int, height: int) -> np.ndarray:
    """A smooth gradient with mild noise: JPEG sizes like a camera's scene (white noise would not compress)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height) + 64], axis=2)
    return np.clip(base + rng.integers(-6, 7, base.shape), 0, 255).astype(np.uint8)


class Probe:
    """The bench's robot: cameras + joint states out, commands in; records every timing it needs."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        import rclpy
        from roboalign_msgs.msg import ActionChunk, EpisodeStatus, PolicyStatus
        from sensor_msgs.msg import CompressedImage, Image
        from trajectory_msgs.msg import JointTrajectory

        from roboalign_policy import conversions as conv

        self.node = n = rclpy.create_node("bench_ros_probe")
        # the robot in this process (tests), or in a process of its own (the bench: ``bench_robot``)
        self.robot = StandInRobot(n) if cfg.get("robot", True) else None
        width, height = cfg["image_size"]
        img = camera_image(width, height)
        self.topics = cfg["camera_topics"]
        self.rec: dict[str, list] = {k: [] for k in ("published", "policy_traj", "chunks", "cam_rates", "faults")}
        self.dt_ns = 0
        self.phase = ""
        self.policy_state = -1
        self.lock = threading.Lock()
        profile = q.camera_profile(q.reliability_of(cfg["publisher_qos"]))
        # one message per camera, built once: only the stamp changes per frame (as a driver reuses its buffers)
        self.cams = [(n.create_publisher(Image, t, profile), conv.rgb_to_image(img, None, f"cam{i}_color_optical_frame"))
                     for i, t in enumerate(self.topics)]
        if cfg["compressed"]:
            self.cams += [(n.create_publisher(CompressedImage, q.compressed_topic(t), profile),
                           conv.compressed_image(img, None, f"cam{i}_color_optical_frame"))
                          for i, t in enumerate(self.topics)]
        n.create_subscription(JointTrajectory, q.POLICY_TRAJECTORY, self._on_policy_traj, 50)
        n.create_subscription(ActionChunk, q.ACTION_CHUNK, self._on_chunk, 50)
        n.create_subscription(PolicyStatus, q.POLICY_STATUS, self._on_policy_status, 10)
        n.create_subscription(EpisodeStatus, q.EPISODE_STATUS, self._on_episode, 10)
        self._fps = cfg["fps"]
        self._stop = threading.Event()
        self._camera_thread = threading.Thread(target=self._camera_loop, name="bench_cameras", daemon=True)
        self._camera_thread.start()

    def _camera_loop(self) -> None:
        """Images at ``fps`` on absolute deadlines, as a camera driver."""
        period, deadline = 1 / self._fps, time.monotonic()
        while not self._stop.is_set():
            self._publish_images()
            deadline = max(deadline + period, time.monotonic() - period)  # no burst after a stall
            self._stop.wait(max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._camera_thread.join(timeout=2.0)
        if self.robot is not None:
            self.robot.stop()

    @staticmethod
    def _ns(t) -> int:
        return t.sec * 1_000_000_000 + t.nanosec

    def _publish_images(self) -> None:
        stamp = self.node.get_clock().now().to_msg()
        t = 0.0
        for pub, msg in reversed(self.cams):  # the first camera (raw) triggers the policy: last
            msg.header.stamp = stamp
            t = time.time_ns() * 1e-9  # the clock of DDS' timestamps
            pub.publish(msg)
        with self.lock:
            self.rec["published"].append((self._ns(stamp), t))

    def _on_policy_traj(self, msg, info) -> None:
        with self.lock:
            self.rec["policy_traj"].append((self._ns(msg.header.stamp), info["received_timestamp"] * 1e-9))

    def _on_chunk(self, msg) -> None:
        with self.lock:
            self.rec["chunks"].append((self._ns(msg.observation_stamp), float(msg.preprocess_ms + msg.model_latency_ms)))
            self.dt_ns = int(round(msg.dt * 1e9))

    def _on_policy_status(self, msg) -> None:
        with self.lock:
            self.rec["cam_rates"].append((time.time(), [float(r) for r in msg.camera_rate_hz],
                                          [int(d) for d in msg.camera_drops], [float(x) for x in msg.camera_latency_ms]))
            if msg.state == msg.STATE_FAULT and self.policy_state != msg.STATE_FAULT:  # count entering a fault
                self.rec["faults"].append(f"policy: {msg.message}")
            self.policy_state = msg.state

    def _on_episode(self, msg) -> None:
        from roboalign_msgs.msg import EpisodeStatus

        with self.lock:
            if msg.phase == EpisodeStatus.PHASE_FAULT and self.phase != "fault":
                self.rec["faults"].append(f"bridge: {msg.message}")
            self.phase = "fault" if msg.phase == EpisodeStatus.PHASE_FAULT else str(msg.phase)

    def clear(self) -> None:
        with self.lock:
            for v in self.rec.values():
                v.clear()
        if self.robot is not None:
            self.robot.clear()


def _start(cfg: dict[str, Any], out: Path) -> list[subprocess.Popen]:
    """The robot stand-in (``bench_robot``), policy_node (on the policy host: ``policy_prefix``, e.g.
    ``ip netns exec ...``) and bridge_node."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    robot = [sys.executable, "-m", "roboalign_policy.tools.bench_robot", str(out / "robot.json"),
             "--priority", str(cfg.get("robot_priority", 0)), "--cpus", *map(str, cfg["control_cpus"])]
    cmds = {"robot": robot, "policy_node": [*cfg.get("policy_prefix", []), *node_cmd("policy_node", cfg["policy_node"])],
            "bridge_node": node_cmd("bridge_node", cfg["bridge_node"])}
    return [subprocess.Popen(cmd, env=env, stdout=open(out / f"{name}.log", "w"),  # noqa: SIM115
                             stderr=subprocess.STDOUT) for name, cmd in cmds.items()]


def two_host_env() -> None:
    """Network namespaces on one machine: UDP only (shared memory would bypass the link), discovery beyond
    localhost; every node process inherits it."""
    from roboalign_policy.node_runner import PROFILE_VARS, dds_profile_path

    for var in PROFILE_VARS:
        os.environ[var] = str(dds_profile_path("fastdds_udp.xml"))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SUBNET"


def cpu_s(pid: int) -> float:
    """CPU time (user + system) a process has used so far [s]."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _first_chunks(probe: Probe, client, procs: list[subprocess.Popen], task: str, out: Path) -> None:
    deadline = time.monotonic() + 120.0
    while not probe.rec["chunks"] and time.monotonic() < deadline:  # policy loaded and running
        if client.wait_for_status(timeout=1.0) and client.status.phase != "running":
            client.command("start", task=task)
        time.sleep(0.1)
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"a node exited (code {p.returncode}); see the logs in {out}")
    if not probe.rec["chunks"]:
        raise RuntimeError(f"no chunks from the policy within 120 s; see {out / 'policy_node.log'}")


def _measure(probe: Probe, client, seconds: float, task: str) -> int:
    """Run ``seconds``, restarting the episode after a fault; returns the number of restarts."""

    restarts = 0
    for _ in tqdm(range(int(seconds)), desc="bench ros", leave=False):
        time.sleep(1.0)
        st = client.wait_for_status(timeout=1.0)
        if st is not None and st.phase != "running":  # a fault (counted by the probe) ended it: go on
            client.command("start", task=task)
            restarts += 1
    return restarts


def run(cfg: dict[str, Any]) -> dict[str, Any]:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from roboalign_policy.node_runner import pin_process, use_dds_profile
    from roboalign_policy.tools.operator_client import OperatorClient

    out = Path(cfg["out"])
    if cfg.get("policy_prefix"):
        two_host_env()
    procs = _start(cfg, out)
    use_dds_profile()  # this process is the camera driver: the shared-memory segment must hold a frame
    rclpy.init()
    probe = Probe({**cfg, "robot": False})
    why = pin_process(cfg["control_cpus"])  # the robot sits on the control path's cores
    if why:
        print(f"bench ros: {why}", file=sys.stderr)
    # single-threaded on purpose (see roboalign_policy.executor: rclpy's MultiThreadedExecutor busy-loops)
    ex = SingleThreadedExecutor()
    ex.add_node(probe.node)
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    client = OperatorClient(joint_states_topic="")  # the probe is the robot: no 100 Hz joint states here
    try:
        client.wait_for_bridge(60.0)
        _first_chunks(probe, client, procs, cfg["task"], out)
        time.sleep(2.0)  # warm-up (the policy's 5 s rate window fills meanwhile), then measure
        probe.clear()
        cpu0, t0 = [cpu_s(p.pid) for p in procs], time.time()
        restarts = _measure(probe, client, cfg["seconds"], cfg["task"])
        cpu = {name: cpu_s(p.pid) - c0 for name, p, c0 in zip(("robot", "policy_node", "bridge_node"), procs, cpu0,
                                                                  strict=True)}
        t1 = time.time()
        client.command("stop")
    finally:
        client.close()
        for p in procs:
            p.send_signal(2)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        probe.stop()
        ex.shutdown(timeout_sec=1.0)
        th.join(timeout=5.0)
        probe.node.destroy_node()
        rclpy.try_shutdown()
    with probe.lock:
        rec = {k: list(v) for k, v in probe.rec.items()}
    try:
        robot = between(json.loads((out / "robot.json").read_text()), t0, t1)
    except (OSError, ValueError) as e:
        raise RuntimeError(f"the robot stand-in left no record ({e}); see {out / 'robot.log'}") from None
    return {**rec, **robot, "dt_ns": probe.dt_ns, "restarts": restarts, "cpu_s": cpu}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cfg = json.loads(Path(argv[0]).read_text())
    try:
        res = run(cfg)
    except RuntimeError as e:
        print(f"bench ros: error: {e}", file=sys.stderr)
        return 1
    Path(argv[1]).write_text(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
