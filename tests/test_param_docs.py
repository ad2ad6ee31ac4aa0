"""docs/parameters.md is what the nodes declare, and a declaration that changes without it is caught."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros

pytest.importorskip("rclpy", reason="needs ROS 2 (make setup)")
from roboalign_policy.tools import param_docs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "parameters.md"


@pytest.fixture(scope="module")
def nodes() -> list[param_docs.NodeParams]:
    return param_docs.load_nodes()


def _with(nodes, node: str, specs) -> list[param_docs.NodeParams]:
    return [dataclasses.replace(n, specs=tuple(specs)) if n.name == node else n for n in nodes]


def test_the_committed_page_is_the_generated_one(nodes):
    generated = param_docs.render(nodes)
    committed = PAGE.read_text(encoding="utf-8")
    found = param_docs.drift(committed, generated)
    assert committed == generated, (f"docs/parameters.md does not match the declarations ({'; '.join(found)}); "
                                    f"regenerate it: {param_docs.COMMAND}")


def test_every_node_of_the_package_is_documented_with_every_parameter(nodes):
    names = [n.name for n in nodes]
    assert names[:6] == ["policy_node", "bridge_node", "camera_node", "sim_robot_node", "gripper_relay",
                         "teleop_node"]
    tables = param_docs._tables(param_docs.render(nodes))
    for node in nodes:
        assert list(tables[node.name]) == [s.name for s in node.specs]
    bridge = tables["bridge_node"]
    assert "| `max_joint_step` | double | `0.05` | [0.0001, 0.5] | no |" in bridge["max_joint_step"]
    assert "| `dry_run` | bool | `true` |  | yes |" in bridge["dry_run"]  # BridgeConfig runtime=True
    assert "one of `fr3`, `panda`" in bridge["joint_limits"]


def test_a_changed_declaration_is_named(nodes):
    committed = param_docs.render(nodes)
    bridge = next(n for n in nodes if n.name == "bridge_node")
    specs = [dataclasses.replace(s, default=0.07) if s.name == "max_joint_step" else s for s in bridge.specs]
    found = param_docs.drift(committed, param_docs.render(_with(nodes, "bridge_node", specs)))
    assert found == ["bridge_node.max_joint_step: default differs"]

    specs = [dataclasses.replace(s, read_only=True, max=2.0) if s.name == "deadzone" else s
             for s in next(n for n in nodes if n.name == "teleop_node").specs]
    found = param_docs.drift(committed, param_docs.render(_with(nodes, "teleop_node", specs)))
    assert found == ["teleop_node.deadzone: range / choices, runtime differs"]


def test_an_added_or_removed_declaration_is_named(nodes):
    committed = param_docs.render(nodes)
    camera = next(n for n in nodes if n.name == "camera_node")
    added = [*camera.specs, dataclasses.replace(camera.specs[0], name="exposure_us")]
    found = param_docs.drift(committed, param_docs.render(_with(nodes, "camera_node", added)))
    assert found == ["camera_node.exposure_us: declared, not documented"]
    found = param_docs.drift(committed, param_docs.render(_with(nodes, "camera_node", camera.specs[1:])))
    assert found == ["camera_node.camera_name: documented, not declared"]
    found = param_docs.drift(committed, param_docs.render([n for n in nodes if n.name != "gripper_relay"]))
    assert found == ["node gripper_relay: documented, not declared"]


def test_check_exits_1_naming_the_drift_and_the_command(tmp_path, nodes):
    page = tmp_path / "parameters.md"
    stale = param_docs.render(nodes).replace("| `lookahead_steps` | integer | `2` |", "| `lookahead_steps` | integer | `3` |")
    page.write_text(stale, encoding="utf-8")
    cmd = [sys.executable, "-m", "roboalign_policy.tools.param_docs", "--check", "--out", str(page)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "bridge_node.lookahead_steps: default differs" in res.stderr
    assert param_docs.COMMAND in res.stderr

    res = subprocess.run(cmd[:-3] + ["--out", str(page)], capture_output=True, text=True, timeout=120)  # write
    assert res.returncode == 0, res.stderr
    assert page.read_text(encoding="utf-8") == param_docs.render(nodes)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
