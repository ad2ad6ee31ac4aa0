"""Helpers for ROS tests: spinning until a condition holds, running nodes in other processes."""
