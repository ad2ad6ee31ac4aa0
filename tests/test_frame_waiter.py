"""frame_waiter: the camera thread wakes for messages on its subscriptions only (no executor), picks up a
re-created subscription, stops at once when closed; the worker coalesces kicks and survives a failing job."""

from __future__ import annotations

import threading
import time

import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (make setup)")
from rclpy.qos import QoSProfile  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from roboalign_policy.frame_waiter import SubscriptionWaiter, Worker  # noqa: E402
from roboalign_policy.polling import PolledGroup, polled_subscription, take_all  # noqa: E402
from tests.ros_helpers.executor import wait_until  # noqa: E402


def test_the_waiter_wakes_for_its_subscription_and_stops_at_once(ros) -> None:
    node = ros(rclpy.create_node("waiter_test"))
    group = PolledGroup()
    subs = [polled_subscription(node, group, String, "/waiter_test/a", QoSProfile(depth=10))]
    got: list[str] = []
    waiter = SubscriptionWaiter(node.context, lambda: subs, lambda: got.extend(m.data for m, _ in take_all(subs[0])),
                                "waiter_test", timeout_s=3.0)
    try:
        pub = node.create_publisher(String, "/waiter_test/a", 10)
        wait_until(lambda: pub.get_subscription_count() == 1, 5, "the subscription to match")
        for k in range(3):
            pub.publish(String(data=f"m{k}"))
            wait_until(lambda k=k: f"m{k}" in got, 1.5, f"message m{k}")  # woken by it, not by the 3 s timeout
        # a re-created subscription (camera_qos following a publisher) is waited on from the next wait
        node.destroy_subscription(subs[0])
        subs[0] = polled_subscription(node, group, String, "/waiter_test/a", QoSProfile(depth=10))
        wait_until(lambda: pub.get_subscription_count() == 1, 5, "the new subscription to match")
        deadline = time.monotonic() + 10
        while "again" not in got and time.monotonic() < deadline:  # the old wait ends at its 3 s timeout at the latest
            pub.publish(String(data="again"))
            time.sleep(0.2)
        assert "again" in got
    finally:
        t0 = time.monotonic()
        waiter.close()
        assert time.monotonic() - t0 < 1.0, "close() should wake the thread, not wait out its timeout"
        waiter.close()  # twice is fine
    assert not waiter._thread.is_alive()


def test_the_worker_coalesces_kicks_and_outlives_a_failing_job() -> None:
    runs, errors, gate = [], [], threading.Event()

    def job() -> None:
        runs.append(time.monotonic())
        gate.wait(2.0)
        if len(runs) == 1:
            raise RuntimeError("bad chunk")

    w = Worker(job, "worker_test", errors.append)
    try:
        w.kick()
        wait_until(lambda: len(runs) == 1, 5, "the first run")
        for _ in range(5):  # while it runs: one more run, not five
            w.kick()
        gate.set()
        wait_until(lambda: len(runs) == 2, 5, "the second run")
        time.sleep(0.2)
        assert len(runs) == 2 and [str(e) for e in errors] == ["bad chunk"]
        w.kick()
        wait_until(lambda: len(runs) == 3, 5, "a run after the error")
    finally:
        w.close()
    assert not w._thread.is_alive()
