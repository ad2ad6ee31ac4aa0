"""The node graphs of the launch files as data, shared by ``ros2 launch`` and ``roboalign demo``.

A graph file (``config/<name>_graph.yaml``) names a ROS parameters file, the nodes to start (executable,
node name, remappings, extra parameters, ``use_sim_time``, ``lifecycle`` for a managed node, an optional
``when`` condition on the launch arguments) and the launch arguments with their defaults and the node parameter each one sets
(``node`` may list several nodes, e.g. ``dry_run`` sets the bridge's and the gripper relay's). The launch
files (``launch/sim.launch.py``, ``launch/real_robot.launch.py``) turn it into ``launch_ros`` Node actions;
``roboalign demo`` turns it into processes started with the same ``--ros-args``. Managed nodes (policy_node,
bridge_node) are launch_ros ``LifecycleNode``s there; they bring themselves to active with their ``autostart``
parameter (the ``autostart`` launch argument), so the same processes work under both. No rclpy import here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PACKAGE = "roboalign_policy"
_TYPES = {"str": str, "bool": bool, "float": float, "int": int}


def config_dir() -> Path:
    """The package's installed ``share/roboalign_policy/config`` (what ``ros2 launch`` uses), else the
    source tree's ``config/`` (a checkout without a build)."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            installed = Path(get_package_share_directory(PACKAGE)) / "config"
            if installed.is_dir():
                return installed
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    return Path(__file__).resolve().parents[1] / "config"


@dataclass(frozen=True)
class Argument:
    """A launch argument: its default, type and the parameter ``param`` it sets on each node of ``nodes``."""

    name: str
    default: Any
    type: str
    description: str
    nodes: tuple[str, ...] = ()
    param: str | None = None

    def parse(self, text: str | Any) -> Any:
        """The typed value of a launch-argument string ("true", "0.5", a path...)."""
        if not isinstance(text, str):
            return _TYPES[self.type](text)
        if self.type == "bool":
            low = text.strip().lower()
            if low not in ("true", "false", "1", "0"):
                raise ValueError(f"argument {self.name} must be true or false, got {text!r}")
            return low in ("true", "1")
        try:
            return _TYPES[self.type](text)
        except ValueError:
            raise ValueError(f"argument {self.name} must be a {self.type}, got {text!r}") from None


@dataclass(frozen=True)
class NodeSpec:
    executable: str
    name: str
    package: str = PACKAGE
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()
    use_sim_time: bool = False
    when: dict[str, Any] = field(default_factory=dict)
    lifecycle: bool = False  # a managed node (rclpy.lifecycle): launch_ros LifecycleNode
    critical: bool = True  # False: its death is reported, the others keep running (the console owns no safety)

    def enabled(self, args: dict[str, Any]) -> bool:
        return all(args.get(k) == v for k, v in self.when.items())


@dataclass(frozen=True)
class Graph:
    name: str
    params_file: Path
    nodes: tuple[NodeSpec, ...]
    arguments: dict[str, Argument]
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the cameras of the real-robot graph

    def resolve(self, values: dict[str, Any] | None = None) -> dict[str, Any]:
        """Launch-argument values: defaults overridden by ``values`` (strings or typed); unknown names raise."""
        values = dict(values or {})
        unknown = sorted(set(values) - set(self.arguments))
        if unknown:
            raise ValueError(f"graph {self.name}: unknown arguments {unknown}; valid: {', '.join(self.arguments)}")
        return {n: a.parse(values[n]) if n in values else a.default for n, a in self.arguments.items()}

    def node_parameters(self, node: NodeSpec, args: dict[str, Any]) -> dict[str, Any]:
        """Parameters set on top of the parameters file: the node's own, then the launch arguments'."""
        params = dict(node.parameters)
        for a in self.arguments.values():
            if node.name in a.nodes and a.param:
                params[a.param] = args[a.name]
        params["use_sim_time"] = node.use_sim_time
        return params

    def active_nodes(self, args: dict[str, Any]) -> list[NodeSpec]:
        return [n for n in self.nodes if n.enabled(args)]


def load_graph(name: str | Path, directory: Path | None = None) -> Graph:
    """Graph ``name`` ("sim", "real_robot") from ``directory`` (default :func:`config_dir`), or a file path."""
    path = Path(name)
    if not path.suffix:
        path = (directory or config_dir()) / f"{name}_graph.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"graph file not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    for key in ("params_file", "nodes"):
        if key not in raw:
            raise ValueError(f"{path}: missing '{key}'")
    args = {}
    for n, a in (raw.get("arguments") or {}).items():
        if a.get("type", "str") not in _TYPES:
            raise ValueError(f"{path}: argument {n} has type {a.get('type')!r}; valid: {', '.join(_TYPES)}")
        targets = a.get("node") or ()  # one node name or a list of them (e.g. dry_run: bridge and gripper)
        args[n] = Argument(n, a.get("default"), a.get("type", "str"), a.get("description", ""),
                           (targets,) if isinstance(targets, str) else tuple(targets), a.get("param"))
    nodes = []
    for i, n in enumerate(raw["nodes"]):
        missing = [k for k in ("executable", "name") if k not in n]
        if missing:
            raise ValueError(f"{path}: node {i} is missing {missing}")
        bad = sorted(set(n.get("when", {})) - set(args))
        if bad:
            raise ValueError(f"{path}: node {n['name']} has a condition on unknown arguments {bad}")
        nodes.append(NodeSpec(n["executable"], n["name"], n.get("package", PACKAGE), dict(n.get("parameters") or {}),
                              tuple(tuple(r) for r in n.get("remappings") or ()), bool(n.get("use_sim_time", False)),
                              dict(n.get("when") or {}), bool(n.get("lifecycle", False)),
                              bool(n.get("critical", True))))
    extra = {k: v for k, v in raw.items() if k not in ("params_file", "nodes", "arguments")}
    return Graph(path.stem.removesuffix("_graph"), path.parent / raw["params_file"], tuple(nodes), args, extra)


def ros_value(value: Any) -> str:
    """A value as ``-p name:=value`` text (YAML, strings quoted so JSON text stays a string)."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
    return text.removesuffix("...").strip()


def node_command(graph: Graph, node: NodeSpec, args: dict[str, Any], python: str = sys.executable) -> list[str]:
    """The command line that starts ``node`` like ``ros2 launch`` would (same params file, remaps, params)."""
    cmd = [python, "-m", f"{node.package}.{node.executable}", "--ros-args", "-r", f"__node:={node.name}",
           "--params-file", str(graph.params_file)]
    for key, value in graph.node_parameters(node, args).items():
        cmd += ["-p", f"{key}:={ros_value(value)}"]
    for src, dst in node.remappings:
        cmd += ["-r", f"{src}:={dst}"]
    return cmd
