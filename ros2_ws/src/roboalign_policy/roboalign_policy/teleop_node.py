"""teleop_node: a teleoperation device -> end-effector twist + gripper for the bridge's ``teleop`` mode.

Devices (the hardware boundary): ``spacemouse`` (3Dconnexion, pyspacemouse over hidapi, ROS axis convention),
``gamepad`` (any Linux joystick through evdev; axes numbered like joy_node's: 0 left x, 1 left y up, 2 left
trigger, 3 right x, 4 right y up, 5 right trigger), or ``joy`` (``sensor_msgs/Joy`` from a joy_node already
running). At ``rate_hz`` it publishes ``geometry_msgs/TwistStamped`` (base frame, zeros when the device is at
rest, so the bridge's watchdog sees a live stream) and ``std_msgs/Float64`` gripper (-1 open / +1 closed). The
mapping (axis map, dead zone, speed limits, gripper button) is ``roboalign.control.teleop_devices``; the bridge
clips speeds again and applies its joint limits. A missing library or device stops the node at once, saying
what to do.
"""

from __future__ import annotations

import threading
from typing import Any

from geometry_msgs.msg import TwistStamped
from rclpy.node import Node
from sensor_msgs.msg import Joy
from std_msgs.msg import Float64

from roboalign.control.teleop_devices import (
    GAMEPAD_DEFAULT,
    SPACEMOUSE_DEFAULT,
    AxisMap,
    GripperButton,
    twist,
)
from roboalign_policy import qos
from roboalign_policy.node_runner import StartupError, run_node
from roboalign_policy.params import CPU_AFFINITY, ParamSpec, declare_params

PARAMS = [
    ParamSpec("device", "spacemouse", "teleoperation device", choices=("spacemouse", "gamepad", "joy"),
              read_only=True),
    ParamSpec("axis_map", "", "vx,vy,vz,wx,wy,wz <- device axes ('-' flips, 'none'); empty: the device's default",
              read_only=True),
    ParamSpec("gripper_button", 0, "button index driving the gripper", min=0, max=63),
    ParamSpec("gripper_mode", "toggle", "toggle on each press, or closed while held", choices=("toggle", "hold")),
    ParamSpec("max_linear_speed", 0.1, "full deflection speed [m/s]", min=0.001, max=1.0),
    ParamSpec("max_angular_speed", 0.5, "full deflection rotation speed [rad/s]", min=0.001, max=3.0),
    ParamSpec("deadzone", 0.1, "deflections below this are zero", min=0.0, max=0.9),
    ParamSpec("rate_hz", 50.0, "publish rate", min=1.0, max=1000.0, read_only=True),
    ParamSpec("evdev_path", "", "gamepad input device (/dev/input/eventN); empty: the first joystick", read_only=True),
    ParamSpec("joy_topic", "/joy", "sensor_msgs/Joy input (device joy)", read_only=True),
    ParamSpec("frame_id", "fr3_link0", "frame of the twist (the robot base)", read_only=True),
    ParamSpec("twist_topic", qos.TELEOP_TWIST, "geometry_msgs/TwistStamped output", read_only=True),
    ParamSpec("gripper_topic", qos.TELEOP_GRIPPER, "std_msgs/Float64 gripper output", read_only=True),
    CPU_AFFINITY,
]
DEFAULT_MAPS = {"spacemouse": SPACEMOUSE_DEFAULT, "gamepad": GAMEPAD_DEFAULT, "joy": GAMEPAD_DEFAULT}


class SpaceMouse:
    """pyspacemouse device, read without blocking."""

    def __init__(self) -> None:
        try:
            import pyspacemouse
        except ImportError as e:
            raise StartupError("device spacemouse needs pyspacemouse and the hidapi library: pip install "
                               "pyspacemouse; apt-get install libhidapi-hidraw0") from e
        try:
            self._dev = pyspacemouse.open(axis_convention=pyspacemouse.AxisConvention.ROS)
        except Exception as e:
            raise StartupError(f"no SpaceMouse found ({e}): check the USB connection and that this user may read "
                               "/dev/hidraw* (a udev rule for vendor 256f/046d)") from e

    def read(self) -> tuple[dict[str, float], list[int]]:
        s = self._dev.read()
        return {a: float(getattr(s, a)) for a in ("x", "y", "z", "roll", "pitch", "yaw")}, list(s.buttons)


