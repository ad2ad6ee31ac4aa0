"""A small diagnostic updater (diagnostic_updater is not on PyPI): named checks -> /diagnostics.

Each check is a function returning ``(level, message, values)``; ``update()`` publishes one
diagnostic_msgs/DiagnosticArray with a DiagnosticStatus per check, named ``<node>: <check>``. Nodes call
``update()`` from a timer and ``force_update()`` right after a fault so it is reported at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

OK, WARN, ERROR, STALE = (DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR, DiagnosticStatus.STALE)
Check = Callable[[], tuple[int, str, dict[str, Any]]]


class DiagnosticUpdater:
    def __init__(self, node: Node, hardware_id: str, topic: str = "/diagnostics") -> None:
        self._node = node
        self._hardware_id = hardware_id
        self._checks: list[tuple[str, Check]] = []
        self._pub = node.create_publisher(DiagnosticArray, topic, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))

    def add(self, name: str, check: Check) -> None:
        self._checks.append((name, check))

    def remove_prefix(self, prefix: str) -> None:
        """Drop the checks whose name starts with ``prefix`` (e.g. the inputs a lifecycle cleanup released)."""
        self._checks = [(n, c) for n, c in self._checks if not n.startswith(prefix)]

    def add_qos_check(self) -> None:
        """A "qos" check listing peers with incompatible QoS (each new one is also logged once), for nodes
        that create their entities without rclpy's QoS event handlers (``polling.QuietEvents``)."""
        from roboalign_policy.polling import qos_problems

        seen: set[str] = set()

        def check() -> tuple[int, str, dict[str, Any]]:
            problems = qos_problems(self._node)
            for p in problems:
                if p not in seen:
                    seen.add(p)
                    self._node.get_logger().warning(p)
            return (WARN, "; ".join(problems), {}) if problems else (OK, "all peers QoS-compatible", {})

        self.add("qos", check)

    def statuses(self) -> list[DiagnosticStatus]:
        out = []
        for name, check in list(self._checks):
            try:
                level, message, values = check()
            except Exception as e:  # a broken check is itself an error worth reporting
                level, message, values = ERROR, f"diagnostic check failed: {e!r}", {}
            out.append(DiagnosticStatus(
                level=bytes([level]) if isinstance(level, int) else level,
                name=f"{self._node.get_name()}: {name}", message=message, hardware_id=self._hardware_id,
                values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()]))
        return out

    def update(self) -> None:
        msg = DiagnosticArray(status=self.statuses())
        msg.header.stamp = self._node.get_clock().now().to_msg()
        self._pub.publish(msg)

    force_update = update
