"""Message <-> numpy conversions shared by the RoboAlign nodes (and nothing else).

- ``image_to_rgb``: sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8; any padded ``step``) -> (H, W, 3) uint8 RGB
- ``rgb_to_image``: (H, W, 3) uint8 -> sensor_msgs/Image rgb8
- ``compressed_to_rgb`` / ``rgb_to_compressed``: sensor_msgs/CompressedImage (JPEG, image_transport's
  ``compressed`` format) <-> (H, W, 3) uint8 RGB, with OpenCV (libjpeg-turbo inside)
- ``raw_header_stamp``: the header stamp of a serialized (CDR) message that starts with a std_msgs/Header
- ``raw_image_to_rgb``: a serialized sensor_msgs/Image -> (H, W, 3) uint8 RGB, read in place from the CDR bytes
- ``joint_positions``: sensor_msgs/JointState -> positions in a requested joint order
- ``trajectory``: (K, D) rows -> trajectory_msgs/JointTrajectory with ``time_from_start = (k + first) * dt``;
  ``trajectory_cdr`` the same, serialized (for ``Publisher.publish``: no Python message is built)
- ``chunk_to_msg`` / ``msg_to_chunk``: roboalign.spec.policy_io.ActionChunk <-> roboalign_msgs/ActionChunk
Every function raises ``ValueError`` naming the offending field when a message is malformed.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence
from types import SimpleNamespace

import cv2
import numpy as np
from builtin_interfaces.msg import Duration, Time
from roboalign_msgs.msg import ActionChunk as ActionChunkMsg
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Header
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from roboalign.spec.policy_io import ActionChunk

# encoding -> (channels, indices of R, G, B in a pixel)
_ENCODINGS = {"rgb8": (3, (0, 1, 2)), "bgr8": (3, (2, 1, 0)), "rgba8": (4, (0, 1, 2)), "bgra8": (4, (2, 1, 0)),
              "mono8": (1, (0, 0, 0))}


def to_sec(t: Time) -> float:
    return t.sec + t.nanosec * 1e-9


def to_time(seconds: float) -> Time:
    ns = int(round(seconds * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def to_duration(seconds: float) -> Duration:
    ns = int(round(seconds * 1e9))
    return Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def image_to_rgb(msg: Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB view/copy of an 8-bit image message, honouring its row stride ``step``."""
    enc = msg.encoding.lower()
    if enc not in _ENCODINGS:
        raise ValueError(f"Image.encoding {msg.encoding!r} is not supported; valid: {', '.join(_ENCODINGS)}")
    ch, order = _ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h == 0 or w == 0:
        raise ValueError(f"Image is empty (height={h}, width={w})")
    if step < w * ch:
        raise ValueError(f"Image.step {step} is smaller than width*channels = {w}*{ch} for {enc}")
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size < step * (h - 1) + w * ch:
        raise ValueError(f"Image.data has {buf.size} bytes, expected step*height = {step}*{h} = {step * h}")
    rows = np.lib.stride_tricks.as_strided(buf, shape=(h, w, ch), strides=(step, ch, 1), writeable=False)
    if enc == "rgb8":
        return np.ascontiguousarray(rows)
    return np.ascontiguousarray(rows[:, :, list(order)])


def rgb_to_image(rgb: np.ndarray, stamp: Time | None = None, frame_id: str = "") -> Image:
    """An rgb8 Image message of an (H, W, 3) uint8 array."""
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {a.shape} {a.dtype}")
    h, w, _ = a.shape
    msg = Image(header=Header(stamp=stamp or Time(), frame_id=frame_id), height=h, width=w, encoding="rgb8",
                is_bigendian=0, step=w * 3)
    msg.data = np.ascontiguousarray(a).tobytes()
    return msg


def raw_header_stamp(raw: bytes) -> float:
    """Header stamp [s] of a serialized message whose first field is a std_msgs/Header (Image, CompressedImage,
    JointState, ...), read from the CDR bytes without deserialising the rest (a 640x480 image is ~1 MB)."""
    if len(raw) < 12:
        raise ValueError(f"serialized message of {len(raw)} bytes is too short for a header stamp")
    little = raw[1] & 1  # CDR encapsulation: 0x0001 little endian, 0x0000 big endian
    sec, nanosec = struct.unpack_from("<iI" if little else ">iI", raw, 4)
    return sec + nanosec * 1e-9


