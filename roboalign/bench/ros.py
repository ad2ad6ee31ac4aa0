"""``roboalign bench ros``: what the ROS layer costs on top of the model, how steady the command stream is, and
whether full-size camera streams reach the policy.

    roboalign bench ros [--seconds 20] [--image-size 640x480 (default)] [--cameras 2] [--fps 30] [--compressed]
                        [--backend onnxruntime|reach] [--pin auto|none] [--out runs/bench_ros]

The ROS side runs in a process of the ROS package (``roboalign_policy.tools.bench_probe``; the core never imports
rclpy): policy_node and bridge_node as separate processes (as deployed), a camera driver publishing
``--cameras`` rgb8 cameras at ``--fps`` (``--compressed``: also JPEG on ``<topic>/compressed``, which the
policy then reads), and the robot as a process of its own (``roboalign_policy.tools.bench_robot``: /joint_states at
100 Hz, the bridge's 50 Hz commands taken; its DDS receive threads at SCHED_FIFO ``--robot-priority``, as a
robot controller's on a real-time kernel). The policy runs the tiny exported VLA on ONNX Runtime
(``--backend reach``: a trivial policy). With ``--pin auto`` (2+ CPUs) the policy node runs on the last CPU
and the bridge, the cameras and the robot on the others (the nodes' ``cpu_affinity``). Arrival times are DDS
reception timestamps, so no Python executor of the probe adds anything.

- overhead: camera image published -> the policy's JointTrajectory for that image received, minus the
  policy's own time (``ActionChunk.preprocess_ms + model_latency_ms`` = all of ``Policy.act``): two DDS
  hops, image decoding, observation assembly and message building, all in Python.
- jitter: |period - 20 ms| of the bridge's 50 Hz JointTrajectory stream as the robot receives it, while
  inference runs; split into the bridge's side (its write() times, DDS source timestamps, against its
  deadline grid, the header stamps) and the transport (write() -> reception).
- cam_rx_hz_min: the lowest per-camera receive rate the policy reported (PolicyStatus, 5 s windows).
- faults: bridge episode faults and policy faults during the run (the episode is restarted after one).

Final line: ``ros: image=<WxH> cam_rx_hz_min=<r> overhead_ms_median=<m> overhead_ms_p99=<p>
cmd_period_jitter_ms_p99=<j> faults=<n>`` (targets: every camera >= 29 Hz at 30 fps, median <= 3 ms,
p99 <= 10 ms, jitter p99 <= 2 ms, no fault). Writes ``ros.json`` and ``ros.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from roboalign.bench.netns import NetnsUnavailable, two_hosts
from roboalign.control.tiny_model import ensure_tiny_export

CAMERA_NAMES = ("agentview", "wrist", "left", "right")
TARGETS = {"cam_rx_hz_min": 29.0, "overhead_ms_median": 3.0, "overhead_ms_p99": 10.0,
           "cmd_period_jitter_ms_p99": 2.0, "faults": 0}


def image_size(text: str) -> tuple[int, int]:
    """``WxH`` (or one number for a square image) -> (width, height)."""
    parts = text.lower().split("x")
    try:
        w, h = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (0, 0)
    except ValueError:
        w = h = 0
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"--image-size {text!r}: expected WxH, e.g. 640x480, or one number")
    return w, h


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="roboalign bench ros", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="measurement time")
    p.add_argument("--backend", choices=("onnxruntime", "reach"), default="onnxruntime")
    p.add_argument("--image-size", type=image_size, default=(640, 480),
                   help="WxH of every camera (default: RealSense's colour profile)")
    p.add_argument("--cameras", type=int, choices=range(1, len(CAMERA_NAMES) + 1), default=2)
    p.add_argument("--fps", type=float, default=30.0, help="camera frame rate")
    p.add_argument("--compressed", action="store_true", help="the policy reads JPEG on <topic>/compressed")
    p.add_argument("--publisher-qos", choices=("reliable", "best_effort"), default="reliable",
                   help="the cameras' reliability (realsense-ros: reliable); the nodes follow it (camera_qos auto)")
    p.add_argument("--netns", action="store_true",
                   help="two hosts: the policy in one network namespace, bridge + robot in another, joined by a veth "
                        "pair (needs root; UDP only)")
    p.add_argument("--link-rate", default="", help="with --netns: limit the link, e.g. 1gbit (tc token bucket)")
    p.add_argument("--rate", type=float, default=10.0, help="policy inference rate [Hz]")
    p.add_argument("--realtime-priority", type=int, default=50,
                   help="bridge control thread SCHED_FIFO priority (0: normal scheduling)")
    p.add_argument("--robot-priority", type=int, default=45,
                   help="SCHED_FIFO priority of the robot stand-in's DDS receive threads, as a robot controller's on "
                        "a real-time kernel (0: normal scheduling)")
    p.add_argument("--pin", choices=("auto", "none"), default="auto",
                   help="auto (2+ CPUs): the policy node on the last CPU, the bridge and the robot on the others; "
                        "none: let the scheduler place everything")
    p.add_argument("--out", default="runs/bench_ros")
    p.add_argument("--tiny-cache", default=str(Path.home() / ".cache" / "roboalign" / "tiny_joint_vla"))
    return p


def _cpu_split(pin: str) -> tuple[list[int], list[int]]:
    """(policy CPUs, control-path CPUs) for ``--pin``; empty lists: no pinning."""
    cpus = sorted(os.sched_getaffinity(0))
    if pin == "none" or len(cpus) < 2:
        return [], []
    return cpus[-1:], cpus[:-1]


def _topics(n: int) -> list[str]:
    return [f"/camera/{name}/color/image_raw" for name in CAMERA_NAMES[:n]]


def _policy_params(args: argparse.Namespace, policy_cpus: list[int]) -> dict[str, Any]:
    names = list(CAMERA_NAMES[:args.cameras])
    base = {"camera_names": names, "camera_topics": _topics(args.cameras), "compressed_images": args.compressed,
            "camera_fps": args.fps, "max_inference_rate_hz": args.rate, "max_image_age_s": 0.2,
            "cpu_affinity": policy_cpus}
    if args.backend == "reach":
        goal = [0.3, -0.5, 0.0, -2.0, 0.0, 1.8, 0.8]
        return {**base, "backend": "reach", "backend_options": json.dumps({"goal": goal, "speed": 0.05})}
    export = ensure_tiny_export(args.tiny_cache)
    opts = {"providers": ["cpu"], "action_space": "joint_position", "cameras": names, "num_threads": 1}
    return {**base, "backend": "onnxruntime", "checkpoint": str(export), "backend_options": json.dumps(opts)}


def _config(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    policy_cpus, control_cpus = _cpu_split(args.pin)
    bridge = {"dry_run": False, "home_first": False, "control_rate_hz": 50.0, "camera_topics": _topics(args.cameras),
              "max_episode_s": 3600.0, "chunk_timeout_s": 2.0, "task_domain": "real",
              "state_timeout_s": 1.0, "image_timeout_s": 1.0,  # the probe is Python at normal priority
              "realtime_priority": args.realtime_priority, "cpu_affinity": control_cpus}
    return {"policy_node": _policy_params(args, policy_cpus), "bridge_node": bridge, "out": str(out),
            "image_size": list(args.image_size), "camera_topics": _topics(args.cameras), "fps": args.fps,
            "compressed": args.compressed, "publisher_qos": args.publisher_qos, "seconds": args.seconds,
            "control_cpus": control_cpus, "policy_cpus": policy_cpus, "task": "bottle_to_basket",
            "robot_priority": args.robot_priority}


def _nearest(keys: np.ndarray, values: np.ndarray, key: int, tol_ns: int = 2_000) -> float | None:
    """Value at the stamp nearest to ``key`` within ``tol_ns`` (stamps pass through float seconds)."""
    if not len(keys):
        return None
    i = int(np.argmin(np.abs(keys - key)))
    return float(values[i]) if abs(int(keys[i]) - key) <= tol_ns else None


def overheads_ms(raw: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(overhead per matched image, policy time per matched image) in ms, from the probe's raw timings."""
    pub = np.array(raw["published"], dtype=np.float64).reshape(-1, 2)
    traj = np.array(raw["policy_traj"], dtype=np.float64).reshape(-1, 2)
    pub_keys, traj_keys = pub[:, 0].astype(np.int64), traj[:, 0].astype(np.int64)
    over, model = [], []
    for obs_ns, policy_ms in raw["chunks"]:
        sent = _nearest(pub_keys, pub[:, 1], int(obs_ns))
        got = _nearest(traj_keys, traj[:, 1], int(obs_ns) + raw["dt_ns"])  # the trajectory starts at obs + dt
        if sent is not None and got is not None:
            over.append((got - sent) * 1e3 - policy_ms)
            model.append(policy_ms)
    return np.array(over), np.array(model)


