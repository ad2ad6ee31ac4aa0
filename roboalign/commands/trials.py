"""``roboalign trials``: the paper's trial protocol (Table 4) on the simulated or the real robot.

    roboalign trials --task bottle_to_basket --mode sim            # starts the sim stack itself
    roboalign trials --task all --mode real --label roboalign      # bridge already running on the robot

Per task, ``--trials-per-object`` (24) trials for each object: the four real objects of the task
(``roboalign.spec.tasks``), or in simulation the task's LIBERO object. Each trial is an operator command
through the bridge (``roboalign say``); success is the sim predicate, or the operator's y/n on the real
robot (press Enter to stop a real episode early). In simulation trial k of a task starts from LIBERO init
state ``--first-init-state`` + k (sent with the START command; the init state the simulator reports is
checked and recorded), so a trial run can be repeated exactly. Results accumulate in ``--out`` (resumable:
finished trials are skipped on a re-run, and a finished trial recorded with another init state than the
plan's is an error; ``--label`` tells models apart, like the paper's base / SFT / RoboAlign
columns): ``trials.csv`` (one row per trial), ``results.csv`` + ``results.md`` (success rate per task and
object, one column per label) and ``results.png`` (bar plot). With ``--launch sim`` episodes are recorded
as rosbag2 under ``<out>/episodes`` and the node processes are supervised: a node that dies stops the run at
once (exit status 1) naming the node, how it died and the end of its log; finished trials stay. Before the first
trial the policy that will act is named (the policy node's backend and checkpoint; the tiny demo model is
untrained and will not succeed).
"""

from __future__ import annotations

import argparse
import csv
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from roboalign.commands.csv_rows import append_row, read_rows
from roboalign.commands.say import format_status
from roboalign.control.policy_words import describe_policy
from roboalign.spec.tasks import DEFAULT_TASKS, Task
from roboalign_policy.graph import load_graph
from roboalign_policy.tools.process_graph import NodeDied, ProcessGraph, interrupt_on_sigterm

TRIALS_CSV, RESULTS_CSV, RESULTS_MD, RESULTS_PNG = "trials.csv", "results.csv", "results.md", "results.png"


@dataclass(frozen=True)
class Trial:
    label: str
    mode: str
    task: str
    object: str
    trial: int
    success: bool
    outcome: str  # phase the episode ended in, or the operator's verdict
    steps: int
    elapsed_s: float
    episode: int
    instruction: str
    message: str
    init_state: int = -1  # sim: the LIBERO init state the scene was reset to; real: -1


@dataclass(frozen=True)
class PlannedTrial:
    task: Task
    object: str
    trial: int
    init_state: int  # sim: LIBERO init state to reset the scene to; real: -1 (the operator sets the scene up)


def plan(tasks: list[Task], mode: str, trials_per_object: int, first_init_state: int = 0) -> list[PlannedTrial]:
    """Every trial of the protocol; in sim, trial k of each task starts from init state first_init_state + k."""
    if mode not in ("sim", "real"):
        raise ValueError(f"mode {mode!r}; valid: sim, real")
    if trials_per_object < 1:
        raise ValueError(f"trials_per_object must be >= 1, got {trials_per_object}")
    if first_init_state < 0:
        raise ValueError(f"first_init_state must be >= 0, got {first_init_state}")
    out = []
    for t in tasks:
        objects = [t.sim_object] if mode == "sim" else list(t.objects)
        out += [PlannedTrial(t, o, k, first_init_state + k if mode == "sim" else -1)
                for o in objects for k in range(trials_per_object)]
    return out


def read_trials(out: Path) -> list[Trial]:
    """Trials already in ``out/trials.csv`` (a malformed row is an error naming the row; files from before the
    init_state column read as -1)."""
    return read_rows(out / TRIALS_CSV, Trial)


def append_trial(out: Path, trial: Trial) -> None:
    """Append one trial (flushed at once: a crash keeps every finished trial)."""
    append_row(out / TRIALS_CSV, trial)


