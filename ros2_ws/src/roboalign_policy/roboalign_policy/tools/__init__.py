"""Helpers around the nodes, not nodes themselves: the operator client (``say``, ``trials``, ``demo``), the process
graph that starts nodes where ``ros2 launch`` is absent, the scripted expert as a teleoperator, and the benches'
robot, camera probe and stream check."""