def window_rate_min(times: np.ndarray, window_s: float = 5.0) -> float:
    """The lowest rate [Hz] over sliding ``window_s`` windows of event ``times`` (the policy's rate window)."""
    t = np.sort(np.asarray(times, dtype=np.float64))
    if len(t) < 2 or t[-1] - t[0] < window_s:
        return 0.0
    ends = np.searchsorted(t, t + window_s)  # events in [t_i, t_i + window)
    full = t + window_s <= t[-1]
    return float((ends[full] - np.arange(len(t))[full]).min() / window_s) if full.any() else 0.0


def summarize(raw: dict[str, Any], args: argparse.Namespace, cfg: dict[str, Any]) -> dict[str, Any]:
    over, model = overheads_ms(raw)
    cmd_times, cmd_stamps = np.asarray(raw["cmd_times"]), np.asarray(raw["cmd_stamps"])
    periods = np.diff(cmd_times) * 1e3
    if len(over) < 10 or len(periods) < 50:
        raise RuntimeError(f"too few samples ({len(over)} chunks, {len(periods)} commands); see {cfg['out']}")
    jitter = np.abs(periods - 20.0)
    order = np.argsort(cmd_stamps)
    sent = np.abs(np.diff(cmd_stamps[order]) * 1e3 - 20.0)  # the bridge's deadline grid (header stamps)
    written = np.asarray(raw["cmd_sent"])[order]  # the bridge's write() (DDS source timestamps)
    transport = (cmd_times[order] - written) * 1e3  # write() -> reception stamp at the robot
    rates = np.array([c[1] for c in raw["cam_rates"] if len(c[1]) == args.cameras]).reshape(-1, args.cameras)
    latency = np.array([c[3] for c in raw["cam_rates"] if len(c[3]) == args.cameras]).reshape(-1, args.cameras)
    w, h = args.image_size
    return {"image": f"{w}x{h}", "cameras": args.cameras, "netns": args.netns, "link_rate": args.link_rate, "fps": args.fps, "compressed": args.compressed,
            "cam_rx_hz_min": float(rates.min()) if len(rates) else 0.0,
            # the robot stand-in's own rate (a Python thread): below fps, the cameras were not the bottleneck
            "pub_hz_min": window_rate_min(np.array(raw["published"]).reshape(-1, 2)[:, 1]),
            "cam_rx_hz_median": [float(x) for x in np.median(rates, axis=0)] if len(rates) else [],
            "cam_drops": raw["cam_rates"][-1][2] if raw["cam_rates"] else [],
            # header stamp -> DDS reception at the policy, of the newest frame at each status (a sample)
            "image_latency_ms_median": [float(x) for x in np.median(latency, axis=0)] if len(latency) else [],
            "overhead_ms_median": float(np.median(over)), "overhead_ms_p99": float(np.percentile(over, 99)),
            "cmd_period_jitter_ms_p99": float(np.percentile(jitter, 99)),
            "cmd_stamp_jitter_ms_p99": float(np.percentile(sent, 99)),
            "cmd_write_jitter_ms_p99": float(np.percentile(np.abs(np.diff(written) * 1e3 - 20.0), 99)),
            "cmd_write_late_ms_p99": float(np.percentile((written - cmd_stamps[order]) * 1e3, 99)),
            "cmd_transport_ms_median": float(np.median(transport)),
            "cmd_transport_ms_p99": float(np.percentile(transport, 99)),
            "robot_priority": cfg["robot_priority"],
            "cpu_ms_per_s": {k: v * 1e3 / args.seconds for k, v in raw["cpu_s"].items()},
            "faults": len(raw["faults"]), "fault_messages": raw["faults"][:20], "restarts": raw["restarts"],
            "cmd_period_ms_median": float(np.median(periods)), "cmd_period_ms_max": float(periods.max()),
            "policy_ms_median": float(np.median(model)), "chunks": int(len(over)), "commands": int(len(periods) + 1),
            "load_avg_1min": os.getloadavg()[0], "cpus": os.cpu_count(), "pin": args.pin,
            "policy_cpus": cfg["policy_cpus"], "control_cpus": cfg["control_cpus"],
            "realtime_priority": args.realtime_priority, "backend": args.backend, "seconds": args.seconds,
            "targets": TARGETS, "_over": over.tolist(), "_periods": periods.tolist(), "_rates": rates.tolist()}


