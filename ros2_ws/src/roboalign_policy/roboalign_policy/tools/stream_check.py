"""Measure one camera stream between two processes: what a subscriber with a given QoS receives.

    python -m roboalign_policy.tools.stream_check pub --size 640x480 --fps 30 --qos reliable [--compressed] [--seconds S]
    python -m roboalign_policy.tools.stream_check sub --qos auto [--compressed] [--seconds S] [--raw]

The publisher sends rgb8 images (or JPEG ``sensor_msgs/CompressedImage`` on ``<topic>/compressed``) on its own
thread on an absolute 1/fps schedule; the subscriber counts what arrives (DDS reception times) and prints one
JSON line: rate, max gap, age (header stamp -> reception), drops (gaps in the frame counter carried in
``header.frame_id``), and the subscriber's CPU time per message. Used to measure the QoS / transport choices
of README "Cameras" (reliable vs best effort at 640x480: follow the publisher's reliability), and by the two-host (network namespace) test.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time

import numpy as np

TOPIC = "/camera/probe/color/image_raw"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stream_check")
    p.add_argument("role", choices=("pub", "sub"))
    p.add_argument("--topic", default=TOPIC)
    p.add_argument("--size", default="640x480", help="WxH (publisher)")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--qos", default="auto", choices=("auto", "reliable", "best_effort"))
    p.add_argument("--compressed", action="store_true", help="JPEG on <topic>/compressed")
    p.add_argument("--raw", action="store_true", help="subscriber: serialized messages (no deserialisation)")
    p.add_argument("--decode", action="store_true", help="subscriber: decode each image to RGB (as the policy)")
    p.add_argument("--poll-hz", type=float, default=0.0,
                   help="subscriber: take the newest frame this often from a thread, off the executor (the bridge's "
                        "watchdog and the recorder); 0: an executor callback per frame")
    p.add_argument("--seconds", type=float, default=10.0)
    return p


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def publish(node, args: argparse.Namespace) -> dict:
    from sensor_msgs.msg import CompressedImage, Image

    from roboalign_policy import conversions as conv
    from roboalign_policy import qos as q

    w, h = (int(v) for v in args.size.lower().split("x"))
    rng = np.random.default_rng(0)
    # a smooth image with noise, so JPEG sizes are like a camera's, not like white noise
    base = np.linspace(0, 255, w * h * 3).reshape(h, w, 3).astype(np.uint8)
    img = (base + rng.integers(0, 16, base.shape, dtype=np.uint8)).astype(np.uint8)
    profile = q.camera_profile(q.reliability_of(args.qos))
    topic = q.compressed_topic(args.topic) if args.compressed else args.topic
    pub = node.create_publisher(CompressedImage if args.compressed else Image, topic, profile)
    jpeg = conv.rgb_to_compressed(img) if args.compressed else None
    period, t_next, k = 1.0 / args.fps, time.monotonic(), 0
    end = t_next + args.seconds
    while time.monotonic() < end:
        stamp = node.get_clock().now().to_msg()
        if jpeg is not None:
            msg = CompressedImage(format="rgb8; jpeg compressed bgr8", data=jpeg)
            msg.header.stamp, msg.header.frame_id = stamp, str(k)
        else:
            msg = conv.rgb_to_image(img, stamp, str(k))
        pub.publish(msg)
        k += 1
        t_next += period
        time.sleep(max(0.0, t_next - time.monotonic()))
    return {"published": k, "bytes": len(jpeg) if jpeg is not None else w * h * 3}


def subscribe(node, args: argparse.Namespace) -> dict:
    from sensor_msgs.msg import CompressedImage, Image

    from roboalign_policy import conversions as conv
    from roboalign_policy import qos as q

    topic = q.compressed_topic(args.topic) if args.compressed else args.topic
    msg_type = CompressedImage if args.compressed else Image
    got: list[tuple[float, float, int]] = []  # (reception, stamp, frame counter)
    lock = threading.Lock()

    def on_msg(msg, info) -> None:
        if args.raw:  # only the arrival is needed: no deserialisation (the bridge's watchdog)
            counter, stamp = -1, info["source_timestamp"] * 1e-9
        else:
            counter, stamp = int(msg.header.frame_id or -1), conv.to_sec(msg.header.stamp)
            if args.decode:
                conv.compressed_to_rgb(msg) if args.compressed else conv.image_to_rgb(msg)
        with lock:
            got.append((info["received_timestamp"] * 1e-9, stamp, counter))

    deadline = time.monotonic() + 30.0
    profile = None
    while profile is None and time.monotonic() < deadline:  # auto: wait for the publisher to appear
        profile = q.camera_qos(node, topic, args.qos)[0]
        time.sleep(0.05)
    if args.poll_hz > 0:
        from roboalign_policy.polling import PolledGroup, polled_subscription, take_all

        sub = polled_subscription(node, PolledGroup(), msg_type, topic, profile, raw=args.raw)

        def spin_for(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end and (seconds > 1 or not got):
                for msg, info in take_all(sub)[-1:]:
                    on_msg(msg, info)
                time.sleep(1.0 / args.poll_hz)
    else:
        from rclpy.executors import SingleThreadedExecutor

        node.create_subscription(msg_type, topic, on_msg, profile, raw=args.raw)
        ex = SingleThreadedExecutor()
        ex.add_node(node)

        def spin_for(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end and (seconds > 1 or not got):
                ex.spin_once(timeout_sec=0.1)

    while not got and time.monotonic() < deadline:
        spin_for(0.1)
    cpu0 = _cpu_s()
    with lock:
        got.clear()
    spin_for(args.seconds)
    cpu = _cpu_s() - cpu0
    with lock:
        rx = np.array(got)
    if len(rx) < 2:
        return {"received": len(rx), "error": "fewer than 2 messages"}
    gaps = np.diff(rx[:, 0])
    counters = rx[:, 2]
    drops = int(np.sum(np.clip(np.diff(counters) - 1, 0, None))) if counters[0] >= 0 else -1
    return {"received": len(rx), "rate_hz": (len(rx) - 1) / (rx[-1, 0] - rx[0, 0]),
            "max_gap_ms": float(gaps.max() * 1e3), "age_ms_median": float(np.median(rx[:, 0] - rx[:, 1]) * 1e3),
            "drops": drops, "cpu_ms_per_msg": cpu * 1e3 / len(rx), "qos": str(profile.reliability.name)}


def main(argv: list[str] | None = None) -> int:
    import rclpy

    from roboalign_policy.node_runner import use_dds_profile

    args = _parser().parse_args(argv)
    use_dds_profile()  # as the nodes (ROBOALIGN_DDS_PROFILE=0: FastDDS's defaults)
    rclpy.init()
    node = rclpy.create_node(f"stream_check_{args.role}")
    try:
        res = publish(node, args) if args.role == "pub" else subscribe(node, args)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print(json.dumps({"role": args.role, "qos": args.qos, "compressed": args.compressed, "raw": args.raw,
                      "decode": args.decode, **res}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
