"""node_runner.pin_process: every thread of the process lands on the requested CPUs (also threads started
before the call), CPUs the process may not use are refused with the reason, and the nodes declare it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.ros

SCRIPT = textwrap.dedent("""
    import os, sys, threading, time
    from roboalign_policy.node_runner import pin_process
    stop = threading.Event()
    early = threading.Thread(target=stop.wait, daemon=True); early.start()   # exists before pinning
    cpus = [int(c) for c in sys.argv[1].split(",")]
    print("why", pin_process(cpus))
    late = threading.Thread(target=stop.wait, daemon=True); late.start()     # inherits the pinning
    time.sleep(0.05)
    for tid in sorted(os.listdir("/proc/self/task")):
        print("tid", tid, sorted(os.sched_getaffinity(int(tid))))
    stop.set()
""")


def _run(cpus: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, cpus], capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.splitlines()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_every_thread_is_pinned() -> None:
    target = sorted(os.sched_getaffinity(0))[-1]
    lines = _run(str(target))
    assert lines[0] == "why None"
    tids = [ln for ln in lines if ln.startswith("tid")]
    assert len(tids) >= 3  # main + early + late
    assert all(ln.endswith(f"[{target}]") for ln in tids), lines


def test_unavailable_cpus_are_refused_and_nothing_changes() -> None:
    allowed = sorted(os.sched_getaffinity(0))
    lines = _run(f"{allowed[0]},4095")
    assert lines[0].startswith("why cpu_affinity") and "[4095] are not available" in lines[0]
    assert all(ln.endswith(str(allowed)) for ln in lines if ln.startswith("tid"))


def test_every_node_declares_cpu_affinity() -> None:
    import importlib

    for mod in ("bridge_node", "policy_node", "sim_robot_node", "camera_node", "gripper_relay"):
        params = importlib.import_module(f"roboalign_policy.{mod}").PARAMS
        assert any(p.name == "cpu_affinity" and p.array == "int" for p in params), mod