class Gamepad:
    """A Linux joystick through evdev: a reader thread keeps the newest axes (normalised to [-1, 1]) and buttons."""

    def __init__(self, path: str = "") -> None:
        try:
            import evdev
        except ImportError as e:
            raise StartupError("device gamepad needs evdev: pip install evdev (or use device:=joy)") from e
        self._evdev = evdev
        self._dev = evdev.InputDevice(path) if path else self._first_joystick()
        caps = self._dev.capabilities(absinfo=True)
        self._abs = {code: info for code, info in caps.get(evdev.ecodes.EV_ABS, [])}
        self._keys = sorted(caps.get(evdev.ecodes.EV_KEY, []))
        self.axes = {str(c): 0.0 for c in self._abs}
        self.buttons = [0] * len(self._keys)
        threading.Thread(target=self._loop, name="gamepad", daemon=True).start()

    def _first_joystick(self) -> Any:
        ev = self._evdev
        for p in ev.list_devices():
            d = ev.InputDevice(p)
            if ev.ecodes.EV_ABS in d.capabilities() and ev.ecodes.EV_KEY in d.capabilities():
                return d
        raise StartupError("no gamepad found (evdev lists no device with axes and buttons under /dev/input): "
                           "plug one in, check permissions (group input), or set evdev_path")

    def _loop(self) -> None:
        for e in self._dev.read_loop():
            if e.type == self._evdev.ecodes.EV_ABS and e.code in self._abs:
                info = self._abs[e.code]
                v = 2.0 * (e.value - info.min) / max(1, info.max - info.min) - 1.0
                self.axes[str(e.code)] = -v if e.code in (1, 4) else v  # joy_node's "up is positive"
            elif e.type == self._evdev.ecodes.EV_KEY and e.code in self._keys:
                self.buttons[self._keys.index(e.code)] = int(e.value > 0)

    def read(self) -> tuple[dict[str, float], list[int]]:
        return dict(self.axes), list(self.buttons)


class JoyInput:
    """The newest sensor_msgs/Joy of a running joy_node."""

    def __init__(self, node: Node, topic: str) -> None:
        self._axes: dict[str, float] = {}
        self._buttons: list[int] = []
        node.create_subscription(Joy, topic, self._on_joy, qos.SENSOR)

    def _on_joy(self, msg: Joy) -> None:
        self._axes, self._buttons = {str(i): float(v) for i, v in enumerate(msg.axes)}, list(msg.buttons)

    def read(self) -> tuple[dict[str, float], list[int]]:
        return dict(self._axes), list(self._buttons)


class TeleopNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("teleop_node", **kwargs)
        self.p = declare_params(self, PARAMS)
        self.add_post_set_parameters_callback(lambda ps: self.p.update({x.name: x.value for x in ps}))
        device = self.p["device"]
        self.map = AxisMap.parse(self.p["axis_map"] or DEFAULT_MAPS[device])
        self.gripper = GripperButton(self.p["gripper_mode"])
        if device == "spacemouse":
            self.device = SpaceMouse()
        elif device == "gamepad":
            self.device = Gamepad(self.p["evdev_path"])
        else:
            self.device = JoyInput(self, self.p["joy_topic"])
        self._twist_pub = self.create_publisher(TwistStamped, self.p["twist_topic"], qos.SENSOR)
        self._grip_pub = self.create_publisher(Float64, self.p["gripper_topic"], qos.SENSOR)
        self._warned = False
        self.create_timer(1.0 / self.p["rate_hz"], self._publish)
        self.get_logger().info(f"teleop from {device}, axis map {','.join(a or 'none' for a in self.map.axes)}")

    def _publish(self) -> None:
        axes, buttons = self.device.read()
        try:
            v = twist(self.map.read(axes), self.p["max_linear_speed"], self.p["max_angular_speed"], self.p["deadzone"])
        except ValueError as e:  # an axis the device does not have: say so once, send no motion
            if axes and not self._warned:
                self.get_logger().error(f"axis map does not fit the device: {e}")
                self._warned = True
            v = [0.0] * 6
        b = self.p["gripper_button"]
        grip = self.gripper.update(bool(buttons[b]) if b < len(buttons) else False)
        msg = TwistStamped()
        msg.header.stamp, msg.header.frame_id = self.get_clock().now().to_msg(), self.p["frame_id"]
        t = msg.twist
        t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z = (float(x) for x in v)
        self._twist_pub.publish(msg)
        self._grip_pub.publish(Float64(data=grip))


def main(args: list[str] | None = None) -> int:
    return run_node(TeleopNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
