"""Shared pytest setup: offline Hugging Face, local DDS, a unique ROS domain per test session, the ``ros``
executor fixture of the ROS 2 tests."""

from __future__ import annotations

import os
import random

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
# FastDDS's default transports in tests: with the shipped 8 MiB shared-memory profile (config/fastdds.xml), in-process
# participant creation stalled in 3 of 4 full runs this session (busy, GIL held); until understood, tests run without it
os.environ.setdefault("ROBOALIGN_DDS_PROFILE", "0")
# A per-session domain keeps parallel test runs on one machine from hearing each other.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))


@pytest.fixture
def ros():
    """ROS 2 tests: ``add(*nodes)`` puts nodes on a multi-threaded executor spinning in the background; all torn
    down after the test (rclpy is imported only by the tests that use it)."""
    from tests.ros_helpers.executor import spinning_executor

    yield from spinning_executor()


LAST = ("test_ros_full_res.py",)  # full-size image streams over DDS


def pytest_collection_modifyitems(config, items) -> None:
    """The full-size DDS stream test runs last: twice in this session, in-process DDS participant creation in a
    later ROS test (test_ros_gripper) stalled after it (large shared-memory segments left behind); until that is
    understood, nothing runs after it in the same process."""
    items.sort(key=lambda item: item.path.name in LAST)
