"""Record each episode as a rosbag2 (MCAP) with the ``rosbags`` library: replayable with ``ros2 bag play``,
readable without ROS (``rosbags.rosbag2.Reader``) for training or analysis.

One bag folder per episode, ``<record_dir>/episode_<index>_<task>/``, plus ``episode.json`` (task,
instruction, outcome, message) beside the bag. Topics are recorded as serialized messages straight from
DDS (``raw=True`` subscriptions: no decoding cost); the bridge adds the commands it computed with
``write`` (also in ``dry_run``, where nothing reaches the robot). A fault, an e-stop or a shutdown closes the
bag properly, so what was recorded stays readable; earlier episodes are never touched again.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

from ament_index_python.packages import get_package_share_directory
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

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
    """Records ``topics`` (name -> message class) of ``node`` into one bag per episode."""

    def __init__(self, node: Node, record_dir: str | Path, topics: dict[str, type]) -> None:
        self._node = node
        self.root = Path(record_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self._store = _typestore()
        self._lock = threading.Lock()
        self._writer: Writer | None = None
        self._conns: dict[str, Any] = {}
        self._types = dict(topics)
        self._meta: dict[str, Any] = {}
        self.folder: Path | None = None
        for topic, cls in topics.items():
            node.create_subscription(cls, topic, lambda data, t=topic: self._on_raw(t, data),
                                     qos_profile_sensor_data, raw=True)

    def _stamp_ns(self) -> int:
        return self._node.get_clock().now().nanoseconds

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
            self._writer, self.folder, self._conns = writer, folder, {}
            self._meta = {"episode": index, "task": task, "instruction": instruction, "outcome": "running",
                          "message": "", "bag": "bag"}
        self._write_meta()
        return folder

    def _connection(self, topic: str, cls: type):
        conn = self._conns.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, type_name(cls), typestore=self._store)
            self._conns[topic] = conn
        return conn

    def _on_raw(self, topic: str, data: bytes) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.write(self._connection(topic, self._types[topic]), self._stamp_ns(), data)

    def write(self, topic: str, msg: Any) -> None:
        """Record a message the node computed itself (e.g. commands, also in dry_run)."""
        with self._lock:
            if self._writer is not None:
                self._writer.write(self._connection(topic, type(msg)), self._stamp_ns(), serialize_message(msg))

    def end(self, outcome: str, message: str = "") -> None:
        """Close the open bag (if any) and write the outcome into episode.json."""
        with self._lock:
            writer, self._writer = self._writer, None
            if writer is None:
                return
            writer.close()
            self._meta.update(outcome=outcome, message=message)
        self._write_meta()

    def _write_meta(self) -> None:
        tmp = self.folder / "episode.json.tmp"
        tmp.write_text(json.dumps(self._meta, indent=2))
        tmp.replace(self.folder / "episode.json")