class _CdrReader:
    """Sequential reads of a CDR (XCDR1) buffer; alignment counts from the end of the 4-byte encapsulation."""

    def __init__(self, raw: bytes) -> None:
        if len(raw) < 4:
            raise ValueError(f"serialized message of {len(raw)} bytes has no CDR header")
        self.raw, self.off, self.endian = raw, 4, "<" if raw[1] & 1 else ">"

    def scalar(self, fmt: str, what: str):
        size = struct.calcsize(fmt)
        self.off = 4 + (self.off - 4 + size - 1) // size * size
        if self.off + size > len(self.raw):
            raise ValueError(f"serialized Image ends before {what} ({len(self.raw)} bytes)")
        (value,) = struct.unpack_from(self.endian + fmt, self.raw, self.off)
        self.off += size
        return value

    def sequence(self, what: str) -> memoryview:
        n = self.scalar("I", what)
        if self.off + n > len(self.raw):
            raise ValueError(f"serialized Image.{what} has {len(self.raw) - self.off} of its {n} bytes")
        self.off += n
        return memoryview(self.raw)[self.off - n:self.off]


class _CdrWriter:
    """Little-endian CDR (XCDR1, what rmw_fastrtps writes) built field by field; see :class:`_CdrReader`."""

    def __init__(self) -> None:
        self.buf = bytearray(b"\x00\x01\x00\x00")

    def _align(self, size: int) -> None:
        self.buf += bytes(-(len(self.buf) - 4) % size)

    def put(self, fmt: str, *values: int) -> None:  # 4-byte fields only
        self._align(4)
        self.buf += struct.pack("<" + fmt, *values)

    def string(self, text: str) -> None:
        data = text.encode() + b"\0"
        self.put("I", len(data))
        self.buf += data


def raw_image_to_rgb(raw: bytes) -> np.ndarray:
    """:func:`image_to_rgb` of a serialized sensor_msgs/Image, without deserialising it: the fields are read
    from the CDR bytes and the pixels viewed in place (a 640x480 frame is 0.9 MB; ``deserialize_message``
    copies it into a Python message first)."""
    r = _CdrReader(raw)
    r.scalar("i", "header.stamp.sec")
    r.scalar("I", "header.stamp.nanosec")
    r.sequence("header.frame_id")
    height, width = r.scalar("I", "height"), r.scalar("I", "width")
    encoding = bytes(r.sequence("encoding")).rstrip(b"\0").decode("ascii", "replace")
    r.scalar("B", "is_bigendian")
    step = r.scalar("I", "step")
    fields = SimpleNamespace(height=height, width=width, encoding=encoding, step=step, data=r.sequence("data"))
    return image_to_rgb(fields)  # the fields it reads, as plain attributes


