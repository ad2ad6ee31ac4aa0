"""Start a node graph (``graph.py``) as processes, like ``ros2 launch`` would, where launch is not installed.

Each node runs as ``python -m roboalign_policy.<executable> --ros-args ...`` with the graph's parameters file
and overrides; output goes to ``<log_dir>/<node>.log`` (or the terminal with ``echo``). Stopping sends
SIGINT (the nodes shut down cleanly), then SIGKILL after a grace period. The nodes run in their own sessions
(a Ctrl-C reaches them once, from ``stop``), so a program that starts a graph calls
:func:`interrupt_on_sigterm` to clean up on SIGTERM too (``timeout``, ``kill``). No rclpy import here.

Supervision: a watcher thread polls the nodes every ``WATCH_S``; a node that exits while the graph runs (not by
``stop`` / ``restart``) is reaped and kept as a :class:`NodeDeath` (which node, its exit code or signal, the last
lines of its log). A graph started with ``supervise=True`` from the main thread also raises :class:`NodeDied` in
the main thread (delivered as SIGUSR1, so a blocking wait there ends at once): ``roboalign record``, ``trials``
and ``demo`` then stop the run with the node's name and how it died. A node marked ``critical: false`` in the graph
(the operator console) is reported the same way when it dies, and the others keep running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roboalign_policy.graph import Graph, NodeSpec, node_command, ros_value

WATCH_S = 0.2  # how often the watcher looks at the node processes
TAIL_LINES = 15
_interrupted = False
_supervised: ProcessGraph | None = None  # the graph whose node deaths are raised in the main thread


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


@dataclass(frozen=True)
class NodeDeath:
    """A node process that ended while its graph ran: which, how, and the end of its log."""

    name: str
    returncode: int
    log: Path | None  # None: output went to the terminal
    tail: str

    def how(self) -> str:
        """'killed by SIGKILL' or 'exited with code 2'."""
        if self.returncode < 0:
            try:
                return f"killed by {signal.Signals(-self.returncode).name}"
            except ValueError:
                return f"killed by signal {-self.returncode}"
        return f"exited with code {self.returncode}"

    def __str__(self) -> str:
        where = f"last lines of {self.log}" if self.log is not None else "its output went to the terminal"
        tail = f":\n{self.tail}" if self.tail else ""
        return f"node {self.name} {self.how()}; {where}{tail}"


class NodeDied(BaseException):  # noqa: N818 (like KeyboardInterrupt: no ``except Exception`` on the way swallows it)
    """Raised in the main thread of a supervised graph's program when one of its nodes died."""

    def __init__(self, death: NodeDeath) -> None:
        super().__init__(str(death))
        self.death = death


def _deliver_death(signum: int, frame: Any) -> None:
    graph = _supervised
    if graph is None or graph.death is None or graph._delivered or graph._stopping:
        return
    graph._delivered = True
    raise NodeDied(graph.death)


class ProcessGraph:
    def __init__(self, graph: Graph, args: dict[str, Any], log_dir: str | Path, echo: bool = False,
                 env: dict[str, str] | None = None, params: dict[str, dict[str, Any]] | None = None,
                 supervise: bool = False) -> None:
        """``params``: per node name, parameters set after the graph's (as a launch file's overrides);
        ``supervise``: raise :class:`NodeDied` in the main thread when a node dies (see the module docstring)."""
        self.graph = graph
        self.params = params or {}
        self.args = graph.resolve(args)
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.echo = echo
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: dict[str, Any] = {}
        self.supervise = supervise
        self.deaths: list[NodeDeath] = []
        self.lost: list[NodeDeath] = []  # deaths of nodes that are not critical: reported, the graph keeps running
        self._lock = threading.Lock()  # procs: the watcher thread reads them, start / stop / restart change them
        self._stopping = False
        self._delivered = False
        self._watcher: threading.Thread | None = None

    @property
    def death(self) -> NodeDeath | None:
        """The first node that died while the graph ran (None: none)."""
        return self.deaths[0] if self.deaths else None

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
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if out else None, env=self.env,
                                start_new_session=True)
        with self._lock:
            self.procs[node.name] = proc

    def start(self) -> list[str]:
        """Start every active node and the watcher; returns their names."""
        global _supervised
        self._stopping = False
        if self.supervise and threading.current_thread() is threading.main_thread():
            _supervised = self
            signal.signal(signal.SIGUSR1, _deliver_death)
        for node in self.graph.active_nodes(self.args):
            self._spawn(node, self.args)
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="process_graph_watcher", daemon=True)
            self._watcher.start()
        return list(self.procs)

    def _watch(self) -> None:
        """Reap a node that ended while the graph runs; keep how it died and tell the main thread."""
        while not self._stopping:
            with self._lock:
                ended = [(n, p) for n, p in self.procs.items() if p.poll() is not None]
                for name, _ in ended:
                    del self.procs[name]
            for name, p in ended:
                self._died(name, p.returncode)
            time.sleep(WATCH_S)

    def _died(self, name: str, returncode: int) -> None:
        log = self._logs.pop(name, None)
        if log is not None:
            log.close()
        death = NodeDeath(name, returncode, None if self.echo else self.log_path(name), self.log_tail(name))
        if not self._critical(name):
            self.lost.append(death)
            if not self._stopping:
                print(f"[process_graph] {death}\n[process_graph] {name} is not critical: the other nodes keep "
                      "running", file=sys.stderr, flush=True)
            return
        self.deaths.append(death)
        if self.supervise and _supervised is self and len(self.deaths) == 1 and not self._stopping:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
        elif not self._stopping:  # nobody else reports it
            print(f"[process_graph] {death}", file=sys.stderr, flush=True)

    def _critical(self, name: str) -> bool:
        return next((n.critical for n in self.graph.nodes if n.name == name), True)

    def check(self) -> None:
        """Raise :class:`NodeDied` if a node died (for a loop that polls instead of being interrupted)."""
        if self.death is not None:
            self._delivered = True
            raise NodeDied(self.death)

    def restart(self, name: str, args: dict[str, Any]) -> None:
        """Stop node ``name`` and start it again with other launch-argument values (e.g. another backend)."""
        self._stop_one(name)
        self.args = self.graph.resolve({**self.args, **args})
        node = next(n for n in self.graph.nodes if n.name == name)
        self._spawn(node, self.args)

    def dead(self) -> dict[str, int]:
        """Nodes that exited, with their exit codes (reaped by the watcher or found here)."""
        with self._lock:
            running = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
        return {**{d.name: d.returncode for d in self.deaths + self.lost}, **running}

    def log_tail(self, name: str, lines: int = TAIL_LINES) -> str:
        path = self.log_path(name)
        if not path.is_file():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _stop_one(self, name: str, grace: float = 10.0) -> None:
        with self._lock:
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
        """Stop every node (SIGINT, SIGKILL after ``grace``); node exits from here on are no deaths."""
        global _supervised
        self._stopping = True
        if _supervised is self:
            _supervised = None
        with self._lock:
            procs = list(self.procs.values())
        for p in procs:  # signal all first, then wait: they shut down in parallel
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for name in list(self.procs):
            self._stop_one(name, grace)
        if self._watcher is not None:
            self._watcher.join(timeout=2 * WATCH_S + 1.0)
            self._watcher = None

    def __enter__(self) -> ProcessGraph:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
