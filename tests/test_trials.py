"""Trial protocol bookkeeping (no ROS): the plan, resumable CSV, the Table-4 style summary and plot."""

from __future__ import annotations

import pytest

from roboalign.commands.trials import (
    RESULTS_MD,
    RESULTS_PNG,
    TRIALS_CSV,
    Trial,
    append_trial,
    markdown,
    pending,
    plan,
    read_trials,
    summarize,
    write_results,
)
from roboalign.spec.tasks import DEFAULT_TASKS


def test_plan_follows_the_paper_protocol() -> None:
    real = plan(list(DEFAULT_TASKS), "real", 24)
    assert len(real) == 4 * 4 * 24  # 4 tasks x 4 objects x 24 trials
    sim = plan([DEFAULT_TASKS.get("bottle_to_basket")], "sim", 24)
    assert {p.object for p in sim} == {"ketchup"} and len(sim) == 24
    assert {p.init_state for p in real} == {-1}  # the operator sets a real scene up
    with pytest.raises(ValueError, match="valid: sim, real"):
        plan(list(DEFAULT_TASKS), "lab", 1)


def _trial(label: str, obj: str, k: int, ok: bool, task: str = "bottle_to_basket") -> Trial:
    return Trial(label, "real", task, obj, k, ok, "operator:y" if ok else "operator:n", 100, 5.0, k + 1,
                 f"put the {obj} in the basket", "")


def test_results_accumulate_per_label_and_resume(tmp_path) -> None:
    outcomes = {"ketchup": [1, 1, 0, 1], "mustard": [0, 0, 1, 0]}
    for obj, oks in outcomes.items():
        for k, ok in enumerate(oks):
            append_trial(tmp_path, _trial("roboalign", obj, k, bool(ok)))
    append_trial(tmp_path, _trial("base", "ketchup", 0, False))
    trials = read_trials(tmp_path)
    assert len(trials) == 9 and trials[0] == _trial("roboalign", "ketchup", 0, True)
    summary = {(r["label"], r["object"]): r for r in summarize(trials)}
    assert summary[("roboalign", "ketchup")]["success_rate"] == 0.75
    assert summary[("roboalign", "mustard")]["successes"] == 1
    assert summary[("roboalign", "all")]["trials"] == 8 and summary[("roboalign", "all")]["success_rate"] == 0.5
    assert summary[("base", "all")]["success_rate"] == 0.0
    write_results(tmp_path)
    md = (tmp_path / RESULTS_MD).read_text()
    assert "| mode | task | object | base | roboalign |" in md
    assert "| real | bottle_to_basket | ketchup | 0.0 (0/1) | 75.0 (3/4) |" in md
    assert "| real | bottle_to_basket | **all** | 0.0 (0/1) | 50.0 (4/8) |" in md
    assert "| real | bottle_to_basket | mustard | – | 25.0 (1/4) |" in md
    assert (tmp_path / RESULTS_PNG).stat().st_size > 1000


def test_a_malformed_trial_row_is_named(tmp_path) -> None:
    append_trial(tmp_path, _trial("x", "ketchup", 0, True))
    with (tmp_path / TRIALS_CSV).open("a") as f:
        f.write("x,real,bottle_to_basket,ketchup,notanint,True,y,1,1.0,1,i,m\n")
    with pytest.raises(ValueError, match="row 3 is malformed"):
        read_trials(tmp_path)


def test_markdown_of_nothing_is_just_a_header() -> None:
    assert markdown([]).count("\n") == 2


def test_sim_trials_get_explicit_reproducible_init_states() -> None:
    tasks = [DEFAULT_TASKS.get("bottle_to_basket"), DEFAULT_TASKS.get("shelf_to_tray")]
    a = plan(tasks, "sim", 3, first_init_state=20)
    assert [(p.task.name, p.trial, p.init_state) for p in a] == [
        ("bottle_to_basket", 0, 20), ("bottle_to_basket", 1, 21), ("bottle_to_basket", 2, 22),
        ("shelf_to_tray", 0, 20), ("shelf_to_tray", 1, 21), ("shelf_to_tray", 2, 22)]
    assert plan(tasks, "sim", 3, first_init_state=20) == a  # the same plan every time
    with pytest.raises(ValueError, match="first_init_state"):
        plan(tasks, "sim", 3, first_init_state=-1)


def test_init_states_are_recorded_and_a_resumed_run_must_use_the_same_ones(tmp_path) -> None:
    task = DEFAULT_TASKS.get("bottle_to_basket")
    done = Trial("expert", "sim", task.name, "ketchup", 0, True, "success", 120, 6.0, 1, "i", "", init_state=5)
    append_trial(tmp_path, done)
    assert read_trials(tmp_path) == [done]
    todo = pending(plan([task], "sim", 3, first_init_state=5), read_trials(tmp_path), "expert", "sim")
    assert [(p.trial, p.init_state) for p in todo] == [(1, 6), (2, 7)]
    assert len(pending(plan([task], "sim", 3), read_trials(tmp_path), "other_label", "sim")) == 3
    with pytest.raises(ValueError, match="ran from init state 5, the plan says 0"):
        pending(plan([task], "sim", 3, first_init_state=0), read_trials(tmp_path), "expert", "sim")


def test_trials_csv_from_before_init_states_still_reads(tmp_path) -> None:
    (tmp_path / TRIALS_CSV).write_text("label,mode,task,object,trial,success,outcome,steps,elapsed_s,episode,"
                                       "instruction,message\nx,sim,bottle_to_basket,ketchup,0,True,success,1,1.0,1,i,m\n")
    (t,) = read_trials(tmp_path)
    assert t.init_state == -1 and t.success


def test_the_acting_policy_is_named_and_the_tiny_demo_model_called_untrained(tmp_path) -> None:
    from roboalign.commands.trials import policy_line
    from roboalign.control.tiny_model import make_tiny_joint_checkpoint

    ckpt = make_tiny_joint_checkpoint(tmp_path / "tiny")  # the demo's model: random weights, never trained
    line = policy_line("torch", str(ckpt))
    assert line.startswith(f"acting policy: backend torch, checkpoint {ckpt}: tiny untrained model: it will not "
                           "succeed"), line
    expert = policy_line("expert", "")
    assert expert.startswith("acting policy: backend expert, checkpoint (none): scripted expert"), expert
    assert "untrained" not in expert
    unknown = policy_line("onnxruntime", str(tmp_path / "missing"))
    assert "untrained" not in unknown and "training unknown" in unknown, unknown