def rgb_to_compressed(rgb: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of an (H, W, 3) uint8 RGB array (what image_transport's compressed publisher sends)."""
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {a.shape} {a.dtype}")
    ok, buf = cv2.imencode(".jpg", a[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def compressed_image(rgb: np.ndarray, stamp: Time | None = None, frame_id: str = "",
                     quality: int = 90) -> CompressedImage:
    """A sensor_msgs/CompressedImage (JPEG) of an (H, W, 3) uint8 RGB array, in image_transport's format."""
    return CompressedImage(header=Header(stamp=stamp or Time(), frame_id=frame_id),
                           format="rgb8; jpeg compressed bgr8", data=rgb_to_compressed(rgb, quality))


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a JPEG (or PNG) sensor_msgs/CompressedImage; ValueError if it does not decode."""
    fmt = msg.format.lower()
    if fmt and "jpeg" not in fmt and "png" not in fmt:
        raise ValueError(f"CompressedImage.format {msg.format!r} is not supported; valid: jpeg, png "
                         "(image_transport's 'rgb8; jpeg compressed bgr8')")
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if bgr is None:
        raise ValueError(f"CompressedImage.data ({buf.size} bytes) is not a decodable {fmt or 'JPEG'} image")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def joint_positions(msg: JointState, names: Sequence[str]) -> np.ndarray:
    """Positions (len(names),) float64 of ``names`` from a JointState, in that order."""
    if len(msg.position) != len(msg.name):
        raise ValueError(f"JointState has {len(msg.name)} names but {len(msg.position)} positions")
    index = {n: i for i, n in enumerate(msg.name)}
    missing = [n for n in names if n not in index]
    if missing:
        raise ValueError(f"JointState lacks joints {missing}; it has {list(msg.name)}")
    q = np.array([msg.position[index[n]] for n in names], dtype=np.float64)
    if not np.all(np.isfinite(q)):
        bad = [n for n, v in zip(names, q, strict=True) if not np.isfinite(v)]
        raise ValueError(f"JointState has non-finite positions for {bad}")
    return q


def joint_state(names: Sequence[str], positions: np.ndarray, stamp: Time,
                velocities: np.ndarray | None = None) -> JointState:
    msg = JointState(header=Header(stamp=stamp), name=list(names), position=[float(x) for x in positions])
    if velocities is not None:
        msg.velocity = [float(x) for x in velocities]
    return msg


def _checked_rows(joint_names: Sequence[str], rows: np.ndarray, dt: float) -> np.ndarray:
    r = np.asarray(rows, dtype=np.float64)
    if r.ndim != 2 or r.shape[1] != len(joint_names) or r.shape[0] == 0:
        raise ValueError(f"trajectory rows {r.shape} do not match (K>0, {len(joint_names)}) joints {list(joint_names)}")
    if not np.all(np.isfinite(r)):
        raise ValueError("trajectory rows contain non-finite values")
    if not dt > 0:
        raise ValueError(f"trajectory dt must be > 0, got {dt}")
    return r


def trajectory(joint_names: Sequence[str], rows: np.ndarray, dt: float, stamp: Time,
               first: int = 0) -> JointTrajectory:
    """JointTrajectory with one point per row of ``rows`` (K, len(joint_names)) at ``(k + first) * dt``.

    ``stamp`` is when the trajectory starts (ros2_control's JointTrajectoryController starts a trajectory
    stamped in the past part-way through).
    """
    r = _checked_rows(joint_names, rows, dt)
    msg = JointTrajectory(header=Header(stamp=stamp), joint_names=list(joint_names))
    msg.points = [JointTrajectoryPoint(positions=row.tolist(), time_from_start=to_duration((k + first) * dt))
                  for k, row in enumerate(r)]
    return msg


@functools.lru_cache(maxsize=8)
def _names_cdr(joint_names: tuple[str, ...]) -> bytes:
    """The empty frame_id and the joint names of a JointTrajectory as CDR, after its 8-byte stamp (a node sends
    the same names every time)."""
    w = _CdrWriter()
    w.put("iI", 0, 0)
    w.string("")
    w.put("I", len(joint_names))
    for name in joint_names:
        w.string(name)
    return bytes(w.buf[12:])


def trajectory_cdr(joint_names: Sequence[str], rows: np.ndarray, dt: float, stamp: Time, first: int = 0) -> bytes:
    """:func:`trajectory`, serialized (what ``deserialize_message`` reads back as that message; for
    ``Publisher.publish``) without building it: 16 rosidl points cost ~0.6-1.1 ms in Python, this ~0.1 ms."""
    r = _checked_rows(joint_names, rows, dt)
    w = _CdrWriter()
    w.buf += struct.pack("<iI", stamp.sec, stamp.nanosec) + _names_cdr(tuple(joint_names))
    w.put("I", len(r))
    # every point: positions (length, then float64s on an 8-byte boundary), three empty sequences, the duration;
    # a point is a multiple of 8 bytes once its float64s start aligned, so only the first may need padding
    pad = "4x" if len(w.buf) % 8 else ""  # the first float64 is at payload offset len(buf) - 4 + 4
    ns = np.rint((np.arange(len(r)) + first) * dt * 1e9).astype(np.int64)  # to_duration's rounding
    fmt = "<" + "".join(f"I{pad if k == 0 else ''}{r.shape[1]}dIIIiI" for k in range(len(r)))
    values = [v for k, row in enumerate(r.tolist())
              for v in (r.shape[1], *row, 0, 0, 0, int(ns[k] // 1_000_000_000), int(ns[k] % 1_000_000_000))]
    return bytes(w.buf) + struct.pack(fmt, *values)


def trajectory_rows(msg: JointTrajectory, joint_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(times (K,) seconds from the header stamp, positions (K, len(joint_names))) in ``joint_names`` order."""
    index = {n: i for i, n in enumerate(msg.joint_names)}
    missing = [n for n in joint_names if n not in index]
    if missing:
        raise ValueError(f"JointTrajectory lacks joints {missing}; it has {list(msg.joint_names)}")
    if not msg.points:
        raise ValueError("JointTrajectory has no points")
    cols = [index[n] for n in joint_names]
    pos = np.empty((len(msg.points), len(cols)))
    times = np.empty(len(msg.points))
    for k, p in enumerate(msg.points):
        if len(p.positions) != len(msg.joint_names):
            raise ValueError(f"JointTrajectory point {k} has {len(p.positions)} positions for "
                             f"{len(msg.joint_names)} joints")
        pos[k] = [p.positions[c] for c in cols]
        times[k] = p.time_from_start.sec + p.time_from_start.nanosec * 1e-9
    if not np.all(np.isfinite(pos)):
        raise ValueError("JointTrajectory has non-finite positions")
    if np.any(np.diff(times) <= 0):
        raise ValueError(f"JointTrajectory time_from_start must increase strictly, got {times.tolist()}")
    return times, pos


def chunk_to_msg(chunk: ActionChunk, stamp: Time, sequence: int, instruction: str, task: str = "",
                 backend: str = "") -> ActionChunkMsg:
    """roboalign_msgs/ActionChunk of a runtime ActionChunk (header stamp = ``stamp``, publication time)."""
    a = np.asarray(chunk.actions, dtype=np.float64)  # (T, D)
    if a.ndim != 2 or a.shape[1] != len(chunk.action_names):
        raise ValueError(f"chunk actions {a.shape} do not match {len(chunk.action_names)} action names")
    t = chunk.timings
    return ActionChunkMsg(
        header=Header(stamp=stamp), observation_stamp=to_time(chunk.stamp), sequence=sequence,
        instruction=instruction, task=task, action_space=chunk.action_space,
        action_names=list(chunk.action_names), horizon=a.shape[0], action_dim=a.shape[1], dt=float(chunk.dt),
        data=a.reshape(-1).tolist(), preprocess_ms=float(t.get("preprocess", 0.0)),
        model_latency_ms=float(t.get("model", 0.0)), backend=backend)


def msg_to_chunk(msg: ActionChunkMsg) -> ActionChunk:
    """Runtime ActionChunk of a message (stamp = observation stamp); checks the sizes agree."""
    n, d = int(msg.horizon), int(msg.action_dim)
    if n < 1 or d < 1:
        raise ValueError(f"ActionChunk horizon={n} and action_dim={d} must be >= 1")
    if len(msg.data) != n * d:
        raise ValueError(f"ActionChunk.data has {len(msg.data)} values, expected horizon*action_dim = {n}*{d}")
    if len(msg.action_names) != d:
        raise ValueError(f"ActionChunk.action_names has {len(msg.action_names)} names, action_dim is {d}")
    if not msg.dt > 0:
        raise ValueError(f"ActionChunk.dt must be > 0, got {msg.dt}")
    actions = np.asarray(msg.data, dtype=np.float64).reshape(n, d)  # (T, D)
    return ActionChunk(actions=actions, action_space=msg.action_space, action_names=tuple(msg.action_names),
                       dt=float(msg.dt), stamp=to_sec(msg.observation_stamp),
                       timings={"preprocess": float(msg.preprocess_ms), "model": float(msg.model_latency_ms)})
