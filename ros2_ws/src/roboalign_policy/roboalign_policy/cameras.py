"""Camera inputs of a node: a subscription whose QoS follows the publisher, per-frame statistics without
deserialising the frame, and decoding only of the frame that is used.

Each :class:`CameraInput` subscribes *serialized* (``raw=True``): a frame's arrival and header stamp are read
from its CDR bytes (``conversions.raw_header_stamp``) for the statistics (``roboalign.control.freshness.
StreamStats``: rate, age, latency, drops), and only the newest frame is decoded, when the policy assembles
an observation (:meth:`CameraInput.frame`; a raw Image is read in place from its bytes: 0.015 ms at 640x480,
where ``deserialize_message`` took 0.14). The subscription is created once a publisher
is known when ``camera_qos`` is ``auto`` (its reliability is read from the graph), re-created when the
publishers' reliability changes, and :meth:`CameraInput.diagnostic` reports a missing or incompatible
publisher, and a slow stream with what was measured (rate, largest gap, frame size) and the likely cause with the
fix (``roboalign.control.stream_health``); :func:`stream_causes` gives the same text for a wait reason or a
fault. Raw ``sensor_msgs/Image`` or, with ``compressed``, JPEG ``sensor_msgs/CompressedImage`` on
image_transport's ``<topic>/compressed``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image

from roboalign.control.freshness import StreamStats
from roboalign.control.stream_health import StreamHealth, stream_cause
from roboalign_policy import conversions as conv
from roboalign_policy import qos as q
from roboalign_policy.diagnostics import ERROR, OK, WARN, DiagnosticUpdater
from roboalign_policy.node_runner import dds_profile_path
from roboalign_policy.params import ParamSpec
from roboalign_policy.polling import arrival_s, polled_subscription, take_all

CAMERA_QOS = ParamSpec("camera_qos", "auto", "camera subscription reliability: auto (the publisher's, read from the "
                       "graph), reliable, best_effort; keep-last depth 1 always", choices=q.CAMERA_QOS_MODES,
                       read_only=True)
RETRY_S = 0.1  # polled inputs without a publisher look for one this often
PROFILE = str(dds_profile_path())  # our FastDDS profile, named in the fix for a camera publisher without it
Frame = tuple[np.ndarray, float, float]  # (rgb (H, W, 3) uint8, header stamp, arrival) on the node clock


class CameraInput:
    """One camera topic of a node (see the module docstring).

    The subscription is polled: ``group`` is a ``polling.PolledGroup``, no executor runs it, and :meth:`poll`
    (the owner's thread: the policy's camera thread, the bridge's control tick) takes every waiting frame.
    ``on_bad(what, error)`` is told about frames that do not decode.
    """

    def __init__(self, node: Node, name: str, topic: str, mode: str = "auto", compressed: bool = False,
                 group: Any = None, expected_hz: float = 0.0, on_bad: Callable[[str, Exception], None] | None = None) -> None:
        if mode not in q.CAMERA_QOS_MODES:
            raise ValueError(f"camera_qos {mode!r} is not valid; valid: {', '.join(q.CAMERA_QOS_MODES)}")
        self.node, self.name, self.mode, self.compressed = node, name, mode, compressed
        self.topic = q.compressed_topic(topic) if compressed else topic
        self._msg_type = CompressedImage if compressed else Image
        self._group, self._on_bad = group, on_bad
        self._sim_time = bool(node.get_parameter("use_sim_time").value)
        self.stats = StreamStats(expected_hz=expected_hz)
        self._lock = threading.Lock()
        self._raw: tuple[bytes, float, float] | None = None  # newest undecoded (bytes, stamp, arrival)
        self._frame: Frame | None = None  # newest decoded
        self.sub: Any = None
        self._sub_lock = threading.Lock()  # a re-subscription never pulls the subscription from under poll()
        self.profile: Any = None
        self.note = "not subscribed yet"
        self._last_try = -1e18
        self.ensure_subscribed()

    # ------------------------------------------------------------------ subscription
    def ensure_subscribed(self) -> None:
        """Subscribe (or re-subscribe) with the QoS the publishers call for; call it periodically."""
        profile, self.note = q.camera_qos(self.node, self.topic, self.mode)
        with self._sub_lock:  # the check too: the status timer and the camera thread both call this
            if profile is None or (self.profile is not None and profile.reliability == self.profile.reliability):
                return
            if self.sub is not None:
                self.node.destroy_subscription(self.sub)
            self.sub = polled_subscription(self.node, self._group, self._msg_type, self.topic, profile, raw=True)
            self.profile = profile

    def _now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def _add(self, raw: bytes, info: dict[str, Any], now: float) -> float | None:
        try:
            stamp = conv.raw_header_stamp(raw)
        except ValueError as e:
            self._bad(e)
            return None
        arrival = arrival_s(info, now, self._sim_time)
        with self._lock:
            self.stats.add(stamp, arrival, len(raw))
            self._raw = (raw, stamp, arrival)
        return arrival

    def poll(self) -> float | None:
        """Take every waiting frame into the statistics; the newest frame's arrival, or None."""
        now, newest = self._now(), None
        if self.sub is None and now - self._last_try >= RETRY_S:  # auto: subscribe soon after a publisher appears
            self._last_try = now
            self.ensure_subscribed()
        with self._sub_lock:
            taken = take_all(self.sub) if self.sub is not None else []
        for raw, info in taken:
            newest = self._add(raw, info, now) or newest
        return newest

    # ------------------------------------------------------------------ frames
    def _bad(self, e: Exception) -> None:
        if self._on_bad is not None:
            self._on_bad(f"image on camera {self.name!r} ({self.topic})", e)

    def frame(self) -> Frame | None:
        """The newest frame that decodes, as (rgb, stamp, arrival); a newer one that does not is reported and
        skipped (the previous frame, with its own arrival time, stays)."""
        with self._lock:
            pending, self._raw = self._raw, None
        if pending is not None:
            raw, stamp, arrival = pending
            try:  # a raw Image is read in place from its CDR bytes (no copy into a Python message)
                rgb = conv.compressed_to_rgb(deserialize_message(raw, CompressedImage)) if self.compressed \
                    else conv.raw_image_to_rgb(raw)
            except Exception as e:  # ValueError from the conversion; deserialisation errors of bad bytes
                self._bad(e if isinstance(e, ValueError) else ValueError(f"not a valid message: {e}"))
            else:
                with self._lock:
                    self._frame = (rgb, stamp, arrival)
        with self._lock:
            return self._frame

    # ------------------------------------------------------------------ health
    def problem(self) -> str | None:
        """No publisher, or none the subscription can talk to (None: fine)."""
        if self.sub is None and self.mode == "auto":
            return "no publisher yet (camera_qos auto subscribes once one appears)"
        return q.camera_problem(self.node, self.topic, self.profile)

    def health(self) -> StreamHealth:
        """What this subscription measured of the stream (rate, the publisher's rate, largest gap, frame size)."""
        with self._lock:
            return self.stats.health(self._now(), self.topic)

    def cause(self) -> str | None:
        """Why this camera delivers too little: no or an incompatible publisher, or a slow stream with what was
        measured and the likely cause (None: it is fine)."""
        problem = self.problem()
        return f"{self.topic}: {problem}" if problem else stream_cause(self.health(), PROFILE)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            out = self.stats.summary(self._now())
        reliability = "" if self.profile is None else self.profile.reliability.name.lower()
        return {**out, "topic": self.topic, "qos": reliability}

    def diagnostic(self, max_age_s: float) -> tuple[int, str, dict[str, Any]]:
        """(level, message, values) of this camera for /diagnostics."""
        s = self.summary()
        problem = self.problem()
        values = {k: (f"{v:.2f}" if isinstance(v, float) else v) for k, v in s.items()}
        if problem:
            return ERROR, f"{self.topic}: {problem}", values
        if s["age_ms"] < 0:
            return WARN, f"{self.topic}: no frame yet ({self.note})", values
        slow = stream_cause(self.health(), PROFILE)
        if s["age_ms"] > max_age_s * 1e3:
            return ERROR, f"{self.topic}: newest frame is {s['age_ms'] / 1e3:.3f} s old" + \
                (f"; {slow}" if slow else ""), values
        if slow:
            return WARN, slow, values
        return OK, f"{self.topic}: {s['rate_hz']:.1f} Hz, {s['drops']} frames missed", values


def stream_causes(cams: list[CameraInput]) -> str | None:
    """Every camera's cause (:meth:`CameraInput.cause`) joined, or None when each is fine."""
    causes = [c for cam in cams if (c := cam.cause())]
    return "; ".join(causes) or None


def with_causes(reason: str, cams: list[CameraInput]) -> str:
    """A wait reason or a fault with the cameras' causes added (as measured now)."""
    causes = stream_causes(cams)
    return f"{reason}; {causes}" if causes else reason


def watched_cameras(node: Node, topics: list[str], mode: str, group: Any, diag: DiagnosticUpdater,
                    max_age_s: Callable[[], float]) -> list[CameraInput]:
    """Polled camera inputs for a node that needs only their arrivals (the bridge's watchdog), each with a
    /diagnostics check ``camera <topic>`` that also keeps its subscription following the publisher (the
    watchdog's explanation of a stale image: :func:`stream_causes`)."""
    cams = [CameraInput(node, topic, topic, mode, group=group) for topic in topics]

    def check(cam: CameraInput) -> tuple[int, str, dict[str, Any]]:
        cam.ensure_subscribed()
        return cam.diagnostic(max_age_s())

    for cam in cams:
        diag.add(f"camera {cam.topic}", lambda c=cam: check(c))
    return cams
