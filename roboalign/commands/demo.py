"""``make demo`` / ``roboalign demo``: the whole ROS 2 stack on the simulated robot, driven by an operator command.

Starts the nodes of ``config/sim_graph.yaml`` (sim_robot_node + policy_node + bridge_node, the graph of
``launch/sim.launch.py``, same parameters file) as processes, waits for the simulator, then for each
policy in ``--policy``:

- ``expert``: the scripted expert (sim-only privileged poses) solves the task; the bridge reports success;
- ``tiny``: a tiny exported VLA (random weights, ONNX Runtime) drives the same stack: the robot moves
  (meaningless motion near its start pose, inside the safety limits) for ``--tiny-steps`` control steps.

Each episode is started exactly like ``roboalign say "<instruction>"`` and its progress printed. Then the
stack keeps running for other ``roboalign say`` commands until Ctrl-C, or exits after ``--duration``
seconds in total; the demo names the policy that acts on them (backend, checkpoint, and that the tiny model is
untrained and will not succeed). Node logs go to ``--log-dir``; a node that dies stops the demo at once (exit
status 1) naming the node, how it died and the end of its log.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from roboalign.commands.console import console_line
from roboalign.commands.say import format_status
from roboalign.commands.trials import policy_line
from roboalign.control.tiny_model import ensure_tiny_export
from roboalign_policy.graph import load_graph
from roboalign_policy.tools.process_graph import NodeDied, ProcessGraph, interrupt_on_sigterm

DEFAULT_INSTRUCTION = "put the alphabet soup on the tray"  # shelf_to_tray: the scene sim_graph.yaml loads first
TINY_CACHE = Path.home() / ".cache" / "roboalign" / "tiny_joint_vla"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="roboalign demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--say", default=DEFAULT_INSTRUCTION, help="the operator command sent to the bridge")
    p.add_argument("--policy", choices=("expert", "tiny", "both"), default="both",
                   help="which policy drives the robot (both: the expert, then the tiny exported model)")
    p.add_argument("--tiny-steps", type=int, default=40, help="control steps of the tiny-model episode")
    p.add_argument("--duration", type=float, default=None, help="exit by itself after this many seconds")
    p.add_argument("--graph", default="sim", help="node graph (config/<graph>_graph.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="ARG=VALUE",
                   help="a launch argument of the graph, e.g. --set camera_size=64 (repeatable)")
    p.add_argument("--log-dir", default=None, help="node logs (default: a temporary folder)")
    p.add_argument("--tiny-cache", default=str(TINY_CACHE), help="where the tiny ONNX export is built once")
    p.add_argument("--echo", action="store_true", help="node output to the terminal instead of log files")
    return p


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = time.monotonic()
        # cameras every 3rd sim step by default: rendering is ~2/3 of a step on CPU, and neither the expert
        # (privileged poses) nor the random tiny model needs every frame; --set render_every=1 for all frames
        self.graph = load_graph(args.graph)
        console = {"console": "true"} if "console" in self.graph.arguments else {}  # the operator's page, by default
        overrides = {"render_every": "3", **console, **dict(kv.split("=", 1) for kv in args.set)}
        log_dir = args.log_dir or tempfile.mkdtemp(prefix="roboalign_demo_")
        self.procs = ProcessGraph(self.graph, overrides, log_dir, echo=args.echo, supervise=True)
        self.client = None

    def time_left(self) -> float:
        if self.args.duration is None:
            return float("inf")
        return self.args.duration - (time.monotonic() - self.t0)

    def check_alive(self) -> None:
        self.procs.check()  # NodeDied: which node, how it died, the end of its log

    def wait_ready(self, timeout: float = 300.0) -> None:
        """Until the bridge answers and reports status (i.e. the simulator publishes /clock)."""
        deadline = time.monotonic() + min(timeout, self.time_left())
        while time.monotonic() < deadline:
            self.check_alive()
            if self.client.wait_for_status(timeout=1.0) is not None and self.client.joints:
                return
        raise TimeoutError(f"the stack was not ready within {timeout:g} s (see logs in {self.procs.log_dir})")

    def acting(self) -> str:
        """The policy that acts now (the graph's backend and checkpoint), in words."""
        return policy_line(str(self.procs.args.get("backend", "")), str(self.procs.args.get("checkpoint", "")))

    def episode(self, label: str, max_steps: int | None = None) -> str:
        _say(f"{label}: {self.acting()}")
        res = self.client.command("start", instruction=self.args.say)
        if not res.accepted:
            raise RuntimeError(f"the bridge refused '{self.args.say}': {res.message}")
        _say(f"{label}: task {res.task}: '{res.instruction}'")
        episode = int(res.message.split()[1].rstrip(":"))
        deadline = time.monotonic() + self.time_left()
        final, last, start_q = None, 0.0, None
        while time.monotonic() < deadline:
            self.check_alive()
            st = self.client.wait_for_status(lambda s: s.episode == episode, timeout=1.0)
            if st is None:
                continue
            if start_q is None and st.phase == "running" and st.steps >= 1:  # after the scene reset
                start_q = dict(self.client.joints)
            if start_q is not None and (time.monotonic() - last > 5.0 or st.terminal):
                moved = sum(abs(self.client.joints.get(k, v) - v) for k, v in start_q.items() if "finger" not in k)
                _say(f"{label}: " + format_status(st).removeprefix("[say] ") + f" | joints moved {moved:.3f} rad")
                last = time.monotonic()
            if st.terminal or st.phase == "estop":
                final = st
                break
            if max_steps is not None and st.steps >= max_steps:
                self.client.command("stop")
            time.sleep(0.2)
        if final is None:
            return "unfinished (time limit)"
        return f"{final.phase}: {final.message} ({final.steps} steps, {final.elapsed_s:.1f} s sim time)"

    def use_tiny(self) -> None:
        _say(f"building / loading the tiny ONNX export in {self.args.tiny_cache} (once, ~30 s)")
        export = ensure_tiny_export(self.args.tiny_cache)
        opts = {"providers": ["cpu"], "action_space": "joint_position", "cameras": ["agentview", "wrist"],
                "num_threads": 1}
        self.procs.restart("policy_node", {"backend": "onnxruntime", "checkpoint": str(export),
                                           "backend_options": json.dumps(opts)})
        time.sleep(3.0)  # the new policy node loads its ONNX graphs

    def run(self) -> int:
        from roboalign_policy.tools.operator_client import OperatorClient

        names = self.procs.start()
        _say(f"started {', '.join(names)} from {self.graph.params_file.parent} (logs: {self.procs.log_dir})")
        self.client = OperatorClient()
        _say("waiting for the simulator (loading a LIBERO scene takes ~20-30 s on two cores)")
        self.wait_ready()
        if self.procs.args.get("console") and not self.args.echo:  # with --echo the node prints it itself
            print(console_line(self.procs.log_path("console")) or "console: did not start (see its log)", flush=True)
        results = {}
        if self.args.policy in ("expert", "both"):
            results["expert"] = self.episode("expert")
        if self.args.policy in ("tiny", "both") and self.time_left() > 0:
            self.use_tiny()
            results["tiny ONNX model"] = self.episode("tiny ONNX model", max_steps=self.args.tiny_steps)
        for k, v in results.items():
            _say(f"result {k}: {v}")
        _say(f"`roboalign say` commands go to the {self.acting()}")
        if self.args.duration is None:
            _say("the stack keeps running: try `roboalign say \"put the ketchup in the basket\"` in another "
                 "terminal; Ctrl-C to stop")
        while self.time_left() > 0:
            self.check_alive()
            time.sleep(0.5)
        return 0

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        self.procs.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    interrupt_on_sigterm()  # `timeout`, `kill`: stop the nodes too (they run in their own sessions)
    demo = Demo(args)
    try:
        return demo.run()
    except NodeDied as e:
        print(f"[demo] error: {e.death}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        _say("Ctrl-C: stopping the nodes")
        return 0
    except (RuntimeError, TimeoutError) as e:
        print(f"[demo] error: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        demo.close()
        _say("stopped")


if __name__ == "__main__":
    sys.exit(main())
