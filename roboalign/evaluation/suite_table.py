"""The paper-style LIBERO table: success per suite (Spatial / Object / Goal / Long / 90) and their average.

Episodes are grouped by suite from their task name (``libero_goal/<problem>``; the four tasks count as
suite ``tasks``). A suite's success rate is the mean of its tasks' rates (every task gets the same number
of episodes in an evaluation, so this equals pooled successes / episodes); ``average`` is the mean over
suites, as in the RoboAlign, openpi and OpenVLA tables. Written as ``suites.csv``, ``suites.md`` and the
bar plot ``suites.png``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

OUR_TASKS = "tasks"  # suite label of the four tasks' scenes


def suite_of(task: str) -> str:
    """``libero_goal/put_the_bowl_on_the_stove`` -> ``libero_goal``; one of the four tasks -> ``tasks``."""
    return task.split("/", 1)[0] if "/" in task else OUR_TASKS


def suite_rows(results: Sequence[Any]) -> list[dict[str, Any]]:
    """Rows {suite, tasks, episodes, successes, success_rate} in first-seen order + an ``average`` row."""
    rows = []
    for suite in dict.fromkeys(suite_of(r.task) for r in results):
        rs = [r for r in results if suite_of(r.task) == suite]
        tasks = list(dict.fromkeys(r.task for r in rs))
        rates = [np.mean([r.success for r in rs if r.task == t]) for t in tasks]
        rows.append({"suite": suite, "tasks": len(tasks), "episodes": len(rs), "successes": sum(r.success for r in rs),
                     "success_rate": float(np.mean(rates))})
    if rows:
        rows.append({"suite": "average", "tasks": sum(r["tasks"] for r in rows),
                     "episodes": sum(r["episodes"] for r in rows), "successes": sum(r["successes"] for r in rows),
                     "success_rate": float(np.mean([r["success_rate"] for r in rows]))})
    return rows


def suite_markdown(rows: Sequence[dict[str, Any]], label: str = "policy") -> str:
    """One paper-style row (a column per suite + average, success %) and the per-suite counts below it."""
    head = "| " + " | ".join([label, *[r["suite"] for r in rows]]) + " |"
    sep = "|" + "---|" * (len(rows) + 1)
    vals = "| " + " | ".join(["success %", *[f"{100 * r['success_rate']:.1f}" for r in rows]]) + " |"
    counts = "| " + " | ".join(["successes / episodes (tasks)",
                                *[f"{r['successes']}/{r['episodes']} ({r['tasks']})" for r in rows]]) + " |"
    return "\n".join([head, sep, vals, counts]) + "\n"


def write_suite_table(results: Sequence[Any], out: str | Path, label: str = "policy") -> list[dict[str, Any]]:
    """``suites.csv``, ``suites.md`` and ``suites.png`` in ``out``; returns the rows."""
    out = Path(out)
    rows = suite_rows(results)
    if not rows:
        return rows
    with open(out / "suites.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "suites.md").write_text(suite_markdown(rows, label))
    _plot(rows, out / "suites.png", label)
    return rows


def _plot(rows: Sequence[dict[str, Any]], path: Path, label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(rows), 3.0))
    x = np.arange(len(rows))
    rates = [100 * r["success_rate"] for r in rows]
    ax.bar(x, rates, color=["C0"] * (len(rows) - 1) + ["C1"])
    for i, r in enumerate(rows):
        ax.text(i, rates[i] + 1, f"{rates[i]:.0f}%\n{r['successes']}/{r['episodes']}", ha="center", fontsize=7)
    ax.set_xticks(x, [r["suite"] for r in rows], fontsize=8)
    ax.set_ylim(0, 115)
    ax.set_ylabel("success %")
    ax.set_title(f"LIBERO success per suite: {label}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
