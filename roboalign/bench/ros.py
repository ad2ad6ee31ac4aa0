"""``roboalign bench ros``: what the ROS layer costs on top of the model, and how steady the command stream is.

    roboalign bench ros [--seconds 20] [--backend onnxruntime|reach] [--image-size 128] [--out runs/bench_ros]

Starts policy_node and bridge_node as separate processes (as deployed) and, in this process, a robot node
publishing two rgb8 cameras at 30 Hz and /joint_states at 100 Hz and taking the bridge's commands. The
policy runs the tiny exported VLA on ONNX Runtime (built once; ``--backend reach`` measures with a
trivial policy instead), the bridge runs an episode at 50 Hz. With ``--pin auto`` (the default on 2+ CPUs)
the policy node runs on the last CPU and the bridge and the robot on the others, set through the nodes'
``cpu_affinity`` parameter (inference kept off the control path's cores, as one configures a robot PC);
``--pin none`` leaves everything to the scheduler. Measured, in one run:

Arrival times are the DDS reception timestamps (``MessageInfo.received_timestamp``), so the probe's own
Python executor does not add to what is measured (a C++ ros2_control controller would see these).

- overhead: camera image published -> the policy's JointTrajectory for that image received, minus the
  policy's own time (``ActionChunk.preprocess_ms + model_latency_ms`` = all of ``Policy.act``). So it is
  two DDS hops, image decoding, observation assembly and message building, all in Python.
- jitter: |period - 20 ms| of the bridge's 50 Hz JointTrajectory stream, received here, while the policy
  process is running inference (also reported at the sender, from the header stamps, which the bridge puts
  on its 1/rate deadline grid, and as the delivery time header stamp -> reception here, which says whether
  the tail is the bridge or the way to this process). The bridge's control thread runs at SCHED_FIFO
  ``--realtime-priority`` (as configured for the real robot) when permitted.

Final line: ``ros: overhead_ms_median=<m> overhead_ms_p99=<p> cmd_period_jitter_ms_p99=<j>``
(targets: median <= 3 ms, p99 <= 10 ms, jitter p99 <= 2 ms). Writes ``ros.json`` and ``ros.png``.
The ROS client code is imported only when this runs (the core never imports rclpy).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

CAMS = ("/camera/agentview/color/image_raw", "/camera/wrist/color/image_raw")
TARGETS = {"overhead_ms_median": 3.0, "overhead_ms_p99": 10.0, "cmd_period_jitter_ms_p99": 2.0}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="roboalign bench ros", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="measurement time")
    p.add_argument("--backend", choices=("onnxruntime", "reach"), default="onnxruntime")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--rate", type=float, default=10.0, help="policy inference rate [Hz]")
    p.add_argument("--realtime-priority", type=int, default=50,
                   help="bridge control thread SCHED_FIFO priority (0: normal scheduling)")
    p.add_argument("--pin", choices=("auto", "none"), default="auto",
                   help="auto (2+ CPUs): the policy node on the last CPU, the bridge and the robot on the others "
                        "(the nodes' cpu_affinity parameter: inference off the control path's cores); none: "
                        "let the scheduler place everything")
    p.add_argument("--out", default="runs/bench_ros")
    p.add_argument("--tiny-cache", default=str(Path.home() / ".cache" / "roboalign" / "tiny_joint_vla"))
    return p


def _node_cmd(executable: str, params: dict[str, Any]) -> list[str]:
    from roboalign_policy.graph import ros_value

    cmd = [sys.executable, "-m", f"roboalign_policy.{executable}", "--ros-args"]
    for k, v in params.items():
        if isinstance(v, list) and not v:  # an empty list has no type on the command line: keep the default
            continue
        cmd += ["-p", f"{k}:={ros_value(v)}"]
    return cmd


def _cpu_split(pin: str) -> tuple[list[int], list[int]]:
    """(policy CPUs, control-path CPUs) for ``--pin``; empty lists: no pinning."""
    cpus = sorted(os.sched_getaffinity(0))
    if pin == "none" or len(cpus) < 2:
        return [], []
    return cpus[-1:], cpus[:-1]


def _policy_params(args: argparse.Namespace) -> dict[str, Any]:
    base = {"camera_names": ["agentview", "wrist"], "camera_topics": list(CAMS),
            "max_inference_rate_hz": args.rate, "max_image_age_s": 0.2, "cpu_affinity": args.policy_cpus}
    if args.backend == "reach":
        goal = [0.3, -0.5, 0.0, -2.0, 0.0, 1.8, 0.8]
        return {**base, "backend": "reach", "backend_options": json.dumps({"goal": goal, "speed": 0.05})}
    from roboalign.control.tiny_model import ensure_tiny_export

    export = ensure_tiny_export(args.tiny_cache)
    opts = {"providers": ["cpu"], "action_space": "joint_position", "cameras": ["agentview", "wrist"],
            "num_threads": 1}
    return {**base, "backend": "onnxruntime", "checkpoint": str(export), "backend_options": json.dumps(opts)}


class Probe:
    """The bench's robot: cameras + joint states out, commands in; records every timing it needs."""

    def __init__(self, image_size: int) -> None:
        import rclpy
        from rclpy.qos import qos_profile_sensor_data
        from roboalign_msgs.msg import ActionChunk
        from roboalign_policy import conversions as conv
        from sensor_msgs.msg import Image, JointState
        from trajectory_msgs.msg import JointTrajectory

        self.conv = conv
        self.node = rclpy.create_node("bench_ros_probe")
        self.q = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
        self.img = np.random.default_rng(0).integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
        self.published: dict[int, float] = {}  # image stamp ns -> wall time at publish [s]
        self.policy_traj: dict[int, float] = {}  # header stamp ns -> DDS reception time [s]
        self.chunks: dict[int, float] = {}  # observation stamp ns -> policy time (ms)
        self.cmd_times: list[float] = []
        self.cmd_stamps: list[float] = []
        self.lock = threading.Lock()
        n = self.node
        self.cams = [n.create_publisher(Image, t, qos_profile_sensor_data) for t in CAMS]
        self.js = n.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)
        n.create_subscription(JointTrajectory, "/roboalign/policy/joint_trajectory", self._on_policy_traj, 50)
        n.create_subscription(ActionChunk, "/roboalign/action_chunk", self._on_chunk, 50)
        n.create_subscription(JointTrajectory, "/fr3_arm_controller/joint_trajectory", self._on_cmd, 50)
        # The robot's sensors publish from their own thread on absolute deadlines, as a camera driver does,
        # not from this process's executor timers.
        self._stop = threading.Event()
        self._sensor_thread = threading.Thread(target=self._sensor_loop, name="bench_sensors", daemon=True)
        self._sensor_thread.start()

    def _sensor_loop(self) -> None:
        """30 Hz images and 100 Hz joint states, each on its own absolute schedule."""
        period_img, period_js = 1 / 30, 1 / 100
        next_img = next_js = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_js:
                self._publish_state()
                next_js = max(next_js + period_js, now - period_js)  # no burst after a stall
            if now >= next_img:
                self._publish_images()
                next_img = max(next_img + period_img, now - period_img)
            self._stop.wait(max(0.0, min(next_js, next_img) - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._sensor_thread.join(timeout=2.0)

    def _stamp_ns(self, t) -> int:
        return t.sec * 1_000_000_000 + t.nanosec

    def _publish_images(self) -> None:
        stamp = self.node.get_clock().now().to_msg()
        msgs = [self.conv.rgb_to_image(self.img, stamp, f"cam{i}_color_optical_frame") for i in range(2)]
        for pub, m in zip(reversed(self.cams), reversed(msgs), strict=True):  # the first camera triggers: last
            t = time.time_ns() * 1e-9  # the clock of DDS' timestamps
            pub.publish(m)
        with self.lock:
            self.published[self._stamp_ns(stamp)] = t

    def _publish_state(self) -> None:
        names = [f"fr3_joint{i}" for i in range(1, 8)] + ["fr3_finger_joint1", "fr3_finger_joint2"]
        self.js.publish(self.conv.joint_state(names, np.r_[self.q, 0.04, 0.04], self.node.get_clock().now().to_msg()))

    def _on_policy_traj(self, msg, info) -> None:
        t = info["received_timestamp"] * 1e-9  # taken by DDS on arrival: no Python executor delay in it
        with self.lock:
            self.policy_traj[self._stamp_ns(msg.header.stamp)] = t

    def _on_chunk(self, msg) -> None:
        with self.lock:
            self.chunks[self._stamp_ns(msg.observation_stamp)] = float(msg.preprocess_ms + msg.model_latency_ms)
            self.dt_ns = int(round(msg.dt * 1e9))

    def _on_cmd(self, msg, info) -> None:
        t = info["received_timestamp"] * 1e-9
        _, pos = self.conv.trajectory_rows(msg, [f"fr3_joint{i}" for i in range(1, 8)])
        with self.lock:
            self.cmd_times.append(t)
            self.cmd_stamps.append(self._stamp_ns(msg.header.stamp) * 1e-9)
            self.q = pos[0]

    def overheads_ms(self) -> tuple[np.ndarray, np.ndarray]:
        """(overhead per matched image, policy time per matched image) in ms."""
        def nearest(table: dict[int, float], key: int) -> float | None:
            """Value at the stamp nearest to ``key`` within 2 us (stamps pass through float seconds)."""
            keys = np.fromiter(table, dtype=np.int64)
            if not len(keys):
                return None
            i = int(np.argmin(np.abs(keys - key)))
            return table[int(keys[i])] if abs(int(keys[i]) - key) <= 2_000 else None

        with self.lock:
            over, model = [], []
            for obs_ns, policy_ms in self.chunks.items():
                sent = nearest(self.published, obs_ns)
                got = nearest(self.policy_traj, obs_ns + self.dt_ns)  # the trajectory starts at obs + dt
                if sent is None or got is None:
                    continue
                over.append((got - sent) * 1e3 - policy_ms)
                model.append(policy_ms)
        return np.array(over), np.array(model)


def _plot(over: np.ndarray, periods_ms: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    ax[0].hist(over, bins=40)
    ax[0].axvline(np.median(over), color="k", ls="--", label=f"median {np.median(over):.2f} ms")
    ax[0].set_xlabel("image in -> JointTrajectory out, minus Policy.act (ms)")
    ax[0].legend()
    ax[1].hist(periods_ms, bins=60)
    ax[1].axvline(20.0, color="k", ls="--", label="20 ms (50 Hz)")
    ax[1].set_xlabel("bridge command period (ms)")
    ax[1].legend()
    fig.suptitle("roboalign bench ros")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from roboalign_policy.operator_client import OperatorClient

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.policy_cpus, args.control_cpus = _cpu_split(args.pin)  # before this process pins itself
    domain = os.environ.get("ROS_DOMAIN_ID") or str(150 + os.getpid() % 80)  # keep other stacks out
    env = {**os.environ, "ROS_DOMAIN_ID": domain, "OMP_NUM_THREADS": "1"}
    os.environ["ROS_DOMAIN_ID"] = domain
    bridge = {"dry_run": False, "home_first": False, "control_rate_hz": 50.0, "camera_topics": list(CAMS),
              "max_episode_s": 3600.0, "chunk_timeout_s": 2.0, "task_domain": "real",
              "state_timeout_s": 1.0, "image_timeout_s": 1.0,  # the probe is Python at normal priority
              "realtime_priority": args.realtime_priority, "cpu_affinity": args.control_cpus}
    procs = [subprocess.Popen(_node_cmd("policy_node", _policy_params(args)), env=env,
                              stdout=open(out / "policy_node.log", "w"), stderr=subprocess.STDOUT),  # noqa: SIM115
             subprocess.Popen(_node_cmd("bridge_node", bridge), env=env,
                              stdout=open(out / "bridge_node.log", "w"), stderr=subprocess.STDOUT)]  # noqa: SIM115
    rclpy.init()
    probe = Probe(args.image_size)
    from roboalign_policy.node_runner import pin_process

    all_cpus = sorted(os.sched_getaffinity(0))
    why = pin_process(args.control_cpus)  # the robot sits on the control path's cores (undone at the end)
    if why:
        print(f"bench ros: {why}", file=sys.stderr)
    # Single-threaded on purpose: rclpy's MultiThreadedExecutor hands a ready callback to a worker and waits
    # again at once; while the worker has not taken the message yet (or the callback group is busy), the wait
    # returns immediately, and that loop held this process's GIL for ~1 s at a time (measured with py-spy:
    # one spin thread at 90-100 % CPU, the sensor thread starved, the bridge faulting on stale images).
    ex = SingleThreadedExecutor()
    ex.add_node(probe.node)
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    client = OperatorClient(joint_states_topic="")  # the probe is the robot: no 100 Hz joint states here
    try:
        client.wait_for_bridge(60.0)
        deadline = time.monotonic() + 120.0
        while not probe.chunks and time.monotonic() < deadline:  # policy loaded and running
            if client.wait_for_status(timeout=1.0) and client.status.phase != "running":
                client.command("start", task="bottle_to_basket")
            time.sleep(0.1)  # wait_for_status returns at once once a status is there: no busy loop
            for p in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a node exited (code {p.returncode}); see the logs in {out}")
        if not probe.chunks:
            raise RuntimeError(f"no chunks from the policy within 120 s; see {out / 'policy_node.log'}")
        time.sleep(1.0)  # warm-up, then measure
        with probe.lock:
            for table in (probe.published, probe.policy_traj, probe.chunks, probe.cmd_times, probe.cmd_stamps):
                table.clear()
        from tqdm import tqdm

        for _ in tqdm(range(int(args.seconds)), desc="bench ros", leave=False):
            time.sleep(1.0)
        final = client.wait_for_status(timeout=1.0)
        if final is None or final.phase != "running":
            raise RuntimeError(f"the bridge left the running phase: {final}")
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
        pin_process(all_cpus)
    over, model = probe.overheads_ms()
    periods = np.diff(np.asarray(probe.cmd_times)) * 1e3
    if len(over) < 10 or len(periods) < 50:
        raise RuntimeError(f"too few samples ({len(over)} chunks, {len(periods)} commands); see {out}")
    jitter = np.abs(periods - 20.0)
    sent = np.abs(np.diff(np.sort(np.asarray(probe.cmd_stamps))) * 1e3 - 20.0)  # at the bridge (header stamps)
    # where the receive-side jitter comes from: header stamp (taken at the tick) -> DDS reception here
    delivery = (np.asarray(probe.cmd_times) - np.asarray(probe.cmd_stamps)) * 1e3
    res = {"overhead_ms_median": float(np.median(over)), "overhead_ms_p99": float(np.percentile(over, 99)),
           "cmd_period_jitter_ms_p99": float(np.percentile(jitter, 99)),
           "cmd_stamp_jitter_ms_p99": float(np.percentile(sent, 99)), "realtime_priority": args.realtime_priority,
           "pin": args.pin, "policy_cpus": args.policy_cpus, "control_cpus": args.control_cpus,
           "cmd_delivery_ms_median": float(np.median(delivery)), "cmd_delivery_ms_p99": float(np.percentile(delivery, 99)),
           "load_avg_1min": os.getloadavg()[0], "cpus": os.cpu_count(),
           "cmd_period_ms_median": float(np.median(periods)), "cmd_period_ms_max": float(periods.max()),
           "policy_ms_median": float(np.median(model)), "chunks": int(len(over)), "commands": int(len(periods) + 1),
           "backend": args.backend, "image_size": args.image_size, "seconds": args.seconds, "targets": TARGETS}
    (out / "ros.json").write_text(json.dumps(res, indent=2))
    _plot(over, periods, out / "ros.png")
    return res


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        r = run(args)
    except RuntimeError as e:
        print(f"bench ros: error: {e}", file=sys.stderr)
        return 1
    print(f"policy ({args.backend}) median {r['policy_ms_median']:.1f} ms per chunk over {r['chunks']} chunks; "
          f"bridge command period median {r['cmd_period_ms_median']:.2f} ms, max {r['cmd_period_ms_max']:.1f} ms "
          f"over {r['commands']} commands (jitter p99 at the sender {r['cmd_stamp_jitter_ms_p99']:.2f} ms; tick stamp "
          f"-> reception here median {r['cmd_delivery_ms_median']:.2f} ms, p99 {r['cmd_delivery_ms_p99']:.2f} ms); "
          f"load average {r['load_avg_1min']:.1f} on {r['cpus']} CPUs; policy on CPUs {r['policy_cpus'] or 'any'}, "
          f"bridge + robot on {r['control_cpus'] or 'any'}; targets {TARGETS}; "
          f"plot {Path(args.out) / 'ros.png'}")
    print(f"ros: overhead_ms_median={r['overhead_ms_median']:.2f} overhead_ms_p99={r['overhead_ms_p99']:.2f} "
          f"cmd_period_jitter_ms_p99={r['cmd_period_jitter_ms_p99']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
