"""Why a camera stream arrives slowly: what was measured (rate, largest gap, frame size) and the likely cause.

ROS-free. The camera inputs of the nodes (``roboalign_policy.cameras``), the bridge's watchdog and ``roboalign
doctor --topic`` hand in what they measured as a :class:`StreamHealth`; :func:`stream_cause` says, for a stream
far below its publisher's rate or with long gaps, what was measured and the likely cause with the fix.

Measured on one host (docs/results.md): 640x480 rgb8 (921,600 B) frames are larger than FastDDS's default
512 KiB shared-memory segment, which belongs to the *publisher*; they fall back to fragmented UDP and, best
effort, most are lost (2 x 30 Hz from a publisher on FastDDS's defaults: 25.7 / 2.2 Hz received with largest
gaps of 2.5 s; with our profile on the subscriber only 18.6 / 11.8 Hz, 2.1 s; with it on the publisher too
30.0 / 30.0 Hz, 41 ms). So the fix is on the publisher's side.
"""

from __future__ import annotations

from dataclasses import dataclass

SHM_SEGMENT_BYTES = 512 * 1024  # FastDDS's default shared-memory segment (per participant, the sender's)
SLOW_FRACTION = 0.9  # a stream receiving less than this share of its publisher's rate is slow
GAP_PERIODS = 4.0  # a gap longer than this many publisher periods is a long gap
MIN_GAP_S = 0.1  # ... and at least this long (a 100 Hz stream may skip a few frames unnoticed)
SHIPPED_PROFILE = "<roboalign_policy share>/config/fastdds.xml"
BUFFER_FIX = "raise the socket buffers (sudo sysctl -w net.core.rmem_max=4194304 net.core.wmem_max=4194304)"
QOS_FIX = "or match QoS (a reliable publisher: camera_qos auto follows it and every frame is delivered)"


@dataclass(frozen=True)
class StreamHealth:
    """What a subscriber measured of one stream over its recent window."""

    label: str  # the topic
    rate_hz: float  # frames received per second
    published_hz: float  # the publisher's rate (nominal, or from the header stamps); 0: unknown
    max_gap_s: float  # the longest time between two arrivals
    frame_bytes: int  # size of the newest frame as received (0: unknown)
    frames: int = 0  # frames in the window

    def slow(self) -> bool:
        """Far below the publisher's rate, or with gaps of several publisher periods."""
        if self.published_hz <= 0 or self.frames < 2:
            return False
        long_gap = self.max_gap_s > max(GAP_PERIODS / self.published_hz, MIN_GAP_S)
        return self.rate_hz < SLOW_FRACTION * self.published_hz or long_gap

    def measured(self) -> str:
        """'9.7 Hz received of 30.0 Hz published, largest gap 0.310 s, frames 900 KiB'."""
        size = f", frames {self.frame_bytes / 1024:.0f} KiB" if self.frame_bytes else ""
        return (f"{self.rate_hz:.1f} Hz received of {self.published_hz:.1f} Hz published, largest gap "
                f"{self.max_gap_s:.3f} s{size}")


def likely_cause(frame_bytes: int, profile: str = "") -> str:
    """The likely cause of lost frames of this size, with the fixes (``profile``: where our FastDDS profile is)."""
    if frame_bytes > SHM_SEGMENT_BYTES:
        return (f"frames larger than FastDDS's default {SHM_SEGMENT_BYTES // 1024} KiB shared-memory segment fall "
                "back to fragmented UDP and many are lost: run the camera publisher with our FastDDS profile "
                f"(FASTRTPS_DEFAULT_PROFILES_FILE={profile or SHIPPED_PROFILE}, as real_robot.launch.py gives "
                f"realsense-ros), {BUFFER_FIX}, {QOS_FIX}")
    return (f"frames are lost between the publisher and this subscriber: {BUFFER_FIX} on both hosts, {QOS_FIX}; "
            "or the subscriber's CPUs are saturated (check its load)")


def stream_cause(health: StreamHealth, profile: str = "") -> str | None:
    """For a slow stream: '<topic>: <what was measured>: <likely cause and fix>'; None when it is healthy."""
    if not health.slow():
        return None
    return f"{health.label}: {health.measured()}: {likely_cause(health.frame_bytes, profile)}"
