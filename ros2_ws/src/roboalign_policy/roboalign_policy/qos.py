"""The QoS profiles and default topic names every node uses, in one place.

Commands and chunks are reliable, instructions latched, joint states sensor-data. Cameras follow the
publisher (:func:`camera_qos`): measured here (docs/results.md), 640x480 rgb8 at 30 Hz between two processes
arrives at ~11 Hz through a best-effort subscription of a reliable publisher's stream and at ~30 Hz reliably,
so a subscriber takes the publisher's reliability (realsense-ros publishes reliable by default) with keep-last
depth 1: every frame is delivered, and nothing old queues behind the newest one.
"""

from __future__ import annotations

from typing import Any

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

from roboalign.spec.topics import (  # noqa: F401  (the default topic names, re-exported)
    ACTION_CHUNK,
    CAMERA_NAMES,
    COMMAND,
    COMMAND_SERVICE,
    DIAGNOSTICS,
    EPISODE_STATUS,
    ESTOP,
    ESTOP_SERVICE,
    GRIPPER_COMMAND,
    INSTRUCTION,
    JOINT_STATES,
    POLICY_STATUS,
    POLICY_TRAJECTORY,
    TELEOP_GRIPPER,
    TELEOP_LEADER,
    TELEOP_TWIST,
)

# commands, chunks, statuses: every message matters, a short queue absorbs a slow reader
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# the current instruction: a late joiner gets the last one
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
# joint states (100 Hz+): only the newest matters
SENSOR = qos_profile_sensor_data

# ---------------------------------------------------------------- cameras
CAMERA_QOS_MODES = ("auto", "reliable", "best_effort")
_RELIABILITY = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}


def camera_topic(name: str, namespace: str = "/camera") -> str:
    """realsense-ros's colour topic of camera ``name``: ``<namespace>/<name>/color/image_raw``."""
    return f"{namespace.rstrip('/')}/{name}/color/image_raw"


def compressed_topic(topic: str) -> str:
    """image_transport's name of the JPEG stream of ``topic`` (``<topic>/compressed``)."""
    return topic.rstrip("/") + "/compressed"


CAMERA_TOPICS = tuple(camera_topic(n) for n in CAMERA_NAMES)


def camera_profile(reliability: ReliabilityPolicy) -> QoSProfile:
    """Keep-last depth 1, volatile: the newest frame only, nothing old queues while a reader is busy."""
    return QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=reliability,
                      durability=DurabilityPolicy.VOLATILE)


def reliability_of(mode: str) -> ReliabilityPolicy:
    """The reliability a fixed ``camera_qos`` mode asks for (``auto`` is resolved by :func:`camera_qos`)."""
    if mode not in _RELIABILITY:
        raise ValueError(f"camera_qos {mode!r} has no fixed reliability; valid: {', '.join(_RELIABILITY)}")
    return _RELIABILITY[mode]


def choose_reliability(mode: str, offered: list[ReliabilityPolicy]) -> tuple[ReliabilityPolicy | None, str]:
    """(reliability to subscribe with, what to report) for ``camera_qos`` ``mode`` given the publishers'
    offered reliabilities; None while ``auto`` has no publisher to follow yet.

    ``auto`` follows the publishers: reliable if every one offers reliable (every frame delivered), best effort
    if any offers best effort (a reliable subscriber could not talk to it).
    """
    if mode not in CAMERA_QOS_MODES:
        raise ValueError(f"camera_qos {mode!r} is not valid; valid: {', '.join(CAMERA_QOS_MODES)}")
    if mode != "auto":
        want = _RELIABILITY[mode]
        if want == ReliabilityPolicy.RELIABLE and ReliabilityPolicy.BEST_EFFORT in offered:
            return want, "a publisher offers best effort only: a reliable subscription gets nothing from it"
        return want, "no publisher yet" if not offered else "ok"
    if not offered:
        return None, "no publisher yet"
    if ReliabilityPolicy.BEST_EFFORT in offered:
        return ReliabilityPolicy.BEST_EFFORT, "following a best-effort publisher (frames may be lost at size)"
    return ReliabilityPolicy.RELIABLE, "ok"


def camera_qos(node: Any, topic: str, mode: str) -> tuple[QoSProfile | None, str]:
    """(the subscription profile for ``topic`` under ``mode``, a note): the publishers' reliability is read
    from the ROS graph (``get_publishers_info_by_topic``); None while ``auto`` has no publisher yet."""
    offered = [i.qos_profile.reliability for i in node.get_publishers_info_by_topic(topic)]
    rel, note = choose_reliability(mode, offered)
    return (None if rel is None else camera_profile(rel)), note


def camera_problem(node: Any, topic: str, profile: QoSProfile | None) -> str | None:
    """Why ``topic`` delivers nothing to a camera subscription with ``profile`` (no publisher, or every
    publisher best effort under a reliable subscription), or None when a publisher can serve it.

    Camera subscriptions are volatile with default deadline and liveliness, so reliability is the one policy
    that can make them incompatible (compared directly: ``qos_check_compatible`` of a local and a discovered
    profile reports differences of defaults that are not there, see ``polling.qos_problems``).
    """
    pubs = node.get_publishers_info_by_topic(topic)
    if not pubs:
        return "no publisher"
    if profile is None or profile.reliability != ReliabilityPolicy.RELIABLE:
        return None
    if all(i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for i in pubs):
        names = ", ".join(sorted({i.node_name for i in pubs}))
        return f"incompatible QoS: publisher(s) {names} offer best effort, this subscription requests reliable"
    return None
