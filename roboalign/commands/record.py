"""``roboalign record``: demonstrations through the bridge's safety layer, each kept one a training episode.

    roboalign record --task bottle_to_basket --object ketchup --episodes 60 --out DIR            # robot stack up
    roboalign record --task all --episodes 5 --out DIR --launch sim --operator expert --mode leader

Per take: the operator sets the scene up (sim: the bridge resets it to LIBERO init state ``--first-init-state`` +
take), the bridge starts the episode in ``--mode`` (teleop: SpaceMouse/gamepad twist; leader: a leader arm's
joints; kinesthetic: the arm moved by hand, nothing sent), the operator demonstrates and presses Enter (sim: the
success predicate ends it), then keeps, discards or redoes it. The bridge writes every take as a rosbag2 while
it runs (the raw log, in its ``record_dir``); a kept take is converted at once into ``DIR/dataset`` (our episode
format, on the control grid, commanded and measured actions both kept) and noted in ``DIR/record.csv``. So a
crash loses at most the take in progress, whose bag stays behind marked incomplete, and a re-run continues where
the last one stopped. ``--operator expert`` (sim only): the scripted expert plays the teleoperator on the leader
input (``roboalign_policy.tools.expert_operator``); takes that do not succeed are discarded automatically.
With ``--launch sim`` the node processes are supervised: a node that dies stops the run at once (exit status 1)
naming the node, how it died and the end of its log; the kept takes stay, and the cut take's recording is left
for ``roboalign dataset repair``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from roboalign.commands.csv_rows import append_row, read_rows
from roboalign.commands.trials import Console, launch_sim
from roboalign.data.convert import convert_bag_episode
from roboalign.data.rosbag_episodes import BagOptions
from roboalign.spec.tasks import DEFAULT_TASKS, Task
from roboalign_policy.tools.process_graph import NodeDeath, NodeDied, ProcessGraph

RECORD_CSV = "record.csv"
BRIDGE = "bridge_node"
VERDICTS = ("keep", "discard", "unusable", "unreviewed")


def follow_take(client: Any, episode: int, done: Callable[[], bool], timeout: float) -> Any:
    """Follow take ``episode`` to its end; the operator's ``done()`` (polled at 5 Hz) stops it. The final status."""

    def update(st) -> None:
        if done() and not st.terminal:
            client.command("stop")

    final = client.follow(episode, on_update=update, timeout=timeout, period=0.2)
    if final is None:
        client.command("stop")
        final = client.wait_for_status(lambda s: s.episode == episode and s.terminal, timeout=10.0)
    return final


@dataclass(frozen=True)
class Take:
    """One recorded attempt: where its bag is, what the operator said, where its training episode went."""

    take: int
    task: str
    object: str
    mode: str
    verdict: str  # keep | discard | unusable (kept but could not be converted) | unreviewed (found after a crash)
    outcome: str
    steps: int
    elapsed_s: float
    episode: int
    bag: str  # folder under the bridge's record_dir
    dataset_episode: str  # path of the converted episode ("" unless kept)
    init_state: int = -1
    message: str = ""


def read_takes(out: Path) -> list[Take]:
    """The takes in ``out/record.csv`` (a malformed row is an error naming the row)."""
    return read_rows(out / RECORD_CSV, Take)


def append_take(out: Path, take: Take) -> None:
    """Append one take, flushed at once (a crash keeps every finished take)."""
    append_row(out / RECORD_CSV, take)


def kept(takes: list[Take], task: str, obj: str) -> int:
    return sum(t.verdict == "keep" and t.task == task and t.object == obj for t in takes)


def next_take(takes: list[Take], task: str, obj: str) -> int:
    return 1 + max((t.take for t in takes if t.task == task and t.object == obj), default=-1)


def unreviewed_bags(bags: Path, takes: list[Take]) -> list[Path]:
    """Episode folders in the bridge's record_dir that no take mentions (a crash of ``record``)."""
    known = {t.bag for t in takes}
    return sorted(p for p in bags.glob("episode_*") if p.is_dir() and p.name not in known)


