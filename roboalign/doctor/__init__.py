"""``roboalign doctor [--config PARAMS.yaml] [--topic T ...] [--json]``: is this GPU box / robot PC set up for RoboAlign?

Checks what is really there — torch build and CUDA, onnxruntime providers against what ``--config`` (a
ROS params file such as ``ros2_ws/src/roboalign_policy/config/real_robot.yaml``) asks for (a graph really
runs on each requested provider), TensorRT and ``trtexec``, RealSense devices (listed, never streamed),
franka_ros2, SCHED_FIFO / memlock limits for the bridge's control thread, CPU isolation and affinity,
socket / shared-memory / FastDDS profile settings for camera streams, and the ROS domain and discovery
range — and prints one line per finding, OK / WARN / FAIL, with what to do. Exit status 1 on any FAIL. With
``--topic``, each live camera topic is measured for ``--seconds`` as the nodes receive it (``doctor.streams``): a
stream far below its publisher's rate or with long gaps names the rate, largest gap, frame size and the likely
cause with the fix.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from roboalign.doctor.compute import check_onnxruntime, check_tensorrt, check_torch
from roboalign.doctor.report import Check, DeployConfig
from roboalign.doctor.robot import (
    check_cpus,
    check_dds,
    check_franka,
    check_realsense,
    check_realtime,
    check_ros_env,
)
from roboalign.doctor.streams import check_streams


def run_checks(cfg: DeployConfig, topics: tuple[str, ...] = (), seconds: float = 3.0) -> list[Check]:
    """Every check, in order (live streams last, when ``topics`` are given); a check that crashes is reported as
    FAIL (the others still run)."""
    steps: list[tuple[str, Callable[[], Check | list[Check]]]] = [
        ("torch", lambda: check_torch(cfg)), ("onnxruntime", lambda: check_onnxruntime(cfg)),
        ("tensorrt", lambda: check_tensorrt(cfg)),
        ("realsense", lambda: check_realsense(cfg)), ("franka_ros2", check_franka),
        ("realtime", lambda: check_realtime(cfg)), ("cpu", lambda: check_cpus(cfg)), ("dds", check_dds),
        ("ros", check_ros_env)]
    if topics:
        steps.append(("stream", lambda: check_streams(list(topics), seconds)))
    out: list[Check] = []
    for area, step in steps:
        try:
            result = step()
        except Exception as e:  # a doctor must report, not crash: the finding names the failure
            result = Check(area, "FAIL", f"the check itself failed: {type(e).__name__}: {e}", "report this as a bug")
        out.extend(result if isinstance(result, list) else [result])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="roboalign doctor", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=None, help="ROS params YAML of the deployment (e.g. "
                    "ros2_ws/src/roboalign_policy/config/real_robot.yaml): providers, cameras, priorities, CPUs")
    ap.add_argument("--topic", action="append", default=[], help="a live camera topic to measure (repeatable), "
                    "e.g. /camera/wrist/color/image_raw")
    ap.add_argument("--seconds", type=float, default=3.0, help="how long each --topic is measured")
    ap.add_argument("--json", action="store_true", help="a JSON list of {area, status, detail, fix}")
    args = ap.parse_args(argv)
    checks = run_checks(DeployConfig.load(args.config), tuple(args.topic), args.seconds)
    if args.json:
        print(json.dumps([c.to_dict() for c in checks], indent=1))
    else:
        for c in checks:
            print(c.render())
        counts = {s: sum(c.status == s for c in checks) for s in ("OK", "WARN", "FAIL")}
        print(f"doctor: {counts['OK']} OK, {counts['WARN']} WARN, {counts['FAIL']} FAIL")
    return 1 if any(c.status == "FAIL" for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
