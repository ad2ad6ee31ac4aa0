"""LeRobotDataset v3.0 on disk, written and read without the ``lerobot`` package (pyarrow, pandas, PyAV).

Layout (lerobot ``datasets/utils.py``: ``codebase_version`` v3.0)::

    meta/info.json        fps, features {dtype, shape, names, info}, totals, chunks_size, file sizes, paths, splits
    meta/stats.json       per feature: mean, std, min, max, count, q01, q10, q50, q90, q99 (images per channel in
                          [0, 1], shape (3, 1, 1))
    meta/tasks.parquet    index = task (the language instruction), column task_index
    meta/episodes/chunk-000/file-000.parquet   one row per episode: episode_index, tasks, length,
                          data/chunk_index, data/file_index, dataset_from_index, dataset_to_index,
                          videos/<key>/{chunk_index, file_index, from_timestamp, to_timestamp},
                          meta/episodes/{chunk_index, file_index}, stats/<feature>/<stat>
    data/chunk-000/file-000.parquet            one row per frame, many episodes per file
    videos/<key>/chunk-000/file-000.mp4        one stream per camera, many episodes per file (AV1 by default)

Our episodes map as: ``actions[space]`` -> ``action`` (the chosen space; the others ``action.<space>``),
``state`` -> ``observation.state``, ``images[cam]`` -> ``observation.images.<cam>`` (video), ``robot[k]`` ->
``observation.<k>`` (``action.<k>`` for ``*_command``), ``privileged[k]`` -> ``privileged.<k>``, phases ->
``phase_index``; task name, success and meta go into ``roboalign/*`` episode columns and ``info["roboalign"]``
(ignored by lerobot). Reading accepts any v3.0 dataset (e.g. community LIBERO ones): video or image features
become cameras, ``action`` the action space named in ``info["roboalign"]`` or given by the caller.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from roboalign.data.episodes import Episode
from roboalign.data.scheduling import scheduling_kept
from roboalign.spec.action_space import ACTION_SPACES

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_FILE_MB = 100
VIDEO_FILE_MB = 200
INFO, STATS, TASKS = "meta/info.json", "meta/stats.json", "meta/tasks.parquet"
EPISODES = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
FRAME_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
IMAGE_PREFIX = "observation.images."


class LeRobotFormatError(ValueError):
    """A LeRobot v3 dataset is malformed; the message names the file, episode and field."""


def quantile_key(q: float) -> str:
    return f"q{int(round(q * 100)):02d}"


def feature_stats(x: np.ndarray, axis: int | tuple[int, ...] = 0, keepdims: bool = False) -> dict[str, Any]:
    """mean, std, min, max, count and the quantiles of ``x`` along ``axis`` (lerobot's stats keys)."""
    x = np.asarray(x, np.float64)
    out = {"min": x.min(axis, keepdims=keepdims), "max": x.max(axis, keepdims=keepdims),
           "mean": x.mean(axis, keepdims=keepdims), "std": x.std(axis, keepdims=keepdims),
           "count": np.array([x.shape[0]])}
    for q in QUANTILES:
        out[quantile_key(q)] = np.quantile(x, q, axis=axis, keepdims=keepdims)
    return out


def _image_stats(frames: np.ndarray, max_frames: int = 100) -> dict[str, Any]:
    step = max(1, len(frames) // max_frames)
    x = frames[::step].astype(np.float64).transpose(0, 3, 1, 2) / 255.0  # (N, 3, H, W)
    s = feature_stats(x, axis=(0, 2, 3), keepdims=True)
    return {k: (v if k == "count" else v[0]) for k, v in s.items()} | {"count": np.array([len(frames)])}


def _jsonable(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: np.asarray(v).tolist() for k, v in stats.items()}


# ------------------------------------------------------------------------------------------------ writing
def _column_keys(ep: Episode, action_space: str) -> dict[str, tuple[str, np.ndarray]]:
    """LeRobot feature name -> (our field, per-frame array (T, ...)) of one episode."""
    cols: dict[str, tuple[str, np.ndarray]] = {"action": (f"actions.{action_space}", ep.actions[action_space]),
                                               "observation.state": ("state", ep.state)}
    for space, a in ep.actions.items():
        if space != action_space:
            cols[f"action.{space}"] = (f"actions.{space}", a)
    for k, v in ep.robot.items():
        cols[f"action.{k}" if k.endswith("_command") else f"observation.{k}"] = (f"robot.{k}", v)
    for k, v in ep.privileged.items():
        cols[f"privileged.{k}"] = (f"privileged.{k}", v)
    return {k: (src, np.asarray(v, np.float32).reshape(len(v), -1)) for k, (src, v) in cols.items()}


def _names(key: str, src: str, ep: Episode, dim: int) -> list[str] | None:
    if src.startswith("actions.") and src[8:] in ACTION_SPACES:
        return list(ACTION_SPACES[src[8:]].names)
    if key == "observation.state" and len(ep.meta.get("state_names") or []) == dim:
        return list(ep.meta["state_names"])
    return None


@dataclass
class _VideoFile:
    """One camera's open mp4: frames are appended across episodes; rolled over at the size limit."""

    key: str
    root: Path
    fps: int
    codec: str
    options: dict[str, str]
    file_index: int = 0
    frames: int = 0
    container: Any = None
    stream: Any = None

    @property
    def path(self) -> Path:
        return self.root / VIDEO_PATH.format(video_key=self.key, chunk_index=self.file_index // CHUNKS_SIZE,
                                             file_index=self.file_index % CHUNKS_SIZE)

    def add(self, frames: np.ndarray) -> tuple[int, int, float, float]:
        import av

        if self.container is not None and _size(self.path) >= VIDEO_FILE_MB * 2**20:
            self.close()
            self.file_index, self.frames = self.file_index + 1, 0
        if self.container is None:
            h, w = frames.shape[1:3]
            if self.codec != "libsvtav1" and (h % 2 or w % 2):
                raise ValueError(f"{self.key}: {w}x{h} frames; {self.codec} with yuv420p needs an even width and "
                                 "height (use --vcodec libsvtav1)")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.container = av.open(str(self.path), "w")
            self.stream = self.container.add_stream(self.codec, rate=self.fps, options=self.options)
            self.stream.height, self.stream.width = h, w
            self.stream.pix_fmt = "yuv420p"
        start = self.frames
        with scheduling_kept():  # SVT-AV1 makes the encoding thread real-time when run as root
            for img in frames:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                frame.pts = self.frames
                self.container.mux(self.stream.encode(frame))
                self.frames += 1
        idx = self.file_index
        return idx // CHUNKS_SIZE, idx % CHUNKS_SIZE, start / self.fps, self.frames / self.fps

    def close(self) -> None:
        if self.container is not None:
            with scheduling_kept():
                self.container.mux(self.stream.encode())
                self.container.close()
            self.container = None


@dataclass
class LeRobotV3Writer:
    """Write episodes into a new LeRobot v3.0 dataset at ``root`` (call :meth:`close` at the end).

    ``action_space``: which of our action spaces becomes ``action``. ``vcodec``: ``libsvtav1`` (lerobot's
    default), ``h264`` or ``libx264``; ``gop`` 2 as lerobot (cheap random access).
    """

    root: Path
    fps: int
    action_space: str = "joint_position"
    robot_type: str = "franka_fr3"
    vcodec: str = "libsvtav1"
    crf: int = 30
    gop: int = 2
    features: dict[str, dict[str, Any]] = field(default_factory=dict)
    _episodes: list[dict[str, Any]] = field(default_factory=list)
    _tasks: dict[str, int] = field(default_factory=dict)
    _values: dict[str, list[np.ndarray]] = field(default_factory=dict)
    _videos: dict[str, _VideoFile] = field(default_factory=dict)
    _data_writer: Any = None
    _data_file: int = 0
    _frames: int = 0
    _layout: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if self.root.exists() and any(self.root.iterdir()):
            raise FileExistsError(f"{self.root} exists and is not empty; LeRobot output must go to a new folder")
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only

    def _define(self, ep: Episode, cols: dict[str, tuple[str, np.ndarray]]) -> None:
        for key, (src, v) in cols.items():
            self.features[key] = {"dtype": "float32", "shape": [v.shape[1]], "names": _names(key, src, ep, v.shape[1])}
        for cam, frames in ep.images.items():
            h, w = frames.shape[1:3]
            self.features[IMAGE_PREFIX + cam] = {
                "dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                "info": {"video.height": h, "video.width": w, "video.codec": _canonical(self.vcodec),
                         "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": self.fps,
                         "video.channels": 3, "has_audio": False}}
        if ep.phases is not None:
            self.features["phase_index"] = {"dtype": "int64", "shape": [1], "names": None}
        for k in FRAME_COLUMNS:
            self.features[k] = {"dtype": "float32" if k == "timestamp" else "int64", "shape": [1], "names": None}
        self._layout = {"columns": {k: src for k, (src, _) in cols.items()}, "cameras": sorted(ep.images),
                        "shapes": {src: list(np.shape(_field(ep, src))[1:]) for _, (src, _) in cols.items()},
                        "action_space": self.action_space, "phase_names": []}

    def add(self, ep: Episode) -> None:
        """Append one episode (its frames to the data file and videos, its row to the episode table)."""
        if self.action_space not in ep.actions:
            raise KeyError(f"episode {ep.task!r} has no {self.action_space!r} actions (has {sorted(ep.actions)}); "
                           "choose --action-space")
        cols = _column_keys(ep, self.action_space)
        if not self.features:
            self._define(ep, cols)
        self._check_same(ep, cols)
        index = len(self._episodes)
        task_index = self._tasks.setdefault(ep.instruction or ep.task, len(self._tasks))
        row: dict[str, Any] = {"episode_index": index, "tasks": [ep.instruction or ep.task], "length": ep.length}
        row |= self._write_frames(ep, cols, index, task_index)
        stats: dict[str, Any] = {k: feature_stats(v) for k, (_, v) in cols.items()}
        for cam, frames in ep.images.items():
            key = IMAGE_PREFIX + cam
            v = self._videos.setdefault(key, _VideoFile(key, self.root, self.fps, self.vcodec, self._codec_options()))
            c, f, t0, t1 = v.add(frames)
            row |= {f"videos/{key}/chunk_index": c, f"videos/{key}/file_index": f,
                    f"videos/{key}/from_timestamp": t0, f"videos/{key}/to_timestamp": t1}
            stats[key] = _image_stats(frames)
        for k, (_, v) in cols.items():
            self._values.setdefault(k, []).append(v)
        self._values.setdefault("__images__", []).append(stats)
        row |= {f"stats/{k}/{s}": np.asarray(val).tolist() for k, st in stats.items() for s, val in st.items()}
        row |= {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0, "roboalign/task": ep.task,
                "roboalign/success": bool(ep.success), "roboalign/meta": json.dumps(_episode_meta(ep))}
        self._episodes.append(row)

    def _codec_options(self) -> dict[str, str]:
        opts = {"g": str(self.gop), "crf": str(self.crf)}
        if self.vcodec == "libsvtav1":
            opts["preset"] = "10"
        return opts

    def _check_same(self, ep: Episode, cols: dict[str, tuple[str, np.ndarray]]) -> None:
        want = {k for k, f in self.features.items() if f["dtype"] == "float32" and k != "timestamp"}
        have = set(cols)
        cams = sorted(ep.images)
        if have != want or cams != self._layout["cameras"]:
            raise ValueError(f"episode {ep.task!r} ({ep.meta.get('bag') or ep.meta.get('source', '')}) does not match "
                             f"the first episode: features {sorted(have ^ want)} differ, cameras {cams} vs "
                             f"{self._layout['cameras']}")
        for k, (_, v) in cols.items():
            if v.shape[1] != self.features[k]["shape"][0]:
                raise ValueError(f"episode {ep.task!r}: feature {k} has {v.shape[1]} values per frame, the dataset "
                                 f"{self.features[k]['shape'][0]}")

    def _write_frames(self, ep: Episode, cols: dict[str, tuple[str, np.ndarray]], index: int,
                      task_index: int) -> dict[str, Any]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        t = ep.length
        arrays = {k: pa.array(v[:, 0], pa.float32()) if v.shape[1] == 1  # shape (1,) is a plain column for lerobot
                  else pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1), pa.float32()), v.shape[1])
                  for k, (_, v) in cols.items()}
        if ep.phases is not None:
            names = self._layout["phase_names"]
            names += [p for p in dict.fromkeys(ep.phases) if p not in names]
            arrays["phase_index"] = pa.array([names.index(p) for p in ep.phases], pa.int64())
        arrays |= {"timestamp": pa.array(np.arange(t, dtype=np.float32) / np.float32(self.fps), pa.float32()),
                   "frame_index": pa.array(np.arange(t), pa.int64()), "episode_index": pa.array(np.full(t, index)),
                   "index": pa.array(np.arange(self._frames, self._frames + t)),
                   "task_index": pa.array(np.full(t, task_index))}
        table = pa.table(arrays)
        path = self.root / DATA_PATH.format(chunk_index=self._data_file // CHUNKS_SIZE,
                                            file_index=self._data_file % CHUNKS_SIZE)
        if self._data_writer is not None and _size(path) >= DATA_FILE_MB * 2**20:
            self._data_writer.close()
            self._data_writer, self._data_file = None, self._data_file + 1
            path = self.root / DATA_PATH.format(chunk_index=self._data_file // CHUNKS_SIZE,
                                                file_index=self._data_file % CHUNKS_SIZE)
        if self._data_writer is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._data_writer = pq.ParquetWriter(path, table.schema, compression="snappy")
        self._data_writer.write_table(table)
        start, self._frames = self._frames, self._frames + t
        return {"data/chunk_index": self._data_file // CHUNKS_SIZE, "data/file_index": self._data_file % CHUNKS_SIZE,
                "dataset_from_index": start, "dataset_to_index": self._frames}

    def close(self) -> Path:
        """Finish the files and write meta/: info.json, stats.json, tasks.parquet, the episode table."""
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._episodes:
            raise ValueError(f"no episodes were written to {self.root}")
        if self._data_writer is not None:
            self._data_writer.close()
        for v in self._videos.values():
            v.close()
        (self.root / "meta").mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"task_index": list(self._tasks.values())}, index=list(self._tasks)).to_parquet(self.root / TASKS)
        ep_path = self.root / EPISODES.format(chunk_index=0, file_index=0)
        ep_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(self._episodes), ep_path)
        (self.root / STATS).write_text(json.dumps(self._stats(), indent=2))
        (self.root / INFO).write_text(json.dumps(self._info(), indent=2))
        return self.root

    def _stats(self) -> dict[str, Any]:
        out = {k: _jsonable(feature_stats(np.concatenate(v))) for k, v in self._values.items() if k != "__images__"}
        per_ep = self._values.get("__images__", [])
        for key in (k for k, f in self.features.items() if f["dtype"] == "video"):
            eps = [s[key] for s in per_ep]
            n = np.array([e["count"][0] for e in eps], np.float64)
            w = n / n.sum()
            mean = sum(wi * e["mean"] for wi, e in zip(w, eps, strict=True))
            var = sum(wi * (e["std"] ** 2 + (e["mean"] - mean) ** 2) for wi, e in zip(w, eps, strict=True))
            agg = {"min": np.min([e["min"] for e in eps], 0), "max": np.max([e["max"] for e in eps], 0),
                   "mean": mean, "std": np.sqrt(var), "count": np.array([int(n.sum())])}
            agg |= {quantile_key(q): sum(wi * e[quantile_key(q)] for wi, e in zip(w, eps, strict=True))
                    for q in QUANTILES}  # per-episode quantiles weighted by frames, as lerobot aggregates them
            out[key] = _jsonable(agg)
        return out

    def _info(self) -> dict[str, Any]:
        n = len(self._episodes)
        return {
            "codebase_version": CODEBASE_VERSION, "robot_type": self.robot_type, "total_episodes": n,
            "total_frames": self._frames, "total_tasks": len(self._tasks), "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": DATA_FILE_MB, "video_files_size_in_mb": VIDEO_FILE_MB, "fps": self.fps,
            "splits": {"train": f"0:{n}"}, "data_path": DATA_PATH, "video_path": VIDEO_PATH if self._videos else None,
            "features": self.features, "roboalign": self._layout,
        }


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _canonical(vcodec: str) -> str:
    return {"libsvtav1": "av1", "libaom-av1": "av1", "libx264": "h264"}.get(vcodec, vcodec)


def _field(ep: Episode, src: str) -> np.ndarray:
    group, _, key = src.partition(".")
    return ep.state if src == "state" else getattr(ep, group)[key]


def _episode_meta(ep: Episode) -> dict[str, Any]:
    meta = dict(ep.meta)
    if ep.final_state is not None:
        meta["final_state"] = np.asarray(ep.final_state).tolist()
    return meta


# ------------------------------------------------------------------------------------------------ reading
def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:60] or "task"
