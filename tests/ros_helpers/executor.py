"""Test helpers for ROS 2 tests: a background multi-threaded executor (the nodes' own QueueAwareExecutor) that owns the nodes, and polling waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import rclpy
from rclpy.node import Node

from roboalign_policy.executor import QueueAwareExecutor
from roboalign_policy.node_runner import use_dds_profile


def wait_until(pred: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def spinning_executor() -> Iterator[Callable[..., Node]]:
    """rclpy.init, a QueueAwareExecutor spinning in the background, and ``add(*nodes)`` putting nodes on it
    (returns the node, or the nodes); after the yield everything is torn down (``close()`` first if a node has it)."""
    use_dds_profile()  # as every node process: camera publishers here need the shared-memory segment too
    rclpy.init()
    ex = QueueAwareExecutor(num_threads=8)
    nodes = []

    def add(*new):
        for n in new:
            ex.add_node(n)
            nodes.append(n)
        return new[0] if len(new) == 1 else new

    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    yield add
    ex.shutdown(timeout_sec=2.0)
    th.join(timeout=5.0)
    for n in nodes:
        if hasattr(n, "close"):
            n.close()
        n.destroy_node()
    rclpy.shutdown()
