"""The three dataset formats ``roboalign dataset`` reads: detection, a summary, and validation.

- ``roboalign``: our episode folder (``meta.json`` + ``episodes/*.hdf5``, :mod:`roboalign.data.episodes`);
- ``lerobot``: LeRobotDataset v3.0 (``meta/info.json`` ..., :mod:`roboalign.data.lerobot_v3`);
- ``rosbag``: recorded episodes (one folder per episode with ``bag/`` + ``episode.json``, as the bridge's
  ``BagRecorder`` writes them into ``record_dir``), or one such folder.

:func:`validate` returns every problem as (where, what) — the episode / file / field, and why — so one run
lists all of them; ``expect`` (action space, cameras, e.g. from a training config) is checked too.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from roboalign.data.bag_streams import BagEpisodeError, is_bag_episode
from roboalign.data.episodes import SUFFIX, CorruptEpisodeError, episode_files, read_header, validate_dir
from roboalign.data.lerobot_v3 import QUANTILES, STATS, LeRobotFormatError, quantile_key
from roboalign.data.lerobot_v3_reader import LeRobotV3Dataset, camera_of
from roboalign.data.rosbag_episodes import BagOptions, bag_to_episode

FORMATS = ("roboalign", "lerobot", "rosbag")


@dataclass(frozen=True)
class Expect:
    """What a consumer needs: ``action_space`` present in every episode, ``cameras`` recorded in every episode."""

    action_space: str | None = None
    cameras: tuple[str, ...] | None = None

    @classmethod
    def from_config(cls, path: str | Path) -> Expect:
        cfg = yaml.safe_load(Path(path).read_text()) or {}
        cams = cfg.get("cameras")
        return cls(cfg.get("action_space"), tuple(cams) if cams else None)


def bag_episode_folders(root: Path) -> list[Path]:
    if is_bag_episode(root):
        return [root]
    return sorted(p for p in root.iterdir() if p.is_dir() and is_bag_episode(p)) if root.is_dir() else []


def detect(root: str | Path) -> str:
    """``roboalign`` | ``lerobot`` | ``rosbag``; raises naming what was looked for."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    if (root / "meta" / "info.json").is_file():
        return "lerobot"
    eps = root / "episodes" if (root / "episodes").is_dir() else root
    if (root / "meta.json").is_file() or any(p.name.endswith(SUFFIX) for p in eps.iterdir()):
        return "roboalign"
    if bag_episode_folders(root):
        return "rosbag"
    raise ValueError(f"{root}: not a dataset: no meta/info.json (LeRobot v3), no meta.json or episodes/*.hdf5 "
                     "(roboalign), no episode folders with bag/ + episode.json (rosbag)")


# ------------------------------------------------------------------------------------------------ info
def info(root: str | Path) -> list[str]:
    """Human-readable summary lines of any of the three formats."""
    root = Path(root)
    fmt = detect(root)
    return [f"{root}: format {fmt}", *{"roboalign": _info_ours, "lerobot": _info_lerobot, "rosbag": _info_bags}[fmt](root)]


def _info_ours(root: Path) -> list[str]:
    heads, bad = [], 0
    for p in episode_files(root):
        try:
            heads.append(read_header(p))
        except CorruptEpisodeError:
            bad += 1
    tasks = Counter(h["task"] for h in heads)
    incomplete = sum(h["meta"].get("complete") is False for h in heads)
    return [f"episodes: {len(heads)} ({sum(h['success'] for h in heads)} successful, {incomplete} incomplete, "
            f"{bad} unreadable), steps: {sum(h['length'] for h in heads)}",
            f"tasks: {dict(tasks)}",
            f"cameras: {sorted({c for h in heads for c in h['cameras']})}",
            f"action spaces: {sorted({a for h in heads for a in h['action_spaces']})}",
            f"sources: {dict(Counter(h['meta'].get('source', 'collect') for h in heads))}"]


def _info_lerobot(root: Path) -> list[str]:
    ds = LeRobotV3Dataset(root)
    i = ds.info
    feats = [f"{k} {f['dtype']}{list(f['shape'])}" for k, f in ds.features.items()]
    return [f"codebase_version {i['codebase_version']}, fps {i['fps']}, robot_type {i.get('robot_type')}",
            f"episodes: {i['total_episodes']}, frames: {i['total_frames']}, tasks: {i['total_tasks']}",
            f"cameras: {[k for k in ds.camera_keys]}", f"action: read as {ds.action_space!r}",
            "features: " + ", ".join(feats)]


