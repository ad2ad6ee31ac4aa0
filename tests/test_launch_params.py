"""The launch files' node graphs and parameter YAML: every node starts with exactly what the launch file
passes it, every YAML key is a declared parameter with a valid value, and typos or bad values are refused.

``ros2 launch`` is not installable here, so the launch files get the same data through
``roboalign_policy.graph`` (tested here) and are only compiled; ``roboalign demo`` uses the same graph.
"""

from __future__ import annotations

import ast
import importlib
import py_compile
import re
import shutil
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (make setup)")
from roboalign_policy.graph import load_graph, node_command  # noqa: E402
from roboalign_policy.params import declare_params  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "roboalign", ROOT / "training", ROOT / "ros2_ws/src/roboalign_policy/roboalign_policy"]
CONFIG = ROOT / "ros2_ws/src/roboalign_policy/config"
LAUNCH = ROOT / "launch"
CHEAP = {"policy_node": "PolicyNode", "bridge_node": "BridgeNode",  # constructed for real (no model load, no sim)
         "gripper_relay": "GripperRelay"}
CASES = [("sim", {}), ("sim", {"backend": "onnxruntime", "checkpoint": "/models/tiny", "dry_run": "true"}),
         ("real_robot", {"checkpoint": "/models/export", "camera_driver": "pyrealsense2"}),
         ("real_robot", {"checkpoint": "/models/export", "dry_run": "false", "camera_driver": "none"}),
         ("real_robot", {"checkpoint": "/models/export", "camera_driver": "none", "gripper": "topic"}),
         ("real_robot", {"checkpoint": "/models/export", "camera_driver": "none", "allow_cpu_fallback": "true",
                         "autostart": "false", "backend_options": '{"providers": ["cpu"]}'}),
         ("sim", {"allow_cpu_fallback": "true", "camera_qos": "best_effort"}),
         ("sim", {"console": "true", "console_port": "8800"}),
         ("real_robot", {"checkpoint": "/models/export", "camera_driver": "none", "console": "true"})]


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


def _ros_args(graph, node, args) -> list[str]:
    cmd = node_command(graph, node, args)
    return cmd[cmd.index("--ros-args"):]


def _start(graph, node, args):
    """The node as the launch file starts it: the real class for the cheap nodes, else the node's own
    parameter declarations on a plain node with the same arguments (sim_robot_node would load LIBERO,
    camera_node needs a RealSense)."""
    module = importlib.import_module(f"roboalign_policy.{node.executable}")
    cli = _ros_args(graph, node, args)
    if node.executable in CHEAP:
        n = getattr(module, CHEAP[node.executable])(cli_args=cli)
        return n, n.p
    n = rclpy.create_node(node.name, cli_args=cli)
    rules = [module._rules] if hasattr(module, "_rules") else []
    return n, declare_params(n, module.PARAMS, rules)


@pytest.mark.parametrize(("graph_name", "values"), CASES)
def test_every_node_starts_with_its_launch_parameters(ros, graph_name, values) -> None:
    graph = load_graph(graph_name, CONFIG)
    args = graph.resolve(values)
    params_yaml = yaml.safe_load(graph.params_file.read_text())
    started = []
    for node in graph.active_nodes(args):
        n, p = _start(graph, node, args)
        try:
            section = params_yaml.get(node.name, {}).get("ros__parameters", {})
            assert section, f"{graph.params_file.name} has no section for {node.name}"
            expected = {**section, **graph.node_parameters(node, args)}
            expected.pop("use_sim_time")
            for key, value in expected.items():
                assert n.has_parameter(key), f"{node.name}: {key} is not declared"
                got = n.get_parameter(key).value
                assert (list(got) if isinstance(got, list | tuple) or hasattr(got, "tolist") else got) == value, \
                    f"{node.name}.{key}: {got!r} != {value!r}"
                assert n.describe_parameter(key).description, f"{node.name}.{key} has no description"
            assert n.get_parameter("use_sim_time").value == node.use_sim_time
            started.append(node.name)
        finally:
            n.destroy_node()
    console = ["console"] if args["console"] else []  # the operator console, with console:=true
    if graph_name == "sim":
        assert started == ["sim_robot_node", "policy_node", "bridge_node", *console]
    else:
        expected = ["policy_node", "bridge_node"] + (["gripper_relay"] if args["gripper"] == "franka_gripper" else [])
        if args["camera_driver"] == "pyrealsense2":
            expected += ["agentview_camera", "wrist_camera"]
        assert started == expected + console
    if graph_name == "real_robot":
        assert args["dry_run"] is (values.get("dry_run", "true") == "true")
        # one argument sets both: the gripper relay never sends goals while the bridge is in dry run
        assert set(graph.arguments["dry_run"].nodes) == {"bridge_node", "gripper_relay"}