def summarize(trials: list[Trial]) -> list[dict[str, Any]]:
    """One row per (label, mode, task, object) and per (label, mode, task) "all": successes / trials."""
    groups: dict[tuple[str, str, str, str], list[bool]] = {}
    for t in trials:
        groups.setdefault((t.label, t.mode, t.task, t.object), []).append(t.success)
        groups.setdefault((t.label, t.mode, t.task, "all"), []).append(t.success)
    return [{"label": k[0], "mode": k[1], "task": k[2], "object": k[3], "successes": sum(v), "trials": len(v),
             "success_rate": sum(v) / len(v)} for k, v in sorted(groups.items())]


def markdown(summary: list[dict[str, Any]]) -> str:
    """Table 4 style: rows = task / object, one column per label, cells = rate % (successes/trials)."""
    labels = sorted({r["label"] for r in summary})
    keys = sorted({(r["mode"], r["task"], r["object"]) for r in summary}, key=lambda k: (k[0], k[1], k[2] == "all", k[2]))
    cell = {(r["label"], r["mode"], r["task"], r["object"]): r for r in summary}
    lines = ["| mode | task | object | " + " | ".join(labels) + " |", "|---|---|---|" + "---|" * len(labels)]
    for mode, task, obj in keys:
        vals = []
        for lab in labels:
            r = cell.get((lab, mode, task, obj))
            vals.append("–" if r is None else f"{100 * r['success_rate']:.1f} ({r['successes']}/{r['trials']})")
        name = f"**{obj}**" if obj == "all" else obj
        lines.append(f"| {mode} | {task} | {name} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def plot(summary: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summary if r["object"] != "all"]
    groups = sorted({(r["task"], r["object"]) for r in rows})
    labels = sorted({r["label"] for r in rows})
    cell = {(r["label"], r["task"], r["object"]): r["success_rate"] * 100 for r in rows}
    x = np.arange(len(groups))
    width = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(groups) + 2), 4))
    for i, lab in enumerate(labels):
        ax.bar(x + i * width, [cell.get((lab, *g), 0.0) for g in groups], width, label=lab)
    ax.set_xticks(x + width * (len(labels) - 1) / 2, [f"{t}\n{o}" for t, o in groups], fontsize=7)
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(0, 100)
    ax.set_title("RoboAlign trials (24 per object in the paper's protocol)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(out: Path) -> list[dict[str, Any]]:
    """results.csv, results.md and results.png from every trial in ``out/trials.csv``."""
    summary = summarize(read_trials(out))
    with (out / RESULTS_CSV).open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["label", "mode", "task", "object", "successes", "trials", "success_rate"])
        w.writeheader()
        w.writerows(summary)
    (out / RESULTS_MD).write_text(markdown(summary))
    if summary:
        plot(summary, out / RESULTS_PNG)
    return summary


class Console:
    """Operator input from stdin on a background thread, so an episode can watch for Enter while it runs."""

    def __init__(self, stream=None) -> None:

        self._lines: queue.Queue[str] = queue.Queue()
        self._stream = stream or sys.stdin
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._stream:
            self._lines.put(line.rstrip("\n"))

    def ask(self, prompt: str) -> str:
        print(prompt, end="", flush=True)
        return self._lines.get()

    def pressed(self) -> bool:
        """Whether a line (Enter) arrived since the last call."""
        got = False
        while not self._lines.empty():
            self._lines.get_nowait()
            got = True
        return got


def ask_operator(prompt: str, console: Console) -> str:
    """y / n / s (skip: the trial does not count, e.g. a set-up mistake)."""
    while True:
        ans = console.ask(prompt).strip().lower()
        if ans in ("y", "n", "s"):
            return ans


