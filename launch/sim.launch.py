"""Simulated robot (LIBERO) + policy + bridge, on sim time:

    ros2 launch roboalign_policy sim.launch.py [backend:=expert|onnxruntime|torch] [checkpoint:=DIR]
                                               [task:=shelf_to_tray] [dry_run:=false] [record_dir:=DIR]
                                               [allow_cpu_fallback:=true] [autostart:=false]

The node graph, the launch arguments and the parameters are data (config/sim_graph.yaml + config/sim.yaml),
shared with `roboalign demo`, which starts the same nodes with the same parameters where `ros2 launch` is
not installed. policy_node and bridge_node are managed (lifecycle) nodes that configure and activate
themselves (autostart); with autostart:=false they wait for `ros2 lifecycle set /policy_node configure` and
`activate` (then the same for /bridge_node). Then: `roboalign say "put the alphabet soup in the basket"`.
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

from launch import LaunchDescription
from roboalign_policy.graph import load_graph

GRAPH = "sim"


def _node(graph, n, values):
    """A launch_ros action for node ``n``: a LifecycleNode for the managed nodes (policy_node, bridge_node), which
    configure and activate themselves with their ``autostart`` parameter (the ``autostart`` argument)."""
    action = LifecycleNode if n.lifecycle else Node
    return action(package=n.package, executable=n.executable, name=n.name, namespace="", output="screen",
                  emulate_tty=True, parameters=[str(graph.params_file), graph.node_parameters(n, values)],
                  remappings=list(n.remappings))


def _nodes(context, *args, **kwargs):
    graph = load_graph(GRAPH)
    values = graph.resolve({name: LaunchConfiguration(name).perform(context) for name in graph.arguments})
    return [_node(graph, n, values) for n in graph.active_nodes(values)]


def generate_launch_description() -> LaunchDescription:
    graph = load_graph(GRAPH)
    declared = [DeclareLaunchArgument(a.name, default_value=str(a.default).lower() if a.type == "bool"
                                      else str(a.default), description=a.description)
                for a in graph.arguments.values()]
    return LaunchDescription([*declared, OpaqueFunction(function=_nodes)])
