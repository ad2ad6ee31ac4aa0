"""Simulated robot (LIBERO) + policy + bridge, on sim time:

    ros2 launch roboalign_policy sim.launch.py [backend:=expert|onnxruntime|torch] [checkpoint:=DIR]
                                               [task:=shelf_to_tray] [dry_run:=false] [record_dir:=DIR]

The node graph, the launch arguments and the parameters are data (config/sim_graph.yaml + config/sim.yaml),
shared with `roboalign demo`, which starts the same nodes with the same parameters where `ros2 launch` is
not installed. Then: `roboalign say "put the alphabet soup in the basket"`.
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from roboalign_policy.graph import load_graph

GRAPH = "sim"


def _nodes(context, *args, **kwargs):
    graph = load_graph(GRAPH)
    values = graph.resolve({name: LaunchConfiguration(name).perform(context) for name in graph.arguments})
    return [
        Node(package=n.package, executable=n.executable, name=n.name, output="screen", emulate_tty=True,
             parameters=[str(graph.params_file), graph.node_parameters(n, values)],
             remappings=list(n.remappings))
        for n in graph.active_nodes(values)
    ]


def generate_launch_description() -> LaunchDescription:
    graph = load_graph(GRAPH)
    declared = [DeclareLaunchArgument(a.name, default_value=str(a.default).lower() if a.type == "bool"
                                      else str(a.default), description=a.description)
                for a in graph.arguments.values()]
    return LaunchDescription([*declared, OpaqueFunction(function=_nodes)])
