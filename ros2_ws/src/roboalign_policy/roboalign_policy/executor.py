"""A MultiThreadedExecutor that does not busy-loop on callbacks already queued in its thread pool.

rclpy's (Jazzy) MultiThreadedExecutor submits each ready callback to a thread pool and waits again at once.
The wait yields every task that has not *started* yet, so a callback still queued in the pool is yielded
and submitted again, and while one is queued the wait returns without waiting: the spin thread loops at
full speed holding the GIL, and the pool's workers barely get to run (ros2/rclpy#1452, fixed upstream in
rclpy 10.0.4 by ros2/rclpy#1547, not in the Jazzy wheels). Measured here: 3 subscriptions (queue depth 50)
at ~200 Hz with 0.5 ms callbacks: 215 000 submissions, one core at 100 %, 221 of 900 messages delivered
(this executor: ~2 submissions per callback, all 900 delivered, a third of a core); in ``roboalign bench
ros`` the same loop stalled a whole process for ~1 s at a time.

:class:`QueueAwareExecutor` submits a task only if it is not already waiting in the pool; when the wait
yields one that is, it gives the pool a moment (waiting on that task's future, which releases the GIL)
instead of queueing it again. Everything else is rclpy's executor, so callback groups, coroutines and
``spin_until_future_complete`` behave as documented.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future as PoolFuture
from concurrent.futures import wait
from typing import Any

from rclpy._rclpy_pybind11 import InvalidHandle
from rclpy.executors import (
    ConditionReachedException,
    ExternalShutdownException,
    MultiThreadedExecutor,
    ShutdownException,
    TimeoutException,
)

YIELD_S = 0.001  # how long to let the pool start a queued task before waiting for work again


def spin_until_closed(executor: Any, closing: Any, context: Any, on_error: Callable[[str], None]) -> None:
    """Spin ``executor`` until the event ``closing`` is set or ROS shuts down; a failing callback is handed to
    ``on_error`` as text and the others go on (one raised while shutting down is not the callback's fault)."""
    while not closing.is_set():
        try:
            executor.spin_once(timeout_sec=0.1)
        except (ExternalShutdownException, ShutdownException):
            return
        except Exception as e:
            if closing.is_set() or not context.ok():
                return
            on_error(f"{type(e).__name__}: {e}")


class QueueAwareExecutor(MultiThreadedExecutor):
    """rclpy's MultiThreadedExecutor, minus the re-submission of queued tasks (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # task -> the pool future of its current run (replaces rclpy's _futures list)
        self._queued: dict[Any, PoolFuture] = {}
        self.submissions = 0  # tasks handed to the pool (for tests / diagnostics)

    def _spin_once_impl(self, timeout_sec: Any = None, wait_condition: Callable[[], bool] = lambda: False) -> None:
        try:
            handler, _entity, _node = self.wait_for_ready_callbacks(timeout_sec, None, wait_condition)
        except (ExternalShutdownException, ShutdownException, TimeoutException, ConditionReachedException):
            return
        running = self._queued.get(handler)
        if running is not None and not running.done():
            wait([running], timeout=YIELD_S)  # queued or starting: let a worker take it, do not queue it again
        else:
            self._queued[handler] = self._executor.submit(handler)
            self.submissions += 1
        for task, run in list(self._queued.items()):
            if not run.done():
                continue
            del self._queued[task]  # a suspended coroutine is yielded again when it can resume
            if task.done():
                try:
                    task.result()  # raise any exception of a callback, as rclpy does
                except InvalidHandle:
                    if not self._is_shutdown:
                        raise
                    # shutting down: an entity was destroyed under a last callback; not the callback's error
