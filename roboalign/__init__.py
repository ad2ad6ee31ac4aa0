"""RoboAlign: action-aligned VLA training, export and ROS 2 deployment (ROS-free core).

The core library never imports rclpy; the ROS 2 nodes in ``ros2_ws/src/roboalign_policy`` are thin
adapters over it.
"""

__version__ = "0.1.0"
