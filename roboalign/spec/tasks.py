"""The four pick-and-place tasks, on the real robot and in simulation: their types, language and matching.

The tasks themselves are data: ``tasks.yaml`` beside this module (:data:`TASKS_FILE`), read through the strict
spec loader (:func:`load_task_definitions`); this module gives them their types, language and matching.

Real robot (Franka Research 3). The paper reports four pick-and-place tasks, each a source→target
placement done with 4 different objects, 24 trials per object (96 trials per task). It does not name
them, so these are our documented defaults: everyday grocery objects (the same physical YCB/HOPE-style
items LIBERO-Object models) moved from a source to a target container.

=================  ===============  ===============================================  ==============================
task               source → target  real objects (4 × 24 trials)                     sim scene (object → target)
=================  ===============  ===============================================  ==============================
bottle_to_basket   table → basket   ketchup, bbq sauce, salad dressing, mustard      LIBERO-90 living room 1:
                                                                                     ketchup → basket
box_to_plate       table → plate    cream cheese, butter, chocolate pudding, granola  living room 6 (our BDDL goal):
                                                                                     chocolate pudding → plate
can_to_bowl        table → bowl     tomato sauce, tuna, corn, peas                   living room (our BDDL):
                                                                                     tomato sauce → black bowl
shelf_to_tray      shelf → tray     alphabet soup, milk, orange juice, popcorn       living room (our BDDL): alphabet
                                                                                     soup on a shelf → wooden tray
=================  ===============  ===============================================  ==============================

Simulation. Each task's scene puts a real object of its kind into its real target, built from LIBERO's
assets: ``bottle_to_basket`` is a LIBERO-90 task as published (official BDDL and init states);
``box_to_plate`` is LIBERO-90's living-room scene 6 with our goal ``(On chocolate_pudding_1 plate_1)`` (same
objects and layout, so LIBERO's official init states of that scene are used); ``can_to_bowl`` (living room 1
with the basket replaced by LIBERO's black bowl) and ``shelf_to_tray`` (LIBERO's two-layer wooden shelf on
the living-room table, the alphabet soup on its top, a wooden tray; LIBERO has no task starting on a shelf)
are our BDDL files (``roboalign/sim/scenes``) with 50 init states each, drawn by LIBERO's own placement
sampler. LIBERO-Object stand-ins (every task → basket) are selectable as the scene set ``libero_object``
(:func:`sim_task_set`). The success predicate is the scene's BDDL goal, evaluated by
LIBERO (:meth:`SimTask.check_success`).

Language. Each task has templates (``{object}``, ``{source}``, ``{target}``) so operators can phrase
commands freely, and :func:`match_task` maps free text to a task (+ object) using synonyms and ignoring
word order; it raises :class:`NoTaskMatch` (listing the valid tasks) or :class:`AmbiguousTask`.
A :class:`TaskSet` serialises to JSON and is saved beside each checkpoint (``tasks.json``).
"""

from __future__ import annotations

import functools
import json
import random
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from roboalign.spec.loader import build, check_fields, check_mapping, load_spec, read_spec_file, spec_path

TRIALS_PER_OBJECT = 24
TASKS_FILE = Path(__file__).with_name("tasks.yaml")
TASKS_FORMAT = "roboalign.tasks/1"


class TaskError(ValueError):
    """Base class of task lookup errors."""


class NoTaskMatch(TaskError):
    """Free text matched none of the tasks."""


class AmbiguousTask(TaskError):
    """Free text matched more than one task equally well."""


