"""Doctor checks of a robot PC: RealSense cameras, franka_ros2, real-time scheduling and memlock for the
bridge's SCHED_FIFO thread, CPU isolation and affinity, DDS / socket buffers for camera streams, and the
ROS 2 domain / discovery environment. Nothing here imports rclpy or opens a camera stream."""

from __future__ import annotations

import os
import resource
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

from roboalign.doctor.report import Check, DeployConfig

MIB = 1024**2
MEMLOCK_MIN = 100 * MIB  # franka's real-time setup guide: memlock 102400 (KiB) for the realtime group
SOCKET_BUFFER_MIN = 4 * MIB  # what config/fastdds.xml asks for its UDP transport (full-size camera images)
SHM_MIN = 64 * MIB  # FastDDS SHM segments of 8 MiB per participant (config/fastdds.xml)
LIMITS_FIX = ("add to /etc/security/limits.conf: `@realtime - rtprio 99` and `@realtime - memlock 102400`, "
              "`sudo usermod -aG realtime $USER`, log in again")
DISCOVERY_RANGES = ("SUBNET", "LOCALHOST", "OFF", "SYSTEM_DEFAULT")


def check_realsense(cfg: DeployConfig) -> Check:
    """Lists devices with ``query_devices()`` (instant); never starts a pipeline (that blocks ~15 s without one)."""
    try:
        import pyrealsense2 as rs
    except ImportError as e:
        return Check("realsense", "WARN", f"pyrealsense2 does not import ({e})",
                     "pip install pyrealsense2 (and Debian libusb-1.0-0)")
    devices = rs.context().query_devices()
    found = [f"{d.get_info(rs.camera_info.name)} #{d.get_info(rs.camera_info.serial_number)}" for d in devices]
    want = len(cfg.cameras)
    if not found:
        return Check("realsense", "WARN", "no RealSense camera connected" + (f" ({want} configured)" if want else ""),
                     "plug the cameras into USB 3 ports; `rs-enumerate-devices` lists them; the sim needs none")
    status = "OK" if len(found) >= want else "WARN"
    return Check("realsense", status, f"{len(found)} camera(s): {', '.join(found)}" +
                 (f"; {want} configured ({', '.join(cfg.cameras)})" if want else ""),
                 "" if status == "OK" else "connect one camera per configured camera name")


def check_franka() -> Check:
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return Check("franka_ros2", "WARN", "ament_index_python is missing: no ROS 2 environment", "make setup")
    try:
        share = Path(get_package_share_directory("franka_msgs"))
    except PackageNotFoundError:
        return Check("franka_ros2", "WARN", "franka_msgs is not installed (gripper_relay cannot talk to the FR3 hand)",
                     "on the robot PC install franka_ros2 (https://github.com/frankaemika/franka_ros2)")
    package = (share / "package.xml").read_text() if (share / "package.xml").is_file() else ""
    if "RoboAlign stand-in" in package:
        return Check("franka_ros2", "WARN", f"franka_msgs at {share} is RoboAlign's stand-in (ros2_ws/compat), "
                     "not franka_ros2: fine in sim, no FR3 driver", "on the robot PC install franka_ros2; setup "
                     "then removes the stand-in")
    extra = [p for p in ("franka_hardware", "franka_bringup", "franka_gripper") if _has_package(p)]
    return Check("franka_ros2", "OK", f"franka_msgs at {share}; also {', '.join(extra) or 'no franka_hardware'}")


def _has_package(name: str) -> bool:
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        get_package_share_directory(name)
    except PackageNotFoundError:
        return False
    return True


def _try_fifo(priority: int) -> str | None:
    """Put a short-lived thread under SCHED_FIFO ``priority`` (as the bridge's control thread); None = granted."""
    result: list[str | None] = []

    def run() -> None:
        try:
            os.sched_setscheduler(threading.get_native_id(), os.SCHED_FIFO, os.sched_param(priority))
            result.append(None)
        except (OSError, AttributeError) as e:
            result.append(str(e))

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return result[0]


