"""Record each episode as a rosbag2 (MCAP) with the ``rosbags`` library: replayable with ``ros2 bag play``,
readable without ROS (``rosbags.rosbag2.Reader``) for training or analysis.

One bag folder per episode, ``<record_dir>/episode_<index>_<task>/``, plus ``episode.json`` (task,
instruction, outcome, message, the recorder's pid with its start time and command line, and the node's ``info``)
beside the bag. Topics are recorded as serialized messages straight from DDS (``raw=True``: no decoding cost),
stamped with their DDS reception time; the bridge adds the commands it computed with ``write`` (also in
``dry_run``, where nothing reaches the robot). A fault, an e-stop or a shutdown closes the bag properly, so what
was recorded stays readable; earlier episodes are never touched.

Crash safety: the open bag's chunk is written out every ``flush_s`` seconds, so a SIGKILL (no ``metadata.yaml``,
no MCAP footer, ``episode.json`` still "running") loses at most that much. The next recorder started on the
same folder repairs such episodes (``roboalign.data.bag_salvage.repair_bag``: the complete records are
rewritten as a readable bag, the original kept as ``bag.crashed``) and marks them ``"incomplete"``; the
converter (``roboalign dataset convert``) reads a crashed bag too and never lets it into training unasked.

Nothing here runs on the executor or on the caller's thread: the recorded subscriptions are polled
(``polling.PolledGroup``, a queue of ``depth`` messages each) and a recorder thread takes them every
``period`` s, together with what ``write`` queued, and writes them in time order. So recording neither wakes
the executor for every joint state and image (the wait-set rebuilds that held the GIL, see
``polling``) nor puts serialisation and file I/O into the bridge's control tick.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from ament_index_python.packages import get_package_share_directory
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from roboalign.data.bag_salvage import process_identity, recover_crashed
from roboalign.data.bag_streams import cdr_size
from roboalign_policy.polling import PolledGroup, polled_subscription, take_all

CUSTOM_PACKAGES = ("roboalign_msgs",)


def _typestore():
    store = get_typestore(Stores.ROS2_JAZZY)
    for pkg in CUSTOM_PACKAGES:
        share = Path(get_package_share_directory(pkg))
        types: dict[str, Any] = {}
        for f in sorted((share / "msg").glob("*.msg")):
            types.update(get_types_from_msg(f.read_text(), f"{pkg}/msg/{f.stem}"))
        store.register(types)
    return store


def type_name(msg_class: type) -> str:
    """``sensor_msgs/msg/Image`` for sensor_msgs.msg.Image."""
    return f"{msg_class.__module__.split('.')[0]}/msg/{msg_class.__name__}"


class BagRecorder:
    """Records ``topics`` (name -> message class) of ``node`` into one bag per episode (see the module docstring).

    ``depth`` messages per topic wait between two passes of the recorder thread (every ``period`` s): at
    0.05 s and 32, a 100 Hz topic has 6x headroom; call :meth:`close` when the node shuts down. ``info`` (JSON
    values, e.g. the bridge's control rate and gripper values) goes into every ``episode.json``.
    """

    def __init__(self, node: Node, record_dir: str | Path, topics: dict[str, type], period: float = 0.05,
                 depth: int = 32, info: dict[str, Any] | None = None, flush_s: float = 1.0) -> None:
        self._node = node
        self.root = Path(record_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.recovered = recover_crashed(self.root, node.get_logger())
        self._info = dict(info or {})
        self._flush_s = flush_s
        self._flushed_at = time.monotonic()
        self._store = _typestore()
        self._lock = threading.Lock()
        self._writer: Writer | None = None
        self._conns: dict[str, Any] = {}
        self._types = dict(topics)
        self._meta: dict[str, Any] = {}
        self._begin_ns = 0
        self._ref = (time.time_ns(), self._stamp_ns())  # (system clock, node clock) at the last pass
        self._own: deque[tuple[int, str, Any]] = deque()  # (stamp, topic, message) queued by write()
        self.folder: Path | None = None
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT,
                         durability=DurabilityPolicy.VOLATILE)
        group = PolledGroup()  # taken by the recorder thread, never by the executor
        self._subs = {topic: polled_subscription(node, group, cls, topic, qos, raw=True) for topic, cls in topics.items()}
        self._period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bag_recorder", daemon=True)
        self._thread.start()

    def _stamp_ns(self) -> int:
        return self._node.get_clock().now().nanoseconds

    def _loop(self) -> None:
        while not self._stop.wait(self._period):
            with self._lock:
                self._drain()

    def _to_clock(self, received_ns: int, wall_ns: int, now_ns: int) -> int:
        """A DDS reception time (system clock) on the node's clock: interpolated between the previous pass and
        this one, so it is exact on the system clock and monotone and within the pass under sim time."""
        wall0, clock0 = self._ref
        if received_ns >= wall_ns or wall_ns <= wall0:
            return now_ns
        if received_ns <= wall0:
            return clock0
        return clock0 + (received_ns - wall0) * (now_ns - clock0) // (wall_ns - wall0)

    def _drain(self) -> None:
        """Take every waiting message and write what belongs to the open episode, in time order (lock held)."""
        now_ns, wall_ns = self._stamp_ns(), time.time_ns()
        items = []
        for topic, sub in self._subs.items():
            for data, info in take_all(sub):
                items.append((self._to_clock(info["received_timestamp"], wall_ns, now_ns), topic, data))
        self._ref = (wall_ns, now_ns)
        while self._own:
            items.append(self._own.popleft())
        if self._writer is None:
            return
        for stamp, topic, msg in sorted(items, key=lambda it: it[0]):
            if stamp < self._begin_ns:  # arrived before this episode began
                continue
            cls = self._types[topic] if isinstance(msg, bytes) else type(msg)
            data = msg if isinstance(msg, bytes) else self._serialize(msg)
            self._writer.write(self._connection(topic, cls), stamp, data)
        if time.monotonic() - self._flushed_at >= self._flush_s:
            self._flush()

    def _serialize(self, msg: Any) -> bytes:
        """CDR bytes of a message the node computed, cut to the message: rclpy's serialize_message returns
        uninitialised bytes after it (28 after a JointTrajectory), which rosbags' reader refuses."""
        data = serialize_message(msg)
        size = cdr_size(self._store, data, type_name(type(msg)))[1]
        return data[:size + (-size) % 4]

    def _flush(self) -> None:
        """Write the writer's pending MCAP chunk to the file (rosbags keeps up to 1 MiB in memory otherwise)."""
        self._flushed_at = time.monotonic()
        storage = getattr(self._writer, "storage", None)
        chunk = getattr(storage, "chunk", None)
        if chunk is not None and chunk.bio.tell():
            storage.close_chunk()
        if storage is not None:
            storage.bio.flush()

    def begin(self, index: int, task: str, instruction: str) -> Path:
        """Open the bag of episode ``index`` (closing any open one first)."""
        self.end("interrupted", "a new episode started")
        name = f"episode_{index:04d}_{re.sub(r'[^A-Za-z0-9_]+', '_', task or 'free')}"
        folder = self.root / name
        k = 1
        while folder.exists():  # never overwrite an earlier recording
            k += 1
            folder = self.root / f"{name}_{k}"
        writer = Writer(folder / "bag", version=9, storage_plugin=StoragePlugin.MCAP)
        writer.open()
        with self._lock:
            self._drain()  # what arrived before this episode goes nowhere
            self._writer, self.folder, self._conns = writer, folder, {}
            self._begin_ns = self._stamp_ns()
            self._meta = {"episode": index, "task": task, "instruction": instruction, "outcome": "running",
                          "message": "", "bag": "bag", **process_identity(), "info": self._info}
        self._write_meta()
        return folder

    def _connection(self, topic: str, cls: type):
        conn = self._conns.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, type_name(cls), typestore=self._store)
            self._conns[topic] = conn
        return conn

    def write(self, topic: str, msg: Any) -> None:
        """Record a message the node computed itself (e.g. commands, also in dry_run); returns at once."""
        if self._writer is not None:
            self._own.append((self._stamp_ns(), topic, msg))

    def end(self, outcome: str, message: str = "") -> None:
        """Write what is still waiting, close the open bag (if any) and put the outcome into episode.json."""
        with self._lock:
            self._drain()
            writer, self._writer = self._writer, None
            if writer is None:
                return
            writer.close()
            self._meta.update(outcome=outcome, message=message)
        self._write_meta()

    def close(self, outcome: str = "interrupted", message: str = "node shut down") -> None:
        """End the open episode and stop the recorder thread (the node is shutting down)."""
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.end(outcome, message)

    def _write_meta(self) -> None:
        tmp = self.folder / "episode.json.tmp"
        tmp.write_text(json.dumps(self._meta, indent=2))
        tmp.replace(self.folder / "episode.json")


def bridge_recorder(node: Any, p: dict[str, Any]) -> BagRecorder:
    """The bridge's recorder: its inputs (joint states, chunks, instruction, cameras) and its EpisodeStatus (the
    converter keeps only the RUNNING ticks) plus what the converter needs to read the bag (``info``); the bridge
    writes its own commands with ``write``."""
    from geometry_msgs.msg import TwistStamped
    from roboalign_msgs.msg import ActionChunk, EpisodeStatus
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Float64, String

    # teleoperation inputs: the demonstration's provenance (the converter gives them the role "teleop")
    teleop = {p["teleop_twist_topic"]: TwistStamped, p["leader_topic"]: JointState, p["teleop_gripper_topic"]: Float64}
    topics = {p["joint_states_topic"]: JointState, p["chunk_topic"]: ActionChunk, p["instruction_topic"]: String,
              **{t: Image for t in p["camera_topics"]}, p["episode_status_topic"]: EpisodeStatus, **teleop}
    info = {k: p[k] for k in ("control_rate_hz", "gripper_open_value", "gripper_closed_value", "joint_names",
                              "dry_run", "camera_topics")} | {"teleop_topics": list(teleop)}
    return BagRecorder(node, p["record_dir"], topics, info=info)