def _plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    over, periods, rates = np.array(res["_over"]), np.array(res["_periods"]), np.array(res["_rates"])
    fig, ax = plt.subplots(1, 3, figsize=(14, 3.5))
    ax[0].hist(over, bins=40)
    ax[0].axvline(np.median(over), color="k", ls="--", label=f"median {np.median(over):.2f} ms")
    ax[0].set_xlabel("image in -> JointTrajectory out, minus Policy.act (ms)")
    ax[0].legend()
    ax[1].hist(periods, bins=60)
    ax[1].axvline(20.0, color="k", ls="--", label="20 ms (50 Hz)")
    ax[1].set_xlabel("bridge command period (ms)")
    ax[1].legend()
    for i in range(rates.shape[1] if rates.ndim == 2 else 0):
        ax[2].plot(np.arange(len(rates)) / 2.0, rates[:, i], label=CAMERA_NAMES[i])
    ax[2].axhline(0.97 * res["fps"], color="k", ls="--", label=f"{0.97 * res['fps']:.1f} Hz")
    ax[2].set_xlabel("time (s)")
    ax[2].set_ylabel("frames received by the policy (Hz)")
    ax[2].legend()
    fig.suptitle(f"roboalign bench ros: {res['cameras']} x {res['image']} at {res['fps']:g} Hz"
                 f"{' (JPEG)' if res['compressed'] else ''}, load {res['load_avg_1min']:.1f}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = _config(args, out)
    domain = os.environ.get("ROS_DOMAIN_ID") or str(150 + os.getpid() % 80)  # keep other stacks out
    env = {**os.environ, "ROS_DOMAIN_ID": domain}
    cmd = [sys.executable, "-m", "roboalign_policy.tools.bench_probe", str(out / "config.json"), str(out / "raw.json")]
    if args.netns:
        try:
            with two_hosts(rate=args.link_rate or None) as (robot, policy):
                cfg["policy_prefix"] = policy.prefix
                (out / "config.json").write_text(json.dumps(cfg, indent=2))
                proc = subprocess.run([*robot.prefix, *cmd], env=env, check=False)
        except NetnsUnavailable as e:
            raise RuntimeError(f"--netns: {e}") from None
    else:
        (out / "config.json").write_text(json.dumps(cfg, indent=2))
        proc = subprocess.run(cmd, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the ROS probe failed (exit {proc.returncode}); see the logs in {out}")
    res = summarize(json.loads((out / "raw.json").read_text()), args, cfg)
    _plot(res, out / "ros.png")
    (out / "ros.json").write_text(json.dumps({k: v for k, v in res.items() if not k.startswith("_")}, indent=2))
    return res


def line(r: dict[str, Any]) -> str:
    return (f"ros: image={r['image']} cam_rx_hz_min={r['cam_rx_hz_min']:.1f} "
            f"overhead_ms_median={r['overhead_ms_median']:.2f} overhead_ms_p99={r['overhead_ms_p99']:.2f} "
            f"cmd_period_jitter_ms_p99={r['cmd_period_jitter_ms_p99']:.2f} faults={r['faults']}")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.backend == "onnxruntime" and args.cameras != 2:
        parser.error(f"--cameras {args.cameras}: the tiny exported VLA takes 2 cameras; use --backend reach for "
                     "another number")
    try:
        r = run(args)
    except RuntimeError as e:
        print(f"bench ros: error: {e}", file=sys.stderr)
        return 1
    print(f"{r['cameras']} cameras x {r['image']} at {r['fps']:g} Hz{' + JPEG' if r['compressed'] else ''}: "
          f"policy ({args.backend}) median {r['policy_ms_median']:.1f} ms per chunk over {r['chunks']} chunks; "
          f"per-camera receive rate median {r['cam_rx_hz_median']} Hz, drops {r['cam_drops']}, image latency median "
          f"{[round(x, 2) for x in r['image_latency_ms_median']]} ms (the probe published "
          f">= {r['pub_hz_min']:.1f} Hz in every 5 s); bridge command "
          f"period median {r['cmd_period_ms_median']:.2f} ms, max {r['cmd_period_ms_max']:.1f} ms over "
          f"{r['commands']} commands (at the bridge: write() jitter p99 {r['cmd_write_jitter_ms_p99']:.2f} ms, "
          f"p99 {r['cmd_write_late_ms_p99']:.2f} ms after its deadline; write() -> the robot's reception median "
          f"{r['cmd_transport_ms_median']:.2f} ms, p99 {r['cmd_transport_ms_p99']:.2f} ms; the robot receiving at "
          f"SCHED_FIFO {r['robot_priority']}); CPU ms per s "
          f"{ {k: round(v, 1) for k, v in r['cpu_ms_per_s'].items()} }; faults "
          f"{r['fault_messages']}; load average {r['load_avg_1min']:.1f} on {r['cpus']} CPUs; policy on CPUs "
          f"{r['policy_cpus'] or 'any'}, bridge + robot on {r['control_cpus'] or 'any'}; targets {TARGETS}; "
          f"plot {Path(args.out) / 'ros.png'}")
    print(line(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