def test_real_robot_defaults_are_safe() -> None:
    graph = load_graph("real_robot", CONFIG)
    params = yaml.safe_load(graph.params_file.read_text())
    bridge = params["bridge_node"]["ros__parameters"]  # safety-relevant defaults are stated in the file
    assert graph.arguments["dry_run"].default is True and bridge["dry_run"] is True
    assert params["gripper_relay"]["ros__parameters"]["dry_run"] is True
    assert bridge["joint_limits"] == "fr3" and bridge["velocity_scale"] <= 0.5 and bridge["home_first"]


@pytest.mark.parametrize(("node_name", "key", "value", "error"), [
    ("bridge_node", "control_rate_hz", 5000.0, "control_rate_hz"),
    ("bridge_node", "dryrun", True, "unknown parameters \\['dryrun'\\]"),
    ("policy_node", "max_image_age_s", -1.0, "max_image_age_s"),
    ("bridge_node", "home_pose", [0.0] * 7, "home_pose is outside"),
    ("sim_robot_node", "idle_rate_hz", 0.0, "idle_rate_hz"),
])
def test_a_bad_parameters_file_is_refused_naming_the_parameter(ros, tmp_path, node_name, key, value, error) -> None:
    for f in CONFIG.glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    params = yaml.safe_load((tmp_path / "sim.yaml").read_text())
    params[node_name]["ros__parameters"][key] = value
    (tmp_path / "sim.yaml").write_text(yaml.safe_dump(params))
    graph = load_graph("sim", tmp_path)
    node = next(n for n in graph.nodes if n.name == node_name)
    with pytest.raises(ValueError, match=error):
        n, _ = _start(graph, node, graph.resolve({}))
        n.destroy_node()


def test_graph_arguments_are_typed_and_checked() -> None:
    graph = load_graph("sim", CONFIG)
    with pytest.raises(ValueError, match="unknown arguments \\['bakend'\\]"):
        graph.resolve({"bakend": "torch"})
    with pytest.raises(ValueError, match="dry_run must be true or false"):
        graph.resolve({"dry_run": "maybe"})
    args = graph.resolve({"camera_size": "64", "backend_options": '{"a": [1, 2]}'})
    assert args["camera_size"] == 64 and args["backend_options"] == '{"a": [1, 2]}'


def test_launch_files_compile_and_use_the_graphs() -> None:
    for name in ("sim", "real_robot"):
        path = LAUNCH / f"{name}.launch.py"
        py_compile.compile(str(path), doraise=True)
        tree = ast.parse(path.read_text())
        graph_const = [n.value.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                       and any(getattr(t, "id", "") == "GRAPH" for t in n.targets)]
        assert graph_const == [name]
        assert "generate_launch_description" in {f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)}
        load_graph(name, CONFIG)


def test_installed_config_matches_the_source() -> None:
    """The launch files read the installed share; a stale build would launch old parameters."""
    share = load_graph("sim").params_file.parent
    if share == CONFIG:
        pytest.skip("roboalign_policy is not installed")
    for f in CONFIG.glob("*.yaml"):
        assert (share / f.name).read_text() == f.read_text(), f"{share / f.name} is stale: run make setup"


@pytest.mark.parametrize("graph_name", ["sim", "real_robot"])
def test_yaml_and_launch_argument_defaults_agree(graph_name) -> None:
    """An argument overrides the YAML value of its parameter; both must say the same by default."""
    graph = load_graph(graph_name, CONFIG)
    params = yaml.safe_load(graph.params_file.read_text())
    for a in graph.arguments.values():
        for node in a.nodes:
            section = params[node]["ros__parameters"]
            assert section.get(a.param, a.default) == a.default, f"{node}.{a.param}: YAML vs argument {a.name}"


def _declared_defaults(graph) -> dict[str, dict[str, object]]:
    out = {}
    for node in graph.nodes:
        module = importlib.import_module(f"roboalign_policy.{node.executable}")
        out[node.name] = {p.name: list(p.default) if isinstance(p.default, tuple | list) else p.default
                          for p in module.PARAMS}
    return out


def _explained_repeats(text: str) -> set[tuple[str, str]]:
    """(node, key) of every line ``    key: value  # (default) why`` in a params file."""
    found, node = set(), None
    for line in text.splitlines():
        if m := re.match(r"^(\w+):", line):
            node = m.group(1)
        elif m := re.match(r"^    (\w+):[^#]*# \(default\) \S", line):
            found.add((node, m.group(1)))
    return found


