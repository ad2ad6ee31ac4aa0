"""``roboalign doctor`` on this machine, against what is really there (torch build, onnxruntime providers,
RealSense device list, rlimits, /proc/sys, /sys CPU isolation, environment), plus each FAIL path it has."""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path

import onnxruntime as ort
import pytest
import torch

import roboalign.doctor as doctor
from roboalign.doctor.report import Check, DeployConfig
from roboalign.doctor.robot import (
    _cpu_list,
    check_cpus,
    check_dds,
    check_realsense,
    check_realtime,
    check_ros_env,
)

REAL_ROBOT = Path(__file__).resolve().parents[1] / "ros2_ws/src/roboalign_policy/config/real_robot.yaml"
FASTDDS_XML = REAL_ROBOT.parent / "fastdds.xml"
HAS_CUDA_EP = "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.fixture(scope="module")
def findings():
    return doctor.run_checks(DeployConfig.load(REAL_ROBOT))


def _area(checks: list[Check], area: str) -> list[Check]:
    return [c for c in checks if c.area == area]


def test_every_area_reports_what_is_here(findings):
    areas = {c.area for c in findings}
    assert areas == {"torch", "onnxruntime", "tensorrt", "realsense", "franka_ros2", "realtime", "cpu", "dds", "ros"}
    torch_check = _area(findings, "torch")[0]
    assert torch.__version__ in torch_check.detail
    if torch.version.cuda is None:
        assert torch_check.status == "WARN" and "CPU-only build" in torch_check.detail and "cu128" in torch_check.fix
    assert ort.__version__ in _area(findings, "onnxruntime")[0].detail
    assert all(c.fix for c in findings if c.status != "OK")  # every WARN / FAIL says what to do


def test_configured_providers_are_checked_with_a_real_session(findings, tmp_path):
    cuda = [c for c in _area(findings, "onnxruntime") if "CUDAExecutionProvider (asked by" in c.detail][0]
    cpu = [c for c in _area(findings, "onnxruntime") if "CPUExecutionProvider (asked by" in c.detail][0]
    assert cpu.status == "OK" and "runs a graph here" in cpu.detail
    if HAS_CUDA_EP and torch.cuda.is_available():
        pytest.skip("CUDA provider present and usable here")
    assert cuda.status == "FAIL" and "refuse to load" in cuda.detail and "allow_cpu_fallback" in cuda.fix
    lenient = tmp_path / "robot.yaml"
    lenient.write_text(REAL_ROBOT.read_text().replace("allow_cpu_fallback: false", "allow_cpu_fallback: true"))
    checks = doctor.compute.check_onnxruntime(DeployConfig.load(lenient))
    assert [c.status for c in checks if "CUDA" in c.detail] == ["WARN"]


def test_realsense_lists_devices_without_streaming():
    import pyrealsense2 as rs

    n = len(rs.context().query_devices())
    check = check_realsense(DeployConfig(cameras=("agentview", "wrist")))
    assert (check.status == "WARN" and "no RealSense camera connected (2 configured)" in check.detail) if n == 0 \
        else f"{n} camera(s)" in check.detail


def test_realtime_limits_are_the_real_ones():
    rt, lock, kernel = check_realtime(DeployConfig(realtime_priority=10))
    soft = resource.getrlimit(resource.RLIMIT_RTPRIO)[0]
    assert "SCHED_FIFO 10" in rt.detail and (str(soft) in rt.detail or "unlimited" in rt.detail)
    mem = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    assert (str(mem) if mem != resource.RLIM_INFINITY else "unlimited") in lock.detail
    assert os.uname().release in kernel.detail or "PREEMPT_RT kernel" in kernel.detail


def test_cpu_isolation_and_affinity():
    first = check_cpus(DeployConfig())[0]
    assert str(sorted(os.sched_getaffinity(0))) in first.detail
    assert _cpu_list("0-2,5") == {0, 1, 2, 5} and _cpu_list("") == set()
    bad = check_cpus(DeployConfig(cpu_affinity={"bridge_node": (0, 999)}))[1]
    assert bad.status == "FAIL" and "bridge_node.cpu_affinity [0, 999]: CPUs [999] are not available" in bad.detail


def test_socket_buffers_and_dds_profiles(monkeypatch, tmp_path):
    rmem = int(Path("/proc/sys/net/core/rmem_max").read_text())
    assert f"net.core.rmem_max = {rmem}" in check_dds()[0].detail
    for var in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("FASTDDS_DEFAULT_PROFILES_FILE", str(tmp_path / "missing.xml"))
    assert [c.status for c in check_dds() if "missing.xml" in c.detail] == ["FAIL"]
    (tmp_path / "broken.xml").write_text("<profiles><unclosed></profiles>")
    monkeypatch.setenv("FASTDDS_DEFAULT_PROFILES_FILE", str(tmp_path / "broken.xml"))
    assert any(c.status == "FAIL" and "not valid XML" in c.detail for c in check_dds())
    monkeypatch.setenv("FASTDDS_DEFAULT_PROFILES_FILE", str(FASTDDS_XML))
    assert any(c.status == "OK" and "your profile wins" in c.detail for c in check_dds())


