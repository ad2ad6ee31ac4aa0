"""``roboalign bench sim`` reports: the per-task expert success table counts right and names the failures."""

from __future__ import annotations

import csv

import pytest

from roboalign.bench.sim import _parse_variant, _write_tables


def _ep(task, init, success, phase="release"):
    return {"task": task, "init_state": init, "success": success, "steps": 100 + init, "final_phase": phase,
            "retries": 0, "seconds": 1.0}


def test_success_tables(tmp_path):
    eps = [_ep("a", 0, True), _ep("a", 1, False, "lift"), _ep("a", 2, True), _ep("b", 0, True), _ep("b", 1, True)]
    md = _write_tables(tmp_path, eps)
    rows = {r["task"]: r for r in csv.DictReader(open(tmp_path / "sim_success.csv"))}
    assert (rows["a"]["successes"], rows["a"]["episodes"]) == ("2", "3")
    assert rows["a"]["failures"] == "1:lift" and rows["b"]["failures"] == ""
    assert float(rows["mean"]["success_rate"]) == pytest.approx((2 / 3 + 1) / 2)
    assert "| a | 2/3 |" in md and "| b | 2/2 |" in md and "init states 0..2" in md
    assert "a: failed init states (final phase) 1:lift" in md
    assert len(list(csv.DictReader(open(tmp_path / "sim_episodes.csv")))) == 5


def test_gl_variants():
    assert _parse_variant("egl+LP_NUM_THREADS=1") == (
        "egl", {"MUJOCO_GL": "egl", "PYOPENGL_PLATFORM": "egl", "LP_NUM_THREADS": "1"})
    with pytest.raises(SystemExit, match="valid: egl, osmesa"):
        _parse_variant("vulkan")
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        _parse_variant("osmesa+oops")
