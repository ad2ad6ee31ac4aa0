"""The four tasks: protocol numbers, language templates, free-text matching, serialisation."""

from __future__ import annotations

import json
import random

import pytest

from roboalign.spec.tasks import (
    DEFAULT_TASKS,
    LIBERO_OBJECT_OBJECTS,
    LIBERO_OBJECT_TASKS,
    AmbiguousTask,
    NoTaskMatch,
    TaskError,
    TaskSet,
    get_task,
    libero_object_task,
    match_task,
    sim_task_set,
)


def test_four_tasks_follow_the_paper_protocol():
    assert len(DEFAULT_TASKS) == 4
    for t in DEFAULT_TASKS:
        assert len(t.objects) == 4
        assert t.trials == 96
        assert t.sim.target_place == t.target  # each sim scene ends in the task's real target
        assert t.sim.goal[1] == t.sim.object_name and t.sim_object in t.objects
        assert t.sim.target_name in t.sim.goal[2] and t.sim.target_place in t.sim.instruction
    assert len({t.sim.problem for t in DEFAULT_TASKS}) == 4
    assert len({(t.source, t.target) for t in DEFAULT_TASKS}) == 4


def test_libero_object_stand_ins_stay_selectable():
    assert sim_task_set() is DEFAULT_TASKS and sim_task_set("libero_object") is LIBERO_OBJECT_TASKS
    assert LIBERO_OBJECT_TASKS.names == DEFAULT_TASKS.names
    for t in LIBERO_OBJECT_TASKS:
        assert t.sim.suite == "libero_object" and t.sim.target_place == "basket"
        assert t.sim.goal == ("in", t.sim.object_name, "basket_1_contain_region")
        assert t.instruction(domain="sim") == f"pick up the {t.sim_object} and place it in the basket"
        assert t.objects == DEFAULT_TASKS.get(t.name).objects
    with pytest.raises(TaskError, match="targets, libero_object"):
        sim_task_set("kitchen")


def test_every_template_matches_back_to_its_task_and_object():
    for t in DEFAULT_TASKS:
        for obj in t.objects:
            for i in range(len(t.templates)):
                text = t.instruction(obj, domain="real", template=i)
                m = match_task(text, domain="real")
                assert (m.task.name, m.object) == (t.name, obj), text
        for i in range(len(t.sim_templates)):
            text = t.instruction(domain="sim", template=i)
            m = match_task(text, domain="sim")
            assert m.task.name == t.name, text


@pytest.mark.parametrize(
    "text,task,obj",
    [
        ("Could you PUT the Mustard into the bin?", "bottle_to_basket", "mustard"),
        ("in the basket, the barbecue sauce", "bottle_to_basket", "bbq sauce"),
        ("onto the dish with the granola bar", "box_to_plate", "granola bars"),
        ("tuna can -> bowl", "can_to_bowl", "tuna"),
        ("take the OJ off the rack and put it on the tray", "shelf_to_tray", "orange juice"),
        ("pick up the alphabet soup and place it in the basket", "shelf_to_tray", "alphabet soup"),
        ("bottle_to_basket", "bottle_to_basket", None),
    ],
)
def test_free_text_matching(text, task, obj):
    m = match_task(text)
    assert m.task.name == task
    assert m.object == obj


def test_sim_domain_keys_on_the_object():
    assert match_task("put the chocolate pudding on the plate", domain="sim").task.name == "box_to_plate"
    assert match_task("place the tomato sauce into the basket", domain="sim").task.name == "can_to_bowl"
    assert match_task("put the cream cheese in the basket", domain="sim", tasks=LIBERO_OBJECT_TASKS).task.name == \
        "box_to_plate"


def test_no_match_lists_valid_tasks():
    with pytest.raises(NoTaskMatch) as e:
        match_task("open the drawer")
    for name in DEFAULT_TASKS.names:
        assert name in str(e.value)
    with pytest.raises(NoTaskMatch):
        match_task("   ")


def test_conflicting_object_and_target_is_ambiguous():
    # "alphabet soup" belongs to shelf_to_tray, "basket" to bottle_to_basket (real domain).
    with pytest.raises(AmbiguousTask) as e:
        match_task("put the alphabet soup in the basket", domain="real")
    assert "bottle_to_basket" in str(e.value) and "shelf_to_tray" in str(e.value)


def test_lookup_and_errors():
    assert get_task("ketchup").name == "bottle_to_basket"
    assert get_task("LIVING_ROOM_BOWL_pick_up_the_tomato_sauce_and_put_it_in_the_bowl").name == "can_to_bowl"
    assert LIBERO_OBJECT_TASKS.get("pick_up_the_tomato_sauce_and_place_it_in_the_basket").name == "can_to_bowl"
    with pytest.raises(TaskError, match="valid tasks"):
        get_task("nope")
    with pytest.raises(TaskError, match="valid"):
        libero_object_task("banana")
    with pytest.raises(TaskError, match="objects"):
        get_task("bottle_to_basket").instruction("milk", domain="real")
    assert set(LIBERO_OBJECT_OBJECTS) >= {t.sim.object_name[:-2] for t in LIBERO_OBJECT_TASKS}


def test_random_instruction_uses_rng():
    t = get_task("can_to_bowl")
    texts = {t.instruction("corn", domain="real", rng=random.Random(s)) for s in range(20)}
    assert len(texts) > 2 and all("corn" in x and "bowl" in x for x in texts)


def test_serialisation_roundtrip(tmp_path):
    path = DEFAULT_TASKS.save(tmp_path)
    assert path.name == "tasks.json"
    loaded = TaskSet.load(tmp_path)
    assert [t.to_dict() for t in loaded] == [t.to_dict() for t in DEFAULT_TASKS]
    assert loaded.get("shelf_to_tray") == DEFAULT_TASKS.get("shelf_to_tray")
    assert loaded.get("box_to_plate").sim.init_from == DEFAULT_TASKS.get("box_to_plate").sim.init_from != ""
    d = json.loads(path.read_text())
    del d["tasks"][0]["sim"]
    path.write_text(json.dumps(d))
    with pytest.raises(TaskError, match="sim"):
        TaskSet.load(tmp_path)
