"""A control loop on absolute deadlines: ``step(deadline)`` every period, started ``lead`` s early, never bursting.

The bridge's wall-clock thread runs on this: each command is computed ``lead`` seconds before its deadline and
published on it, so commands leave on a steady 1/rate grid however long the computation took; a loop that fell
more than a period behind skips ahead instead of sending a burst of late commands.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class DeadlineLoop:
    """Run ``step(deadline)`` on ``clock`` deadlines ``period`` apart until ``stopped()``."""

    def __init__(self, period: float, step: Callable[[float], None], stopped: Callable[[], bool],
                 lead: float = 0.0, on_error: Callable[[Exception], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        if not period > 0 or not 0 <= lead < period:
            raise ValueError(f"need period > 0 and 0 <= lead < period, got period={period}, lead={lead}")
        self.period, self.lead, self.step, self.stopped = period, lead, step, stopped
        self.on_error, self.clock, self.sleep = on_error, clock, sleep
        self.skipped = 0  # deadlines given up because the loop fell more than a period behind

    def run(self) -> None:
        deadline = self.clock()
        while not self.stopped():
            deadline = self._next(deadline)
            if self.stopped():
                return
            try:
                self.step(deadline)
            except Exception as e:  # the loop must not die; the caller decides what an error means
                if self.on_error is None:
                    raise
                if self.stopped():  # an error while shutting down (entities going away) ends the loop quietly
                    return
                self.on_error(e)

    def _next(self, deadline: float) -> float:
        deadline += self.period
        delay = deadline - self.lead - self.clock()
        if delay > 0:
            self.sleep(delay)
        elif -delay > self.period:  # more than a period behind: skip, do not burst
            self.skipped += 1
            deadline = self.clock() + self.lead
        return deadline

    def wait_for(self, deadline: float) -> None:
        """Sleep until ``deadline`` (for publishing a command computed early exactly on its deadline)."""
        left = deadline - self.clock()
        if left > 0:
            self.sleep(left)
