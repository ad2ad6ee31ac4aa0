"""QueueAwareExecutor: every message is delivered, a queued callback is never queued again, and the rest of
rclpy's executor (coroutine callbacks, callback exceptions) behaves as before."""

from __future__ import annotations

import threading
import time

import pytest

pytestmark = pytest.mark.ros


@pytest.fixture
def rcl():
    import rclpy

    rclpy.init()
    yield rclpy
    rclpy.try_shutdown()


def _spin(ex):
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    return th


def test_busy_subscriptions_are_all_delivered_without_requeueing(rcl) -> None:
    """3 topics x 300 messages, callbacks taking 0.5 ms: rclpy's stock (Jazzy) MultiThreadedExecutor delivered
    ~250 of these 900 and made >100 000 submissions; each callback must run once per message here."""
    from rclpy.callback_groups import ReentrantCallbackGroup
    from rclpy.qos import QoSProfile
    from std_msgs.msg import String

    from roboalign_policy.executor import QueueAwareExecutor

    node = rcl.create_node("queue_aware_test")
    got: dict[str, list[str]] = {f"t{i}": [] for i in range(3)}
    lock = threading.Lock()

    def on(topic: str, msg: String) -> None:
        time.sleep(0.0005)
        with lock:
            got[topic].append(msg.data)

    group = ReentrantCallbackGroup()
    qos = QoSProfile(depth=400)  # deep enough that no message is dropped by the queue itself
    for t in got:
        node.create_subscription(String, t, lambda m, t=t: on(t, m), qos, callback_group=group)
    pubs = {t: node.create_publisher(String, t, qos) for t in got}
    ex = QueueAwareExecutor(num_threads=4)
    submit, submitted = ex._executor.submit, [0]  # count what reaches the thread pool, whoever submits it

    def counting_submit(*args, **kwargs):
        submitted[0] += 1
        return submit(*args, **kwargs)

    ex._executor.submit = counting_submit
    ex.add_node(node)
    th = _spin(ex)
    try:
        deadline = time.monotonic() + 5.0
        while not all(node.count_subscribers(t) for t in got) and time.monotonic() < deadline:
            time.sleep(0.01)
        for k in range(300):
            for t, p in pubs.items():
                p.publish(String(data=f"{t}-{k}"))
            time.sleep(0.002)
        deadline = time.monotonic() + 10.0
        while sum(map(len, got.values())) < 900 and time.monotonic() < deadline:
            time.sleep(0.02)
        calls = sum(map(len, got.values()))
        assert calls == 900, f"{calls} of 900 messages delivered"
        for t, data in got.items():
            assert sorted(data) == sorted(f"{t}-{k}" for k in range(300))
        # one submission per callback, plus the executor's own guard-condition wake-ups
        assert submitted[0] < 3 * calls, f"{submitted[0]} submissions for {calls} callbacks"
        assert ex.submissions == submitted[0]
    finally:
        ex.shutdown(timeout_sec=2.0)
        th.join(timeout=5.0)
        node.destroy_node()


def test_coroutine_callbacks_resume_and_callback_errors_propagate(rcl) -> None:
    from rclpy.callback_groups import ReentrantCallbackGroup
    from rclpy.task import Future
    from std_msgs.msg import String

    from roboalign_policy.executor import QueueAwareExecutor

    node = rcl.create_node("queue_aware_coro")
    gate, done = Future(), threading.Event()

    async def waits(msg: String) -> None:  # suspends on a future another callback completes
        await gate
        done.set()

    group = ReentrantCallbackGroup()  # a suspended coroutine keeps a mutually exclusive group busy
    node.create_subscription(String, "coro_in", waits, 10, callback_group=group)
    node.create_subscription(String, "coro_open", lambda m: gate.set_result(True), 10, callback_group=group)
    pub_in, pub_open = node.create_publisher(String, "coro_in", 10), node.create_publisher(String, "coro_open", 10)
    ex = QueueAwareExecutor(num_threads=2)
    ex.add_node(node)
    th = _spin(ex)
    try:
        time.sleep(0.3)
        pub_in.publish(String(data="x"))
        time.sleep(0.3)
        assert not done.is_set()
        pub_open.publish(String(data="go"))
        assert done.wait(5.0), "the coroutine callback never resumed"
    finally:
        ex.shutdown(timeout_sec=2.0)
        th.join(timeout=5.0)

    def boom() -> None:
        raise RuntimeError("callback failed")

    node.create_timer(0.01, boom)
    ex = QueueAwareExecutor(num_threads=2)
    ex.add_node(node)
    with pytest.raises(RuntimeError, match="callback failed"):
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.1)
    ex.shutdown(timeout_sec=2.0)
    node.destroy_node()
