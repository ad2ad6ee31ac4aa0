"""The QoS profiles every node uses, in one place: commands and chunks reliable, instructions latched."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

# commands, chunks, statuses: every message matters, a short queue absorbs a slow reader
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# the current instruction: a late joiner gets the last one
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
# joint states (100 Hz+): only the newest matters
SENSOR = qos_profile_sensor_data
