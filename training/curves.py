"""Training curves: every Trainer log line to ``train_log.jsonl``, and at the end ``curves.csv`` + ``curves.png``.

Used as a ``transformers.TrainerCallback`` by SFT and GRPO (main process only), and by the align
benchmark to draw the SFT loss / GRPO reward curves side by side. The VLA head's trainer writes its
flow-matching loss as ``loss.csv`` + ``loss.png`` (``write_loss_curves``).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback

LOG_FILE = "train_log.jsonl"
LOSS_CSV_FILE = "loss.csv"
LOSS_PNG_FILE = "loss.png"
CSV_FILE = "curves.csv"
PNG_FILE = "curves.png"

# The keys worth plotting, in order; any present are drawn (SFT: loss; GRPO: rewards, KL, length).
PLOT_KEYS = (
    "loss",
    "mean_token_accuracy",
    "reward",
    "rewards/format/mean",
    "rewards/accuracy/mean",
    "kl",
    "completions/mean_length",
    "learning_rate",
)


def read_log(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training log {path} does not exist")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    keys = ["step"] + sorted({k for r in rows for k in r if k != "step"})
    path = Path(path)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, "") for k in keys})
    return path


def plot_curves(runs: dict[str, Sequence[dict[str, Any]]], path: str | Path, title: str = "") -> Path:
    """One subplot per metric in PLOT_KEYS present in any run; x = global step. Returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in PLOT_KEYS if any(k in r for rows in runs.values() for r in rows)]
    if not keys:
        raise ValueError("no plottable metric in the logs")
    ncols = min(3, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        for name, rows in runs.items():
            pts = [(r["step"], r[key]) for r in rows if key in r and "step" in r]
            if pts:
                xs, ys = zip(*pts, strict=True)
                noisy = len(pts) >= 20 and key != "learning_rate"
                line = ax.plot(xs, ys, label=name, marker="." if len(pts) < 30 else None, alpha=0.35 if noisy else 1)
                if noisy:  # a centred moving average over ~1/10 of the run makes the trend readable
                    from scipy.ndimage import uniform_filter1d

                    w = max(3, len(ys) // 10)
                    ax.plot(xs, uniform_filter1d(ys, size=w, mode="nearest"), color=line[0].get_color(),
                            label=f"{name} (mean of {w})")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_loss_curves(rows: Sequence[dict[str, Any]], out: Path, title: str) -> None:
    """``loss.csv`` and ``loss.png`` of the VLA head: train loss (+ running mean) and validation loss per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["step", "loss", "val_loss", "lr"]
    with open(out / LOSS_CSV_FILE, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in keys})
    fig, ax = plt.subplots(figsize=(6, 3.5))
    tr = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    va = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    if tr:
        s, v = zip(*tr, strict=True)
        k = max(1, len(v) // 50)  # running mean for readability
        smooth = np.convolve(v, np.ones(k) / k, mode="valid")
        ax.plot(s, v, alpha=0.25, color="C0")
        ax.plot(s[k - 1:], smooth, color="C0", label="train (flow-matching MSE)")
    if va:
        s, v = zip(*va, strict=True)
        ax.plot(s, v, "o-", color="C1", label="val (fixed noise)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / LOSS_PNG_FILE, dpi=110)
    plt.close(fig)


class CurveLogger(TrainerCallback):
    """Appends each log dict (+ step) to ``<dir>/train_log.jsonl``; writes CSV + PNG when training ends.

    A fresh run starts a new log; a resumed run keeps the rows up to the step it resumes from.
    """

    def __init__(self, directory: str | Path, name: str = "train") -> None:
        self.directory = Path(directory)
        self.name = name

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_FILE

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Fresh run: start a new log. Resumed run: keep the rows up to the resumed step, drop the rest."""
        if not state.is_world_process_zero or not self.log_path.is_file():
            return
        keep = [r for r in read_log(self.log_path) if r.get("step", 0) <= state.global_step and state.global_step > 0]
        self.log_path.write_text("".join(json.dumps(r) + "\n" for r in keep))

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        row = {"step": int(state.global_step), **{k: v for k, v in logs.items() if isinstance(v, (int, float))}}
        with self.log_path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not self.log_path.is_file():
            return
        rows = [r for r in read_log(self.log_path) if any(k in r for k in PLOT_KEYS)]
        if rows:
            write_csv(rows, self.directory / CSV_FILE)
            plot_curves({self.name: rows}, self.directory / PNG_FILE, title=f"{self.name}: {self.directory}")