def run_trial(client, task: Task, obj: str, mode: str, timeout: float, echo: Callable[[str], None],
              console: Console | None, init_state: int = -1) -> dict[str, Any] | None:
    """One episode through the bridge; returns the outcome fields (None if the operator skipped it)."""
    instruction = task.instruction(obj if mode == "real" else None, domain=mode)
    res = client.command("start", task=task.name, instruction=instruction, init_state=init_state)
    if not res.accepted:
        raise RuntimeError(f"the bridge refused the trial: {res.message}")
    episode = int(res.message.split()[1].rstrip(":"))
    def update(st) -> None:
        echo(format_status(st))
        if console is not None and console.pressed() and not st.terminal:
            client.command("stop")

    if mode == "real":
        console.pressed()  # forget earlier keystrokes
        echo("[trials] press Enter to stop the episode")
    final = client.follow(episode, on_update=update, timeout=timeout, period=0.5 if mode == "real" else 5.0)
    if final is None:
        client.command("stop")
        final = client.wait_for_status(lambda s: s.episode == episode and s.terminal, timeout=10.0)
    outcome = final.phase if final is not None else "no outcome"
    used = final.init_state if final is not None else -1
    if mode == "sim" and final is not None and final.message.startswith("sim reset failed"):
        raise RuntimeError(f"the simulator could not set up the trial: {final.message}")  # not the policy's fault
    if init_state >= 0 and final is not None and used != init_state:
        raise RuntimeError(f"trial asked for init state {init_state}, the simulator reports {used}")
    if mode == "sim":
        success = outcome == "success"
    else:
        verdict = ask_operator(f"[trials] {task.name} / {obj}: success? [y/n/s(kip)] ", console)
        if verdict == "s":
            return None
        success = verdict == "y"
        outcome = f"operator:{verdict} ({outcome})"
    return {"success": success, "outcome": outcome, "steps": final.steps if final else 0,
            "elapsed_s": round(final.elapsed_s, 3) if final else 0.0, "episode": episode,
            "instruction": res.instruction, "message": final.message if final else "", "init_state": used}


def pending(planned: list[PlannedTrial], finished: list[Trial], label: str, mode: str) -> list[PlannedTrial]:
    """The planned trials not yet finished; raises ValueError if a finished trial used another init state."""
    done = {(t.label, t.mode, t.task, t.object, t.trial): t for t in finished}
    todo = []
    for p in planned:
        t = done.get((label, mode, p.task.name, p.object, p.trial))
        if t is None:
            todo.append(p)
        elif mode == "sim" and t.init_state >= 0 and t.init_state != p.init_state:
            raise ValueError(f"{TRIALS_CSV}: {label} {p.task.name} trial {p.trial} ran from init state "
                             f"{t.init_state}, the plan says {p.init_state}: use the same --first-init-state "
                             "or another --out")
    return todo


def run_trials(client, tasks: list[Task], mode: str, trials_per_object: int, out: Path, label: str,
               timeout: float = 600.0, echo: Callable[[str], None] = print,
               console: Console | None = None, first_init_state: int = 0) -> list[dict[str, Any]]:
    """Run every trial of the protocol not yet in ``out/trials.csv``; returns the summary."""

    out.mkdir(parents=True, exist_ok=True)
    finished = read_trials(out)
    todo = pending(plan(tasks, mode, trials_per_object, first_init_state), finished, label, mode)
    echo(f"[trials] {len(todo)} trials to run ({len(finished)} already in {out / TRIALS_CSV})")
    if mode == "real" and console is None:
        console = Console()
    for p in tqdm(todo, desc="trials", disable=len(todo) < 2):
        task, obj, k = p.task, p.object, p.trial
        if mode == "real":
            console.ask(f"[trials] set up {task.name} trial {k + 1}/{trials_per_object} with the {obj} "
                        f"({task.source} -> {task.target}), then press Enter ")
        result = run_trial(client, task, obj, mode, timeout, echo, console, p.init_state)
        if result is None:
            echo("[trials] skipped; it will be asked again on the next run")
            continue
        append_trial(out, Trial(label, mode, task.name, obj, k, **result))
        where = f", init state {result['init_state']}" if result["init_state"] >= 0 else ""
        echo(f"[trials] {task.name} / {obj} #{k + 1}: {'SUCCESS' if result['success'] else 'fail'} "
             f"({result['outcome']}{where})")
        time.sleep(0.5)
    return write_results(out)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="roboalign trials", description=__doc__.split("\n\n")[0])
    p.add_argument("--task", required=True, help=f"a task or 'all': {', '.join(DEFAULT_TASKS.names)}")
    p.add_argument("--mode", choices=("sim", "real"), default="sim")
    p.add_argument("--trials-per-object", type=int, default=24)
    p.add_argument("--label", default="policy", help="column name in the results table (model / checkpoint)")
    p.add_argument("--out", default="runs/trials")
    p.add_argument("--launch", choices=("sim", "none"), default=None,
                   help="start the sim stack (default for --mode sim) or use a running bridge (none)")
    p.add_argument("--set", action="append", default=[], metavar="ARG=VALUE",
                   help="launch argument of the sim graph, e.g. --set backend=onnxruntime --set checkpoint=DIR")
    p.add_argument("--timeout", type=float, default=600.0, help="wall-clock limit per episode")
    p.add_argument("--first-init-state", type=int, default=0,
                   help="sim: trial k starts from LIBERO init state FIRST + k (e.g. 20: states unseen in training)")
    return p


