"""The bench's robot stand-in: a stiff position-controlled FR3 (it is where the bridge's last command put it)
publishing /joint_states at 100 Hz and taking the bridge's commands, each with its DDS reception stamp.

    python -m roboalign_policy.tools.bench_robot RESULTS.json [--cpus 0 ...]

Run as a process of its own by ``roboalign bench ros``, as a robot's controller is (ros2_control, franka_ros2)
rather than a thread of the camera driver: sharing one process with 2 x 640x480 x 30 Hz camera publication put
the camera thread's CPU bursts into the command reception stamps. ``StandInRobot`` also runs inside a test's
process (``bench_probe.Probe`` with ``robot: true``). On SIGINT / SIGTERM the process writes what it recorded.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from roboalign.spec.action_space import FR3_HOME, FR3_JOINT_NAMES
from roboalign_policy import conversions as conv
from roboalign_policy import qos as q
from roboalign_policy.node_runner import make_realtime

FINGERS = ("fr3_finger_joint1", "fr3_finger_joint2")


class StandInRobot:
    """Joint states out at ``rate_hz`` from its own thread on absolute deadlines; commands in (recorded)."""

    def __init__(self, node: Any, rate_hz: float = 100.0) -> None:
        from sensor_msgs.msg import JointState
        from trajectory_msgs.msg import JointTrajectory

        self.node, self.period = node, 1.0 / rate_hz
        self.q = np.array(FR3_HOME, dtype=np.float64)
        self.rec: dict[str, list[float]] = {"cmd_times": [], "cmd_sent": [], "cmd_stamps": []}
        self.lock = threading.Lock()
        self._js = node.create_publisher(JointState, q.JOINT_STATES, q.SENSOR)
        node.create_subscription(JointTrajectory, q.COMMAND, self._on_cmd, 50)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench_robot_states", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        deadline = time.monotonic()
        while not self._stop.is_set():
            self._publish_state()
            deadline = max(deadline + self.period, time.monotonic() - self.period)  # no burst after a stall
            self._stop.wait(max(0.0, deadline - time.monotonic()))

    def _publish_state(self) -> None:
        with self.lock:
            pos = np.r_[self.q, 0.04, 0.04]
        stamp = self.node.get_clock().now().to_msg()
        self._js.publish(conv.joint_state([*FR3_JOINT_NAMES, *FINGERS], pos, stamp))

    def _on_cmd(self, msg: Any, info: Any) -> None:
        _, pos = conv.trajectory_rows(msg, list(FR3_JOINT_NAMES))
        with self.lock:
            self.rec["cmd_times"].append(info["received_timestamp"] * 1e-9)
            self.rec["cmd_sent"].append(info["source_timestamp"] * 1e-9)  # the bridge's write() time
            self.rec["cmd_stamps"].append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
            self.q = pos[0]

    def clear(self) -> None:
        with self.lock:
            for v in self.rec.values():
                v.clear()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)


def between(rec: dict[str, list[float]], t0: float, t1: float) -> dict[str, list[float]]:
    """The commands received in [t0, t1] (wall-clock seconds, DDS' clock)."""
    keep = [i for i, t in enumerate(rec["cmd_times"]) if t0 <= t <= t1]
    return {k: [v[i] for i in keep] for k, v in rec.items()}


def receive_threads_realtime(priority: int) -> str | None:
    """SCHED_FIFO ``priority`` for this process's DDS receive threads (FastDDS names them ``dds.shm.<port>`` /
    ``dds.udp.<port>``; C++ threads that stamp a message's arrival, never holding the GIL), as a robot
    controller's are on a real-time kernel; returns why not, or None. 0: leave them as they are."""
    tids = [int(t.name) for t in Path("/proc/self/task").iterdir()
            if (t / "comm").read_text().startswith(("dds.shm.", "dds.udp."))]
    if priority > 0 and not tids:
        return "no FastDDS receive threads found (another RMW?): receiving at normal priority"
    return next((why for tid in tids if (why := make_realtime(priority, tid))), None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m roboalign_policy.tools.bench_robot", description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path)
    p.add_argument("--cpus", type=int, nargs="*", default=[])
    p.add_argument("--priority", type=int, default=0, help="SCHED_FIFO priority of the DDS receive threads (0: none)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from roboalign_policy.node_runner import pin_process, use_dds_profile

    use_dds_profile()  # the same transports as every other process of the stack
    rclpy.init()
    node = rclpy.create_node("bench_robot")
    robot = StandInRobot(node)
    for why in (pin_process(args.cpus), receive_threads_realtime(args.priority)):
        if why:
            print(f"bench_robot: {why}", file=sys.stderr)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    while not stop.is_set():
        ex.spin_once(timeout_sec=0.1)
    robot.stop()
    with robot.lock:
        args.results.write_text(json.dumps(robot.rec))
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
