"""Recorded episode folders written without ROS (rosbags + its Jazzy types), laid out as the bridge's
``BagRecorder`` writes them: ``<folder>/bag/`` (MCAP) + ``episode.json``. The robot follows a known joint path so a
test can check every aligned value."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

JOINTS = tuple(f"fr3_joint{i}" for i in range(1, 8))
CAM_TOPIC = "/camera/{}/color/image_raw"


def q_at(t: float) -> np.ndarray:
    """Joint positions of the synthetic robot at time t [s] (7,)."""
    return 0.1 * np.arange(1, 8) + 0.2 * np.sin(t + np.arange(7))


def frame_at(k: int, size: int = 16) -> np.ndarray:
    """The camera image of control tick k: a colour that encodes k (so alignment errors are visible)."""
    img = np.zeros((size, size, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = (5 * k) % 256, (3 * k + 7) % 256, 200
    return img


def _store():
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    msg = Path(__file__).resolve().parents[1] / "ros2_ws/src/roboalign_msgs/msg/EpisodeStatus.msg"
    store.register(get_types_from_msg(msg.read_text(), "roboalign_msgs/msg/EpisodeStatus"))
    return store


Message = tuple[float, str, str, object]  # (time [s], topic, message type, message)


class _Clock:
    """The episode's stamps: ``back_at`` [s after t0] makes every stamp from then on 5 s earlier."""

    def __init__(self, types, t0: float, back_at: float | None) -> None:
        self.T, self.t0, self.back_at = types, t0, back_at

    def ns(self, t: float) -> int:
        if self.back_at is not None and t - self.t0 >= self.back_at:
            t -= 5.0
        return int(round(t * 1e9))

    def header(self, t: float):
        ns = self.ns(t)
        stamp = self.T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9)
        return self.T["std_msgs/msg/Header"](stamp=stamp, frame_id="")


def _sensor_messages(clock: _Clock, k: int, dt: float, steps: int, cameras: tuple[str, ...],
                     homing_ticks: int | None) -> list[Message]:
    """Tick k's joint state (fingers open for the first half), camera frames and, with ``homing_ticks``, the
    bridge's EpisodeStatus (HOMING, then RUNNING, STOPPED at the end)."""
    T, t = clock.T, clock.t0 + k * dt
    width = 0.08 if k < steps // 2 else 0.02
    out: list[Message] = [(t, "/joint_states", "sensor_msgs/msg/JointState", T["sensor_msgs/msg/JointState"](
        header=clock.header(t), name=[*JOINTS, "fr3_finger_joint1", "fr3_finger_joint2"],
        position=np.r_[q_at(k * dt), width / 2, width / 2], velocity=np.zeros(9), effort=np.zeros(0)))]
    for cam in cameras:
        img = frame_at(k)
        out.append((t + 0.001, CAM_TOPIC.format(cam), "sensor_msgs/msg/Image", T["sensor_msgs/msg/Image"](
            header=clock.header(t), height=img.shape[0], width=img.shape[1], encoding="rgb8", is_bigendian=0,
            step=img.shape[1] * 3, data=img.reshape(-1))))
    if homing_ticks is not None:
        phase = 1 if k < homing_ticks else 2 if k < steps else 6
        out.append((t + 0.0005, "/roboalign/episode_status", "roboalign_msgs/msg/EpisodeStatus",
                    T["roboalign_msgs/msg/EpisodeStatus"](header=clock.header(t + 0.0005), phase=phase, task="",
                                                          instruction="", episode_index=1, steps=k, elapsed_s=0.0,
                                                          dry_run=False, message="", init_state=-1)))
    return out


