"""One evaluation episode's result, the per-episode CSV log every LIBERO evaluation appends, and success tables.

``roboalign eval libero`` appends one line per finished episode to ``episodes_log*.csv`` (:func:`append_episode`),
so a stopped run keeps what it measured and a rerun skips it (:func:`logged_results`); ``roboalign eval compare``
reads the same logs (:func:`read_episode_logs`). :func:`success_table` / :func:`markdown_table` give the per-task
success rows and their Markdown.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LOG_COLUMNS = ["task", "init_state", "success", "steps", "seconds", "policy_calls", "policy_ms_mean"]


@dataclass
class EpisodeResult:
    task: str
    init_state: int
    success: bool
    steps: int
    seconds: float
    policy_calls: int
    policy_ms_mean: float
    frames: list[np.ndarray] = field(default_factory=list, repr=False)  # agentview frames for the strip
    wrist: list[np.ndarray] = field(default_factory=list, repr=False)  # wrist frames (videos)


def log_row(r: EpisodeResult) -> dict[str, Any]:
    """The CSV row of one episode (:data:`LOG_COLUMNS`)."""
    return {c: getattr(r, c) for c in LOG_COLUMNS}


def append_episode(r: EpisodeResult, path: str | Path | None) -> None:
    """Append one episode to the CSV log at ``path`` (header first when the file is new); nothing if None."""
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LOG_COLUMNS)
        if new:
            w.writeheader()
        w.writerow(log_row(r))


def _from_row(row: dict[str, str]) -> EpisodeResult:
    return EpisodeResult(task=row["task"], init_state=int(row["init_state"]), success=row["success"] == "True",
                         steps=int(row["steps"]), seconds=float(row["seconds"]),
                         policy_calls=int(row["policy_calls"]), policy_ms_mean=float(row["policy_ms_mean"]))


def read_episode_logs(folders: Sequence[str | Path]) -> list[EpisodeResult]:
    """Episodes logged in ``folders`` (``episodes_log*.csv``), one per (task, init state), in log order."""
    seen: dict[tuple[str, int], EpisodeResult] = {}
    for folder in folders:
        logs = sorted(Path(folder).glob("episodes_log*.csv"))
        if not logs:
            raise FileNotFoundError(f"{folder}: no episodes_log*.csv (is it a `roboalign eval libero --out` folder?)")
        for log in logs:
            with open(log, newline="") as f:
                for row in csv.DictReader(f):
                    r = _from_row(row)
                    seen.setdefault((r.task, r.init_state), r)
    return list(seen.values())


def logged_results(out: str | Path | None) -> dict[tuple[str, int], EpisodeResult]:
    """Episodes already logged in ``out`` (``episodes_log*.csv``), by (task, init state); {} if none."""
    if out is None or not list(Path(out).glob("episodes_log*.csv")):
        return {}
    return {(r.task, r.init_state): r for r in read_episode_logs([out])}


def success_table(results: Sequence[EpisodeResult]) -> list[dict[str, Any]]:
    """Per-task rows {task, episodes, successes, success_rate, mean_steps} + a final ``mean`` row."""
    rows = []
    for task in dict.fromkeys(r.task for r in results):
        rs = [r for r in results if r.task == task]
        rows.append({"task": task, "episodes": len(rs), "successes": sum(r.success for r in rs),
                     "success_rate": sum(r.success for r in rs) / len(rs),
                     "mean_steps": float(np.mean([r.steps for r in rs]))})
    if rows:
        rows.append({"task": "mean", "episodes": sum(r["episodes"] for r in rows),
                     "successes": sum(r["successes"] for r in rows),
                     "success_rate": float(np.mean([r["success_rate"] for r in rows])),
                     "mean_steps": float(np.mean([r.steps for r in results]))})
    return rows


def markdown_table(rows: Sequence[dict[str, Any]], title: str = "") -> str:
    """The success rows as a Markdown table (task, k/n, rate %, mean steps) under an optional ``### title``."""
    lines = [f"### {title}", ""] if title else []
    lines += ["| task | success | rate % | mean steps |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['successes']}/{r['episodes']} | {100 * r['success_rate']:.1f} | "
                     f"{r['mean_steps']:.0f} |")
    return "\n".join(lines) + "\n"
