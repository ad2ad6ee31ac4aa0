"""``roboalign dataset convert``: rosbag episodes / our episodes / LeRobot v3 -> our episodes or LeRobot v3.

One converter for every path (DESIGN: "Recording is a stream"): each source yields :class:`Episode` s and
each target writes them. :func:`convert_bag_episode` is the per-episode step ``roboalign record`` calls after
each recorded episode. Incomplete recordings (crashed, interrupted) are skipped unless ``include_incomplete``,
and then carry ``meta["complete"] = False`` so the training loader refuses them; episodes that cannot be
converted are reported with the reason and the others are still converted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from roboalign.data.dataset import META_FILE, EpisodeDataset, write_meta
from roboalign.data.episodes import SUFFIX, Episode, episode_files, read_episode, write_episode
from roboalign.data.formats import bag_episode_folders, detect
from roboalign.data.lerobot_v3 import LeRobotV3Writer
from roboalign.data.lerobot_v3_reader import LeRobotV3Dataset
from roboalign.data.rosbag_episodes import BagOptions, bag_to_episode

TARGETS = ("roboalign", "lerobot")


@dataclass
class ConvertOptions:
    bag: BagOptions = field(default_factory=BagOptions)
    action_space: str | None = None  # LeRobot: which action space becomes ``action`` (default: the only / joint)
    include_incomplete: bool = False
    success_only: bool = False  # to LeRobot: drop failed episodes
    vcodec: str = "libsvtav1"
    fps: int | None = None  # LeRobot fps (default: the episodes' fps)


@dataclass
class ConvertReport:
    source_format: str
    target_format: str
    written: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (episode, why)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (episode, error)

    def lines(self) -> list[str]:
        out = [f"convert: {self.source_format} -> {self.target_format}: {len(self.written)} written, "
               f"{len(self.skipped)} skipped, {len(self.failed)} failed"]
        out += [f"  skipped {name}: {why}" for name, why in self.skipped]
        out += [f"  FAILED {name}: {why}" for name, why in self.failed]
        return out


def _bag_source(src: Path, opts: ConvertOptions, report: ConvertReport) -> Iterator[tuple[str, Episode]]:
    for folder in bag_episode_folders(src):
        try:
            ep = bag_to_episode(folder, opts.bag)
        except (ValueError, FileNotFoundError, KeyError) as e:
            report.failed.append((folder.name, str(e)))
            continue
        yield folder.name, ep


def _ours_source(src: Path, opts: ConvertOptions, report: ConvertReport) -> Iterator[tuple[str, Episode]]:
    for p in episode_files(src):
        try:
            yield p.name[:-len(SUFFIX)], read_episode(p)
        except (ValueError, OSError) as e:
            report.failed.append((p.name, str(e)))


def _lerobot_source(src: Path, opts: ConvertOptions, report: ConvertReport) -> Iterator[tuple[str, Episode]]:
    ds = LeRobotV3Dataset(src, action_space=opts.action_space)
    for i, row in enumerate(ds.episodes):
        name = f"episode_{row['episode_index']:06d}"
        try:
            yield name, ds.episode(i)
        except ValueError as e:
            report.failed.append((name, str(e)))
    ds.close()


SOURCES: dict[str, Callable[..., Iterator[tuple[str, Episode]]]] = {
    "rosbag": _bag_source, "roboalign": _ours_source, "lerobot": _lerobot_source}


def _keep(name: str, ep: Episode, opts: ConvertOptions, report: ConvertReport, to: str) -> bool:
    if ep.meta.get("complete") is False and not opts.include_incomplete:
        report.skipped.append((name, "incomplete recording (" + "; ".join(ep.meta.get("problems", [])) +
                               "); --include-incomplete keeps it, marked incomplete"))
        return False
    if to == "lerobot" and opts.success_only and not ep.success:
        report.skipped.append((name, f"not successful (outcome {ep.meta.get('outcome', 'failure')!r})"))
        return False
    return True


def convert(src: str | Path, dst: str | Path, to: str, opts: ConvertOptions | None = None,
            progress: bool = True) -> ConvertReport:
    """Convert the dataset at ``src`` (format detected) into ``dst`` in format ``to``."""
    src, dst, opts = Path(src), Path(dst), opts or ConvertOptions()
    if to not in TARGETS:
        raise ValueError(f"--to {to!r}; valid: {', '.join(TARGETS)}")
    fmt = detect(src)
    if fmt == to:
        raise ValueError(f"{src} is already a {fmt} dataset")
    report = ConvertReport(fmt, to)
    sink = _OursSink(dst) if to == "roboalign" else _LeRobotSink(dst, opts)
    for name, ep in tqdm(SOURCES[fmt](src, opts, report), desc=f"convert {fmt}->{to}", unit="ep", disable=not progress):
        if _keep(name, ep, opts, report, to):
            try:
                sink.add(name, ep)
                report.written.append(name)
            except (ValueError, KeyError) as e:
                report.failed.append((name, str(e)))
    sink.close(report)
    return report


class _OursSink:
    """Our folder: one HDF5 per episode (atomic), ``meta.json``, norm stats at the end."""

    def __init__(self, dst: Path) -> None:
        self.dst, self.meta = dst, {}

    def add(self, name: str, ep: Episode) -> None:
        write_episode(self.dst / "episodes" / f"{name}{SUFFIX}", ep)
        self.meta = _dataset_meta(ep, self.meta)

    def close(self, report: ConvertReport) -> None:
        if not report.written:
            return
        write_meta(self.dst, self.meta | {"converted_from": report.source_format})
        ds = EpisodeDataset(self.dst)
        if len(ds):
            keys = ("state", *(f"actions.{a}" for a in self.meta["action_spaces"]))
            ds.save_norm_stats(keys=keys)


def _dataset_meta(ep: Episode, meta: dict[str, Any]) -> dict[str, Any]:
    spaces = sorted(ep.actions) if not meta else sorted(set(meta["action_spaces"]) & set(ep.actions))
    return {"source": ep.meta.get("source", "roboalign"), "action_spaces": spaces, "cameras": sorted(ep.images),
            "state_names": ep.meta.get("state_names"), "fps": ep.meta.get("fps", 1.0 / ep.meta.get("dt", 0.05))}


class _LeRobotSink:
    def __init__(self, dst: Path, opts: ConvertOptions) -> None:
        self.dst, self.opts, self.writer = dst, opts, None

    def add(self, name: str, ep: Episode) -> None:
        if self.writer is None:
            space = self.opts.action_space or ("joint_position" if "joint_position" in ep.actions else sorted(ep.actions)[0])
            fps = self.opts.fps or int(round(ep.meta.get("fps") or 1.0 / ep.meta.get("dt", 0.05)))
            self.writer = LeRobotV3Writer(self.dst, fps=fps, action_space=space, vcodec=self.opts.vcodec)
        self.writer.add(ep)

    def close(self, report: ConvertReport) -> None:
        if self.writer is not None:
            self.writer.close()


def convert_bag_episode(folder: str | Path, dst: str | Path, opts: BagOptions | None = None) -> Path:
    """Convert one recorded episode folder into ``dst/episodes/<folder name>.hdf5`` (the step ``record`` runs
    after each episode) and update ``dst/meta.json``. Raises BagEpisodeError naming the episode and topic.

    Success is the bridge's outcome, or the operator's ``operator_verdict: keep`` in ``episode.json`` (a kept
    demonstration ends with STOP); an incomplete recording is never successful.
    """
    folder, dst = Path(folder), Path(dst)
    ep = bag_to_episode(folder, opts)
    path = write_episode(dst / "episodes" / f"{folder.name}{SUFFIX}", ep)
    old = json.loads((dst / META_FILE).read_text()) if (dst / META_FILE).is_file() else {}
    write_meta(dst, _dataset_meta(ep, old if old.get("action_spaces") else {}) | {"converted_from": "rosbag"})
    return path
