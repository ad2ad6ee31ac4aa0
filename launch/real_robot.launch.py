"""Franka Research 3 + RealSense cameras + policy + bridge + gripper relay (start franka_ros2's bringup first):

    ros2 launch roboalign_policy real_robot.launch.py checkpoint:=/path/to/export [dry_run:=true]
        [camera_driver:=realsense|pyrealsense2|none] [command_topic:=/fr3_arm_controller/joint_trajectory]
        [gripper:=franka_gripper|topic] [backend:=onnxruntime|torch|tensorrt] [record_dir:=DIR]
        [teleop:=none|spacemouse|gamepad|joy] [allow_cpu_fallback:=true]
        [backend_options:='{"providers": ["cuda", "cpu"]}'] [camera_qos:=auto|reliable|best_effort] [autostart:=false]

policy_node and bridge_node are managed (lifecycle) nodes: they configure (load the model / build the bridge)
and activate themselves (autostart:=true); with autostart:=false they wait for `ros2 lifecycle set <node>
configure` / `activate`. START is refused until the policy is active, with the policy's own reason (e.g. no
CUDA execution provider: allow_cpu_fallback:=true runs it on the CPU). dry_run is true by default: the bridge computes and checks every command and the gripper relay logs its
goals, and nothing is sent until you relaunch with dry_run:=false. gripper:=franka_gripper (default) starts
gripper_relay, which turns the bridge's gripper command into franka_gripper Move (open) / Grasp (close)
goals (parameters in config/real_robot.yaml); gripper:=topic leaves the command on gripper_command_topic
for a controller. camera_driver:=realsense includes realsense-ros' rs_launch.py once per
camera of config/real_robot_graph.yaml (topics /camera/<name>/color/image_raw); pyrealsense2 starts our
camera_node instead; none expects the images from elsewhere. Nodes, arguments and parameters are data:
config/real_robot_graph.yaml + config/real_robot.yaml (the same files `roboalign demo --graph real_robot`
reads). Every process it starts, realsense-ros included, loads config/fastdds.xml (an 8 MiB shared-memory
segment, so a 640x480 frame does not fall back to UDP; docs/robot-bringup.md "Cameras"). Operator: `roboalign say "put the
ketchup in the basket"`, `roboalign say --estop`. Demonstrations:
teleop:=spacemouse (or gamepad, joy) also starts teleop_node; with record_dir:=DIR/bags, `roboalign record
--task ... --out DIR --mode teleop|leader|kinesthetic` records them through the bridge's safety layer.
"""

from launch.actions import (
    DeclareLaunchArgument,
    IncludeLaunchDescription,
    OpaqueFunction,
    SetEnvironmentVariable,
)
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription
from roboalign_policy.graph import load_graph
from roboalign_policy.node_runner import dds_profile_env

GRAPH = "real_robot"


def _node(graph, n, values):
    """A launch_ros action for node ``n``: a LifecycleNode for the managed nodes (policy_node, bridge_node), which
    configure and activate themselves with their ``autostart`` parameter (the ``autostart`` argument)."""
    action = LifecycleNode if n.lifecycle else Node
    return action(package=n.package, executable=n.executable, name=n.name, namespace="", output="screen",
                  emulate_tty=True, parameters=[str(graph.params_file), graph.node_parameters(n, values)],
                  remappings=list(n.remappings))


def _realsense(cameras):
    """One realsense-ros camera per entry: /camera/<name>/color/image_raw, colour only."""
    rs_launch = PathJoinSubstitution([FindPackageShare("realsense2_camera"), "launch", "rs_launch.py"])
    return [
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(rs_launch),
            launch_arguments={"camera_namespace": "camera", "camera_name": cam["name"],
                              "serial_no": f"'{cam.get('serial_no', '')}'", "enable_depth": "false",
                              "rgb_camera.color_profile": cam.get("profile", "640,480,30")}.items())
        for cam in cameras
    ]


def _nodes(context, *args, **kwargs):
    graph = load_graph(GRAPH)
    values = graph.resolve({name: LaunchConfiguration(name).perform(context) for name in graph.arguments})
    # every process launched here, realsense-ros included, loads config/fastdds.xml (unless a profile is set or
    # ROBOALIGN_DDS_PROFILE=0): a full-size frame fits the publisher's shared-memory segment only with it
    actions = [SetEnvironmentVariable(var, path) for var, path in dds_profile_env().items()]
    if values["camera_driver"] == "realsense":
        actions += _realsense(graph.extra.get("cameras", []))
    elif values["camera_driver"] not in ("pyrealsense2", "none"):
        raise ValueError(f"camera_driver {values['camera_driver']!r}; valid: realsense, pyrealsense2, none")
    actions += [_node(graph, n, values) for n in graph.active_nodes(values)]
    return actions


def generate_launch_description() -> LaunchDescription:
    graph = load_graph(GRAPH)
    declared = [DeclareLaunchArgument(a.name, default_value=str(a.default).lower() if a.type == "bool"
                                      else str(a.default), description=a.description)
                for a in graph.arguments.values()]
    return LaunchDescription([*declared, OpaqueFunction(function=_nodes)])
