"""Camera frames off rclpy's Python executor: a thread that waits on the camera subscriptions alone.

The policy's hot path is image -> chunk. Through the executor a frame cost two of its wake-ups (the camera
callback, then the guard condition that started inference), each rebuilding the wait set over every entity of
the node (parameter services, timers, the instruction, ...) while holding the GIL, plus two hand-offs to its
thread pool: 1.3 + 0.55 ms per chunk measured on a 2-core machine. :class:`SubscriptionWaiter` waits in its own
thread on a wait set of only the subscriptions it is given (polled ones, which no executor runs) and a guard
condition that wakes it to stop, the same rcl wait the executor uses (the GIL is released while waiting), and
calls ``on_ready`` after each wake-up. :class:`Worker` runs a job in another thread each time it is kicked (at
most one pending), so the waiter keeps counting frames while the model runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from rclpy.exceptions import InvalidHandle
from rclpy.guard_condition import GuardCondition
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy


class SubscriptionWaiter:
    """Waits (thread ``name``) on the subscriptions ``subs()`` returns at each wait, then calls ``on_ready()``;
    also after ``timeout_s`` without a message (so ``on_ready`` can subscribe a camera that has none yet)."""

    def __init__(self, context: Any, subs: Callable[[], list[Any]], on_ready: Callable[[], None], name: str,
                 timeout_s: float = 0.1, on_error: Callable[[Exception], None] | None = None) -> None:
        self._context, self._subs, self._on_ready, self._on_error = context, subs, on_ready, on_error
        self._timeout_ns = int(timeout_s * 1e9)
        self._stop = threading.Event()
        self._wake = GuardCondition(None, None, context=context)  # not in any node: no executor sees it
        self.wakeups = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _wait(self) -> None:
        with ExitStack() as stack:
            handles = []
            for sub in self._subs():
                try:
                    stack.enter_context(sub.handle)  # kept alive while waited on (a re-subscription destroys it)
                    handles.append(sub.handle)
                except InvalidHandle:
                    pass
            stack.enter_context(self._wake.handle)
            stack.enter_context(self._context.handle)
            ws = _rclpy.WaitSet(len(handles), 1, 0, 0, 0, 0, self._context.handle)
            ws.clear_entities()
            for h in handles:
                ws.add_subscription(h)
            ws.add_guard_condition(self._wake.handle)
            ws.wait(self._timeout_ns)

    def _run(self) -> None:
        while not self._stop.is_set() and self._context.ok():
            try:
                self._wait()
                if self._stop.is_set():
                    break
                self.wakeups += 1
                self._on_ready()
            except InvalidHandle:  # the context or an entity went away under us: shutting down
                break
            except Exception as e:  # never let a bad frame end the thread; say why
                if self._on_error is None:
                    raise
                self._on_error(e)

    def close(self, timeout_s: float = 1.0) -> None:
        """Stop the thread (wakes it at once); safe to call twice."""
        if self._stop.is_set():
            return
        self._stop.set()
        try:
            self._wake.trigger()
        except InvalidHandle:
            pass
        self._thread.join(timeout=timeout_s)
        self._wake.destroy()


class Worker:
    """Runs ``job()`` in thread ``name`` once per :meth:`kick` (kicks while it runs coalesce into one more run)."""

    def __init__(self, job: Callable[[], None], name: str, on_error: Callable[[Exception], None]) -> None:
        self._job, self._on_error = job, on_error
        self._kicked = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def kick(self) -> None:
        self._kicked.set()

    def _run(self) -> None:
        while True:
            self._kicked.wait()
            self._kicked.clear()
            if self._stop:
                return
            try:
                self._job()
            except Exception as e:  # the job reports its own errors; this is the last line
                self._on_error(e)

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop after the current run; safe to call twice."""
        self._stop = True
        self._kicked.set()
        self._thread.join(timeout=timeout_s)
