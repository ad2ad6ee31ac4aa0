"""sim_robot_node (placeholder until its issue lands): a minimal rclpy node."""

import rclpy
from rclpy.node import Node


def main(args=None) -> None:
    rclpy.init(args=args)
    node = Node("sim_robot_node")
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
