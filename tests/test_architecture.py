"""Import directions and one definition per constant, checked over the source with ast (no imports run)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from roboalign.control import backends as control_backends
from roboalign.runtime.policy import BACKENDS
from roboalign.spec.action_vocab import ACTION_END, ACTION_START, FAST_TOKEN_FORMAT
from roboalign.spec.policy_io import RUNTIME_BACKENDS
from roboalign.spec.tasks import task_name

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "roboalign"

# (package, package it must never import, why)
FORBIDDEN = [
    ("roboalign", "rclpy", "the core is ROS-free; ROS lives in ros2_ws/src/roboalign_policy"),
    ("roboalign.runtime", "roboalign.export", "a deployed robot runs exports; it does not need the exporter"),
    ("roboalign.data", "roboalign.sim", "episode files are read and written without the simulator"),
]


def _module(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every module ``path`` imports, at top level or inside functions, with its line."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.append((node.module, node.lineno))
    return out


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_imports_point_one_way():
    bad = []
    for path in sorted(CORE.rglob("*.py")):
        mod, rel = _module(path), str(path.relative_to(REPO))
        for imported, line in _imports(path):
            for package, forbidden, why in FORBIDDEN:
                if _within(mod, package) and _within(imported, forbidden):
                    bad.append(f"{rel}:{line} imports {imported} ({why})")
    assert bad == []


def test_the_checker_sees_a_violation(tmp_path):
    p = tmp_path / "x.py"
    p.write_text("def f():\n    from roboalign.sim.expert import PHASES\n    import rclpy.node\n")
    assert _imports(p) == [("roboalign.sim.expert", 2), ("rclpy.node", 3)]


def _string_constants(root: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                and n.body and isinstance(n.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                found.setdefault(node.value, []).append(str(path.relative_to(REPO)))
    return found


@pytest.fixture(scope="module")
def code_strings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for root in (CORE, REPO / "training", REPO / "ros2_ws" / "src" / "roboalign_policy" / "roboalign_policy"):
        for k, v in _string_constants(root).items():
            out.setdefault(k, []).extend(v)
    return out


def test_action_markers_have_one_definition(code_strings):
    for token in (ACTION_START, ACTION_END, FAST_TOKEN_FORMAT):
        assert code_strings.get(token) == ["roboalign/spec/action_vocab.py"], token


def test_backend_names_have_one_definition(code_strings):
    assert tuple(BACKENDS) == RUNTIME_BACKENDS
    assert control_backends.BACKENDS[: len(RUNTIME_BACKENDS)] == RUNTIME_BACKENDS
    assert {"expert", "reach"} <= set(control_backends.BACKENDS)
    from roboalign.evaluation.cli import build_parser

    libero = build_parser()._subparsers._group_actions[0].choices["libero"]
    assert next(a for a in libero._actions if a.dest == "backend").choices == RUNTIME_BACKENDS
    # the tuple is spelled out once; everything else refers to it
    spelled = [p for p in code_strings.get("tensorrt", []) if p != "roboalign/spec/policy_io.py"]
    assert "roboalign/control/backends.py" not in spelled and "roboalign/evaluation/cli.py" not in spelled


def test_chunk_task_is_the_instructions_task():
    assert task_name("put the ketchup in the basket") == "bottle_to_basket"
    assert task_name("pick up the tomato sauce and put it in the bowl") == "can_to_bowl"
    assert task_name("wave hello") == "" and task_name("") == ""
