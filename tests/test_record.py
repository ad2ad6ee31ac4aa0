"""roboalign record's bookkeeping without ROS: record.csv round trip, resumption counts, bags no take mentions,
waiting for the bridge's recording to finish; and the typed CSV rows trials.csv shares."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from roboalign.commands.csv_rows import append_row, read_rows
from roboalign.commands.record import (
    Take,
    append_take,
    bag_of,
    kept,
    mark_verdict,
    next_take,
    read_takes,
    unreviewed_bags,
)


def take(k: int, verdict: str, obj: str = "ketchup", bag: str = "") -> Take:
    return Take(k, "bottle_to_basket", obj, "teleop", verdict, "stopped", 100, 5.0, k + 1, bag or f"episode_{k + 1:04d}_b",
                "dataset/episodes/x.hdf5" if verdict == "keep" else "", -1, "")


def test_takes_round_trip_and_resume_counts(tmp_path) -> None:
    for t in (take(0, "keep"), take(1, "discard"), take(2, "keep"), take(0, "keep", obj="mustard")):
        append_take(tmp_path, t)
    takes = read_takes(tmp_path)
    assert takes[1] == take(1, "discard") and isinstance(takes[0].elapsed_s, float)
    assert kept(takes, "bottle_to_basket", "ketchup") == 2 and next_take(takes, "bottle_to_basket", "ketchup") == 3
    assert next_take(takes, "bottle_to_basket", "bbq sauce") == 0


@dataclass(frozen=True)
class Row:
    name: str
    n: int
    ok: bool
    extra: float = -1.0


def test_typed_rows_fill_missing_columns_and_name_a_malformed_row(tmp_path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("name,n,ok\na,1,True\n")  # an older file without the 'extra' column
    append_row(tmp_path / "new.csv", Row("b", 2, False, 0.5))
    assert read_rows(path, Row) == [Row("a", 1, True)] and read_rows(tmp_path / "new.csv", Row) == [Row("b", 2, False, 0.5)]
    path.write_text("name,n,ok\na,one,True\n")
    with pytest.raises(ValueError, match="row 2 is malformed"):
        read_rows(path, Row)


def test_bags_without_a_take_are_found_and_a_finished_recording_is_waited_for(tmp_path) -> None:
    for name, outcome in (("episode_0001_b", "stopped"), ("episode_0002_b", "running")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "episode.json").write_text(json.dumps({"episode": int(name[8:12]), "outcome": outcome}))
    assert [p.name for p in unreviewed_bags(tmp_path, [take(0, "keep")])] == ["episode_0002_b"]
    assert bag_of(tmp_path, 1, since=0.0, timeout=1.0).name == "episode_0001_b"
    with pytest.raises(RuntimeError, match="no finished recording of episode 2"):
        bag_of(tmp_path, 2, since=0.0, timeout=0.3)  # still "running"
    mark_verdict(tmp_path / "episode_0001_b", "keep")
    meta = json.loads((tmp_path / "episode_0001_b" / "episode.json").read_text())
    assert meta["operator_verdict"] == "keep" and meta["outcome"] == "stopped"


@pytest.mark.parametrize("argv, error", [
    (["--task", "bottle_to_basket", "--object", "ice cream"], "not an object of bottle_to_basket; valid: ketchup"),
    (["--task", "make_tea"], "valid tasks"),
    (["--task", "all", "--operator", "expert"], "use --launch sim --mode leader"),
])
def test_bad_arguments_end_in_one_line_before_anything_starts(tmp_path, capsys, argv, error) -> None:
    from roboalign.commands.record import main

    assert main([*argv, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert error in err and err.count("\n") == 1, err
