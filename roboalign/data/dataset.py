"""A folder of episodes: listing, filtering, train/val split by episode, normalisation stats, chunk samples.

Folder layout written by ``roboalign collect``::

    <root>/meta.json              dataset facts: tasks (TaskSet), action spaces, env config, state names
    <root>/episodes/<task>_<idx>.hdf5   one file per episode (see roboalign.data.episodes)
    <root>/norm_stats/<key>.json  NormStats per key (``actions.eef_delta``, ``actions.joint_position``, ``state``)

Typical use by a trainer::

    ds = EpisodeDataset("/work/data/libero_object_4tasks")          # successful episodes only
    train, val = ds.split(val_fraction=0.1, seed=0)                  # by episode, per task
    stats = train.norm_stats("actions.joint_position")               # roboalign.spec.normalization.NormStats
    samples = ChunkDataset(train, horizon=16, action_space="eef_delta")
    s = samples[0]   # images {cam: (H,W,3)}, state (S,), actions (H,D), action_mask (H,), instruction, ...
"""

from __future__ import annotations

import json
import os
import random
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from roboalign.data.episodes import (
    CorruptEpisodeError,
    Episode,
    episode_files,
    in_flight_files,
    read_episode,
    read_header,
)
from roboalign.spec.action_space import get_action_space
from roboalign.spec.loader import check_mapping, read_spec_file
from roboalign.spec.normalization import NormStats

META_FILE = "meta.json"
STATS_DIR = "norm_stats"


@dataclass(frozen=True)
class EpisodeInfo:
    path: Path
    task: str
    instruction: str
    success: bool
    length: int
    meta: dict[str, Any]


class EpisodeDataset:
    """Episodes of one folder (or an explicit list of files), indexable by episode.

    Every file is checked on construction: a truncated or corrupt file raises
    :class:`CorruptEpisodeError` naming it (run ``roboalign.data.validate_dir`` to list all bad files).
    ``success_only`` keeps successful episodes (the filter is explicit and counted in ``num_failed``).
    """

    def __init__(self, root: str | Path | None = None, success_only: bool = True, tasks: list[str] | None = None,
                 files: list[Path] | None = None, cache_size: int = 8) -> None:
        if (root is None) == (files is None):
            raise ValueError("give exactly one of root or files")
        self.root = Path(root) if root is not None else None
        if files is None:
            assert self.root is not None
            files = episode_files(self.root)
            leftovers = in_flight_files(self.root)
            if leftovers:
                warnings.warn(f"{len(leftovers)} in-flight episode file(s) in {self.root} are not episodes "
                              f"(interrupted run; `roboalign collect` redoes them): {[p.name for p in leftovers]}",
                              stacklevel=2)
        infos = []
        for p in files:
            h = read_header(p)  # raises CorruptEpisodeError naming the file
            infos.append(EpisodeInfo(p, h["task"], h["instruction"], h["success"], h["length"], h["meta"]))
        if tasks is not None:
            unknown = sorted(set(tasks) - {i.task for i in infos})
            if unknown:
                raise ValueError(f"tasks {unknown} not in dataset; it has {sorted({i.task for i in infos})}")
            infos = [i for i in infos if i.task in tasks]
        incomplete = [i for i in infos if i.meta.get("complete") is False]  # crashed / cut-short recordings
        if incomplete:
            warnings.warn(f"{len(incomplete)} incomplete recorded episode(s) left out (never trained on): "
                          f"{[i.path.name for i in incomplete]}", stacklevel=2)
            infos = [i for i in infos if i.meta.get("complete") is not False]
        self.num_incomplete = len(incomplete)
        self.num_failed = sum(not i.success for i in infos)
        self.episodes: list[EpisodeInfo] = [i for i in infos if i.success or not success_only]
        self.success_only = success_only
        self._cache: OrderedDict[tuple[int, bool], Episode] = OrderedDict()
        self._cache_size = cache_size

    # ----------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, i: int) -> Episode:
        return self.load(i)

    @property
    def num_steps(self) -> int:
        return sum(e.length for e in self.episodes)

    @property
    def tasks(self) -> list[str]:
        return sorted({e.task for e in self.episodes})

    @property
    def meta(self) -> dict[str, Any]:
        """Dataset-level ``meta.json`` (empty dict for a file list without a root)."""
        if self.root is None or not (self.root / META_FILE).is_file():
            return {}
        return check_mapping(read_spec_file(self.root / META_FILE, "dataset meta"), str(self.root / META_FILE))

    def load(self, i: int, images: bool = True) -> Episode:
        """Episode ``i`` (LRU-cached)."""
        key = (i, images)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        ep = read_episode(self.episodes[i].path, images=images)
        self._cache[key] = ep
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return ep

    def frame_images(self, i: int, t: int) -> dict[str, np.ndarray]:
        """Camera -> (H, W, 3) uint8 of step ``t`` of episode ``i``, read without loading the episode.

        Frames are stored one HDF5 chunk each, so this decompresses one image per camera. File handles
        are kept open per process (safe with DataLoader workers: a forked worker opens its own).
        """
        import h5py

        path = self.episodes[i].path
        key = (os.getpid(), path)
        handles = self.__dict__.setdefault("_handles", OrderedDict())
        f = handles.get(key)
        if f is None:
            try:
                f = h5py.File(path, "r")
            except OSError as e:
                raise CorruptEpisodeError(f"{path}: cannot open episode file: {e}") from e
            handles[key] = f
            if len(handles) > 4 * self._cache_size:
                handles.popitem(last=False)[1].close()
        try:
            grp = f["obs/images"]
            return {c: grp[c][t] for c in grp}
        except (KeyError, OSError, ValueError) as e:
            raise CorruptEpisodeError(f"{path}: cannot read images of step {t}: {e}") from e

    def subset(self, indices: list[int]) -> EpisodeDataset:
        out = object.__new__(EpisodeDataset)
        out.root, out.success_only, out.num_failed = self.root, self.success_only, 0
        out.episodes = [self.episodes[i] for i in indices]
        out._cache, out._cache_size = OrderedDict(), self._cache_size
        return out

    def split(self, val_fraction: float = 0.1, seed: int = 0) -> tuple[EpisodeDataset, EpisodeDataset]:
        """Train/val split by episode, per task (each task keeps ≥ 1 train episode, ≥ 1 val if it has ≥ 2)."""
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        rng = random.Random(seed)
        train, val = [], []
        for task in self.tasks:
            idx = [i for i, e in enumerate(self.episodes) if e.task == task]
            rng.shuffle(idx)
            n_val = int(round(val_fraction * len(idx)))
            if val_fraction > 0 and len(idx) >= 2:
                n_val = min(max(n_val, 1), len(idx) - 1)
            val += idx[:n_val]
            train += idx[n_val:]
        return self.subset(sorted(train)), self.subset(sorted(val))

    # ----------------------------------------------------------------------------------------------
    def stacked(self, key: str) -> tuple[np.ndarray, tuple[str, ...]]:
        """All steps of ``key`` concatenated: (N, D) and the dimension names.

        key: ``state`` or ``actions.<space>`` (``actions.eef_delta``, ``actions.joint_position``).
        """
        if not self.episodes:
            raise ValueError("dataset is empty")
        rows = []
        for i in range(len(self)):
            ep = self.load(i, images=False)
            if key == "state":
                rows.append(ep.state)
            elif key.startswith("actions."):
                space = key.split(".", 1)[1]
                if space not in ep.actions:
                    raise KeyError(f"{self.episodes[i].path}: no actions for {space!r} (has {sorted(ep.actions)})")
                rows.append(ep.actions[space])
            else:
                raise KeyError(f"unknown stats key {key!r}; valid: state, actions.<space>")
        x = np.concatenate(rows).astype(np.float64)  # (N, D)
        if key == "state":
            names = self.episodes[0].meta.get("state_names") or [f"state_{i}" for i in range(x.shape[1])]
            if len(names) != x.shape[1]:
                raise ValueError(f"{self.episodes[0].path}: meta state_names has {len(names)} names, state has "
                                 f"{x.shape[1]} dims")
        else:
            names = get_action_space(key.split(".", 1)[1]).names
        return x, tuple(names)

    def norm_stats(self, key: str) -> NormStats:
        """Per-dimension NormStats (q01/q99/mean/std) of ``key`` over this dataset's steps."""
        x, names = self.stacked(key)
        return NormStats.from_data(x, names=names)

    def save_norm_stats(self, out_dir: str | Path | None = None,
                        keys: tuple[str, ...] = ("state", "actions.eef_delta", "actions.joint_position")) -> dict[str, Path]:
        """Compute and write ``<out_dir>/<key>.json`` for each key (default ``<root>/norm_stats``)."""
        if out_dir is None:
            if self.root is None:
                raise ValueError("out_dir is required for a dataset without a root folder")
            out_dir = self.root / STATS_DIR
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        return {k: self.norm_stats(k).save(out / f"{k}.json") for k in keys}

    def load_norm_stats(self, key: str) -> NormStats:
        if self.root is None:
            raise ValueError("dataset has no root folder")
        p = self.root / STATS_DIR / f"{key}.json"
        if not p.is_file():
            raise FileNotFoundError(f"no norm stats {p}; compute them with EpisodeDataset.save_norm_stats()")
        return NormStats.load(p)


