"""``roboalign console``: the operator console (one web page) attached to a running stack.

    roboalign console                                   # prints: console: http://127.0.0.1:8765/?token=...
    roboalign console --mode real --label roboalign     # on the robot: the operator marks each trial

The page shows both cameras, joint plots, the episode, the live policy and the bridge's faults; it sends
commands (as ``roboalign say``), runs the paper's trials (as ``roboalign trials``, same files) and records
demonstrations (as ``roboalign record``), and has a one-click E-STOP. It binds 127.0.0.1 unless ``--host`` says
otherwise and needs the printed token. The stack's launch files start the same process with ``console:=true``.
This command becomes that process (``python -m roboalign_policy.console --ros-args ...``, exec'd: signals and
the exit code are its own), so the core imports nothing of the ROS package.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from roboalign.spec.tasks import DEFAULT_TASKS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="roboalign console", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (another one exposes the robot: "
                   "anyone with the token who reaches it can drive the arm)")
    p.add_argument("--port", type=int, default=8765, help="port (0: any free one, printed)")
    p.add_argument("--token", default="", help="access token (default: $ROBOALIGN_CONSOLE_TOKEN or a random one)")
    p.add_argument("--mode", choices=("sim", "real"), default="sim",
                   help="trials: success by the simulator, or the operator's mark on the robot")
    p.add_argument("--label", default="policy", help="results column of the trials (model / checkpoint)")
    p.add_argument("--trials-dir", default="runs/console/trials", help="trials.csv, results.csv / .md / .png")
    p.add_argument("--record-dir", default="runs/console/record", help="record.csv and dataset/")
    p.add_argument("--task", action="append", default=[], metavar="NAME",
                   help=f"a task of the trials (repeatable; default all: {', '.join(DEFAULT_TASKS.names)})")
    p.add_argument("--first-init-state", type=int, default=0, help="sim: trial k starts from init state FIRST + k")
    p.add_argument("--refresh-hz", type=float, default=5.0, help="camera JPEGs and state pushed per second")
    return p


def ros_arguments(args: argparse.Namespace) -> list[str]:
    """The console node's ``--ros-args`` for the parsed command line (tasks checked here: a typo names the valid)."""
    tasks = [DEFAULT_TASKS.get(t).name for t in args.task] or DEFAULT_TASKS.names
    params = {"host": args.host, "port": args.port, "token": args.token, "mode": args.mode, "label": args.label,
              "trials_dir": args.trials_dir, "record_dir": args.record_dir, "first_init_state": args.first_init_state,
              "refresh_hz": float(args.refresh_hz), "trial_tasks": "[" + ",".join(tasks) + "]"}
    out = ["--ros-args"]
    for k, v in params.items():
        text = v if not isinstance(v, str) or k == "trial_tasks" else "'" + v.replace("'", "''") + "'"
        out += ["-p", f"{k}:={text}"]
    return out


CONSOLE_LINE = re.compile(r"^console: http://\S+/\?token=\S+$", re.MULTILINE)


def console_line(log: Path, timeout: float = 30.0) -> str | None:
    """The ``console: http://HOST:PORT/?token=TOKEN`` line a console node printed to ``log`` (None if none came)."""
    deadline = time.monotonic() + timeout
    while True:
        m = CONSOLE_LINE.search(log.read_text(errors="replace")) if log.is_file() else None
        if m or time.monotonic() >= deadline:
            return m.group(0) if m else None
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cmd = [sys.executable, "-m", "roboalign_policy.console", *ros_arguments(args)]
    sys.stdout.flush()
    os.execv(sys.executable, cmd)
    return 1  # not reached: exec replaces this process


if __name__ == "__main__":
    sys.exit(main())