@pytest.mark.parametrize("graph_name", ["sim", "real_robot"])
def test_params_files_list_only_what_differs_from_the_code(graph_name) -> None:
    """A value equal to the node's declared default is either gone or says why it is repeated; a stale copy of a
    default would silently pin the old value when the code's default changes."""
    graph = load_graph(graph_name, CONFIG)
    text = graph.params_file.read_text()
    params, defaults = yaml.safe_load(text), _declared_defaults(graph)
    explained = _explained_repeats(text)
    repeats = {(node, key) for node, section in params.items() for key, value in section["ros__parameters"].items()
               if key in defaults.get(node, {}) and defaults[node][key] == value}
    assert sorted(repeats - explained) == [], "repeats of a code default without a '# (default) why' comment"
    assert sorted(explained - repeats) == [], "'# (default)' on a value that is not the default"


def test_the_repeat_check_sees_a_repeat() -> None:
    text = "bridge_node:\n  ros__parameters:\n    dry_run: true   # (default) safety\n    lookahead_steps: 2\n"
    assert _explained_repeats(text) == {("bridge_node", "dry_run")}
    defaults = _declared_defaults(load_graph("sim", CONFIG))
    assert defaults["bridge_node"]["lookahead_steps"] == 2  # so the line above would be an unexplained repeat


def _advice_in_messages() -> dict[str, set[str]]:
    """``name`` -> files, for every ``name:=value`` a string in the code tells the user to set (error texts,
    log lines; docstrings are not messages)."""
    found: dict[str, set[str]] = {}
    for root in SOURCES:
        for path in root.rglob("*.py"):
            tree = ast.parse(path.read_text())
            docs = {id(n.body[0].value) for n in ast.walk(tree)
                    if isinstance(n, ast.Module | ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef)
                    and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                    for name in re.findall(r"(?<![\w-])([a-z][a-z0-9_]*):=", node.value):
                        found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def _settable(graph, name: str) -> bool:
    """``name`` can be given on the graph's command line: an argument, or chosen by one (a node variant with the
    parameter fixed under a ``when`` on an argument, as teleop_node's device under ``teleop``)."""
    if name in graph.arguments:
        return True
    variants = [n for n in graph.nodes if name in n.parameters]
    return bool(variants) and all(n.when for n in variants)


def test_every_setting_an_error_message_advises_is_a_launch_argument_where_its_node_runs() -> None:
    """An error that says ``allow_cpu_fallback:=true`` is only useful if the user can type that where they are:
    every advised ``name:=`` is an argument of each graph that runs a node declaring the parameter (or of some
    graph, for an argument of the launch files themselves)."""
    advice = _advice_in_messages()
    assert {"allow_cpu_fallback", "record_dir"} <= set(advice), advice  # the scan finds the messages
    graphs = [load_graph(name, CONFIG) for name in ("sim", "real_robot")]
    missing = []
    for name, files in sorted(advice.items()):
        runs = [g for g in graphs if any(name in _declared_defaults(g).get(n.name, {}) for n in g.nodes)]
        if not any(_settable(g, name) for g in graphs) or not all(_settable(g, name) for g in runs):
            missing.append(f"{name} (advised in {sorted(files)})")
    assert missing == [], "advised settings that are not launch arguments"


@pytest.mark.parametrize("graph_name", ["sim", "real_robot"])
def test_allow_cpu_fallback_and_autostart_are_launch_arguments_of_the_managed_nodes(graph_name) -> None:
    graph = load_graph(graph_name, CONFIG)
    managed = [n.name for n in graph.nodes if n.lifecycle]
    assert managed == ["policy_node", "bridge_node"]
    autostart, fallback = graph.arguments["autostart"], graph.arguments["allow_cpu_fallback"]
    assert autostart.default is True and set(autostart.nodes) == set(managed) and autostart.param == "autostart"
    assert fallback.default is False and fallback.nodes == ("policy_node",)
    args = graph.resolve({"allow_cpu_fallback": "true", "autostart": "false"})
    policy = next(n for n in graph.nodes if n.name == "policy_node")
    cmd = node_command(graph, policy, args)
    assert "allow_cpu_fallback:=true" in cmd and "autostart:=false" in cmd
    text = (LAUNCH / f"{graph_name}.launch.py").read_text()
    assert "LifecycleNode if n.lifecycle else Node" in text  # launch_ros knows them as managed nodes