def bag_of(bags: Path, episode: int, since: float, timeout: float = 30.0) -> Path:
    """The folder of bridge episode ``episode`` created after ``since`` (wall time), once its outcome is written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for folder in sorted(bags.glob(f"episode_{episode:04d}_*"), key=lambda p: p.stat().st_mtime, reverse=True):
            meta = folder / "episode.json"
            if folder.stat().st_mtime >= since - 1.0 and meta.is_file():
                if json.loads(meta.read_text()).get("outcome", "running") != "running":
                    return folder
        time.sleep(0.2)
    raise RuntimeError(f"the bridge wrote no finished recording of episode {episode} under {bags} within "
                       f"{timeout:g} s (is record_dir on a local disk?)")


def mark_verdict(folder: Path, verdict: str) -> None:
    """Note the operator's verdict in the recording's episode.json (atomically: the log stays readable)."""
    meta_path = folder / "episode.json"
    meta = json.loads(meta_path.read_text())
    meta["operator_verdict"] = verdict
    tmp = meta_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(meta_path)


class Recorder:
    """One ``roboalign record`` session on a running bridge."""

    def __init__(self, client: Any, out: Path, mode: str, operator: Any, console: Any, fps: float | None = None,
                 timeout: float = 600.0, echo=print) -> None:
        self.client, self.out, self.mode, self.operator, self.console = client, out, mode, operator, console
        self.fps, self.timeout, self.echo = fps, timeout, echo
        self.current = ""  # the take in progress, e.g. "take 3 of bottle_to_basket/ketchup"
        got = client.get_parameters(BRIDGE, ["record_dir"])
        if not got["record_dir"]:
            raise RuntimeError("the bridge records nothing: start it with record_dir:=DIR (ros2 launch ... "
                               "record_dir:=DIR), or let roboalign record --launch sim start the sim stack")
        self.bags = Path(str(got["record_dir"]))
        client.set_parameters(BRIDGE, {"mode": mode})

    def adopt_crashed(self) -> None:
        """Bags of takes a crash interrupted: listed as unreviewed (never converted by themselves)."""
        takes = read_takes(self.out)
        for folder in unreviewed_bags(self.bags, takes):
            meta = json.loads((folder / "episode.json").read_text()) if (folder / "episode.json").is_file() else {}
            append_take(self.out, Take(-1, meta.get("task", ""), "", self.mode, "unreviewed",
                                       meta.get("outcome", "unknown"), 0, 0.0, int(meta.get("episode", -1)),
                                       folder.name, "", -1, "found without a verdict (record was interrupted); "
                                       "convert it by hand with roboalign dataset convert if it is good"))

    def record(self, task: Task, obj: str, episodes: int, sim: bool, first_init_state: int = 0) -> int:
        """Record until ``episodes`` takes of (task, object) are kept; returns how many are kept."""

        have = kept(read_takes(self.out), task.name, obj)
        bar = tqdm(total=episodes, initial=min(have, episodes), desc=f"{task.name}/{obj}", unit="demo")
        while have < episodes:
            k = next_take(read_takes(self.out), task.name, obj)
            self.current = f"take {k} of {task.name}/{obj}"
            take = self.take(task, obj, k, first_init_state + k if sim else -1)
            append_take(self.out, take)
            self.echo(f"[record] {task.name}/{obj} take {k}: {take.verdict} ({take.outcome}, {take.steps} steps)"
                      + (f": {take.message}" if take.message else ""))
            if take.verdict == "keep":
                have += 1
                bar.update(1)
        bar.close()
        self.current = ""
        return have

    def take(self, task: Task, obj: str, k: int, init_state: int) -> Take:
        instruction = task.instruction(obj if init_state < 0 else None, domain="real" if init_state < 0 else "sim")
        self.operator.prepare(task, obj, k)
        since = time.time()
        res = self.client.command("start", task=task.name, instruction=instruction, init_state=init_state)
        if not res.accepted:
            raise RuntimeError(f"the bridge refused the take: {res.message}")
        episode = int(res.message.split()[1].rstrip(":"))
        final = self.operator.demonstrate(self.client, episode, res.instruction, self.timeout)
        folder = bag_of(self.bags, episode, since)
        verdict = self.operator.verdict(final)
        base = dict(take=k, task=task.name, object=obj, mode=self.mode, outcome=final.phase if final else "no outcome",
                    steps=final.steps if final else 0, elapsed_s=round(final.elapsed_s, 3) if final else 0.0,
                    episode=episode, bag=folder.name, init_state=final.init_state if final else -1)
        if verdict != "keep":
            mark_verdict(folder, verdict)
            return Take(verdict=verdict, dataset_episode="", **base)
        return self._convert(folder, base)

    def _convert(self, folder: Path, base: dict[str, Any]) -> Take:
        mark_verdict(folder, "keep")  # a kept demonstration is a success, whatever phase ended it (e.g. stopped)
        try:
            path = convert_bag_episode(folder, self.out / "dataset", BagOptions(fps=self.fps))
        except ValueError as e:  # a stalled topic, a missing camera, ...: the bag stays, the take is not used
            return Take(verdict="unusable", dataset_episode="", message=str(e), **base)
        return Take(verdict="keep", dataset_episode=str(path.relative_to(self.out)), **base)


class HumanOperator:
    """The person at the robot: prompts on the console, Enter ends a demonstration, then keep / discard / redo."""

    def __init__(self, console: Any, echo=print) -> None:
        self.console, self.echo = console, echo

    def prepare(self, task: Task, obj: str, k: int) -> None:
        self.console.ask(f"[record] take {k}: set up {task.name} with the {obj} ({task.source} -> {task.target}), "
                         "then press Enter to start ")

    def demonstrate(self, client: Any, episode: int, instruction: str, timeout: float):
        self.console.pressed()  # forget earlier keystrokes
        self.echo(f"[record] '{instruction}': demonstrate now; press Enter when done")
        return follow_take(client, episode, self.console.pressed, timeout)

    def verdict(self, final) -> str:
        while True:
            ans = self.console.ask("[record] keep, discard or redo? [k/d/r] ").strip().lower()
            if ans in ("k", "d", "r"):
                return {"k": "keep", "d": "discard", "r": "discard"}[ans]


class ExpertOperatorRole:
    """Sim only: the scripted expert demonstrates on the leader input; a take is kept when it succeeds."""

    def __init__(self, client: Any) -> None:
        from roboalign_policy.tools.expert_operator import ExpertOperator

        self.expert = ExpertOperator(client.add_node("roboalign_expert_operator", use_sim_time=True))

    def prepare(self, task: Task, obj: str, k: int) -> None:
        pass

    def demonstrate(self, client: Any, episode: int, instruction: str, timeout: float):
        st = client.wait_for_status(lambda s: s.episode == episode and (s.phase == "running" and s.steps > 0
                                                                        or s.terminal), timeout=120.0)
        if st is not None and not st.terminal:
            self.expert.start(instruction)
        final = client.follow(episode, timeout=timeout, period=5.0)
        self.expert.stop()
        if final is None:
            client.command("stop")
            final = client.wait_for_status(lambda s: s.episode == episode and s.terminal, timeout=10.0)
        return final

    def verdict(self, final) -> str:
        return "keep" if final is not None and final.phase == "success" else "discard"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="roboalign record", description=__doc__.split("\n\n")[0])
    p.add_argument("--task", required=True, help=f"a task or 'all': {', '.join(DEFAULT_TASKS.names)}")
    p.add_argument("--object", default=None, help="real robot: which of the task's objects (default: its first); "
                   "sim: the task's LIBERO object")
    p.add_argument("--episodes", type=int, default=60, help="demonstrations to keep per task (the paper: 60)")
    p.add_argument("--out", required=True, help="record.csv and dataset/ go here (sim: bags/ too)")
    p.add_argument("--mode", choices=("teleop", "leader", "kinesthetic"), default="teleop")
    p.add_argument("--operator", choices=("human", "expert"), default="human")
    p.add_argument("--launch", choices=("sim", "none"), default="none", help="start the sim stack, or use a running one")
    p.add_argument("--set", action="append", default=[], metavar="ARG=VALUE", help="launch argument of the sim graph")
    p.add_argument("--first-init-state", type=int, default=0, help="sim: take k starts from init state FIRST + k")
    p.add_argument("--fps", type=float, default=None, help="dataset rate (default: the bridge's command rate)")
    p.add_argument("--timeout", type=float, default=600.0, help="wall-clock limit per take")
    return p


def _objects(task: Task, obj: str | None, sim: bool) -> str:
    if sim:
        return task.sim_object
    if obj is not None and obj not in task.objects:
        raise ValueError(f"{obj!r} is not an object of {task.name}; valid: {', '.join(task.objects)}")
    return obj or task.objects[0]


def _plan(args: argparse.Namespace, sim: bool) -> list[tuple[Task, str]]:
    """(task, object) pairs to record; bad input is refused here, before any ROS."""
    if args.operator == "expert" and (not sim or args.mode != "leader"):
        raise ValueError("--operator expert plays the teleoperator in simulation on the leader input: "
                         "use --launch sim --mode leader")
    tasks = list(DEFAULT_TASKS) if args.task == "all" else [DEFAULT_TASKS.get(args.task)]
    return [(task, _objects(task, args.object, sim)) for task in tasks]


def _recorder(args: argparse.Namespace, client: Any, console: Any) -> Recorder:
    """A recorder on the running bridge, with the bags of an interrupted run listed as unreviewed."""
    client.wait_for_bridge(timeout=300.0)
    if client.wait_for_status(timeout=300.0) is None:
        raise RuntimeError("the bridge publishes no episode status (is the robot / simulator running?)")
    if args.operator != "expert" and console is None:
        console = Console()
    role = ExpertOperatorRole(client) if args.operator == "expert" else HumanOperator(console)
    rec = Recorder(client, Path(args.out), args.mode, role, console, args.fps, args.timeout)
    rec.adopt_crashed()
    return rec


def node_died(death: NodeDeath, out: Path, current: str, bags: Path | None) -> str:
    """What ``record`` says when a node it started died: which node and how, what is kept, what to repair."""
    takes = read_takes(out) if (out / RECORD_CSV).is_file() else []
    during = f" during {current}" if current else ""
    cut = (f"; the cut take's recording stays in {bags}: `roboalign dataset repair {bags}` makes it readable "
           "(marked incomplete)") if current and bags is not None else ""
    return (f"[record] error: {death}\n[record] stopped{during}: {sum(t.verdict == 'keep' for t in takes)} kept "
            f"demonstrations are in {out / 'dataset'} ({out / RECORD_CSV}){cut}")


def main(argv: list[str] | None = None, procs: ProcessGraph | None = None, console: Any = None) -> int:
    """``roboalign record``; ``procs``: a started, supervised node graph to record on (instead of
    ``--launch``), ``console``: the operator's input (default: stdin)."""
    args = _parser().parse_args(argv)
    out, sim = Path(args.out), args.launch == "sim"
    client = rec = None
    own = procs is None
    try:
        plan = _plan(args, sim)
        out.mkdir(parents=True, exist_ok=True)
        from roboalign_policy.tools.operator_client import OperatorClient

        if sim and own:
            procs = _launch_sim(out, args.set, expert=args.operator == "expert")
        client = OperatorClient()
        rec = _recorder(args, client, console)
        for task, obj in plan:
            rec.record(task, obj, args.episodes, sim, args.first_init_state)
        takes = read_takes(out)
        print(f"[record] {sum(t.verdict == 'keep' for t in takes)} demonstrations in {out / 'dataset'} "
              f"({len(takes)} takes in {out / RECORD_CSV}); train with: roboalign train vla --config "
              f"training/configs/vla_tiny_joint.yaml --set dataset={out / 'dataset'}")
        return 0
    except NodeDied as e:
        current = rec.current if rec is not None else ""
        print(node_died(e.death, out, current, rec.bags if rec is not None else None), file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("[record] interrupted; kept demonstrations stay in the dataset, the take in progress is not used",
              file=sys.stderr)
        return 1
    except (RuntimeError, ValueError) as e:  # TaskError is a ValueError: an unknown task lists the valid ones
        print(f"[record] error: {e}", file=sys.stderr)
        return 1
    finally:
        if client is not None:
            client.close()
        if procs is not None and own:
            procs.stop()


def _launch_sim(out: Path, sets: list[str], expert: bool = False) -> ProcessGraph:
    """The sim stack recording into ``out/bags``; with the expert operator each sim step waits for its relay (sent
    after the leader target), so the bridge never ticks before the target it must command is out."""
    args = {"record_dir": str((out / "bags").resolve()), "render_every": "1"}
    if expert:
        from roboalign_policy.tools.expert_operator import LOCKSTEP_TOPIC

        args["lockstep_topic"] = LOCKSTEP_TOPIC
    return launch_sim(args, sets, out / "logs", "record")


if __name__ == "__main__":
    sys.exit(main())
