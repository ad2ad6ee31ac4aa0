"""Start a node graph (``graph.py``) as processes, like ``ros2 launch`` would, where launch is not installed.

Each node runs as ``python -m roboalign_policy.<executable> --ros-args ...`` with the graph's parameters file
and overrides; output goes to ``<log_dir>/<node>.log`` (or the terminal with ``echo``). Stopping sends
SIGINT (the nodes shut down cleanly), then SIGKILL after a grace period. The nodes run in their own sessions
(a Ctrl-C reaches them once, from ``stop``), so a program that starts a graph calls
:func:`interrupt_on_sigterm` to clean up on SIGTERM too (``timeout``, ``kill``). No rclpy import here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from roboalign_policy.graph import Graph, NodeSpec, node_command, ros_value

_interrupted = False


def _interrupt(signum: int, frame: Any) -> None:
    global _interrupted
    if _interrupted:  # a second signal (make and timeout both send one; an impatient Ctrl-C) must not cut
        return        # the clean-up short and orphan the nodes: stop() ends them within its grace period
    _interrupted = True
    raise KeyboardInterrupt(f"signal {signum}")


def interrupt_on_sigterm() -> None:
    """Turn SIGTERM (and Ctrl-C) into one KeyboardInterrupt in this (main-thread) program, so its
    ``finally: graph.stop()`` runs, once and to the end, instead of the process dying and leaving the node
    processes orphaned; later signals are ignored while it cleans up."""
    global _interrupted
    _interrupted = False
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)


class ProcessGraph:
    def __init__(self, graph: Graph, args: dict[str, Any], log_dir: str | Path, echo: bool = False,
                 env: dict[str, str] | None = None, params: dict[str, dict[str, Any]] | None = None) -> None:
        """``params``: per node name, parameters set after the graph's (as a launch file's overrides)."""
        self.graph = graph
        self.params = params or {}
        self.args = graph.resolve(args)
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.echo = echo
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: dict[str, Any] = {}

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _spawn(self, node: NodeSpec, args: dict[str, Any]) -> None:
        cmd = node_command(self.graph, node, args, python=sys.executable)
        for key, value in self.params.get(node.name, {}).items():
            cmd += ["-p", f"{key}:={ros_value(value)}"]
        if self.echo:
            out = None
        else:
            out = self._logs[node.name] = open(self.log_path(node.name), "a", buffering=1)  # noqa: SIM115
            out.write("$ " + " ".join(cmd) + "\n")
        self.procs[node.name] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if out else None,
                                                 env=self.env, start_new_session=True)

    def start(self) -> list[str]:
        """Start every active node; returns their names."""
        for node in self.graph.active_nodes(self.args):
            self._spawn(node, self.args)
        return list(self.procs)

    def restart(self, name: str, args: dict[str, Any]) -> None:
        """Stop node ``name`` and start it again with other launch-argument values (e.g. another backend)."""
        self._stop_one(name)
        self.args = self.graph.resolve({**self.args, **args})
        node = next(n for n in self.graph.nodes if n.name == name)
        self._spawn(node, self.args)

    def dead(self) -> dict[str, int]:
        """Nodes that exited, with their exit codes."""
        return {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.log_path(name)
        if not path.is_file():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _stop_one(self, name: str, grace: float = 10.0) -> None:
        p = self.procs.pop(name, None)
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        log = self._logs.pop(name, None)
        if log is not None:
            log.close()

    def stop(self, grace: float = 10.0) -> None:
        for p in self.procs.values():  # signal all first, then wait: they shut down in parallel
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for name in list(self.procs):
            self._stop_one(name, grace)

    def __enter__(self) -> ProcessGraph:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
