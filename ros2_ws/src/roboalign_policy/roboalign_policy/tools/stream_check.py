"""Measure camera streams between two processes: what a subscriber with a given QoS receives.

    python -m roboalign_policy.tools.stream_check pub --size 640x480 --fps 30 --qos reliable [--cameras N] [--compressed] [--seconds S]
    python -m roboalign_policy.tools.stream_check sub --qos auto [--cameras N] [--compressed] [--seconds S] [--raw]

The publisher sends rgb8 images (or JPEG ``sensor_msgs/CompressedImage`` on ``<topic>/compressed``) on ``N``
topics (``<topic>``, ``<topic>_1``, ...) from its own loop on an absolute 1/fps schedule; the subscriber counts
what arrives (DDS reception times) and prints one JSON line: rate, the publisher's rate (from the stamps), max gap,
age (header stamp -> reception), drops (gaps in the frame counter carried in ``header.frame_id``), frame size and
the subscriber's CPU time per message, of the worst topic (lowest rate), with every topic's figures under ``topics``. Used to measure the QoS /
transport choices of docs/robot-bringup.md "Cameras" (reliable vs best effort at 640x480: follow the publisher's reliability;
``ROBOALIGN_DDS_PROFILE=0`` on one side: FastDDS's defaults there), and by the two-host (network namespace) test.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

TOPIC = "/camera/probe/color/image_raw"
DISCOVERY_S = 30.0  # how long the subscriber waits for a publisher and its first frame


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stream_check")
    p.add_argument("role", choices=("pub", "sub"))
    p.add_argument("--topic", default=TOPIC)
    p.add_argument("--cameras", type=int, default=1, help="streams: <topic>, <topic>_1, ...")
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


def topics(args: argparse.Namespace) -> list[str]:
    """The topics of ``--cameras`` streams (JPEG: image_transport's ``<topic>/compressed``)."""
    from roboalign_policy import qos as q

    names = [args.topic] + [f"{args.topic}_{k}" for k in range(1, args.cameras)]
    return [q.compressed_topic(t) for t in names] if args.compressed else names


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _test_image(w: int, h: int) -> np.ndarray:
    """A smooth image with noise, so JPEG sizes are like a camera's, not like white noise."""
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, w * h * 3).reshape(h, w, 3).astype(np.uint8)
    return (base + rng.integers(0, 16, base.shape, dtype=np.uint8)).astype(np.uint8)


def publish(node: Any, args: argparse.Namespace) -> dict:
    """Publish ``--cameras`` streams for ``--seconds``; returns how many frames each, and their size."""
    from sensor_msgs.msg import CompressedImage, Image

    from roboalign_policy import conversions as conv
    from roboalign_policy import qos as q

    w, h = (int(v) for v in args.size.lower().split("x"))
    img = _test_image(w, h)
    profile = q.camera_profile(q.reliability_of(args.qos))
    pubs = [node.create_publisher(CompressedImage if args.compressed else Image, t, profile) for t in topics(args)]
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
        for pub in pubs:
            pub.publish(msg)
        k += 1
        t_next += period
        time.sleep(max(0.0, t_next - time.monotonic()))
    return {"published": k, "cameras": len(pubs), "bytes": len(jpeg) if jpeg is not None else w * h * 3}


class Counter:
    """What arrives on one topic: (reception, header stamp, frame counter, bytes) per message."""

    def __init__(self, topic: str, args: argparse.Namespace) -> None:
        self.topic, self.args = topic, args
        self.got: list[tuple[float, float, int, int]] = []
        self.lock = threading.Lock()
        self.profile: Any = None

    def on_msg(self, msg: Any, info: dict[str, Any]) -> None:
        from roboalign_policy import conversions as conv

        if self.args.raw:  # only the arrival is needed: no deserialisation (the bridge's watchdog)
            counter, stamp, size = -1, info["source_timestamp"] * 1e-9, len(msg)
        else:
            counter, stamp, size = int(msg.header.frame_id or -1), conv.to_sec(msg.header.stamp), len(msg.data)
            if self.args.decode:
                conv.compressed_to_rgb(msg) if self.args.compressed else conv.image_to_rgb(msg)
        with self.lock:
            self.got.append((info["received_timestamp"] * 1e-9, stamp, counter, size))

    def clear(self) -> None:
        with self.lock:
            self.got.clear()

    def figures(self, cpu_s: float) -> dict[str, Any]:
        """Rate, largest gap, age, drops and frame size of what arrived since :meth:`clear`."""
        with self.lock:
            rx = np.array(self.got, dtype=np.float64).reshape(-1, 4)
        if len(rx) < 2:
            return {"topic": self.topic, "received": len(rx), "rate_hz": 0.0, "error": "fewer than 2 messages"}
        counters = rx[:, 2]
        drops = int(np.sum(np.clip(np.diff(counters) - 1, 0, None))) if counters[0] >= 0 else -1
        spacings = np.diff(rx[:, 1])
        spacings = spacings[spacings > 0]
        published = 1.0 / float(np.percentile(spacings, 10)) if len(spacings) >= 3 else 0.0  # as StreamStats
        return {"topic": self.topic, "received": len(rx), "rate_hz": (len(rx) - 1) / (rx[-1, 0] - rx[0, 0]),
                "published_hz": published,
                "max_gap_ms": float(np.diff(rx[:, 0]).max() * 1e3),
                "age_ms_median": float(np.median(rx[:, 0] - rx[:, 1]) * 1e3), "drops": drops,
                "bytes": int(rx[-1, 3]), "cpu_ms_per_msg": cpu_s * 1e3 / len(rx),
                "qos": str(self.profile.reliability.name)}


