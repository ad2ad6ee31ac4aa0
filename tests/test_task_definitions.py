"""The four tasks are data: ``roboalign/spec/tasks.yaml``, read by the strict spec loader."""

from __future__ import annotations

import pytest

from roboalign.spec.loader import SpecError
from roboalign.spec.tasks import DEFAULT_TASKS, LIBERO_OBJECT_SCENES, TASKS_FILE, load_task_definitions


def _edited(tmp_path, old: str, new: str):
    text = TASKS_FILE.read_text()
    assert old in text
    path = tmp_path / "tasks.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_the_package_file_defines_the_default_tasks():
    defs = load_task_definitions()
    assert [t.name for t in defs.tasks] == DEFAULT_TASKS.names == list(LIBERO_OBJECT_SCENES)
    assert defs.tasks == DEFAULT_TASKS.tasks
    assert all(isinstance(v, tuple) for t in defs.tasks for v in t.objects.values())
    assert {t.sim.goal[0] for t in defs.tasks} == {"in", "on"}  # YAML's bare `on` would read as True


def test_unknown_missing_and_invalid_fields_are_refused_naming_file_and_field(tmp_path):
    with pytest.raises(SpecError, match=r"tasks\.yaml\.tasks\[0\]: unknown fields \['colour'\]; valid fields: name"):
        load_task_definitions(_edited(tmp_path, "    description: bottles", "    colour: red\n    description: bottles"))
    with pytest.raises(SpecError, match=r"tasks\.yaml\.tasks\[0\]\.sim: missing field\(s\) \['suite'\]"):
        load_task_definitions(_edited(tmp_path, "      suite: libero_90\n", ""))
    with pytest.raises(SpecError, match=r"tasks\[3\]: task 'shelf_to_tray': unknown place 'attic'; valid: table"):
        load_task_definitions(_edited(tmp_path, "source: shelf", "source: attic"))
    with pytest.raises(SpecError, match="not a task definitions of this version"):
        load_task_definitions(_edited(tmp_path, "format: roboalign.tasks/1", "format: roboalign.tasks/9"))


def test_every_task_has_one_libero_object_stand_in(tmp_path):
    with pytest.raises(SpecError, match="tasks.yaml: libero_object_scenes names tasks"):
        load_task_definitions(_edited(tmp_path, "  shelf_to_tray: alphabet_soup\n", ""))
    with pytest.raises(SpecError, match="unknown LIBERO-Object objects \\['mustard'\\]"):
        load_task_definitions(_edited(tmp_path, "  bottle_to_basket: ketchup", "  bottle_to_basket: mustard"))