class ChunkDataset:
    """Frame-indexed samples for training: observation at step t + the action chunk t .. t+H-1.

    ``len`` = total number of steps; ``ds[k]`` returns a dict with ``images`` {camera: (H, W, 3) uint8},
    ``state`` (S,), ``actions`` (H, D) float32, ``action_mask`` (H,) bool, ``instruction``, ``task``,
    ``episode`` and ``step`` (and ``phase`` when known). Works as a torch ``Dataset`` by duck typing.
    """

    def __init__(self, episodes: EpisodeDataset, horizon: int, action_space: str = "eef_delta",
                 images: bool = True) -> None:
        if horizon <= 0:
            raise ValueError(f"horizon must be > 0, got {horizon}")
        self.episodes, self.horizon, self.action_space, self.images = episodes, horizon, action_space, images
        self.index = [(e, t) for e, info in enumerate(episodes.episodes) for t in range(info.length)]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> dict[str, Any]:
        e, t = self.index[k]
        ep = self.episodes.load(e, images=False)
        actions, mask = ep.action_chunk(t, self.horizon, self.action_space)  # (H, D), (H,)
        out = {
            "images": self.episodes.frame_images(e, t) if self.images else {},
            "state": ep.state[t],
            "actions": actions,
            "action_mask": mask,
            "instruction": ep.instruction,
            "task": ep.task,
            "episode": e,
            "step": t,
        }
        if ep.phases is not None:
            out["phase"] = ep.phases[t]
        return out


def write_meta(root: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``meta.json`` atomically."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    p = root / META_FILE
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(p)
    return p


__all__ = ["ChunkDataset", "CorruptEpisodeError", "EpisodeDataset", "EpisodeInfo", "write_meta"]
