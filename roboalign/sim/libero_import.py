"""LIBERO's official demonstrations (robomimic HDF5, downloaded by the user) as one of our episode datasets.

``roboalign train vla --data <file or folder>`` accepts, besides our dataset folders, one
``<problem>_demo.hdf5`` file or a folder holding them (e.g. LIBERO's ``datasets/`` with ``libero_spatial/``,
``libero_object/``, ``libero_goal/``, ``libero_10/``, ``libero_90/``). :func:`as_episode_folder` converts such a
source once into an episode folder (``roboalign.data`` layout, resumable: finished episode files are kept, a
rerun converts only what is missing) under ``$ROBOALIGN_DATA_HOME/libero_import/`` and returns it; our own
folders pass through unchanged.

Each demo is read by :func:`roboalign.data.libero_hdf5.read_libero_hdf5` (images flipped right way up, state,
both action spaces). A demo of a known suite task is named ``<suite>/<problem>`` and instructed with LIBERO's
benchmark instruction (the file name's words, as evaluations instruct; the BDDL's own wording differs for some
tasks); the four tasks' scenes keep our task names. ``meta.json`` carries the task set with every suite task's
:class:`~roboalign.spec.tasks.SimTask` (instruction, objects, goal), so it travels into the checkpoint's ``tasks.json``.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

from tqdm import tqdm

from roboalign.data.dataset import META_FILE, write_meta
from roboalign.data.episodes import episode_files, write_episode
from roboalign.data.libero_hdf5 import read_libero_hdf5
from roboalign.sim.default_dataset import data_home
from roboalign.sim.suites import SUITES, libero_task, suite_problems
from roboalign.spec.tasks import DEFAULT_TASKS, SimTask, TaskSet

DEMO_SUFFIX = "_demo.hdf5"
STAMP = "imported.json"


def libero_demo_files(path: str | Path) -> list[Path]:
    """The LIBERO demo files of a source: the file itself, or every ``*_demo.hdf5`` below a folder."""
    p = Path(path).expanduser()
    files = [p] if p.is_file() else sorted(p.rglob(f"*{DEMO_SUFFIX}")) if p.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no LIBERO demonstration files at {p}: expected a <problem>{DEMO_SUFFIX} file "
                                f"(robomimic HDF5) or a folder of them (suites {', '.join(SUITES)}; LIBERO's "
                                "benchmark_scripts/download_libero_datasets.py downloads them)")
    return files


def is_libero_source(path: str | Path) -> bool:
    """True for an HDF5 file, or a folder with LIBERO demo files and no ``meta.json`` / ``episodes/`` of ours."""
    p = Path(path).expanduser()
    if p.is_file():
        return p.suffix in (".hdf5", ".h5")
    return p.is_dir() and not (p / META_FILE).is_file() and not (p / "episodes").is_dir() and \
        any(p.rglob(f"*{DEMO_SUFFIX}"))


def suite_task_of(path: Path) -> tuple[str, SimTask] | None:
    """(``<suite>/<problem>``, SimTask) of a demo file, from its folder name or the suites' task lists."""
    problem = re.sub(r"_demo$", "", path.stem)
    suites = [path.parent.name] if path.parent.name in SUITES else list(SUITES)
    for suite in suites:
        if problem in suite_problems(suite):
            return f"{suite}/{problem}", libero_task(suite, problem)
    return None


def default_out(src: Path) -> Path:
    digest = hashlib.sha1(str(src.resolve()).encode()).hexdigest()[:10]
    return data_home() / "libero_import" / f"{src.stem}-{digest}"


def import_libero_demos(src: str | Path, out: str | Path | None = None, progress: bool = True) -> Path:
    """Convert every demo of ``src`` into an episode folder ``out`` (default: :func:`default_out`)."""
    src = Path(src).expanduser()
    files = libero_demo_files(src)
    out = Path(out) if out is not None else default_out(src)
    if (out / STAMP).is_file():
        return out
    sims: dict[str, SimTask] = {}
    for f in tqdm(files, desc="import LIBERO demos", unit="file", disable=not progress):
        named = suite_task_of(f)
        if named is not None:
            sims[named[0]] = named[1]
        _import_file(f, out, named, read_libero_hdf5)
    write_meta(out, {"format": "roboalign.dataset/1", "source": str(src), "cameras": ["agentview", "wrist"],
                     "tasks": TaskSet(DEFAULT_TASKS.tasks, sim_tasks=sims).to_dict(),
                     "libero_files": [str(f) for f in files]})
    (out / STAMP).write_text(f'{{"files": {len(files)}}}\n')
    print(f"libero import: {len(files)} file(s) from {src} -> {out} ({len(episode_files(out))} episodes)",
          file=sys.stderr)
    return out


def _import_file(f: Path, out: Path, named: tuple[str, SimTask] | None, read) -> None:
    import h5py

    with h5py.File(f, "r") as h:  # (a broken file is reported by the reader, naming it)
        demos = sorted(int(k[5:]) for k in h["data"] if re.fullmatch(r"demo_\d+", k)) if "data" in h else [0]
    for k in demos:
        target = out / "episodes" / f"{(named[0] if named else f.stem).replace('/', '__')}_{k:05d}.hdf5"
        if target.is_file():
            continue  # resumable: finished episodes stay
        (ep,) = read(f, demos=[k])  # one demo at a time: a suite file holds ~50 demos of ~150 frames x 2 cameras
        if named is not None and ep.task not in DEFAULT_TASKS.names:
            ep.task, ep.instruction = named[0], named[1].instruction
        write_episode(target, ep)


def as_episode_folder(path: str | Path) -> Path:
    """``path`` itself for our episode folders; LIBERO demo files are imported first (see module doc)."""
    return import_libero_demos(path) if is_libero_source(path) else Path(path)