def _info_bags(root: Path) -> list[str]:
    lines, outcomes = [], Counter()
    for f in bag_episode_folders(root):
        meta = json.loads((f / "episode.json").read_text()) if (f / "episode.json").is_file() else {}
        outcomes[meta.get("outcome", "unknown")] += 1
        complete = (f / meta.get("bag", "bag") / "metadata.yaml").is_file()
        lines.append(f"  {f.name}: task {meta.get('task')!r}, outcome {meta.get('outcome')!r}"
                     + ("" if complete else ", bag not closed (crash: salvaged on conversion)"))
    return [f"recorded episodes: {sum(outcomes.values())}, outcomes: {dict(outcomes)}", *lines]


# ------------------------------------------------------------------------------------------------ validate
def validate(root: str | Path, expect: Expect | None = None, full: bool = False) -> list[tuple[str, str]]:
    """Every problem of the dataset at ``root`` as (where, what); empty = valid."""
    root = Path(root)
    fmt = detect(root)
    expect = expect or Expect()
    return {"roboalign": _validate_ours, "lerobot": _validate_lerobot, "rosbag": _validate_bags}[fmt](root, expect, full)


def _validate_ours(root: Path, expect: Expect, full: bool) -> list[tuple[str, str]]:
    bad = [(str(p), why) for p, why in validate_dir(root, full=full)]
    broken = {p for p, _ in bad}
    for p in episode_files(root):
        if str(p) in broken:
            continue
        try:
            h = read_header(p)
        except CorruptEpisodeError as e:
            bad.append((str(p), str(e)))
            continue
        bad += [(str(p), w) for w in _expect_problems(h["action_spaces"], h["cameras"], expect)]
        if h["meta"].get("complete") is False:
            bad.append((str(p), f"incomplete recording ({'; '.join(h['meta'].get('problems', []))}): never used for "
                                "training; delete it or re-record"))
    return bad


def _expect_problems(spaces: list[str], cams: list[str], expect: Expect) -> list[str]:
    out = []
    if expect.action_space and expect.action_space not in spaces:
        out.append(f"no actions for action space {expect.action_space!r} (has {spaces})")
    missing = [c for c in expect.cameras or () if c not in cams]
    if missing:
        out.append(f"cameras {missing} missing (has {cams})")
    return out


def require(files: list[Path], expect: Expect, what: str = "the config") -> None:
    """Raise one ValueError naming the episode files that lack ``expect``'s action space or cameras (headers only)."""
    bad = []
    for p in files:
        h = read_header(p)
        bad += [f"{p.name}: {w}" for w in _expect_problems(h["action_spaces"], h["cameras"], expect)]
    if bad:
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise ValueError(f"{len(bad)} episode(s) do not match {what} (action_space {expect.action_space!r}, cameras "
                         f"{list(expect.cameras or [])}): {'; '.join(bad[:3])}{more}")


def _validate_bags(root: Path, expect: Expect, full: bool) -> list[tuple[str, str]]:
    bad = []
    for f in bag_episode_folders(root):
        try:
            ep = bag_to_episode(f, BagOptions(cameras=expect.cameras))
        except (BagEpisodeError, FileNotFoundError, ValueError) as e:
            bad.append((str(f), str(e)))
            continue
        bad += [(str(f), w) for w in _expect_problems(sorted(ep.actions), sorted(ep.images), expect)]
        if not ep.meta["complete"]:
            bad.append((str(f), "incomplete: " + "; ".join(ep.meta["problems"])))
    return bad


