"""The default dataset: in the project's cache, collected on first use (resumable), the path printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from roboalign.sim import default_dataset as dd


def test_where_the_default_lives(tmp_path, monkeypatch):
    monkeypatch.delenv(dd.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert dd.default_dataset_dir() == tmp_path / "xdg" / "roboalign" / "data" / "libero_object_4tasks"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert dd.default_dataset_dir() == tmp_path / "home" / ".cache" / "roboalign" / "data" / "libero_object_4tasks"
    monkeypatch.setenv(dd.ENV_VAR, str(tmp_path / "mine"))
    assert dd.default_dataset_dir() == tmp_path / "mine" / "libero_object_4tasks"
    assert dd.resolve_dataset(tmp_path / "other") == tmp_path / "other"  # a path is a path, never collected


def test_finished_default_is_used_and_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(dd.ENV_VAR, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="default dataset is not collected yet"):
        dd.resolve_dataset("default", collect=False)
    target = tmp_path / dd.DATASET_NAME
    target.mkdir()
    (target / dd.STAMP).write_text("{}")
    monkeypatch.setattr(dd, "_collect", lambda path: pytest.fail("a finished dataset must not be collected again"))
    assert dd.resolve_dataset("default") == target
    assert f"dataset: default = {target}" in capsys.readouterr().err


@pytest.mark.sim
def test_first_use_collects_then_reuses(tmp_path, monkeypatch, capsys):
    from roboalign.data import EpisodeDataset

    monkeypatch.setenv(dd.ENV_VAR, str(tmp_path))
    monkeypatch.setattr(dd, "COLLECT_ARGS", ("--tasks", "can_to_bowl", "--episodes", "1", "--camera-size", "32",
                                             "--max-steps", "4", "--no-antialias"))
    path = dd.resolve_dataset("default")
    assert path == tmp_path / dd.DATASET_NAME and dd.is_complete(path)
    err = capsys.readouterr().err
    assert "collecting the default demonstrations into" in err and f"dataset: default = {path}" in err
    episode = next(Path(path, "episodes").glob("*.hdf5"))
    assert len(EpisodeDataset(path, success_only=False)) == 1
    mtime = episode.stat().st_mtime_ns
    assert dd.resolve_dataset("default") == path and episode.stat().st_mtime_ns == mtime
    assert "collecting" not in capsys.readouterr().err
