"""The process graph's supervision: a node that dies is reaped and named; one marked not critical (the console)
is reported while the others keep running, a critical one stops the run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from roboalign_policy.graph import Graph, NodeSpec, config_dir
from roboalign_policy.tools.process_graph import NodeDied, ProcessGraph

# A module that refuses the node's --ros-args at once (exit code 2): a node that dies on start-up.
DIES = "tools.param_docs"


def _graph(critical: bool) -> Graph:
    return Graph("t", config_dir() / "sim.yaml", (NodeSpec(DIES, "fragile", critical=critical),), {})


def _wait_for_death(procs: ProcessGraph, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not (procs.lost or procs.deaths) and time.monotonic() < end:  # reaped by the watcher
        time.sleep(0.05)


def test_a_node_that_is_not_critical_is_reported_and_the_graph_keeps_running(tmp_path: Path, capsys) -> None:
    with ProcessGraph(_graph(critical=False), {}, tmp_path) as procs:
        _wait_for_death(procs)
        procs.check()  # does not raise
        assert procs.death is None and [d.name for d in procs.lost] == ["fragile"]
        assert procs.lost[0].returncode == 2 and procs.dead() == {"fragile": 2}
    err = capsys.readouterr().err
    assert "node fragile exited with code 2" in err and "not critical: the other nodes keep running" in err


def test_a_critical_node_that_dies_stops_the_run_naming_it(tmp_path: Path) -> None:
    with ProcessGraph(_graph(critical=True), {}, tmp_path) as procs:
        _wait_for_death(procs)
        with pytest.raises(NodeDied, match="node fragile exited with code 2"):
            procs.check()
        assert procs.lost == []
