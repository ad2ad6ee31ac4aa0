"""``roboalign say``: talk to the running bridge like an operator, and follow the episode to its outcome.

    roboalign say "put the alphabet soup in the basket"    # start (free text matched to the four tasks)
    roboalign say --task bottle_to_basket                   # start a task by name
    roboalign say --stop | --home | --reset | --estop | --release-estop

Before a start it names the policy that will act (backend and checkpoint, and plainly when that is the tiny
untrained demo model); a START the bridge refuses (the policy not active or faulted, in the policy's own words;
no joint state or camera image yet) is printed with the bridge's reason. Then the matched task, progress
(phase, time, steps) and the outcome. Exit code: 0 success (or an accepted non-start command), 1 the episode
ended otherwise (failure, timeout, stopped, fault, e-stop), 2 refused / bridge not reachable. The ROS client (rclpy) lives in ``roboalign_policy.tools.operator_client``
and is imported only here, when the command runs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from roboalign.spec.topics import COMMAND_SERVICE, EPISODE_STATUS, POLICY_STATUS

ACTIONS = ("stop", "home", "reset", "estop", "release_estop")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="roboalign say", description=__doc__.split("\n\n")[0])
    p.add_argument("instruction", nargs="?", default="", help="free-form command, e.g. 'put the ketchup in the basket'")
    p.add_argument("--task", default="", help="start this task by name instead of matching text")
    for a in ACTIONS:
        p.add_argument(f"--{a.replace('_', '-')}", dest="action", action="store_const", const=a,
                       help=f"send {a.upper()}")
    p.add_argument("--no-wait", action="store_true", help="return once the command is accepted")
    p.add_argument("--timeout", type=float, default=600.0, help="give up following after this many seconds")
    p.add_argument("--service", default=COMMAND_SERVICE, help="the bridge's TaskCommand service")
    p.add_argument("--status-topic", default=EPISODE_STATUS)
    p.add_argument("--policy-status-topic", default=POLICY_STATUS, help="the policy node's PolicyStatus")
    return p


def _config_of(checkpoint: str) -> dict[str, Any]:
    """config.json of a VLA checkpoint folder, or of the checkpoint an export's manifest names ({} if unknown)."""
    path = Path(checkpoint)
    try:
        if (path / "manifest.json").is_file():
            source = Path(json.loads((path / "manifest.json").read_text()).get("checkpoint", ""))
            path = source if source.is_absolute() else path.parent / source
        return json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def untrained(checkpoint: str) -> bool:
    """Whether ``checkpoint`` (a VLA folder or its export, readable here) is a tiny random-weight model (the
    demo's and the tests' ``roboalign.control.tiny_model``)."""
    return bool(checkpoint) and str(_config_of(checkpoint).get("backbone_source", "")).startswith("tiny")


def policy_line(backend: str, checkpoint: str) -> str:
    """What will act, in words: backend, checkpoint, and what to expect of it."""
    if backend == "expert":
        return "expert (the scripted sim expert: it reads the simulator's object poses)"
    if backend == "reach":
        return "reach (bring-up: moves towards a fixed joint goal)"
    text = f"{backend}, checkpoint {checkpoint or '(none)'}"
    return text + (" (tiny untrained model: it will not succeed)" if untrained(checkpoint) else "")


def announce_policy(client, echo=print) -> None:
    """Say which policy will act (its newest PolicyStatus), and its state when it cannot act now."""
    policy = client.wait_for_policy(timeout=2.0)
    if policy is None:
        echo("[say] policy: no policy status yet (is policy_node running?)")
        return
    state = "" if policy.active else f" [{policy.state}: {policy.message}]"
    echo(f"[say] policy: {policy_line(policy.backend, policy.checkpoint)}{state}")


def format_status(st) -> str:
    """One progress line of an episode status."""
    dry = " [dry run]" if st.dry_run else ""
    return f"[say] episode {st.episode} {st.phase:<8} t={st.elapsed_s:6.2f}s steps={st.steps:<5d} {st.message}{dry}"


def run_episode(client, instruction: str = "", task: str = "", timeout: float = 600.0, wait: bool = True,
                echo=print):
    """START an episode and follow it; returns (response, final status or None)."""
    before = client.wait_for_status(timeout=2.0)
    prev = before.episode if before is not None else 0
    announce_policy(client, echo)
    res = client.command("start", task=task, instruction=instruction)
    if not res.accepted:
        echo(f"[say] refused: {res.message}")
        return res, None
    echo(f"[say] task {res.task}: '{res.instruction}'")
    if not wait:
        return res, None
    m = re.match(r"episode (\d+)", res.message)
    episode = int(m.group(1)) if m else prev + 1
    final = client.follow(episode, on_update=lambda s: echo(format_status(s)), timeout=timeout, period=3.0)
    return res, final


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.action and not (args.instruction or args.task):
        _parser().print_usage(sys.stderr)
        print("roboalign say: give an instruction, --task NAME, or one of "
              + ", ".join(f"--{a.replace('_', '-')}" for a in ACTIONS), file=sys.stderr)
        return 2
    from roboalign_policy.tools.operator_client import BridgeUnavailable, OperatorClient

    client = OperatorClient(command_service=args.service, status_topic=args.status_topic,
                            policy_status_topic=args.policy_status_topic)
    try:
        if args.action in ("estop", "release_estop"):
            res = client.set_estop(args.action == "estop")
            print(f"[say] {args.action.replace('_', ' ')}: {res.message}")
            return 0 if res.success else 2
        if args.action:
            res = client.command(args.action, task=args.task, instruction=args.instruction)
            print(f"[say] {args.action}: {'accepted' if res.accepted else 'refused'}: {res.message}")
            return 0 if res.accepted else 2
        res, final = run_episode(client, args.instruction, args.task, args.timeout, wait=not args.no_wait)
        if not res.accepted:
            return 2
        if args.no_wait:
            return 0
        if final is None:
            print(f"[say] no outcome within {args.timeout:g} s", file=sys.stderr)
            return 1
        print(f"[say] outcome: {final.phase} after {final.elapsed_s:.2f} s, {final.steps} steps: {final.message}")
        return 0 if final.phase == "success" else 1
    except BridgeUnavailable as e:
        print(f"[say] {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("[say] interrupted: sending STOP", file=sys.stderr)
        try:
            client.command("stop", timeout=5.0)
        except BridgeUnavailable:
            pass
        return 1
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
