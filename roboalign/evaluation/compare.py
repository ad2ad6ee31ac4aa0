"""Side-by-side LIBERO success of several evaluation runs (e.g. base / SFT / SFT+GRPO backbones).

Reads the per-episode logs every ``roboalign eval libero`` run appends as it goes (``episodes_log*.csv``,
so a stopped or still-running evaluation counts what it finished), merges several folders per run (runs
split over processes or machines), keeps one row per (task, init state), and writes ``compare.csv``,
``compare.md`` (``k/n (rate %)`` per task and run) and ``success_bars.png`` (grouped bars with Wilson 95 %
intervals from :func:`scipy.stats.binomtest`, n under each bar).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import binomtest

from roboalign.evaluation.episode_results import EpisodeResult, read_episode_logs, success_table


def compare_runs(runs: Mapping[str, Sequence[EpisodeResult]], tasks: Sequence[str] | None = None
                 ) -> list[dict[str, Any]]:
    """Rows {run, task, episodes, successes, success_rate, ci_low, ci_high}; ``task="mean"`` pools all tasks."""
    if tasks is None:
        tasks = list(dict.fromkeys(r.task for rs in runs.values() for r in rs))
    rows = []
    for name, results in runs.items():
        table = {r["task"]: r for r in success_table([r for r in results if r.task in tasks])}
        for task in [*tasks, "mean"]:
            t = table.get(task, {"episodes": 0, "successes": 0})
            n, k = int(t["episodes"]), int(t["successes"])
            lo, hi = (binomtest(k, n).proportion_ci(method="wilson") if n else (np.nan, np.nan))
            rows.append({"run": name, "task": task, "episodes": n, "successes": k,
                         "success_rate": k / n if n else float("nan"), "ci_low": float(lo), "ci_high": float(hi)})
    return rows


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    names = list(dict.fromkeys(r["run"] for r in rows))
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    cell = {(r["run"], r["task"]): r for r in rows}
    lines = ["| task | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for task in tasks:
        vals = []
        for name in names:
            r = cell[(name, task)]
            vals.append(f"{r['successes']}/{r['episodes']} ({100 * r['success_rate']:.0f} %)" if r["episodes"] else "—")
        label = "all tasks (pooled)" if task == "mean" else task
        lines.append(f"| {label} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def plot_bars(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["run"] for r in rows))
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    cell = {(r["run"], r["task"]): r for r in rows}
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(tasks), 3.4))
    for i, name in enumerate(names):
        rs = [cell[(name, t)] for t in tasks]
        x = np.arange(len(tasks)) + (i - (len(names) - 1) / 2) * width
        rate = np.array([100 * r["success_rate"] if r["episodes"] else 0.0 for r in rs])
        err = np.array([[100 * (r["success_rate"] - r["ci_low"]), 100 * (r["ci_high"] - r["success_rate"])]
                        if r["episodes"] else [0.0, 0.0] for r in rs]).T
        ax.bar(x, rate, width, yerr=err, capsize=2, label=name)
        for xi, r in zip(x, rs, strict=True):
            ax.text(xi, -3, f"n={r['episodes']}", ha="center", va="top", fontsize=6)
    ax.set_xticks(np.arange(len(tasks)), ["all (pooled)" if t == "mean" else t for t in tasks], fontsize=8)
    ax.tick_params(axis="x", pad=12)
    ax.set_ylim(-8, 100)
    ax.set_ylabel("LIBERO success % (Wilson 95 % CI)")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def write_comparison(runs: Mapping[str, Sequence[str | Path]], out: str | Path, tasks: Sequence[str] | None = None,
                     title: str = "") -> list[dict[str, Any]]:
    """``runs``: name -> eval folders. Writes compare.csv / compare.md / success_bars.png into ``out``."""
    rows = compare_runs({name: read_episode_logs(folders) for name, folders in runs.items()}, tasks)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "compare.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "compare.md").write_text(markdown(rows))
    plot_bars(rows, out / "success_bars.png", title)
    return rows
