"""Shared pytest setup: offline Hugging Face, local DDS, a ROS domain per test module (disjoint between
pytest-xdist workers), the ``ros`` executor fixture of the ROS 2 tests, the tiny models the tests share, and how
pytest-xdist workers share the suite (tests/parallel.py)."""

from __future__ import annotations

import itertools
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


def _domains_of_this_process() -> range:
    """The DDS domains this test process may use: 1..101 (safe on Linux), cut into one disjoint block per
    pytest-xdist worker, so that two workers never share a domain."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    size = 101 // workers
    return range(1 + worker * size, 1 + (worker + 1) * size)


# The suite runs on the shipped FastDDS profile, as every node does (config/fastdds.xml; ROBOALIGN_DDS_PROFILE=0 runs
# it on FastDDS's defaults, and skips the full-size camera test). A random start within the block (or the given
# ROS_DOMAIN_ID, which the workers inherit from the main process) keeps test runs started side by side on one
# machine from hearing each other; each test module then gets the next domain of the block (below), so what one
# module leaves on DDS cannot reach the next.
_DOMAINS = _domains_of_this_process()
_START = int(os.environ.get("ROS_DOMAIN_ID") or random.Random(os.getpid()).randint(1, 101)) - 1
_MODULE_DOMAINS = (_DOMAINS[(_START + k) % len(_DOMAINS)] for k in itertools.count())
os.environ["ROS_DOMAIN_ID"] = str(next(_MODULE_DOMAINS))


@pytest.fixture(autouse=True, scope="module")
def _ros_domain_of_the_module():
    """A DDS domain per test module, set before the module's own fixtures start node processes: a leaked
    participant (say an OperatorClient node never destroyed, serving a latched empty instruction that stops the
    policy of later tests) stays in its module. Leaks are still bugs: see test_operator_client."""
    before = os.environ["ROS_DOMAIN_ID"]
    os.environ["ROS_DOMAIN_ID"] = str(next(_MODULE_DOMAINS))
    yield
    os.environ["ROS_DOMAIN_ID"] = before


@pytest.fixture
def ros():
    """ROS 2 tests: ``add(*nodes)`` puts nodes on a multi-threaded executor spinning in the background; all torn
    down after the test (rclpy is imported only by the tests that use it)."""
    from tests.ros_helpers.executor import spinning_executor

    yield from spinning_executor()


@pytest.fixture(autouse=True)
def _thread_stays_time_shared():
    """Fail the test that leaves the main thread under a real-time policy (SVT-AV1 sets one when run as root):
    every later thread would inherit it, and a busy real-time thread starves the process (it looks like a DDS
    stall)."""
    yield
    if hasattr(os, "sched_getscheduler") and os.sched_getscheduler(0) != os.SCHED_OTHER:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        pytest.fail("this test left the main thread under a real-time scheduling policy (now reset)")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for the module's tests (tiny models run fastest so, and the other cores stay with the
    other workers), the thread count restored after. A module asks for it with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def shared_tmp_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temp folder of this test run, shared by its pytest-xdist workers (for what is built once per run)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def tiny_vla_export(shared_tmp_path) -> tuple[Path, Path]:
    """(checkpoint, ONNX export folder) of the tiny VLA, built once per test run (tests/export_fixtures.py)."""
    from export_fixtures import tiny_checkpoint_and_export

    return tiny_checkpoint_and_export(shared_tmp_path / "tiny_vla")


@pytest.fixture(scope="session")
def tiny_joint_export(request, shared_tmp_path) -> Path:
    """The tiny joint-space VLA's ONNX export the ROS end-to-end tests run, kept in pytest's cache while the code
    that builds it is unchanged (tests/export_fixtures.py)."""
    import export_fixtures

    name = export_fixtures.tiny_joint_export_name()
    cache = getattr(request.config, "cache", None)
    return export_fixtures.tiny_joint_export(cache.mkdir(name) if cache else shared_tmp_path / name)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a pytest-xdist worker: the slowest units first (tests/parallel.py)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        from parallel import slowest_first

        slowest_first(items)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``-n N`` with ``--dist loadfile`` (the default here): whole modules per worker, except the long independent
    tests of a few modules (tests/parallel.py)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from parallel import ModuleScheduling

    return ModuleScheduling(config, log)