def _command_messages(clock: _Clock, k: int, dt: float, steps: int,
                      gripper_values: tuple[float, float]) -> list[Message]:
    """The bridge's tick k: the trajectory to q(t + dt), q(t + 2 dt); the gripper closes halfway."""
    T, t = clock.T, clock.t0 + k * dt
    pts = [T["trajectory_msgs/msg/JointTrajectoryPoint"](
        positions=q_at((k + j) * dt), velocities=np.zeros(0), accelerations=np.zeros(0), effort=np.zeros(0),
        time_from_start=T["builtin_interfaces/msg/Duration"](sec=0, nanosec=int(j * dt * 1e9)))
        for j in (1, 2)]
    g = gripper_values[0] if k < steps // 2 - 1 else gripper_values[1]  # controller units
    layout = T["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
    return [(t + 0.002, "/fr3_arm_controller/joint_trajectory", "trajectory_msgs/msg/JointTrajectory",
             T["trajectory_msgs/msg/JointTrajectory"](header=clock.header(t), joint_names=list(JOINTS), points=pts)),
            (t + 0.002, "/fr3_gripper/commands", "std_msgs/msg/Float64MultiArray",
             T["std_msgs/msg/Float64MultiArray"](layout=layout, data=np.array([g])))]


def _write_mcap(bag: Path, store, msgs: list[tuple[int, str, str, object]]) -> None:
    """Write (stamp [ns], topic, type, message) in the given order into a rosbag2 MCAP folder."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {}
        for ns, topic, msgtype, msg in msgs:
            if topic not in conns:
                conns[topic] = w.add_connection(topic, msgtype, typestore=store)
            w.write(conns[topic], ns, store.serialize_cdr(msg, msgtype))


def write_bag_episode(folder: Path, steps: int = 40, fps: float = 20.0, cameras: tuple[str, ...] = ("agentview", "wrist"),
                      outcome: str = "success", stall: tuple[str, float, float] | None = None,
                      clock_back_at: float | None = None, drop_topics: tuple[str, ...] = (),
                      gripper_values: tuple[float, float] = (-1.0, 1.0), homing_ticks: int | None = None) -> Path:
    """Write an episode of ``steps`` control ticks. ``stall`` = (topic, from_s, to_s) drops that topic's
    messages in the window; ``clock_back_at`` makes every stamp after that time 5 s earlier; ``homing_ticks``
    records the bridge's EpisodeStatus: HOMING for that many ticks, then RUNNING, STOPPED at the end."""
    store = _store()
    clock, dt = _Clock(store.types, 100.0, clock_back_at), 1.0 / fps
    msgs = []
    for k in range(steps + 1):
        tick = _sensor_messages(clock, k, dt, steps, cameras, homing_ticks)
        tick += _command_messages(clock, k, dt, steps, gripper_values) if k < steps else []
        msgs += [(clock.ns(t), topic, msgtype, msg) for t, topic, msgtype, msg in tick
                 if topic not in drop_topics and not (stall and stall[0] == topic and stall[1] <= t - clock.t0 < stall[2])]
    folder.mkdir(parents=True, exist_ok=True)
    _write_mcap(folder / "bag", store, msgs if clock_back_at is not None else sorted(msgs, key=lambda m: m[0]))
    (folder / "episode.json").write_text(json.dumps({
        "episode": 1, "task": "bottle_to_basket", "instruction": "put the ketchup in the basket", "outcome": outcome,
        "message": "", "bag": "bag", "info": {"control_rate_hz": fps, "gripper_open_value": gripper_values[0],
                                              "gripper_closed_value": gripper_values[1],
                                              "camera_topics": [CAM_TOPIC.format(c) for c in cameras]}}))
    return folder


def write_forever(bag: Path, size: int = 96) -> None:
    """Write 20 Hz ticks (joint state + one camera) into ``bag`` until killed; prints each tick written."""
    import sys
    import time

    from rosbags.rosbag2 import StoragePlugin, Writer

    st = _store()
    T = st.types
    w = Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP)
    w.open()
    js = w.add_connection("/joint_states", "sensor_msgs/msg/JointState", typestore=st)
    cam = w.add_connection(CAM_TOPIC.format("wrist"), "sensor_msgs/msg/Image", typestore=st)
    for k in range(10**6):
        ns = 100 * 10**9 + k * 50_000_000
        hdr = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9),
                                       frame_id="")
        m = T["sensor_msgs/msg/JointState"](header=hdr, name=list(JOINTS), position=q_at(k * 0.05),
                                            velocity=np.zeros(7), effort=np.zeros(0))
        w.write(js, ns, st.serialize_cdr(m, "sensor_msgs/msg/JointState"))
        img = np.broadcast_to(frame_at(k, 1), (size, size, 3)).copy()
        m = T["sensor_msgs/msg/Image"](header=hdr, height=size, width=size, encoding="rgb8", is_bigendian=0,
                                       step=size * 3, data=img.reshape(-1))
        w.write(cam, ns, st.serialize_cdr(m, "sensor_msgs/msg/Image"))
        print(k, flush=True)
        sys.stdout.flush()
        time.sleep(0.002)


if __name__ == "__main__":
    import sys

    write_forever(Path(sys.argv[1]))
