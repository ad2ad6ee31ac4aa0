"""The console's recording: ``roboalign record``'s Recorder (bags by the bridge, kept takes converted at once into
``out/dataset``, noted in ``out/record.csv``), the operator's role played from the page: start a take, say when
the demonstration is done, then keep, discard or redo it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from roboalign.commands.record import BRIDGE, Recorder, append_take, follow_take, kept, next_take, read_takes
from roboalign.spec.tasks import DEFAULT_TASKS

TARGET = 60  # kept demonstrations per task (the paper)
SOURCES = ("teleop", "leader", "kinesthetic")
VERDICTS = {"keep": "keep", "discard": "discard", "redo": "discard"}  # a redo is a discard and a new take


class PageOperator:
    """Recorder's operator role answered from the page (prepare / demonstrate / verdict)."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.prompt = ""
        self._verdict: str | None = None
        self._verdict_set = threading.Event()

    def prepare(self, task: Any, obj: str, k: int) -> None:
        self.done.clear()
        self._verdict_set.clear()

    def demonstrate(self, client: Any, episode: int, instruction: str, timeout: float):
        self.prompt = f"demonstrate '{instruction}', then press Done"

        return follow_take(client, episode, self.done.is_set, timeout)

    def verdict(self, final: Any) -> str:
        self.prompt = f"take ended ({final.phase if final else 'no outcome'}): keep, discard or redo?"
        self._verdict_set.wait()
        self.prompt = ""
        return self._verdict or "discard"

    def give(self, verdict: str) -> None:
        if verdict not in VERDICTS:
            raise ValueError(f"verdict {verdict!r}; valid: {', '.join(VERDICTS)}")
        self._verdict = VERDICTS[verdict]
        self._verdict_set.set()


class RecordPanel:
    """Takes of one teleoperation source into ``out``; one take at a time, in a worker thread."""

    def __init__(self, client: Any, out: Path, sim: bool, first_init_state: int = 0, timeout: float = 600.0) -> None:
        self.client, self.out, self.sim = client, Path(out), sim
        self.first_init_state, self.timeout = first_init_state, timeout
        self.operator = PageOperator()
        self.recorder: Recorder | None = None
        self.source = ""
        self.running: dict[str, Any] | None = None
        self.last = ""
        self._lock = threading.Lock()

    def objects(self, task: Any) -> list[str]:
        return [task.sim_object] if self.sim else list(task.objects)

    def start(self, task_name: str, obj: str, source: str) -> dict[str, Any]:
        """Start a take of ``task_name`` / ``obj`` with the bridge in ``source`` mode."""
        if source not in SOURCES:
            raise ValueError(f"teleoperation source {source!r}; valid: {', '.join(SOURCES)}")
        task = DEFAULT_TASKS.get(task_name)
        obj = obj or self.objects(task)[0]
        if obj not in self.objects(task):
            raise ValueError(f"{obj!r} is not an object of {task.name} here; valid: {', '.join(self.objects(task))}")
        with self._lock:
            if self.running is not None:
                raise ValueError("a take is in progress: finish it (Done, then keep / discard / redo)")
            self.out.mkdir(parents=True, exist_ok=True)
            if self.recorder is None or source != self.source:
                self.recorder = Recorder(self.client, self.out, source, self.operator, None, timeout=self.timeout,
                                         echo=self._echo)
                self.source = source
            k = next_take(read_takes(self.out), task.name, obj)
            self.running = {"task": task.name, "object": obj, "take": k}
        init = self.first_init_state + k if self.sim else -1
        threading.Thread(target=self._run, args=(task, obj, k, init), daemon=True, name="console-take").start()
        return dict(self.running)

    def _run(self, task: Any, obj: str, k: int, init: int) -> None:
        try:
            take = self.recorder.take(task, obj, k, init)
            append_take(self.out, take)
            self.last = f"{task.name}/{obj} take {k}: {take.verdict} ({take.outcome}, {take.steps} steps)"
        except Exception as e:  # shown on the page
            self.last = f"take failed: {type(e).__name__}: {e}"
        finally:
            self.operator.prompt = ""
            with self._lock:
                self.running = None

    def _echo(self, line: str) -> None:
        self.last = line

    def finish(self) -> None:
        """Hand the bridge back to the policy (mode policy)."""
        if self.running is not None:
            raise ValueError("a take is in progress: finish it first")
        self.client.set_parameters(BRIDGE, {"mode": "policy"})
        self.recorder, self.source = None, ""

    def state(self) -> dict[str, Any]:
        takes = read_takes(self.out)
        counts = [{"task": t.name, "object": o, "kept": kept(takes, t.name, o),
                   "task_kept": sum(kept(takes, t.name, x) for x in self.objects(t)), "target": TARGET}
                  for t in DEFAULT_TASKS for o in self.objects(t)]
        return {"out": str(self.out), "source": self.source, "sources": list(SOURCES), "running": self.running,
                "prompt": self.operator.prompt, "last": self.last, "counts": counts, "takes": len(takes)}
