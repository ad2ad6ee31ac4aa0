"""The five LIBERO suites: their tasks in the official order, step limits, and any task as a SimTask.

Step limits per suite are the ones openpi's LIBERO example (``examples/libero/main.py``) and OpenVLA's
``run_libero_eval.py`` use, each the longest training demonstration of the suite rounded up (spatial 193,
object 254, goal 270, libero_10 505, libero_90 373 steps). A task is named by its index in the suite
(LIBERO's ``libero_task_map`` order, the order every published table uses) or by its problem name (the
BDDL file stem, with or without the ``.bddl``), or by its instruction.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path
from typing import Any

from roboalign.sim.libero_setup import libero_root
from roboalign.sim.scenes import bddl_path
from roboalign.spec.tasks import SimTask, TaskError

SUITES: tuple[str, ...] = ("libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90")
MAX_STEPS: dict[str, int] = {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520,
                             "libero_90": 400}
SUITE_LABELS = {"libero_spatial": "Spatial", "libero_object": "Object", "libero_goal": "Goal",
                "libero_10": "Long (10)", "libero_90": "90"}


def check_suite(suite: str) -> str:
    if suite not in SUITES:
        raise TaskError(f"unknown LIBERO suite {suite!r}; valid: {', '.join(SUITES)}")
    return suite


@functools.cache
def _libero_file_module(relpath: str) -> Any:
    """A plain module of the LIBERO package loaded from its file, without importing ``libero.libero`` (whose
    ``__init__`` reads its config and whose ``benchmark`` / ``envs`` packages import torch and robosuite)."""
    path = libero_root() / relpath
    spec = importlib.util.spec_from_file_location(f"_roboalign_libero_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def suite_problems(suite: str) -> list[str]:
    """Problem names (BDDL stems) of a suite in LIBERO's official order (``libero_suite_task_map``)."""
    check_suite(suite)
    return list(_libero_file_module("benchmark/libero_suite_task_map.py").libero_task_map[suite])


def resolve_problem(suite: str, key: str | int) -> str:
    """One task of ``suite`` by index, problem name or instruction; the error lists the valid ones."""
    problems = suite_problems(suite)
    text = str(key).strip().removesuffix(".bddl")
    if re.fullmatch(r"\d+", text):
        i = int(text)
        if i < len(problems):
            return problems[i]
        raise TaskError(f"{suite} has tasks 0..{len(problems) - 1}, not {i}")
    words = text.replace(" ", "_").lower()
    for p in problems:
        if text == p or words == p.lower() or words == _instruction_of(p).replace(" ", "_"):
            return p
    listing = "; ".join(f"{i}: {p}" for i, p in enumerate(problems))
    raise TaskError(f"unknown {suite} task {key!r}; valid (index: name): {listing}")


def _instruction_of(problem: str) -> str:
    """LIBERO's instruction from a problem name (``grab_language_from_filename``: drop the SCENE prefix)."""
    return re.sub(r"^[A-Z0-9_]*SCENE\d+_", "", problem).replace("_", " ").lower()


def _pair(goal: list[list[str]], objects: tuple[str, ...]) -> tuple[str, str]:
    """(object, target object) when the goal is one ``In``/``On`` placement of one movable object into or onto
    another (``basket_1_contain_region`` counts as ``basket_1``), else ("", "") (drawers, stove regions, ...)."""
    if len(goal) == 1 and len(goal[0]) == 3 and goal[0][0] in ("in", "on"):
        obj, target = goal[0][1], re.sub(r"_contain_region$", "", goal[0][2])
        if obj in objects and target in objects:
            return obj, target
    return "", ""


def sim_task_from_bddl(suite: str, path: Path) -> SimTask:
    """A SimTask read from a BDDL file with LIBERO's parser (goal, objects, instruction)."""
    parsed = _libero_file_module("envs/bddl_utils.py").robosuite_parse_problem(str(path))
    goal = [[str(x).lower() for x in g] for g in parsed["goal_state"]]
    objects = tuple(n for names in parsed["objects"].values() for n in names)
    obj, target = _pair(goal, objects)
    words = parsed["language_instruction"]
    bddl_text = " ".join(words if isinstance(words, list) else str(words).split()).lower()
    # LIBERO's benchmark (and every published evaluation) instructs with the file name's words, not the BDDL's.
    instruction = bddl_text if suite not in SUITES else _instruction_of(path.stem)
    return SimTask(suite=suite, problem=path.stem, object_name=obj, target_name=target, instruction=instruction,
                   goal=tuple(goal[0]) if goal else (), objects=objects)


def libero_task(suite: str, key: str | int) -> SimTask:
    """Any LIBERO task as a SimTask: ``libero_task("libero_goal", 3)``, ``libero_task("libero_90", "KITCHEN_...")``."""
    problem = resolve_problem(suite, key)
    stub = SimTask(suite=suite, problem=problem, object_name="", target_name="", instruction="", goal=())
    return sim_task_from_bddl(suite, bddl_path(stub))


def suite_tasks(suite: str, keys: list[str] | None = None) -> list[SimTask]:
    """Every task of a suite (or the selected ones, by index or name) as SimTasks, in suite order."""
    problems = suite_problems(suite)
    chosen = problems if not keys else list(dict.fromkeys(resolve_problem(suite, k) for k in keys))
    return [libero_task(suite, p) for p in chosen]