def _validate_lerobot(root: Path, expect: Expect, full: bool) -> list[tuple[str, str]]:
    try:
        ds = LeRobotV3Dataset(root, action_space=expect.action_space)
        rows = ds.episodes
        tasks = ds.tasks
    except LeRobotFormatError as e:
        return [(str(root), str(e))]
    bad = [(f"{root}/meta/info.json", w) for w in _lerobot_info_problems(ds, rows)]
    bad += [(f"{root}/meta/stats.json", w) for w in _lerobot_stats_problems(ds)]
    cams = [camera_of(k) for k in ds.camera_keys]
    bad += [(f"{root}/meta/info.json", w) for w in _expect_problems([ds.action_space], cams, expect)]
    expected_from = 0
    for row in rows:
        where = f"{root} episode {row['episode_index']}"
        if row["dataset_from_index"] != expected_from:
            bad.append((where, f"dataset_from_index {row['dataset_from_index']}, expected {expected_from} (episodes "
                               "must tile the frame index)"))
        expected_from = row["dataset_to_index"]
        try:
            _check_lerobot_episode(ds, row, tasks, full)
        except LeRobotFormatError as e:
            bad.append((where, str(e)))
    ds.close()
    return bad


def _lerobot_info_problems(ds: Any, rows: list[dict[str, Any]]) -> list[str]:
    i, out = ds.info, []
    if i["total_episodes"] != len(rows):
        out.append(f"total_episodes {i['total_episodes']} but the episode table has {len(rows)} rows")
    if i["total_frames"] != sum(r["length"] for r in rows):
        out.append(f"total_frames {i['total_frames']} but the episodes sum to {sum(r['length'] for r in rows)}")
    if i["total_tasks"] != len(ds.tasks):
        out.append(f"total_tasks {i['total_tasks']} but tasks.parquet has {len(ds.tasks)}")
    for k, f in ds.features.items():
        if not {"dtype", "shape"} <= set(f):
            out.append(f"feature {k}: needs dtype and shape (has {sorted(f)})")
        elif f["dtype"] == "video" and not {"video.height", "video.width", "video.fps"} <= set(f.get("info") or {}):
            out.append(f"feature {k}: video feature without info video.height/width/fps")
    for k in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        if k not in ds.features:
            out.append(f"features lacks the per-frame column {k}")
    if ds.camera_keys and any(ds.features[k]["dtype"] == "video" for k in ds.camera_keys) and not i.get("video_path"):
        out.append("video features but no video_path")
    return out


def _lerobot_stats_problems(ds: Any) -> list[str]:
    p = ds.root / STATS
    if not p.is_file():
        return ["missing"]
    stats = json.loads(p.read_text())
    need = {"mean", "std", "min", "max", "count", *(quantile_key(q) for q in QUANTILES)}
    out = []
    for k, f in ds.features.items():
        if f["dtype"] in ("float32", "float64") and k not in ("timestamp",):
            if k not in stats:
                out.append(f"no stats for feature {k}")
            elif need - set(stats[k]):
                out.append(f"feature {k}: stats lack {sorted(need - set(stats[k]))}")
            elif np.shape(stats[k]["mean"]) != tuple(f["shape"]):
                out.append(f"feature {k}: stats mean has shape {np.shape(stats[k]['mean'])}, feature {f['shape']}")
    return out


def _check_lerobot_episode(ds: Any, row: dict[str, Any], tasks: dict[int, str], full: bool) -> None:
    t = ds.frames(row)
    where = f"episode {row['episode_index']} ({ds.data_file(row).relative_to(ds.root)})"
    fi = t.column("frame_index").to_numpy()
    if not np.array_equal(fi, np.arange(row["length"])):
        raise LeRobotFormatError(f"{where}: frame_index is not 0..{row['length'] - 1}")
    ts = t.column("timestamp").to_numpy()
    if np.abs(ts - fi / ds.fps).max(initial=0) > 1e-4 * max(1.0, ts.max(initial=0)):
        raise LeRobotFormatError(f"{where}: timestamp is not frame_index / fps ({ds.fps})")
    unknown = sorted(set(t.column("task_index").to_numpy().tolist()) - set(tasks))
    if unknown:
        raise LeRobotFormatError(f"{where}: task_index {unknown} not in tasks.parquet")
    for k in ds.camera_keys:
        if ds.features[k]["dtype"] != "video":
            continue
        if f"videos/{k}/from_timestamp" not in row:
            raise LeRobotFormatError(f"{where}: episode table lacks videos/{k}/from_timestamp")
        if not ds.video_file(row, k).is_file():
            raise LeRobotFormatError(f"{where}: video {ds.video_file(row, k).relative_to(ds.root)} missing")
    if full:
        ds.episode(ds.episodes.index(row))