@dataclass(frozen=True)
class SimTask:
    """A LIBERO task: which BDDL file, which object goes where, and the success predicate.

    suite: a LIBERO suite (``libero_object``, ``libero_90``, ...; BDDL and init states from the LIBERO
    package) or ``roboalign`` (our scenes in ``roboalign/sim/scenes``, see :mod:`roboalign.sim.scenes`).
    object_name / target_name: the MuJoCo body names (``<object>_1``, ``basket_1``); their poses
    appear in LIBERO observations as ``<name>_pos`` / ``<name>_quat`` ("" when a task has no single pair).
    goal: the (first) BDDL goal predicate as LIBERO parses it, e.g. ``("in", "ketchup_1", "basket_1_contain_region")``.
    init_from: ``<suite>/<problem>`` whose official init states this scene uses ("" = its own).
    objects: every movable object of the scene (for task sets that travel with a checkpoint).
    """

    suite: str
    problem: str  # BDDL file stem (also the init-states file stem)
    object_name: str
    target_name: str
    instruction: str  # LIBERO's official instruction (the BDDL's language)
    goal: tuple[str, ...]
    num_init_states: int = 50
    init_from: str = ""
    objects: tuple[str, ...] = ()

    @property
    def object_label(self) -> str:
        """Human name of the object: ``ketchup_1`` -> ``ketchup``."""
        return re.sub(r"_\d+$", "", self.object_name).replace("_", " ")

    @property
    def target_place(self) -> str:
        """The place word (a :data:`PLACE_SYNONYMS` key) of the target body: ``wooden_tray_1`` -> ``tray``."""
        words = re.sub(r"_\d+$", "", self.target_name).split("_")
        return next((w for w in reversed(words) if w in PLACE_SYNONYMS), words[-1] if words else "")

    def check_success(self, env: Any) -> bool:
        """LIBERO's own success check on a LIBERO env (``OffScreenRenderEnv.env``): every BDDL goal predicate."""
        return bool(env._check_success())

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "problem": self.problem,
            "object_name": self.object_name,
            "target_name": self.target_name,
            "instruction": self.instruction,
            "goal": list(self.goal),
            "num_init_states": self.num_init_states,
            "init_from": self.init_from,
            "objects": list(self.objects),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimTask:
        return cls(
            suite=d["suite"],
            problem=d["problem"],
            object_name=d["object_name"],
            target_name=d["target_name"],
            instruction=d["instruction"],
            goal=tuple(d["goal"]),
            num_init_states=int(d.get("num_init_states", 50)),
            init_from=d.get("init_from", ""),
            objects=tuple(d.get("objects", ())),
        )


def libero_object_task(obj: str) -> SimTask:
    """The LIBERO-Object task "pick up the <obj> and place it in the basket" (obj like ``alphabet_soup``)."""
    if obj not in LIBERO_OBJECT_OBJECTS:
        raise TaskError(f"unknown LIBERO-Object object {obj!r}; valid: {', '.join(LIBERO_OBJECT_OBJECTS)}")
    problem = f"pick_up_the_{obj}_and_place_it_in_the_basket"
    return SimTask(
        suite="libero_object",
        problem=problem,
        object_name=f"{obj}_1",
        target_name="basket_1",
        instruction=problem.replace("_", " "),
        goal=("in", f"{obj}_1", "basket_1_contain_region"),
    )


LIBERO_OBJECT_OBJECTS = (
    "alphabet_soup",
    "cream_cheese",
    "salad_dressing",
    "bbq_sauce",
    "ketchup",
    "tomato_sauce",
    "butter",
    "milk",
    "chocolate_pudding",
    "orange_juice",
)

# Words for places; each key is the canonical name used in templates.
PLACE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "table": ("table", "tabletop", "table top", "desk", "counter", "workbench"),
    "basket": ("basket", "bin", "crate", "hamper", "wicker basket"),
    "plate": ("plate", "dish", "saucer", "platter"),
    "bowl": ("bowl", "salad bowl", "mixing bowl"),
    "shelf": ("shelf", "rack", "shelves", "cupboard"),
    "tray": ("tray", "serving tray", "tray table"),
}
PLACE_PREPOSITION = {"basket": "in", "plate": "on", "bowl": "in", "tray": "on", "table": "on", "shelf": "on"}

DEFAULT_TEMPLATES = (
    "put the {object} {prep} the {target}",
    "pick up the {object} and place it {prep} the {target}",
    "place the {object} {prep} the {target}",
    "move the {object} from the {source} to the {target}",
    "take the {object} off the {source} and put it {prep} the {target}",
    "grab the {object} and drop it {prep} the {target}",
    "{object} {prep} the {target}, please",
)
# Sim phrasings; ``{target}`` is the scene's target, template 0 is LIBERO's official instruction.
SIM_TEMPLATES = (
    "{instruction}",
    "put the {object} {prep} the {target}",
    "place the {object} {prep} the {target}",
    "grab the {object} and drop it {prep} the {target}",
    "move the {object} to the {target}",
)


