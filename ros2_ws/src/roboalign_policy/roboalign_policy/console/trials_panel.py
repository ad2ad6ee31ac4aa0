"""The console's trials: the paper's protocol one trial at a time, with the functions of ``roboalign trials``
(same plan, same trials.csv / results.csv / results.md, resumable), success automatic in sim and the
operator's mark on a robot, notes in ``trial_notes.csv``, results with Wilson 95 % intervals."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roboalign.commands.csv_rows import append_row, read_rows
from roboalign.commands.trials import (
    RESULTS_MD,
    Trial,
    append_trial,
    pending,
    plan,
    read_trials,
    run_trial,
    summarize,
    write_results,
)
from roboalign.spec.tasks import DEFAULT_TASKS

NOTES_CSV = "trial_notes.csv"


@dataclass(frozen=True)
class TrialNote:
    label: str
    mode: str
    task: str
    object: str
    trial: int
    note: str


def wilson(successes: int, trials: int) -> tuple[float, float]:
    """Wilson score 95 % interval of a success rate (scipy's binomtest)."""
    if trials == 0:
        return 0.0, 1.0
    from scipy.stats import binomtest

    ci = binomtest(successes, trials).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


class PageConsole:
    """``roboalign trials``' Console (``ask`` / ``pressed``) answered from the page: a question waits for a mark."""

    def __init__(self) -> None:
        self.prompt = ""
        self._answers: queue.Queue[str] = queue.Queue()

    def ask(self, prompt: str) -> str:
        self.prompt = prompt
        try:
            return self._answers.get()
        finally:
            self.prompt = ""

    def answer(self, text: str) -> None:
        self._answers.put(text)

    def pressed(self) -> bool:
        return False  # the page stops an episode with STOP, straight to the bridge


class TrialsPanel:
    """Trials of one label and mode into ``out``; one trial runs at a time, in a worker thread."""

    def __init__(self, client: Any, out: Path, label: str = "policy", mode: str = "sim", tasks: list[str] | None = None,
                 trials_per_object: int = 24, first_init_state: int = 0, timeout: float = 600.0) -> None:
        self.client, self.out, self.label, self.mode = client, Path(out), label, mode
        self.tasks = [DEFAULT_TASKS.get(t) for t in (tasks or DEFAULT_TASKS.names)]
        self.trials_per_object, self.timeout = trials_per_object, timeout
        self.plan = plan(self.tasks, mode, trials_per_object, first_init_state)
        self.console = PageConsole()
        self.running: dict[str, Any] | None = None
        self.last_error = ""
        self.lines: list[str] = []
        self._lock = threading.Lock()
        pending(self.plan, read_trials(self.out), label, mode)  # a plan at odds with trials.csv is refused here

    def next_planned(self) -> Any:
        todo = pending(self.plan, read_trials(self.out), self.label, self.mode)
        return todo[0] if todo else None

    def start_next(self) -> dict[str, Any]:
        """Start the next pending trial; refused while one runs or when the protocol is complete."""
        with self._lock:
            if self.running is not None:
                raise ValueError("a trial is running: wait for its outcome (or STOP it)")
            p = self.next_planned()
            if p is None:
                raise ValueError(f"every trial of label {self.label!r} is done: see {self.out / RESULTS_MD}")
            self.running = {"task": p.task.name, "object": p.object, "trial": p.trial, "init_state": p.init_state}
            self.last_error = ""
            self.out.mkdir(parents=True, exist_ok=True)  # made by the first trial, not by a console that only looks
        threading.Thread(target=self._run, args=(p,), daemon=True, name="console-trial").start()
        return dict(self.running)

    def _run(self, p: Any) -> None:
        try:
            result = run_trial(self.client, p.task, p.object, self.mode, self.timeout, self._echo,
                               self.console if self.mode == "real" else None, p.init_state)
            if result is not None:
                append_trial(self.out, Trial(self.label, self.mode, p.task.name, p.object, p.trial, **result))
                write_results(self.out)
        except Exception as e:  # shown on the page; the trial stays pending
            self.last_error = f"{type(e).__name__}: {e}"
        finally:
            with self._lock:
                self.running = None

    def _echo(self, line: str) -> None:
        self.lines = [*self.lines[-19:], line]

    def mark(self, verdict: str) -> None:
        """The operator's verdict on a robot trial: y (success), n (failure) or s (skip: asked again later)."""
        if verdict not in ("y", "n", "s"):
            raise ValueError(f"verdict {verdict!r}; valid: y, n, s")
        if not self.console.prompt:
            raise ValueError("no trial is waiting for a verdict")
        self.console.answer(verdict)

    def note(self, task: str, obj: str, trial: int, text: str) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        append_row(self.out / NOTES_CSV, TrialNote(self.label, self.mode, task, obj, int(trial), text))

    def state(self) -> dict[str, Any]:
        trials = read_trials(self.out)
        done = {(t.task, t.object, t.trial): t.success for t in trials if (t.label, t.mode) == (self.label, self.mode)}
        grid: dict[tuple[str, str], list[Any]] = {}
        for p in self.plan:
            grid.setdefault((p.task.name, p.object), []).append(done.get((p.task.name, p.object, p.trial)))
        nxt = self.next_planned()
        mine = [t for t in trials if (t.label, t.mode) == (self.label, self.mode)]
        last = {"task": mine[-1].task, "object": mine[-1].object, "trial": mine[-1].trial} if mine else None
        notes = read_rows(self.out / NOTES_CSV, TrialNote)
        return {"out": str(self.out), "label": self.label, "mode": self.mode, "running": self.running,
                "prompt": self.console.prompt, "error": self.last_error, "lines": self.lines[-5:],
                "grid": [{"task": k[0], "object": k[1], "cells": v} for k, v in grid.items()],
                "next": None if nxt is None else {"task": nxt.task.name, "object": nxt.object, "trial": nxt.trial,
                                                  "init_state": nxt.init_state},
                "last": last, "results": results_table(trials), "notes": [n.__dict__ for n in notes[-10:]]}


def results_table(trials: list[Trial]) -> list[dict[str, Any]]:
    """``roboalign trials``' summary rows (as written to results.csv) with Wilson intervals added."""
    rows = []
    for r in summarize(trials):
        lo, hi = wilson(r["successes"], r["trials"])
        rows.append({**r, "ci_low": round(lo, 4), "ci_high": round(hi, 4)})
    return rows
