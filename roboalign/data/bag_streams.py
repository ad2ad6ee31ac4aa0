"""The recorded streams of one rosbag2 episode folder (``bag/`` + ``episode.json``, see ``bag_recorder``), read
without ROS: topics grouped by role, message times on one clock, and the checks for gaps and clock jumps.

Roles come from the message types: ``sensor_msgs/JointState`` (measured), ``trajectory_msgs/JointTrajectory``
(commanded arm targets), ``std_msgs/Float64MultiArray`` (commanded gripper), ``sensor_msgs/Image`` and
``CompressedImage`` (cameras, named by the ``/camera/<name>/...`` segment of the topic), ``roboalign_msgs/
ActionChunk`` (policy output), ``roboalign_msgs/EpisodeStatus`` (the bridge's phase: only RUNNING is kept). A crashed bag (no ``metadata.yaml``) is read as an MCAP stream
(:mod:`roboalign.data.bag_salvage`) and flagged incomplete; the source folder is never modified. Every bag is
read in file order (the order the recorder wrote it), where a backwards step in time is a clock jump.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from roboalign.data.bag_salvage import Salvage, bag_is_complete, mcap_file, salvage

ROLES = {
    "sensor_msgs/msg/JointState": "joint_states",
    "trajectory_msgs/msg/JointTrajectory": "command",
    "std_msgs/msg/Float64MultiArray": "gripper_command",
    "sensor_msgs/msg/Image": "camera",
    "sensor_msgs/msg/CompressedImage": "camera",
    "roboalign_msgs/msg/ActionChunk": "chunk",
    "roboalign_msgs/msg/EpisodeStatus": "status",
}
HEADER_TOLERANCE_S = 0.5  # a header stamp within this of the reception time is on the recorder's clock


class BagEpisodeError(ValueError):
    """A recorded episode cannot become a training episode; the message names the episode folder and topic."""


@dataclass
class Stream:
    """One topic: message times [ns] on the recorder's clock (sorted) and the raw CDR messages in that order.

    ``file_times`` are the reception times in the order the recorder wrote them (a backwards step there is a
    clock jump).
    """

    topic: str
    msgtype: str
    times: np.ndarray
    raw: list[bytes]  # camera streams: only the first HEAD_BYTES (the header); BagEpisode.full reads the rest
    file_times: np.ndarray
    time_source: str = "receive"  # or "header" (the message's own stamp, when it is on the same clock)
    ordinals: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # file-order index of each message

    def sort(self) -> None:
        order = np.argsort(self.times, kind="stable")
        self.times, self.raw, self.ordinals = self.times[order], [self.raw[i] for i in order], order

    def __len__(self) -> int:
        return len(self.raw)


@dataclass
class BagEpisode:
    folder: Path
    info: dict[str, Any]
    streams: dict[str, Stream]
    store: Any  # rosbags Typestore with every recorded type
    mcap: Path = Path()
    complete: bool = True
    problems: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.folder.name

    def by_role(self, role: str) -> list[Stream]:
        """Streams of ``role``; the teleoperation inputs the recorder lists (twist, leader joints, gripper) have
        the role "teleop" whatever their type (a leader's JointState is not the robot's)."""
        teleop = set(self.info.get("info", {}).get("teleop_topics", ()))
        return [s for s in self.streams.values()
                if ("teleop" if s.topic in teleop else ROLES.get(s.msgtype)) == role]

    def decode(self, stream: Stream, i: int) -> Any:
        if ROLES.get(stream.msgtype) == "camera":
            raise ValueError(f"{stream.topic}: camera messages are read with BagEpisode.images")
        return decode_cdr(self.store, stream.raw[i], stream.msgtype)

    def images(self, stream: Stream, idx: np.ndarray) -> list[Any]:
        """The image messages ``idx`` of a camera stream, read in full from the bag in one pass (only these)."""
        wanted = stream.ordinals[np.asarray(idx, np.int64)]
        s = salvage(self.mcap, select={stream.topic: set(wanted.tolist())})
        full = dict(zip(sorted(set(wanted.tolist())), (m[2] for m in s.messages), strict=True))
        return [decode_cdr(self.store, full[o], stream.msgtype) for o in wanted.tolist()]

    def error(self, topic: str | None, what: str) -> BagEpisodeError:
        return BagEpisodeError(f"episode {self.name}: {'topic ' + topic + ': ' if topic else ''}{what}")


def cdr_size(store: Any, raw: bytes, msgtype: str) -> tuple[Any, int]:
    """(message, bytes it occupies) of a CDR buffer that may carry trailing bytes.

    rclpy's ``serialize_message`` (Jazzy, Fast DDS) returns a buffer longer than the message (28 bytes of
    uninitialised memory after a 304-byte JointTrajectory): DDS readers ignore them, rosbags' strict
    ``deserialize_cdr`` refuses the message ("CDR message size mismatch").
    """
    msgdef = store.get_msgdef(msgtype)
    func = msgdef.deserialize_cdr_le if raw[1] else msgdef.deserialize_cdr_be
    msg, pos = func(memoryview(raw)[4:], 0, msgdef.cls, store)
    return msg, pos + 4


def decode_cdr(store: Any, raw: bytes, msgtype: str) -> Any:
    """Deserialise one CDR message, tolerating trailing bytes (see :func:`cdr_size`)."""
    from rosbags.serde import SerdeError

    try:
        return store.deserialize_cdr(raw, msgtype)
    except SerdeError as e:
        if "size mismatch" not in str(e):
            raise
        return cdr_size(store, raw, msgtype)[0]


def camera_name(topic: str) -> str:
    """``/camera/wrist/color/image_raw`` -> ``wrist``; other topics -> their segments joined by ``_``."""
    parts = [p for p in topic.split("/") if p]
    if len(parts) >= 2 and parts[0] in ("camera", "cameras"):
        return parts[1]
    return "_".join(p for p in parts if p not in ("image_raw", "compressed", "color")) or "camera"


def is_bag_episode(folder: Path) -> bool:
    """A recorded episode folder (``bag/`` + ``episode.json``) or a bare rosbag2 folder (``*.mcap``)."""
    return (folder / "episode.json").is_file() or (folder / "bag").is_dir() or any(folder.glob("*.mcap"))


def _store(topics: dict[str, tuple[str, str]]) -> Any:
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.EMPTY)
    for msgtype, msgdef in topics.values():
        if msgdef:
            store.register(get_types_from_msg(msgdef, msgtype))
    return store


def read_bag_episode(folder: str | Path) -> BagEpisode:
    """Read a recorded episode folder; a crashed bag is salvaged (and marked incomplete), not refused."""
    folder = Path(folder)
    info = json.loads((folder / "episode.json").read_text()) if (folder / "episode.json").is_file() else {}
    bag = folder / info.get("bag", "bag")
    if not bag.is_dir() and any(folder.glob("*.mcap")):  # a bare rosbag2 folder
        bag = folder
    if not bag.is_dir():
        raise BagEpisodeError(f"episode {folder.name}: no bag folder {bag}")
    problems = []
    # file order, complete or not (a backwards step is a clock jump); images: headers only (their data is read per index by BagEpisode.images)
    s: Salvage = salvage(mcap_file(bag), head_only=lambda msgtype: ROLES.get(msgtype) == "camera")
    topics = {t.topic: (t.msgtype, t.msgdef) for t in s.topics.values()}
    msgs = s.messages
    if not bag_is_complete(bag) or s.truncated:
        problems.append(f"bag was not closed (recorder killed?): {len(msgs)} messages salvaged from "
                        f"{mcap_file(bag).name}" + (f", cut off inside a record ({s.stop_reason})" if s.truncated else ""))
    outcome = info.get("outcome", "unknown")
    if outcome in ("running", "incomplete", "interrupted"):
        problems.append(f"episode.json outcome is {outcome!r}: {info.get('message') or 'the recording stopped early'}")
    grouped: dict[str, list[tuple[int, bytes]]] = {t: [] for t in topics}
    for t, topic, data in msgs:
        grouped.setdefault(topic, []).append((t, data))
    streams = {}
    for topic, items in grouped.items():
        t = np.array([m[0] for m in items], np.int64)
        streams[topic] = Stream(topic, topics[topic][0], t, [m[1] for m in items], t.copy(), ordinals=np.arange(len(t)))
    ep = BagEpisode(folder, info, streams, _store(topics), mcap_file(bag), complete=not problems, problems=problems)
    for s in streams.values():
        _use_header_stamps(ep, s)
        s.sort()
    return ep


def header_ns(raw: bytes) -> int:
    """The ``header.stamp`` [ns] of a CDR message whose first field is a std_msgs/Header (every ROLES type but
    the gripper command): int32 sec, uint32 nanosec after the 4-byte encapsulation."""
    sec, nsec = struct.unpack_from("<iI" if raw[1] else ">iI", raw, 4)
    return sec * 10**9 + nsec


def _use_header_stamps(ep: BagEpisode, s: Stream) -> None:
    """Put the stream on its messages' header stamps when they are on the recorder's clock (sensor time)."""
    if not len(s) or ROLES.get(s.msgtype) in (None, "gripper_command"):
        return
    hdr = np.array([header_ns(r) for r in s.raw], np.int64)
    if hdr[0] == 0:
        return
    if np.median(np.abs(hdr - s.times)) < HEADER_TOLERANCE_S * 1e9:
        s.times, s.time_source = hdr, "header"


def check_monotone(ep: BagEpisode, streams: list[Stream]) -> None:
    """Raise naming the topic when its reception times step backwards in file order (the clock jumped back)."""
    for s in streams:
        d = np.diff(s.file_times)
        if len(d) and d.min() < -1_000_000:
            i = int(np.argmin(d))
            at = (s.file_times[i] - s.file_times[0]) / 1e9
            raise ep.error(s.topic, f"clock jumped back by {-d[i] / 1e9:.3f} s, {at:.2f} s after the topic's first "
                                    "message (sim or robot clock restarted?); record the episode again")


def check_clock(ep: BagEpisode, streams: list[Stream], t0: int, t1: int, max_gap_s: float) -> None:
    """Raise naming the topic on a clock jump forward (a gap on every stream at once) or a stalled stream (no
    message for longer than ``max_gap_s`` inside [t0, t1], or none near either end)."""
    gap_ns = int(max_gap_s * 1e9)
    gaps = {s.topic: _gaps(s.times, t0, t1, gap_ns) for s in streams}
    common = _common_gap(list(gaps.values()))
    if common is not None and len(streams) > 1:
        a, b = common
        raise ep.error(None, f"clock jumped forward: no topic has a message for {(b - a) / 1e9:.2f} s from "
                             f"t={(a - t0) / 1e9:.2f} s (allowed gap {max_gap_s} s)")
    for s in streams:
        if gaps[s.topic]:
            a, b = max(gaps[s.topic], key=lambda g: g[1] - g[0])
            raise ep.error(s.topic, f"stalled: no message for {(b - a) / 1e9:.2f} s from t={(a - t0) / 1e9:.2f} s "
                                    f"of the {(t1 - t0) / 1e9:.2f} s episode (allowed gap {max_gap_s} s; "
                                    "--max-gap sets it)")


def _gaps(times: np.ndarray, t0: int, t1: int, gap_ns: int) -> list[tuple[int, int]]:
    """Intervals (clipped to [t0, t1]) longer than ``gap_ns`` without a message; the ends count as messages
    only when the stream has one at or before t0 / at or after t1."""
    i0 = int(np.searchsorted(times, t0, side="right")) - 1
    i1 = int(np.searchsorted(times, t1, side="left"))
    inside = times[i0 + 1:i1]
    pts = np.r_[times[i0] if i0 >= 0 else t0, inside, times[i1] if i1 < len(times) else t1]
    return [(max(int(a), t0), min(int(b), t1)) for a, b in zip(pts[:-1], pts[1:], strict=True) if b - a > gap_ns]


def _common_gap(per_stream: list[list[tuple[int, int]]]) -> tuple[int, int] | None:
    """An interval inside a gap of every stream, or None."""
    if not per_stream or any(not g for g in per_stream):
        return None
    for a, b in per_stream[0]:
        lo, hi = a, b
        for other in per_stream[1:]:
            best = max(((max(lo, x), min(hi, y)) for x, y in other), key=lambda g: g[1] - g[0])
            lo, hi = best
            if hi <= lo:
                break
        else:
            return lo, hi
    return None


def sample_index(times: np.ndarray, grid: np.ndarray, eps_ns: int) -> np.ndarray:
    """For each grid time, the index of the newest message at or before it (-1 when none yet)."""
    return np.searchsorted(times, grid + eps_ns, side="right") - 1
