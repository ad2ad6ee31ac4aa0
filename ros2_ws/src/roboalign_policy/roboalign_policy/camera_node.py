"""camera_node: one Intel RealSense colour stream with pyrealsense2, for robots without realsense-ros.

Publishes ``<camera_namespace>/<camera_name>/color/image_raw`` (rgb8, frame ``<camera_name>_color_optical_frame``)
and ``.../color/camera_info`` like realsense-ros, so the policy node cannot tell the two apart: reliable by
default, as realsense-ros (``image_qos``; the subscribers follow it, ``roboalign_policy.qos.camera_qos``), with
the package's FastDDS profile (a shared-memory segment that holds a full frame) loaded by ``run_node``.

The device list is checked before anything is started (with no camera, ``pipeline.start()`` would block
~15 s before failing): no pyrealsense2, no device, or a serial number that is not connected each stop the
node at once with a message saying what to do.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from roboalign_policy import conversions as conv
from roboalign_policy import qos as q
from roboalign_policy.node_runner import StartupError, run_node
from roboalign_policy.params import CPU_AFFINITY, ParamSpec, declare_params

PARAMS = [
    ParamSpec("camera_name", "camera", "name in the topic and frame (e.g. agentview, wrist)", read_only=True),
    ParamSpec("serial_no", "", "RealSense serial number; empty: the only connected device", read_only=True),
    ParamSpec("width", 640, "colour width", min=16, max=4096, read_only=True),
    ParamSpec("height", 480, "colour height", min=16, max=4096, read_only=True),
    ParamSpec("fps", 30, "frame rate", min=1, max=90, read_only=True),
    ParamSpec("camera_namespace", "/camera", "topics go to <ns>/<camera_name>/color/...", read_only=True),
    ParamSpec("image_qos", "reliable", "publisher reliability (realsense-ros: reliable)",
              choices=("reliable", "best_effort"), read_only=True),
    CPU_AFFINITY,
]


class CameraError(StartupError):
    """The camera cannot be used; the message says why and what to do."""


def import_realsense() -> Any:
    try:
        import pyrealsense2 as rs
    except ImportError as e:
        raise CameraError("pyrealsense2 is not installed: pip install pyrealsense2 (needs Debian libusb-1.0-0), "
                          f"or use realsense-ros (camera_driver:=realsense) ({e})") from e
    return rs


def find_device(rs: Any, serial_no: str = "") -> str:
    """Serial number of the device to open; raises CameraError when none (or not the requested one) is there."""
    devices = rs.context().query_devices()
    serials = [d.get_info(rs.camera_info.serial_number) for d in devices]
    if not serials:
        raise CameraError("no RealSense device found (pyrealsense2 query_devices() is empty): check the USB 3 "
                          "cable and the udev rules (librealsense's 99-realsense-libusb.rules)")
    if serial_no:
        if serial_no not in serials:
            raise CameraError(f"RealSense {serial_no} is not connected; connected: {', '.join(serials)}")
        return serial_no
    if len(serials) > 1:
        raise CameraError(f"several RealSense devices connected ({', '.join(serials)}): set serial_no")
    return serials[0]


class CameraNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("camera_node", **kwargs)
        self.p = declare_params(self, PARAMS)
        rs = import_realsense()
        serial = find_device(rs, self.p["serial_no"])
        self._rs = rs
        self._pipeline = rs.pipeline()
        cfg = rs.config()
        cfg.enable_device(serial)
        cfg.enable_stream(rs.stream.color, self.p["width"], self.p["height"], rs.format.rgb8, self.p["fps"])
        profile = self._pipeline.start(cfg)
        intr = profile.get_stream(rs.stream.color).as_video_stream_profile().get_intrinsics()
        name, ns = self.p["camera_name"], self.p["camera_namespace"].rstrip("/")
        self._frame = f"{name}_color_optical_frame"
        self._info = CameraInfo(width=intr.width, height=intr.height, distortion_model="plumb_bob",
                                d=list(intr.coeffs), k=[intr.fx, 0.0, intr.ppx, 0.0, intr.fy, intr.ppy, 0.0, 0.0, 1.0],
                                r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                                p=[intr.fx, 0.0, intr.ppx, 0.0, 0.0, intr.fy, intr.ppy, 0.0, 0.0, 0.0, 1.0, 0.0])
        profile = q.camera_profile(q.reliability_of(self.p["image_qos"]))
        self._img_pub = self.create_publisher(Image, f"{ns}/{name}/color/image_raw", profile)
        self._info_pub = self.create_publisher(CameraInfo, f"{ns}/{name}/color/camera_info", profile)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self.get_logger().info(f"RealSense {serial}: {self.p['width']}x{self.p['height']} @ {self.p['fps']} Hz "
                               f"-> {ns}/{name}/color/image_raw")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frames = self._pipeline.wait_for_frames(timeout_ms=1000)
            except RuntimeError as e:  # no frame within a second: say so, keep trying
                self.get_logger().warning(f"no frame: {e}", throttle_duration_sec=5.0)
                continue
            color = frames.get_color_frame()
            if not color:
                continue
            rgb = np.asanyarray(color.get_data())  # (H, W, 3) uint8
            stamp = self.get_clock().now().to_msg()
            self._img_pub.publish(conv.rgb_to_image(rgb, stamp, self._frame))
            self._info.header.stamp, self._info.header.frame_id = stamp, self._frame
            self._info_pub.publish(self._info)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3.0)
        self._pipeline.stop()


def main(args: list[str] | None = None) -> int:
    return run_node(CameraNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
