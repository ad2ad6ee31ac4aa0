"""What the page can do to the stack: commands through the bridge (as ``roboalign say``), the e-stop, completion
from the task set; every action is logged (the console's log and the page's action list)."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from roboalign.spec.tasks import TaskError, sim_task_set

LOG = logging.getLogger("roboalign.console")
COMMANDS = ("start", "stop", "home", "reset")
BRIDGE = "bridge_node"


class ActionLog:
    """Every action with its outcome: logged at once and kept (the newest 50) for the page."""

    def __init__(self) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=50)
        self._lock = threading.Lock()

    def add(self, action: str, ok: bool, detail: str, **extra: Any) -> dict[str, Any]:
        entry = {"time": time.time(), "action": action, "ok": ok, "detail": detail, **extra}
        LOG.info("action %s: %s: %s", action, "ok" if ok else "refused", detail)
        with self._lock:
            self.entries.append(entry)
        return entry

    def recent(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.entries)


class Actions:
    """Commands, e-stop and completion on one running bridge (``client``: an OperatorClient)."""

    def __init__(self, client: Any, watch: Any, log: ActionLog) -> None:
        self.client, self.watch, self.log = client, watch, log
        self._tasks: tuple[Any, str] | None = None  # (task set, domain) as the bridge resolves them
        self._retry_at = 0.0

    def task_set(self) -> tuple[Any, str]:
        """The bridge's task set and matching domain (its ``scenes`` and ``task_domain`` parameters)."""
        if self._tasks is None and time.monotonic() >= self._retry_at:
            try:
                got = self.client.get_parameters(BRIDGE, ["scenes", "task_domain"], timeout=2.0)
                self._tasks = (sim_task_set(str(got["scenes"])), str(got["task_domain"]))
            except (RuntimeError, TaskError) as e:  # asked again in 10 s
                LOG.warning("bridge parameters unreadable (%s): completing from the default task set", e)
                self._retry_at = time.monotonic() + 10.0
        return self._tasks or (sim_task_set("targets"), "any")

    def complete(self, text: str) -> dict[str, Any]:
        """Instructions of the task set containing ``text``, and what the bridge would make of it."""
        tasks, domain = self.task_set()
        words = text.lower().split()
        pool = []
        for t in tasks:
            for dom in (("sim", "real") if domain == "any" else (domain,)):
                pool += [(t.name, s) for s in t.all_instructions(dom)]
        hits = [{"task": n, "instruction": s} for n, s in dict.fromkeys(pool) if all(w in s.lower() for w in words)]
        out: dict[str, Any] = {"suggestions": hits[:12], "domain": domain}
        if text.strip():
            try:
                m = tasks.match(text, domain=domain)
                out["match"] = {"task": m.task.name, "object": m.object or "", "domain": m.domain}
            except TaskError as e:
                out["refusal"] = str(e)
        return out

    def command(self, name: str, instruction: str = "", task: str = "", init_state: int = -1) -> dict[str, Any]:
        """START / STOP / HOME / RESET through the bridge's TaskCommand service (the bridge resolves and refuses)."""
        if name not in COMMANDS:
            return self.log.add(name or "?", False, f"unknown command {name!r}; valid: {', '.join(COMMANDS)}")
        res = self.client.command(name, task=task, instruction=instruction, timeout=10.0, init_state=init_state)
        what = f"{name} {task or instruction!r}" if name == "start" else name
        return self.log.add(what, bool(res.accepted), res.message, task=res.task, instruction=res.instruction)

    def estop(self, engage: bool, published: bool = False) -> dict[str, Any]:
        """Engage: the e-stop topic at once (unless ``published`` already), then the service's confirmation.
        Release: the service."""
        t0 = time.monotonic()
        if engage and not published:
            self.watch.engage_estop()
        res = self.client.set_estop(engage, timeout=5.0)
        ms = (time.monotonic() - t0) * 1000.0
        return self.log.add("e-stop" if engage else "release e-stop", bool(res.success), res.message,
                            service_ms=round(ms, 1))
