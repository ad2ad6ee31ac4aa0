"""What ``roboalign eval libero`` evaluates: tasks of the chosen suites, and whether a policy fits them.

Suites: ``tasks`` (the four tasks, on a scene set) and LIBERO's five (:data:`roboalign.sim.suites.SUITES`);
LIBERO tasks are named ``<suite>/<problem>``. Every refusal is one :class:`EvalSetupError` line naming what
is valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from roboalign.evaluation.suite_table import OUR_TASKS
from roboalign.sim.constants import CAMERAS
from roboalign.sim.suites import SUITES, suite_tasks
from roboalign.spec.tasks import SimTask, TaskError, TaskSet, sim_task_set

EVAL_SUITES: tuple[str, ...] = (OUR_TASKS, *SUITES)
LIBERO_ACTION_SPACE = "eef_delta"  # LIBERO's demonstrations and published evaluations: OSC_POSE deltas


class EvalSetupError(ValueError):
    """An evaluation that cannot run as asked (unknown suite/task, unfit policy); the message says what is valid."""


def resolve_tasks(suites: list[str], tasks: list[str] | None, scenes: str) -> dict[str, SimTask]:
    """Task name -> scene for every task of ``suites`` (``tasks`` selects within a single suite)."""
    bad = [s for s in suites if s not in EVAL_SUITES]
    if bad:
        raise EvalSetupError(f"unknown suite(s) {bad}; valid: {', '.join(EVAL_SUITES)}")
    if tasks and len(suites) > 1:
        raise EvalSetupError("--tasks selects tasks of one suite; give a single --suite with it")
    out: dict[str, SimTask] = {}
    try:
        for suite in suites:
            if suite == OUR_TASKS:
                ours = sim_task_set(scenes)
                out.update({ours.get(t).name: ours.get(t).sim for t in (tasks or ours.names)})
            else:
                out.update({f"{suite}/{t.problem}": t for t in suite_tasks(suite, tasks)})
    except TaskError as e:
        raise EvalSetupError(str(e)) from None
    return out


def check_expert(scenes: dict[str, SimTask]) -> None:
    """The scripted expert needs one object -> target placement per task (it reads their poses)."""
    unfit = [t for t, s in scenes.items() if not (s.object_name and s.target_name)]
    if unfit:
        raise EvalSetupError(f"the scripted expert only places one object into/onto a target; {len(unfit)} task(s) "
                             f"are not that ({', '.join(unfit[:3])}{', ...' if len(unfit) > 3 else ''}): "
                             "evaluate them with --policy vla --checkpoint CKPT")


def checkpoint_scenes(checkpoint: str | Path, names: list[str]) -> dict[str, SimTask]:
    """The scene each of the four tasks was trained on, from the checkpoint's ``tasks.json``."""
    ckpt_tasks = TaskSet.load(Path(checkpoint) / "tasks.json")
    try:
        return {t: ckpt_tasks.get(t).sim for t in names}
    except TaskError as e:
        raise EvalSetupError(f"{checkpoint}/tasks.json: {e}") from None


def check_checkpoint(vla_cfg: Any, suites: list[str], camera_size: int, checkpoint: str | Path) -> None:
    """Refuse a checkpoint whose cameras, action space or image size do not fit the suites' observations."""
    cams = [c for c in vla_cfg.inputs.cameras if c not in CAMERAS]
    if cams:
        raise EvalSetupError(f"checkpoint {checkpoint} reads cameras {cams}; the LIBERO scenes render "
                             f"{', '.join(CAMERAS)}")
    libero = [s for s in suites if s != OUR_TASKS]
    if libero and vla_cfg.action_space != LIBERO_ACTION_SPACE:
        raise EvalSetupError(f"checkpoint {checkpoint} outputs {vla_cfg.action_space!r} actions; LIBERO suites "
                             f"({', '.join(libero)}) are evaluated in {LIBERO_ACTION_SPACE!r} (OSC_POSE deltas, the "
                             "space of their demonstrations): train the head with action_space: eef_delta")
    h, w = vla_cfg.inputs.image_size
    if max(h, w) > camera_size:
        raise EvalSetupError(f"checkpoint {checkpoint} takes {h}x{w} images but the cameras render "
                             f"{camera_size}x{camera_size}: pass --camera-size {max(h, w)} or larger")