def test_ros_domain_and_discovery_range(monkeypatch):
    monkeypatch.setenv("ROS_DOMAIN_ID", "abc")
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "EVERYWHERE")
    assert [c.status for c in check_ros_env()] == ["FAIL", "FAIL"]
    monkeypatch.setenv("ROS_DOMAIN_ID", "150")
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    domain, rng = check_ros_env()[:2]
    assert domain.status == "WARN" and rng.status == "OK" and "only this host" in rng.detail


def test_a_crashing_check_is_reported_and_the_cli_prints_json(monkeypatch, capsys):
    def boom():
        raise RuntimeError("ament index unreadable")

    monkeypatch.setattr(doctor, "check_franka", boom)
    rc = doctor.main(["--json"])
    rows = json.loads(capsys.readouterr().out)
    crashed = [r for r in rows if r["area"] == "franka_ros2"][0]
    assert crashed["status"] == "FAIL" and "ament index unreadable" in crashed["detail"]
    assert rc == 1 and {r["status"] for r in rows} <= {"OK", "WARN", "FAIL"}
    with pytest.raises(FileNotFoundError, match="doctor --config nope.yaml: no such file"):
        doctor.main(["--config", "nope.yaml"])


def test_the_configured_backend_decides_warn_or_fail():
    import importlib.util

    from roboalign.doctor.compute import check_tensorrt, check_torch

    if importlib.util.find_spec("tensorrt") is None:
        assert check_tensorrt(DeployConfig(source="robot.yaml", backend="tensorrt"))[0].status == "FAIL"
        assert check_tensorrt(DeployConfig(backend="onnxruntime"))[0].status == "WARN"
    if not torch.cuda.is_available():
        cuda_torch = check_torch(DeployConfig(source="robot.yaml", backend="torch", device="cuda"))
        assert cuda_torch.status == "FAIL" and "robot.yaml runs the torch backend on cuda" in cuda_torch.detail
        assert check_torch(DeployConfig(backend="torch", device="cpu")).status == "WARN"


def test_a_measured_stream_is_ok_or_names_the_cause_and_the_fix():
    from roboalign.doctor.streams import stream_finding

    slow = {"topic": "/camera/wrist/color/image_raw", "received": 22, "rate_hz": 2.2, "published_hz": 30.0,
            "max_gap_ms": 2499.3, "bytes": 921648, "qos": "BEST_EFFORT"}
    c = stream_finding(slow)
    assert c.status == "WARN" and c.detail == ("/camera/wrist/color/image_raw: 2.2 Hz received of 30.0 Hz published, "
                                               "largest gap 2.499 s, frames 900 KiB (best_effort)"), c
    assert c.fix.startswith("frames larger than FastDDS's default 512 KiB shared-memory segment") and \
        "config/fastdds.xml" in c.fix and "net.core.rmem_max" in c.fix, c.fix
    steady = stream_finding({**slow, "received": 300, "rate_hz": 30.0, "max_gap_ms": 41.3})
    assert steady.status == "OK" and "30.0 Hz received of 30.0 Hz published" in steady.detail and not steady.fix
    gone = stream_finding({"topic": "/c", "error": "no publisher on /c within 30 s"})
    assert gone.status == "FAIL" and "no publisher on /c" in gone.detail


@pytest.mark.ros
def test_doctor_measures_a_live_full_size_stream_from_a_publisher_without_our_profile(capsys):
    """2 x 640x480 at 30 Hz best effort from a process on FastDDS's defaults: ``doctor --topic`` reports the
    stream carried, or what it measured with the cause and the fix."""
    import subprocess
    import sys

    pytest.importorskip("rclpy", reason="needs ROS 2 (make setup)")
    from roboalign_policy.node_runner import PROFILE_VARS

    topic = "/camera/doctor_probe/color/image_raw"
    env = {k: v for k, v in os.environ.items() if k not in PROFILE_VARS} | {"ROBOALIGN_DDS_PROFILE": "0"}
    pub = subprocess.Popen([sys.executable, "-m", "roboalign_policy.tools.stream_check", "pub", "--topic", topic,
                            "--cameras", "2", "--size", "640x480", "--fps", "30", "--qos", "best_effort",
                            "--seconds", "40"], env=env, stdout=subprocess.DEVNULL)
    try:
        doctor.main(["--topic", f"{topic}_1", "--seconds", "2", "--json"])
    finally:
        pub.kill()
        pub.wait()
    (row,) = [r for r in json.loads(capsys.readouterr().out) if r["area"] == "stream"]
    assert row["detail"].startswith(f"{topic}_1: ") and "Hz published, largest gap" in row["detail"], row
    assert "frames 900 KiB" in row["detail"], row
    if row["status"] == "WARN":
        assert "shared-memory segment" in row["fix"] and "config/fastdds.xml" in row["fix"], row
    else:
        assert row["status"] == "OK", row
