"""Doctor check of live camera streams (``roboalign doctor --topic T``): what a subscriber of ours receives.

Each topic is measured for a few seconds by ``roboalign_policy.tools.stream_check sub`` in a process of its own
(with the FastDDS profile the nodes use, the QoS following the publisher, frames counted undecoded), and
explained as the nodes explain it (``roboalign.control.stream_health``): a stream far below its publisher's rate
or with long gaps is a WARN naming the rate, largest gap, frame size and the likely cause with the fix.
"""

from __future__ import annotations

import json
import subprocess
import sys

from roboalign.control.stream_health import StreamHealth, stream_cause
from roboalign.doctor.report import Check

STREAM_CHECK = "roboalign_policy.tools.stream_check"


def stream_health(figures: dict) -> StreamHealth:
    """A stream_check subscriber's JSON figures as a :class:`StreamHealth`."""
    return StreamHealth(str(figures["topic"]), float(figures.get("rate_hz", 0.0)),
                        float(figures.get("published_hz", 0.0)), float(figures.get("max_gap_ms", 0.0)) / 1e3,
                        int(figures.get("bytes", 0)), int(figures.get("received", 0)))


def stream_finding(figures: dict) -> Check:
    """OK / WARN of one measured stream, with what was measured and, when slow, the cause and the fix."""
    if figures.get("error") or int(figures.get("received", 0)) < 2:
        return Check("stream", "FAIL", f"{figures.get('topic', '?')}: {figures.get('error') or 'no frames'}",
                     "start the camera driver (ros2 topic list shows the topic), same ROS_DOMAIN_ID and discovery "
                     "range as this shell")
    health = stream_health(figures)
    profile = str(figures.get("dds_profile", ""))
    cause = stream_cause(health, profile if profile.endswith("/config/fastdds.xml") else "")
    if cause is None:
        return Check("stream", "OK", f"{health.label}: {health.measured()} ({figures.get('qos', '').lower()})")
    measured, _, fix = cause.partition(f"{health.measured()}: ")
    return Check("stream", "WARN", f"{measured}{health.measured()} ({figures.get('qos', '').lower()})", fix)


def measure(topic: str, seconds: float) -> dict:
    """Subscribe to ``topic`` for ``seconds`` in a stream_check process; its JSON figures (``error`` on failure)."""
    cmd = [sys.executable, "-m", STREAM_CHECK, "sub", "--topic", topic, "--qos", "auto", "--raw",
           "--seconds", str(seconds)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60.0)
    except subprocess.TimeoutExpired:
        return {"topic": topic, "error": f"no answer within {seconds + 60.0:g} s"}
    lines = done.stdout.strip().splitlines()
    try:
        figures = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        figures = {}
    if not figures:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        return {"topic": topic, "error": f"stream_check failed (exit {done.returncode}): {tail or 'no output'}"}
    return {"topic": topic, **figures}


def check_streams(topics: list[str], seconds: float = 3.0) -> list[Check]:
    """One finding per live camera topic."""
    return [stream_finding(measure(topic, seconds)) for topic in topics]