def _discover(node: Any, counters: list[Counter], mode: str, deadline: float) -> None:
    """``auto``: wait for each topic's publisher and take its reliability."""
    from roboalign_policy import qos as q

    for c in counters:
        while c.profile is None and time.monotonic() < deadline:
            c.profile = q.camera_qos(node, c.topic, mode)[0]
            if c.profile is None:
                time.sleep(0.05)
        if c.profile is None:
            raise RuntimeError(f"no publisher on {c.topic} within {DISCOVERY_S:g} s")


def _polled_spinner(node: Any, counters: list[Counter], msg_type: type, poll_hz: float, raw: bool) -> Callable:
    """Take the newest frame of each topic ``poll_hz`` times a second, off the executor."""
    from roboalign_policy.polling import PolledGroup, polled_subscription, take_all

    group = PolledGroup()
    subs = [(c, polled_subscription(node, group, msg_type, c.topic, c.profile, raw=raw)) for c in counters]

    def spin_once() -> None:
        for c, sub in subs:
            for msg, info in take_all(sub)[-1:]:
                c.on_msg(msg, info)
        time.sleep(1.0 / poll_hz)

    return spin_once


def _executor_spinner(node: Any, counters: list[Counter], msg_type: type, raw: bool) -> Callable:
    """An executor callback per frame."""
    from rclpy.executors import SingleThreadedExecutor

    for c in counters:
        node.create_subscription(msg_type, c.topic, c.on_msg, c.profile, raw=raw)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    return lambda: ex.spin_once(timeout_sec=0.1)


def subscribe(node: Any, args: argparse.Namespace) -> dict:
    """Receive ``--cameras`` streams for ``--seconds`` once each delivered; the worst topic's figures, with
    every topic's under ``topics``."""
    from sensor_msgs.msg import CompressedImage, Image

    msg_type = CompressedImage if args.compressed else Image
    counters = [Counter(t, args) for t in topics(args)]
    deadline = time.monotonic() + DISCOVERY_S
    _discover(node, counters, args.qos, deadline)
    spin_once = (_polled_spinner(node, counters, msg_type, args.poll_hz, args.raw) if args.poll_hz > 0
                 else _executor_spinner(node, counters, msg_type, args.raw))
    while not all(c.got for c in counters) and time.monotonic() < deadline:
        spin_once()
    cpu0 = _cpu_s()
    for c in counters:
        c.clear()
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        spin_once()
    cpu = (_cpu_s() - cpu0) / len(counters)
    per_topic = [c.figures(cpu) for c in counters]
    worst = min(per_topic, key=lambda f: f["rate_hz"])
    return {**worst, "topics": per_topic} if len(per_topic) > 1 else worst


def main(argv: list[str] | None = None) -> int:
    import rclpy

    from roboalign_policy.node_runner import use_dds_profile

    args = _parser().parse_args(argv)
    profile = use_dds_profile()  # as the nodes (ROBOALIGN_DDS_PROFILE=0: FastDDS's defaults)
    rclpy.init()
    node = rclpy.create_node(f"stream_check_{args.role}")
    try:
        res = publish(node, args) if args.role == "pub" else subscribe(node, args)
    except RuntimeError as e:
        res = {"error": str(e)}
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print(json.dumps({"role": args.role, "qos": args.qos, "compressed": args.compressed, "raw": args.raw,
                      "decode": args.decode, "dds_profile": profile or "", **res}))
    return 1 if "error" in res else 0


if __name__ == "__main__":
    sys.exit(main())
