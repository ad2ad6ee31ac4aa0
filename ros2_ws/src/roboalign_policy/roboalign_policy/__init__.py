"""RoboAlign ROS 2 nodes: thin adapters (messages <-> numpy) over the ROS-free ``roboalign`` core."""
