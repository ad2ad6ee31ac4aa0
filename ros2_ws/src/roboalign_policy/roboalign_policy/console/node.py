"""The console process: its ROS side (``watch``), the bridge client of ``roboalign say``, the trials and record
panels, and the web server; prints ``console: http://HOST:PORT/?token=TOKEN`` once it serves.

    python -m roboalign_policy.console --ros-args -p port:=8765      # as a node of a graph
    roboalign console [--port 8765] [--host 127.0.0.1]               # attached to a running stack
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from roboalign_policy.console.actions import ActionLog, Actions
from roboalign_policy.console.record_panel import RecordPanel
from roboalign_policy.console.server import make_app
from roboalign_policy.console.trials_panel import TrialsPanel
from roboalign_policy.console.watch import ConsoleWatch
from roboalign_policy.node_runner import use_dds_profile
from roboalign_policy.tools.operator_client import OperatorClient

LOG = logging.getLogger("roboalign.console")
TOKEN_ENV = "ROBOALIGN_CONSOLE_TOKEN"


class Console:
    """What the server serves: the state of everything, and the actions (each logged)."""

    def __init__(self, watch: ConsoleWatch, client: Any) -> None:
        self.watch, self.client, self.log = watch, client, ActionLog()
        self.actions = Actions(client, watch, self.log)
        p = watch.p
        self.period = 1.0 / p["refresh_hz"]
        self.trials = self._trials(p["label"])
        self.record = RecordPanel(client, Path(p["record_dir"]), sim=p["mode"] == "sim")
        self.loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: set[asyncio.Event] = set()
        self._estop_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="console-estop")
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="console-action")

    def subscribe(self) -> asyncio.Event:
        ev = asyncio.Event()
        self._subscribers.add(ev)
        return ev

    def unsubscribe(self, ev: asyncio.Event) -> None:
        self._subscribers.discard(ev)

    def notify(self) -> None:
        """Push the state to every page now (callable from any thread)."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(lambda: [e.set() for e in list(self._subscribers)])

    def pool_for(self, name: str) -> ThreadPoolExecutor:
        """The e-stop has workers of its own: it never waits behind a slow action."""
        return self._estop_pool if name == "estop" else self._pool

    def state(self) -> dict[str, Any]:
        out = self.watch.snapshot()
        out.update(actions=self.log.recent()[-15:], trials=self._panel(self.trials), record=self._panel(self.record),
                   config={"mode": self.watch.p["mode"], "label": self.trials.label, "refresh_hz": 1 / self.period},
                   server_time=time.time())
        return out

    @staticmethod
    def _panel(panel: Any) -> dict[str, Any]:
        try:
            return panel.state()
        except ValueError as e:  # e.g. a malformed trials.csv: shown, not fatal
            return {"error": str(e)}

    def act(self, name: str, body: dict[str, Any]) -> Any:
        """Run action ``name`` with the page's ``body``; ValueError for bad input (shown on the page)."""
        if name == "command":
            return self.actions.command(str(body.get("command", "")), str(body.get("instruction", "")),
                                        str(body.get("task", "")))
        if name == "estop":
            return self.actions.estop(bool(body.get("engage", True)), bool(body.get("published", False)))
        handler = getattr(self, f"_act_{name}", None)
        if handler is None:
            raise ValueError(f"unknown action {name!r}")
        result = handler(body)
        self.log.add(name.replace("_", " "), True, _describe(result))
        return result

    def _act_trials_next(self, body: dict[str, Any]) -> Any:
        return self.trials.start_next()

    def _act_trials_mark(self, body: dict[str, Any]) -> Any:
        return self.trials.mark(str(body.get("verdict", "")))

    def _act_trials_note(self, body: dict[str, Any]) -> Any:
        self.trials.note(str(body["task"]), str(body["object"]), int(body["trial"]), str(body["note"]))
        return {**body, "note": str(body["note"])}

    def _act_trials_label(self, body: dict[str, Any]) -> Any:
        if self.trials.running is not None:
            raise ValueError("a trial is running: change the label after it")
        label = str(body.get("label", "")).strip()
        if not label:
            raise ValueError("the label must not be empty")
        self.trials = self._trials(label)
        return label

    def _trials(self, label: str) -> TrialsPanel:
        p = self.watch.p
        return TrialsPanel(self.client, Path(p["trials_dir"]), label, p["mode"], p["trial_tasks"],
                           first_init_state=p["first_init_state"])

    def _act_record_start(self, body: dict[str, Any]) -> Any:
        return self.record.start(str(body.get("task", "")), str(body.get("object", "")),
                                 str(body.get("source", "teleop")))

    def _act_record_done(self, body: dict[str, Any]) -> Any:
        self.record.operator.done.set()

    def _act_record_verdict(self, body: dict[str, Any]) -> Any:
        return self.record.operator.give(str(body.get("verdict", "")))

    def _act_record_finish(self, body: dict[str, Any]) -> Any:
        return self.record.finish()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._estop_pool.shutdown(wait=False, cancel_futures=True)


def _describe(result: Any) -> str:
    """An action's result for the log: a trial or take as words, anything else as text."""
    if isinstance(result, dict) and {"task", "object"} <= set(result):
        k = result.get("trial", result.get("take"))
        what = f"{result['task']} / {result['object']}" + ("" if k is None else f" #{int(k) + 1}")
        if result.get("init_state", -1) >= 0:
            what += f", init state {result['init_state']}"
        return what + (f": {result['note']}" if "note" in result else "")
    return "" if result is None else str(result)


async def serve(console: Console, host: str, port: int, token: str) -> None:
    """Serve until SIGINT / SIGTERM; prints the console line once listening."""
    console.loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        console.loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(make_app(console, token), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"console: http://{host}:{bound}/?token={token}", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        LOG.warning("the console is served on %s: anyone who can reach it and has the token can drive the robot",
                    host)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Start the console with ROS arguments ``argv`` (default: this process's command line)."""
    logging.basicConfig(level=logging.INFO, format="[console] %(message)s", stream=sys.stderr)
    use_dds_profile()  # as every node: full-size camera frames need its shared-memory segment
    try:
        watch = ConsoleWatch(args=sys.argv if argv is None else argv)
    except ValueError as e:
        print(f"[console] error: {e}", file=sys.stderr)
        return 2
    sys.argv = sys.argv[:1]  # the ROS arguments (node name, parameters) are the watch node's, not the client's
    client = OperatorClient(joint_states_topic="")
    console = None
    try:
        console = Console(watch, client)
        watch.on_change = console.notify
        token = watch.p["token"] or os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(18)
        asyncio.run(serve(console, watch.p["host"], watch.p["port"], token))
        return 0
    except (ValueError, OSError) as e:  # a bad token, a port in use, a malformed trials.csv
        print(f"[console] error: {e}", file=sys.stderr)
        return 2
    finally:
        if console is not None:
            console.close()
        client.close()
        watch.close()