@dataclass(frozen=True)
class Task:
    """One pick-and-place task: real-robot definition, sim counterpart and language.

    objects: canonical real object names -> synonyms (each object gets TRIALS_PER_OBJECT trials).
    """

    name: str
    source: str
    target: str
    objects: dict[str, tuple[str, ...]]
    sim: SimTask
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    sim_templates: tuple[str, ...] = SIM_TEMPLATES
    trials_per_object: int = TRIALS_PER_OBJECT
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for place in (self.source, self.target):
            if place not in PLACE_SYNONYMS:
                raise TaskError(f"task {self.name!r}: unknown place {place!r}; valid: {', '.join(PLACE_SYNONYMS)}")
        if len(self.objects) != 4:
            raise TaskError(f"task {self.name!r}: needs 4 real objects (paper protocol), got {len(self.objects)}")
        if self.trials_per_object <= 0:
            raise TaskError(f"task {self.name!r}: trials_per_object must be > 0")

    @property
    def trials(self) -> int:
        """Trials per task in the paper's protocol: objects × trials_per_object (4 × 24 = 96)."""
        return len(self.objects) * self.trials_per_object

    @property
    def sim_object(self) -> str:
        return self.sim.object_label

    def instruction(self, obj: str | None = None, domain: str = "sim", template: int | None = None,
                    rng: random.Random | None = None) -> str:
        """One instruction for ``obj`` (default: the sim object / first real object).

        ``template`` picks a template index; otherwise ``rng`` picks one at random, else the first
        (for sim that is LIBERO's official instruction).
        """
        target = self.target
        if domain == "sim":
            obj = obj or self.sim_object
            temps, target = self.sim_templates, self.sim.target_place
        elif domain == "real":
            obj = obj or next(iter(self.objects))
            if obj not in self.objects:
                raise TaskError(f"task {self.name!r} has no object {obj!r}; objects: {', '.join(self.objects)}")
            temps = self.templates
        else:
            raise TaskError(f"unknown domain {domain!r}; valid: sim, real")
        if template is None:
            template = rng.randrange(len(temps)) if rng is not None else 0
        if not 0 <= template < len(temps):
            raise TaskError(f"task {self.name!r}: template index {template} outside 0..{len(temps) - 1}")
        return temps[template].format(object=obj, source=self.source, target=target,
                                      prep=PLACE_PREPOSITION.get(target, "on"), instruction=self.sim.instruction)

    def all_instructions(self, domain: str = "real") -> list[str]:
        objs = list(self.objects) if domain == "real" else [self.sim_object]
        n = len(self.templates if domain == "real" else self.sim_templates)
        return [self.instruction(o, domain, template=i) for o in objs for i in range(n)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "target": self.target,
            "objects": {k: list(v) for k, v in self.objects.items()},
            "sim": self.sim.to_dict(),
            "templates": list(self.templates),
            "sim_templates": list(self.sim_templates),
            "trials_per_object": self.trials_per_object,
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Task:
        try:
            return cls(
                name=d["name"],
                source=d["source"],
                target=d["target"],
                objects={k: tuple(v) for k, v in d["objects"].items()},
                sim=SimTask.from_dict(d["sim"]),
                templates=tuple(d.get("templates", DEFAULT_TEMPLATES)),
                sim_templates=tuple(d.get("sim_templates", SIM_TEMPLATES)),
                trials_per_object=int(d.get("trials_per_object", TRIALS_PER_OBJECT)),
                description=d.get("description", ""),
            )
        except KeyError as e:
            raise TaskError(f"task dict is missing field {e}") from None


@dataclass(frozen=True)
class TaskDefinitions:
    """The content of ``tasks.yaml``: the tasks, and the LIBERO-Object object standing in for each task's scene."""

    tasks: tuple[Task, ...]
    libero_object_scenes: dict[str, str]

    def __post_init__(self) -> None:
        names = [t.name for t in self.tasks]
        if sorted(self.libero_object_scenes) != sorted(names):
            raise TaskError(f"libero_object_scenes names tasks {sorted(self.libero_object_scenes)}; the tasks are "
                            f"{sorted(names)}")
        bad = sorted(set(self.libero_object_scenes.values()) - set(LIBERO_OBJECT_OBJECTS))
        if bad:
            raise TaskError(f"libero_object_scenes: unknown LIBERO-Object objects {bad}; valid: "
                            f"{', '.join(LIBERO_OBJECT_OBJECTS)}")


def load_task_definitions(path: str | Path = TASKS_FILE) -> TaskDefinitions:
    """The task definitions in ``path`` (default: the package's ``tasks.yaml``), read strictly: format
    ``roboalign.tasks/1``, unknown or missing fields refused with the file and the field named."""
    data, source = load_spec(path, TASKS_FORMAT, what="task definitions")
    return build(TaskDefinitions, data, source)


_DEFINITIONS = load_task_definitions()
TASKS: tuple[Task, ...] = _DEFINITIONS.tasks
# The four tasks' scenes with their real targets (see the module doc and roboalign/sim/scenes/).
TARGET_SCENES: dict[str, SimTask] = {t.name: t.sim for t in TASKS}
# The LIBERO-Object stand-ins: each task's object on a LIBERO-Object scene, into the basket.
LIBERO_OBJECT_SCENES: dict[str, str] = _DEFINITIONS.libero_object_scenes


@dataclass(frozen=True)
class TaskMatch:
    task: Task
    object: str | None
    score: float
    domain: str


def _norm(text: str) -> str:
    text = text.lower().replace("-", " ").replace("_", " ")
    text = re.sub(r"[^a-z0-9 ]+", " ", text)
    return " " + re.sub(r"\s+", " ", text).strip() + " "


def _has(text: str, phrases: tuple[str, ...] | list[str]) -> int:
    """Length in words of the longest phrase found as whole words in normalised ``text`` (0 if none)."""
    best = 0
    for p in phrases:
        if f" {_norm(p).strip()} " in text:
            best = max(best, len(p.split()))
    return best


class TaskSet:
    """An ordered set of tasks with lookup, free-text matching and JSON (de)serialisation.

    ``sim_tasks``: LIBERO suite tasks (``<suite>/<problem>`` -> :class:`SimTask`, instruction and objects) a
    checkpoint was also trained on, e.g. from LIBERO's official demonstrations; saved in the same file.
    """

    def __init__(self, tasks: tuple[Task, ...] | list[Task] = TASKS,
                 sim_tasks: dict[str, SimTask] | None = None) -> None:
        self.tasks = tuple(tasks)
        self.sim_tasks: dict[str, SimTask] = dict(sim_tasks or {})
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise TaskError(f"duplicate task names in {names}")

    def __iter__(self):
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def get(self, name: str) -> Task:
        """Task by name; also accepts the sim object (``ketchup``) or LIBERO problem name."""
        for t in self.tasks:
            if name in (t.name, t.sim.problem, t.sim.object_label, t.sim.object_label.replace(" ", "_")):
                return t
        raise TaskError(f"unknown task {name!r}; valid tasks: {', '.join(self.names)}")

    def _valid_list(self) -> str:
        return "; ".join(f"{t.name} (e.g. '{t.instruction(domain='real')}' / sim: '{t.sim.instruction}')"
                         for t in self.tasks)

    def match(self, text: str, domain: str = "any") -> TaskMatch:
        """Map a free-text command to a task (and object). ``domain``: ``real``, ``sim`` or ``any``.

        Scoring per task: target place words 2, object words 2 (+ longer phrase bonus), source place 1.
        Sim matching ignores the target (each scene has one) and keys on the sim object.
        """
        if domain not in ("real", "sim", "any"):
            raise TaskError(f"unknown domain {domain!r}; valid: real, sim, any")
        norm = _norm(text)
        if not norm.strip():
            raise NoTaskMatch(f"empty command; valid tasks: {self._valid_list()}")
        for t in self.tasks:  # an exact task name is always unambiguous
            if norm.strip() in (t.name.replace("_", " "),):
                return TaskMatch(t, None, 100.0, domain)
        candidates: list[TaskMatch] = []
        for t in self.tasks:
            if domain in ("sim", "any"):
                n = _has(norm, t.objects.get(t.sim_object, (t.sim_object,)))
                if n:
                    candidates.append(TaskMatch(t, t.sim_object, 3.0 + 0.1 * n, "sim"))
            if domain in ("real", "any"):
                s, obj = 0.0, None
                tgt = _has(norm, PLACE_SYNONYMS[t.target])
                if tgt:
                    s += 2.0
                best = 0
                for o, syns in t.objects.items():
                    n = _has(norm, syns)
                    if n > best:
                        best, obj = n, o
                if best:
                    s += 2.0 + 0.1 * best
                if _has(norm, PLACE_SYNONYMS[t.source]) and t.source != t.target:
                    s += 1.0 if (tgt or best) else 0.0
                if s >= 2.0:
                    candidates.append(TaskMatch(t, obj, s, "real"))
        if not candidates:
            raise NoTaskMatch(f"no task matches {text!r}; valid tasks: {self._valid_list()}")
        best_per_task: dict[str, TaskMatch] = {}
        for c in candidates:
            if c.task.name not in best_per_task or c.score > best_per_task[c.task.name].score:
                best_per_task[c.task.name] = c
        ranked = sorted(best_per_task.values(), key=lambda c: -c.score)
        if len(ranked) > 1 and abs(ranked[0].score - ranked[1].score) < 0.5:
            tied = [c.task.name for c in ranked if ranked[0].score - c.score < 0.5]
            raise AmbiguousTask(
                f"command {text!r} is ambiguous between tasks {', '.join(tied)}; name the object and the target, "
                f"e.g. {'; '.join(repr(self.get(n).instruction(domain='real')) for n in tied)}"
            )
        return ranked[0]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"version": 1, "tasks": [t.to_dict() for t in self.tasks]}
        if self.sim_tasks:
            d["sim_tasks"] = {name: t.to_dict() for name, t in self.sim_tasks.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "task set") -> TaskSet:
        check_fields(check_mapping(d, source, "task set"), ("version", "tasks", "sim_tasks"), source,
                     required=("tasks",))
        if d.get("version", 1) != 1:
            raise TaskError(f"{source}: task set version {d['version']!r}, expected 1")
        sims = {name: SimTask.from_dict(t) for name, t in (d.get("sim_tasks") or {}).items()}
        return cls([Task.from_dict(t) for t in d["tasks"]], sim_tasks=sims)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> TaskSet:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> Path:
        """Write ``tasks.json`` into a checkpoint folder (or to the given file)."""
        p = Path(path)
        if p.is_dir():
            p = p / "tasks.json"
        p.write_text(self.to_json())
        return p

    @classmethod
    def load(cls, path: str | Path) -> TaskSet:
        p = spec_path(path, "tasks.json")
        data = read_spec_file(p, "task set file")
        try:
            return cls.from_dict(data, source=str(p))
        except (TypeError, KeyError) as e:
            raise TaskError(f"invalid task set file {p}: {e}") from e