def _limit(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else str(value)


def check_realtime(cfg: DeployConfig) -> list[Check]:
    prio = cfg.realtime_priority or 50
    soft, _ = resource.getrlimit(resource.RLIMIT_RTPRIO)
    why = _try_fifo(prio)
    rt = Check("realtime", "OK", f"SCHED_FIFO {prio} granted to a thread (RLIMIT_RTPRIO {_limit(soft)})") \
        if why is None else Check("realtime", "WARN", f"SCHED_FIFO {prio} refused ({why}; RLIMIT_RTPRIO "
                                  f"{_limit(soft)}): the bridge's control thread runs with normal scheduling",
                                  LIMITS_FIX)
    mem, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    ok = mem == resource.RLIM_INFINITY or mem >= MEMLOCK_MIN
    lock = Check("realtime", "OK" if ok else "WARN", f"RLIMIT_MEMLOCK {_limit(mem)} bytes" +
                 ("" if ok else f" (< {MEMLOCK_MIN // MIB} MiB: locked memory for real-time threads is short)"),
                 "" if ok else LIMITS_FIX)
    kernel = Path("/sys/kernel/realtime")
    preempt = kernel.is_file() and kernel.read_text().strip() == "1"
    uname = os.uname().version
    krn = Check("realtime", "OK", f"PREEMPT_RT kernel ({uname})") if preempt or "PREEMPT_RT" in uname else Check(
        "realtime", "WARN", f"not a PREEMPT_RT kernel ({os.uname().release}): franka_ros2's 1 kHz driver needs one",
        "install a real-time kernel (Ubuntu Pro `pro enable realtime-kernel`, or franka's PREEMPT_RT guide)")
    return [rt, lock, krn]


def _cpu_list(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in filter(None, text.strip().split(",")):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def check_cpus(cfg: DeployConfig) -> list[Check]:
    allowed = os.sched_getaffinity(0)
    iso_file = Path("/sys/devices/system/cpu/isolated")
    isolated = _cpu_list(iso_file.read_text()) if iso_file.is_file() else set()
    out = [Check("cpu", "OK" if isolated else "WARN",
                 f"{os.cpu_count()} CPUs, this process may use {sorted(allowed)}; isolated: {sorted(isolated) or 'none'}",
                 "" if isolated else "optional: isolate cores for the control path (kernel `isolcpus=` / "
                 "`nohz_full=`) and pin the bridge there with cpu_affinity")]
    for node, cpus in cfg.cpu_affinity.items():
        bad = sorted(set(cpus) - allowed - isolated)
        out.append(Check("cpu", "FAIL" if bad else "OK", f"{node}.cpu_affinity {list(cpus)}" +
                         (f": CPUs {bad} are not available here" if bad else " is available"),
                         f"pick CPUs from {sorted(allowed | isolated)}" if bad else ""))
    return out


def _sysctl(name: str) -> int | None:
    path = Path("/proc/sys") / name.replace(".", "/")
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def check_dds() -> list[Check]:
    out = []
    for key in ("net.core.rmem_max", "net.core.wmem_max"):
        value = _sysctl(key)
        ok = value is not None and value >= SOCKET_BUFFER_MIN
        out.append(Check("dds", "OK" if ok else "WARN", f"{key} = {value}" + ("" if ok else
                         f" (< {SOCKET_BUFFER_MIN // MIB} MiB: the UDP buffers of config/fastdds.xml are capped, camera "
                         "images crossing hosts drop)"), "" if ok else f"sudo sysctl -w {key}={SOCKET_BUFFER_MIN} "
                         "(persist in /etc/sysctl.d/60-ros.conf)"))
    shm = os.statvfs("/dev/shm") if Path("/dev/shm").is_dir() else None
    free = shm.f_bavail * shm.f_frsize if shm else 0
    out.append(Check("dds", "OK" if free >= SHM_MIN else "WARN", f"/dev/shm free {free // MIB} MiB",
                     "" if free >= SHM_MIN else "FastDDS shared memory needs room: docker --shm-size=1g"))
    out.append(_profile_check())
    rmw = os.environ.get("RMW_IMPLEMENTATION", "")
    out.append(Check("dds", "OK", f"RMW_IMPLEMENTATION={rmw or '(unset: rmw_fastrtps_cpp)'}"))
    return out


def _profile_check() -> Check:
    for var in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE"):
        value = os.environ.get(var)
        if not value:
            continue
        path = Path(value)
        if not path.is_file():
            return Check("dds", "FAIL", f"{var}={value} does not exist: FastDDS ignores it / fails to start",
                         f"point {var} at a readable profile XML or unset it (the nodes then load config/fastdds.xml)")
        try:
            ET.parse(path)
        except ET.ParseError as e:
            return Check("dds", "FAIL", f"{var}={value} is not valid XML: {e}", "fix the profile file")
        return Check("dds", "OK", f"{var}={value} (your profile wins over config/fastdds.xml)")
    return Check("dds", "OK", "no FastDDS profile variable set: the nodes load roboalign_policy's config/fastdds.xml "
                 "(8 MiB shared-memory segment, 4 MiB UDP buffers)")


def check_ros_env() -> list[Check]:
    out = []
    domain = os.environ.get("ROS_DOMAIN_ID")
    if domain is None:
        out.append(Check("ros", "OK", "ROS_DOMAIN_ID unset (domain 0): every ROS 2 machine on the network shares it",
                         ""))
    elif not domain.isdigit() or not 0 <= int(domain) <= 232:
        out.append(Check("ros", "FAIL", f"ROS_DOMAIN_ID={domain!r} is not a domain id", "use 0..101 (safe on Linux)"))
    else:
        ok = int(domain) <= 101
        out.append(Check("ros", "OK" if ok else "WARN", f"ROS_DOMAIN_ID={domain}", "" if ok else
                         "ids above 101 may collide with ephemeral ports on Linux; use 0..101"))
    rng = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE")
    if rng is not None and rng not in DISCOVERY_RANGES:
        out.append(Check("ros", "FAIL", f"ROS_AUTOMATIC_DISCOVERY_RANGE={rng!r}", f"use one of {', '.join(DISCOVERY_RANGES)}"))
    else:
        note = {"LOCALHOST": ": only this host (cameras / robot on another PC are not found)",
                "OFF": ": no discovery at all (static peers only)"}.get(rng or "", "")
        out.append(Check("ros", "WARN" if rng == "OFF" else "OK",
                         f"ROS_AUTOMATIC_DISCOVERY_RANGE={rng or '(unset: SUBNET)'}{note}"))
    if os.environ.get("ROS_LOCALHOST_ONLY"):
        out.append(Check("ros", "WARN", f"ROS_LOCALHOST_ONLY={os.environ['ROS_LOCALHOST_ONLY']} is deprecated since "
                         "Jazzy", "use ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST"))
    return out
