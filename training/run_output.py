"""The output folder of every training run (SFT, GRPO, the VLA head): what is written at its start and at its end.

Start (main process): ``run_config.json`` and, where the checkpoint has them, its spec files, so every intermediate
checkpoint can be read. End: the processes meet, the main one saves the checkpoint, the curves and ``metrics.json``,
and the processes meet again; the main process then prints ``<stage>: checkpoint <folder>`` (+ ``key=value`` figures).
Under ``accelerate launch`` only the main process writes; a plain run is its own main process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from roboalign.models.aligned import AlignedModel, save_aligned

RUN_CONFIG_FILE = "run_config.json"
METRICS_FILE = "metrics.json"


def is_main_process() -> bool:
    """Whether this process writes the run's files (the only process of a plain run; rank 0 under accelerate)."""
    from accelerate import PartialState

    return PartialState().is_main_process


def wait_for_everyone() -> None:
    """Block until every process of the run reaches this point (returns at once in a plain run)."""
    from accelerate import PartialState

    PartialState().wait_for_everyone()


def start_run(out: Path, config: dict[str, Any], specs: Callable[[Path], Any] | None = None) -> None:
    """Main process: create ``out``, write the checkpoint's spec files (``specs(out)``) and ``run_config.json``."""
    if not is_main_process():
        return
    out.mkdir(parents=True, exist_ok=True)
    if specs is not None:
        specs(out)
    (out / RUN_CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str) + "\n")


def finish_run(out: Path, save: Callable[[], Path], curves: Callable[[], Any] | None = None,
               metrics: dict[str, Any] | None = None, started: float | None = None) -> Path:
    """End of training: the main process saves the checkpoint (``save()`` returns its folder), the curves
    (``curves()``) and ``metrics`` as ``metrics.json`` (with the checkpoint folder and, given the
    ``time.perf_counter()`` the run ``started`` at, its ``total_seconds``); every process waits for it."""
    wait_for_everyone()
    checkpoint = out
    if is_main_process():
        checkpoint = Path(save())
        if curves is not None:
            curves()
        if metrics is not None:
            metrics["checkpoint"] = str(checkpoint)
            if started is not None:
                metrics["total_seconds"] = time.perf_counter() - started
            (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    wait_for_everyone()
    return checkpoint


def finish_trainer_run(trainer: Any, aligned: AlignedModel, out: Path) -> Path:
    """End of a TRL run (SFT, GRPO): the trained weights, unwrapped from the distributed wrapper, saved with the
    specs into ``out`` (:func:`finish_run`)."""

    def save() -> Path:
        aligned.backbone.model = trainer.accelerator.unwrap_model(trainer.model)
        return save_aligned(aligned, out)

    return finish_run(out, save)


def report(stage: str, checkpoint: str | Path, figures: dict[str, str] | None = None) -> None:
    """The run's last line (main process): ``<stage>: checkpoint <folder>`` and each figure as ``key=value``."""
    if is_main_process():
        extra = "".join(f" {k}={v}" for k, v in (figures or {}).items())
        print(f"{stage}: checkpoint {checkpoint}{extra}")
