"""The default ROS topic and service names of the stack, in one place (plain strings: the core imports no rclpy;
``roboalign_policy.qos`` re-exports them beside the QoS profiles)."""

CAMERA_NAMES = ("agentview", "wrist")
JOINT_STATES = "/joint_states"
COMMAND = "/fr3_arm_controller/joint_trajectory"  # JointTrajectoryController input
GRIPPER_COMMAND = "/roboalign/gripper_command"
ACTION_CHUNK = "/roboalign/action_chunk"
POLICY_TRAJECTORY = "/roboalign/policy/joint_trajectory"
POLICY_STATUS = "/roboalign/policy_status"
INSTRUCTION = "/roboalign/instruction"
EPISODE_STATUS = "/roboalign/episode_status"
COMMAND_SERVICE = "/roboalign/command"
ESTOP = "/roboalign/estop"
ESTOP_SERVICE = "/roboalign/set_estop"
DIAGNOSTICS = "/diagnostics"
TELEOP_TWIST = "/roboalign/teleop/twist"  # geometry_msgs/TwistStamped, end-effector velocity, base frame
TELEOP_LEADER = "/roboalign/teleop/leader_joint_states"  # sensor_msgs/JointState, a leader arm's joints
TELEOP_GRIPPER = "/roboalign/teleop/gripper"  # std_msgs/Float64, -1 open .. +1 closed
