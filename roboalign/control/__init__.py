"""Robot-side control core (ROS-free): safety limits, chunk execution, watchdogs, the episode state machine.

The ROS bridge node is a thin adapter over these modules; everything here is unit-tested without rclpy.
"""
