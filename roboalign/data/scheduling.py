"""Keep the calling thread's scheduling policy across encoder calls: SVT-AV1 (lerobot's default video codec,
``libsvtav1``) puts the thread that encodes under SCHED_FIFO 99 when the process runs as root, and every thread
started from it afterwards inherits that. A busy real-time Python thread then starves the rest of the process (as
root, a ROS test run in the same process after a LeRobot v3 export stalls creating its DDS participant)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def _policy() -> tuple[int, int] | None:
    try:
        return os.sched_getscheduler(0), os.sched_getparam(0).sched_priority
    except (AttributeError, OSError):  # not Linux
        return None


@contextmanager
def scheduling_kept() -> Iterator[None]:
    """Run the block, then put the calling thread back under the scheduling policy and priority it had before."""
    before = _policy()
    try:
        yield
    finally:
        if before is not None and _policy() != before:
            os.sched_setscheduler(0, before[0], os.sched_param(before[1]))
