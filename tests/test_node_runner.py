"""node_runner: pin_process puts every thread of the process on the requested CPUs (also threads started
before the call), CPUs the process may not use are refused with the reason, and the nodes declare it; the
DDS profile variables a launched process (realsense-ros) gets."""

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


def test_repeated_sigterm_does_not_cut_the_clean_up_short() -> None:
    """make and timeout each send a SIGTERM: the first one starts the clean-up, the later ones must not
    interrupt it (which would orphan the node processes of a ProcessGraph)."""
    import signal
    import time

    prog = textwrap.dedent("""
        import sys, time
        from roboalign_policy.tools.process_graph import interrupt_on_sigterm
        interrupt_on_sigterm()
        try:
            print("ready", flush=True)
            time.sleep(30)
        except KeyboardInterrupt as e:
            print("interrupted", e, flush=True)
        finally:
            for _ in range(10):  # a slow clean-up (graph.stop) that more signals arrive during
                time.sleep(0.05)
            print("cleaned up", flush=True)
    """)
    p = subprocess.Popen([sys.executable, "-c", prog], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    for _ in range(3):
        p.send_signal(signal.SIGTERM)
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 0
    assert out.splitlines() == ["interrupted signal 15", "cleaned up"]


def test_dds_profile_env_names_the_shipped_profile_unless_one_is_chosen() -> None:
    from roboalign_policy.node_runner import PROFILE_VARS, dds_profile_env

    env = dds_profile_env({})
    assert set(env) == set(PROFILE_VARS) and len(set(env.values())) == 1
    profile = next(iter(env.values()))
    assert profile.endswith("config/fastdds.xml") and "<segment_size>8388608</segment_size>" in open(profile).read()
    assert dds_profile_env({"FASTRTPS_DEFAULT_PROFILES_FILE": "/robot/mine.xml"}) == {}  # the user's wins
    assert dds_profile_env({"ROBOALIGN_DDS_PROFILE": "0"}) == {}
    assert dds_profile_env({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}) == {}
    assert dds_profile_env({"RMW_IMPLEMENTATION": "rmw_fastrtps_dynamic_cpp"}) == env
