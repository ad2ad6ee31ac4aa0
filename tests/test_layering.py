"""The layers of RoboAlign import one way, with no cycle, and imports inside functions only defer heavy things.

Layers, lowest first (a module may import its own package and any lower layer, never a higher one or another
package of its own layer):

    spec → data, models → runtime, sim → export, training → control → evaluation, doctor → bench → paper_scale
    → commands

Checked over the source with ast, so nothing is imported to check it. An import inside a function is allowed only
where it defers something heavy or optional: a third-party package, or a RoboAlign module that imports one of the
heavy packages below at its top level (directly or through the modules it imports there); the standard library
and light third-party packages are imported at the top. The ROS package ``roboalign_policy`` may defer
rclpy-using modules and ROS message packages the same way.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROS_PKG = REPO / "ros2_ws" / "src" / "roboalign_policy" / "roboalign_policy"

LAYERS: dict[str, int] = {
    "spec": 0,
    "data": 1, "models": 1,
    "runtime": 2, "sim": 2,
    "export": 3, "training": 3,
    "control": 4,
    "evaluation": 5, "doctor": 5,
    "bench": 6,
    "paper_scale": 7,
    "commands": 8,
}
# Third-party packages that are heavy to import (seconds, GPU runtimes, a simulator, DDS) or optional.
HEAVY = frozenset({
    "torch", "transformers", "diffusers", "trl", "accelerate", "peft", "datasets", "onnx", "onnxscript",
    "onnxruntime", "tensorrt", "libero", "robosuite", "mujoco", "pinocchio", "rosbags", "mcap", "av",
    "matplotlib", "pyrealsense2", "hid", "evdev", "pyspacemouse", "scipy", "h5py", "pyarrow", "cv2", "PIL",
    "tokenizers", "safetensors", "pandas", "uvicorn", "fastapi", "aiohttp", "selenium",
    "rclpy",  # the ROS 2 client library and message packages (present only where ROS 2 is installed)
    "ament_index_python", "builtin_interfaces", "std_msgs", "std_srvs", "sensor_msgs", "geometry_msgs",
    "trajectory_msgs", "diagnostic_msgs", "lifecycle_msgs", "rcl_interfaces", "rosgraph_msgs", "roboalign_msgs",
    "franka_msgs", "rosbag2_py",
})
# The package's own names, as a module imports them.
ROOTS = ("roboalign", "roboalign_policy")


@dataclass
class Module:
    """One source module: its dotted name, file, and what it imports at top level and inside functions."""

    name: str
    path: Path
    top: list[tuple[str, int]] = field(default_factory=list)
    deferred: list[tuple[str, int]] = field(default_factory=list)


def _dotted(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[0] == "training":
        parts = ["roboalign", *parts]
    elif parts[:3] == ["ros2_ws", "src", "roboalign_policy"]:
        parts = parts[3:]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _names(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        mod = _absolute(node, module, is_package)
        return [f"{mod}.{a.name}" for a in node.names]  # own() resolves a name that is not a module to ``mod``
    return []


def _in_functions(tree: ast.Module) -> set[int]:
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside |= {id(n) for n in ast.walk(node) if n is not node}
    return inside


def _parse(path: Path) -> Module:
    mod = Module(_dotted(path), path)
    tree = ast.parse(path.read_text(), str(path))
    inside = _in_functions(tree)
    for node in ast.walk(tree):
        for name in _names(node, mod.name, path.name == "__init__.py"):
            (mod.deferred if id(node) in inside else mod.top).append((name, node.lineno))
    return mod


@cache
def modules() -> dict[str, Module]:
    files = [*(REPO / "roboalign").rglob("*.py"), *(REPO / "training").rglob("*.py"), *ROS_PKG.rglob("*.py")]
    return {m.name: m for m in map(_parse, files)}


def own(name: str) -> str | None:
    """The RoboAlign module ``name`` refers to (``roboalign.spec.tasks.TaskSet`` -> ``roboalign.spec.tasks``)."""
    if name.split(".")[0] not in ROOTS:
        return None
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


def _packages_above(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in modules()]


def top_edges(name: str) -> set[str]:
    """What importing ``name`` runs: its top-level imports of own modules and their packages' ``__init__``."""
    out: set[str] = set()
    for imported, _ in modules()[name].top:
        target = own(imported)
        if target and target != name:
            out |= {target, *(p for p in _packages_above(target) if not name.startswith(p + "."))}
    return out