def launch_sim(overrides: dict[str, str], sets: list[str], logs: Path, who: str) -> ProcessGraph:
    """Start the sim stack's node processes (config/sim_graph.yaml) with ``overrides`` and the user's ``--set``s,
    supervised: a node that dies raises :class:`NodeDied` in this program's main thread."""
    interrupt_on_sigterm()  # SIGTERM stops the sim stack too (its nodes run in their own sessions)
    procs = ProcessGraph(load_graph("sim"), {**overrides, **dict(kv.split("=", 1) for kv in sets)}, logs,
                         supervise=True)
    procs.start()
    print(f"[{who}] started the sim stack (logs in {logs})", flush=True)
    return procs


def policy_line(backend: str, checkpoint: str) -> str:
    """Which policy acts, in words: backend, checkpoint, and whether it is trained."""
    words = describe_policy(backend, checkpoint).removesuffix(f" ({backend}, {checkpoint})")
    return f"acting policy: backend {backend or '(unknown)'}, checkpoint {checkpoint or '(none)'}: {words}"


def live_policy(client: Any, node: str = "policy_node") -> str:
    """:func:`policy_line` of the running policy node (its backend and checkpoint parameters)."""
    try:
        got = client.get_parameters(node, ["backend", "checkpoint"], timeout=10.0)
    except (RuntimeError, ValueError) as e:
        return f"acting policy: unknown ({e})"
    return policy_line(str(got["backend"]), str(got["checkpoint"]))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    tasks = list(DEFAULT_TASKS) if args.task == "all" else [DEFAULT_TASKS.get(args.task)]
    out = Path(args.out)
    launch = args.launch or ("sim" if args.mode == "sim" else "none")
    procs = client = None
    try:
        from roboalign_policy.tools.operator_client import OperatorClient

        if launch == "sim":
            procs = launch_sim({"record_dir": str(out / "episodes")}, args.set, out / "logs", "trials")
        client = OperatorClient()
        client.wait_for_bridge(timeout=300.0)
        if client.wait_for_status(timeout=300.0) is None:
            raise RuntimeError("the bridge publishes no episode status (is the robot / simulator running?)")
        print(f"[trials] {live_policy(client)}", flush=True)
        summary = run_trials(client, tasks, args.mode, args.trials_per_object, out, args.label, args.timeout,
                             first_init_state=args.first_init_state)
        print((out / RESULTS_MD).read_text(), end="")
        total = [r for r in summary if r["object"] == "all" and r["label"] == args.label]
        print(f"[trials] wrote {out / RESULTS_CSV}, {out / RESULTS_MD}, {out / RESULTS_PNG}; "
              + ", ".join(f"{r['task']}: {100 * r['success_rate']:.1f}%" for r in total))
        return 0
    except NodeDied as e:
        print(f"[trials] error: {e.death}\n[trials] stopped: finished trials are kept in {out / TRIALS_CSV}",
              file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("[trials] interrupted; finished trials are kept in trials.csv", file=sys.stderr)
        return 1
    except (RuntimeError, ValueError) as e:
        print(f"[trials] error: {e}", file=sys.stderr)
        return 1
    finally:
        if client is not None:
            client.close()
        if procs is not None:
            procs.stop()


if __name__ == "__main__":
    sys.exit(main())