DEFAULT_TASKS = TaskSet(TASKS)
# The same tasks on the LIBERO-Object stand-in scenes (every object into the basket).
LIBERO_OBJECT_TASKS = TaskSet([replace(t, sim=libero_object_task(LIBERO_OBJECT_SCENES[t.name])) for t in TASKS])
SCENE_SETS = {"targets": DEFAULT_TASKS, "libero_object": LIBERO_OBJECT_TASKS}


def sim_task_set(scenes: str = "targets") -> TaskSet:
    """The four tasks on a scene set: ``targets`` (their real targets, the default) or ``libero_object``."""
    if scenes not in SCENE_SETS:
        raise TaskError(f"unknown scene set {scenes!r}; valid: {', '.join(SCENE_SETS)}")
    return SCENE_SETS[scenes]


def get_task(name: str) -> Task:
    """One of the four tasks by name (or sim object / LIBERO problem name)."""
    return DEFAULT_TASKS.get(name)


def match_task(text: str, domain: str = "any", tasks: TaskSet = DEFAULT_TASKS) -> TaskMatch:
    """Free text -> :class:`TaskMatch`; raises :class:`NoTaskMatch` / :class:`AmbiguousTask`."""
    return tasks.match(text, domain)


@functools.lru_cache(maxsize=64)
def task_name(text: str) -> str:
    """The default task an instruction asks for, or "" for free-form or ambiguous text (``ActionChunk.task``)."""
    try:
        return match_task(text).task.name if text.strip() else ""
    except TaskError:
        return ""