@cache
def heavy(name: str, seen: frozenset[str] = frozenset()) -> bool:
    """Whether importing ``name`` imports a heavy third-party package (directly or through its top-level imports)."""
    if name in seen:
        return False
    mod = modules()[name]
    if any(i.split(".")[0] in HEAVY for i, _ in mod.top):
        return True
    return any(heavy(t, seen | {name}) for t in top_edges(name))


def layer(name: str) -> tuple[str, int] | None:
    parts = name.split(".")
    if parts[0] != "roboalign" or len(parts) < 2 or parts[1] not in LAYERS:
        return None
    return parts[1], LAYERS[parts[1]]


def _rel(mod: Module) -> str:
    return str(mod.path.relative_to(REPO))


def test_every_core_module_is_in_a_layer():
    loose = [n for n in modules() if n.startswith("roboalign.") and layer(n) is None and n != "roboalign.__main__"]
    assert loose == [], f"modules outside the layers {list(LAYERS)}: {loose}"


def test_lower_layers_never_import_upper_ones():
    bad = set()
    for mod in modules().values():
        here = layer(mod.name)
        for imported, line in mod.top + mod.deferred:
            target = own(imported)
            there = layer(target) if target else None
            if here and there and here[0] != there[0] and there[1] >= here[1]:
                bad.add(f"{_rel(mod)}:{line} ({here[0]}) imports {target} ({there[0]})")
    assert sorted(bad) == [], "\n".join(sorted(bad))


def test_imports_inside_functions_only_defer_heavy_modules():
    bad = set()
    for mod in modules().values():
        for imported, line in mod.deferred:
            target = own(imported)
            if target and target != mod.name and not heavy(target):
                bad.add(f"{_rel(mod)}:{line} imports {target} inside a function (light: import it at the top)")
    assert sorted(bad) == [], "\n".join(sorted(bad))


def test_imports_inside_functions_of_other_packages_are_heavy_ones():
    bad = set()
    for mod in modules().values():
        for imported, line in mod.deferred:
            root = imported.split(".")[0]
            if root not in ROOTS and root not in HEAVY:
                bad.add(f"{_rel(mod)}:{line} imports {imported} inside a function (light: import it at the top)")
    assert sorted(bad) == [], "\n".join(sorted(bad))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph.get(root, ())))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = stack[stack.index(v):]
                    del stack[stack.index(v):]
                    if len(comp) > 1:
                        found.append(sorted(comp))
            elif w not in index:
                index[w] = low[w] = len(index)
                stack.append(w)
                work.append((w, iter(graph.get(w, ()))))
            elif w in stack:
                low[v] = min(low[v], index[w])
    return found


def _module_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for mod in modules().values():
        targets = {own(i) for i, _ in mod.top + mod.deferred}
        graph[mod.name] = {t for t in targets if t and t != mod.name}
    return graph


def test_no_import_cycle_between_modules():
    assert _cycles(_module_graph()) == []


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for name, targets in _module_graph().items():
        pkg = ".".join(name.split(".")[:2])
        graph.setdefault(pkg, set()).update(".".join(t.split(".")[:2]) for t in targets)
    for pkg, targets in graph.items():
        targets.discard(pkg)
    assert _cycles(graph) == []


def test_the_checks_see_what_they_guard():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    assert layer("roboalign.spec.tasks") == ("spec", 0) and layer("roboalign.commands.say") == ("commands", 8)
    assert own("roboalign.spec.tasks.TaskSet") == "roboalign.spec.tasks" and own("numpy") is None
    assert heavy("roboalign.models.action_head") and not heavy("roboalign.spec.loader")
    assert "roboalign.training.vla_head" in modules()
