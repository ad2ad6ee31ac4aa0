"""The default demonstration set: where it lives in the project's cache, and its collection on first use.

A config whose dataset is ``default`` (every tiny training config, ``roboalign bench align``) means the
scripted-expert demonstrations of the four tasks in their LIBERO-Object scenes, 20 episodes each (80 episodes,
~9 K steps, ~555 MB), in ``$ROBOALIGN_DATA_HOME/libero_object_4tasks`` (default ``~/.cache/roboalign/data``, or
``$XDG_CACHE_HOME/roboalign/data``). The first run that needs them records them with ``roboalign collect``
(progress bar; an interrupted run resumes where it stopped) and prints the path; later runs only print it.
Collection is deterministic, so every machine gets the same episodes.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from roboalign.sim.collect import main as collect_main

DEFAULT = "default"
ENV_VAR = "ROBOALIGN_DATA_HOME"
DATASET_NAME = "libero_object_4tasks"
# Pinned rather than collect's defaults: the set is the one docs/results.md's figures are measured on (the four tasks in
# their LIBERO-Object stand-in scenes) whatever collect's defaults are; every task, collect's defaults otherwise.
COLLECT_ARGS: tuple[str, ...] = ("--scenes", "libero_object", "--episodes", "20", "--camera-size", "128")
STAMP = "collected.json"  # written once `roboalign collect` finished the whole plan


def data_home() -> Path:
    """``$ROBOALIGN_DATA_HOME``, else ``$XDG_CACHE_HOME/roboalign/data``, else ``~/.cache/roboalign/data``."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "roboalign" / "data"


def default_dataset_dir() -> Path:
    return data_home() / DATASET_NAME


def is_complete(path: Path) -> bool:
    return (path / STAMP).is_file()


def resolve_dataset(name_or_path: str | Path, collect: bool = True) -> Path:
    """The folder of a dataset: ``default`` -> the cached default set (collected first if needed), else the path."""
    if str(name_or_path) != DEFAULT:
        return Path(name_or_path).expanduser()
    path = default_dataset_dir()
    if not is_complete(path):
        if not collect:
            raise FileNotFoundError(f"the default dataset is not collected yet ({path}); any `roboalign train` "
                                    "run with a tiny config collects it")
        _collect(path)
    print(f"dataset: default = {path}", file=sys.stderr, flush=True)
    return path


def _collect(path: Path) -> None:
    args = ["--out", str(path), *COLLECT_ARGS]
    print(f"dataset: collecting the default demonstrations into {path} (first use; an interrupted run resumes; "
          f"set {ENV_VAR} to keep them elsewhere)", file=sys.stderr, flush=True)
    rc = collect_main(args)
    if rc != 0:
        raise RuntimeError(f"collecting the default dataset into {path} stopped (exit {rc}); run again to resume")
    (path / STAMP).write_text(json.dumps({"collect_args": args[2:]}) + "\n")
