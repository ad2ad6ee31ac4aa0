"""Read a LeRobotDataset v3.0 folder (ours or a community one) into :class:`~roboalign.data.episodes.Episode` s.

Frames come from the data parquet files, camera frames from the mp4 files by timestamp (PyAV, seeking to each
episode's ``from_timestamp``) or from ``image`` features (PNG/JPEG bytes in the parquet). Everything that does
not fit raises :class:`~roboalign.data.lerobot_v3.LeRobotFormatError` naming the file, episode and field.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from roboalign.data.episodes import Episode
from roboalign.data.lerobot_v3 import (
    CODEBASE_VERSION,
    IMAGE_PREFIX,
    INFO,
    TASKS,
    LeRobotFormatError,
    slug,
)
from roboalign.spec.action_space import ACTION_SPACES

EPISODE_COLUMNS = ("episode_index", "tasks", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
                   "dataset_to_index")
INFO_KEYS = ("codebase_version", "fps", "features", "total_episodes", "total_frames", "total_tasks", "data_path")


def camera_of(key: str) -> str:
    """``observation.images.wrist`` -> ``wrist``; ``observation.image`` -> ``image``."""
    return key[len(IMAGE_PREFIX):] if key.startswith(IMAGE_PREFIX) else key.rsplit(".", 1)[-1]


def guess_action_space(names: list[str] | None, dim: int) -> str | None:
    for space in ACTION_SPACES.values():
        if names is not None and list(names) == list(space.names):
            return space.name
    return {8: "joint_position", 7: "eef_delta"}.get(dim)


class LeRobotV3Dataset:
    """A v3.0 dataset folder: ``info``, ``tasks``, ``episodes`` (one dict per episode) and :meth:`episode`."""

    def __init__(self, root: str | Path, action_space: str | None = None) -> None:
        self.root = Path(root)
        p = self.root / INFO
        if not p.is_file():
            raise LeRobotFormatError(f"{p}: missing (not a LeRobot dataset)")
        try:
            self.info = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise LeRobotFormatError(f"{p}: not JSON: {e}") from e
        missing = [k for k in INFO_KEYS if k not in self.info]
        if missing:
            raise LeRobotFormatError(f"{p}: missing fields {missing}")
        if self.info["codebase_version"] != CODEBASE_VERSION:
            raise LeRobotFormatError(f"{p}: codebase_version {self.info['codebase_version']!r}; only {CODEBASE_VERSION} "
                                     "is read (convert v2.1 with lerobot's convert_dataset_v21_to_v30 first)")
        self.fps = float(self.info["fps"])
        self.features: dict[str, dict[str, Any]] = self.info["features"]
        self.layout: dict[str, Any] = self.info.get("roboalign") or {}
        act = self.features.get("action")
        if act is None:
            raise LeRobotFormatError(f"{p}: features has no 'action'")
        self.action_space = action_space or self.layout.get("action_space") or guess_action_space(
            act.get("names"), int(np.prod(act["shape"])))
        if self.action_space is None:
            raise LeRobotFormatError(f"{p}: feature 'action' has shape {act['shape']}; name its action space "
                                     "(--action-space eef_delta|joint_position)")
        self._containers: dict[Path, Any] = {}
        self._table, self._table_file = None, None

    @property
    def camera_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f["dtype"] in ("video", "image")]

    @cached_property
    def tasks(self) -> dict[int, str]:
        import pandas as pd

        p = self.root / TASKS
        if not p.is_file():
            raise LeRobotFormatError(f"{p}: missing")
        df = pd.read_parquet(p)
        if "task_index" not in df.columns:
            raise LeRobotFormatError(f"{p}: no task_index column (has {list(df.columns)})")
        names = df["task"] if "task" in df.columns else df.index
        return {int(i): str(t) for i, t in zip(df["task_index"], names, strict=True)}

    @cached_property
    def episodes(self) -> list[dict[str, Any]]:
        import pyarrow.parquet as pq

        files = sorted((self.root / "meta/episodes").glob("*/*.parquet"))
        if not files:
            raise LeRobotFormatError(f"{self.root / 'meta/episodes'}: no episode parquet files")
        rows = []
        for f in files:
            t = pq.read_table(f)
            missing = [c for c in EPISODE_COLUMNS if c not in t.column_names]
            if missing:
                raise LeRobotFormatError(f"{f}: episode table lacks columns {missing}")
            rows += [r | {"_file": f} for r in t.drop_columns([c for c in t.column_names if c.startswith("stats/")])
                     .to_pylist()]
        return sorted(rows, key=lambda r: r["episode_index"])

    def data_file(self, row: dict[str, Any]) -> Path:
        return self.root / self.info["data_path"].format(chunk_index=row["data/chunk_index"],
                                                         file_index=row["data/file_index"])

    def video_file(self, row: dict[str, Any], key: str) -> Path:
        return self.root / self.info["video_path"].format(video_key=key, chunk_index=row[f"videos/{key}/chunk_index"],
                                                          file_index=row[f"videos/{key}/file_index"])

    def frames(self, row: dict[str, Any]) -> Any:
        """The episode's rows of its data file as a pyarrow table, checked against the episode table."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        f = self.data_file(row)
        where = f"episode {row['episode_index']} ({f.relative_to(self.root)})"
        if not f.is_file():
            raise LeRobotFormatError(f"{where}: data file missing")
        if self._table_file != f:  # episodes are read in order: one data file in memory at a time
            self._table, self._table_file = pq.read_table(f), f
        t = self._table.filter(pc.equal(self._table.column("episode_index"), row["episode_index"]))
        if t.num_rows != row["length"]:
            raise LeRobotFormatError(f"{where}: {t.num_rows} frames in the data file, episode table says length "
                                     f"{row['length']}")
        t = t.sort_by("index")
        idx = t.column("index").to_numpy()
        if len(idx) and (idx[0] != row["dataset_from_index"] or idx[-1] != row["dataset_to_index"] - 1):
            raise LeRobotFormatError(f"{where}: frame index {idx[0]}..{idx[-1]} but dataset_from/to_index "
                                     f"{row['dataset_from_index']}..{row['dataset_to_index']}")
        return t

    def video_frames(self, row: dict[str, Any], key: str) -> np.ndarray:
        """(T, H, W, 3) uint8 RGB frames of camera ``key`` for one episode, picked by timestamp."""
        f = self.video_file(row, key)
        where = f"episode {row['episode_index']} {key} ({f.relative_to(self.root)})"
        if not f.is_file():
            raise LeRobotFormatError(f"{where}: video file missing")
        t0, n = float(row[f"videos/{key}/from_timestamp"]), int(row["length"])
        tol = 0.5 / self.fps
        c = self._containers.get(f)
        if c is None:
            import av

            c = self._containers[f] = av.open(str(f))
        stream = c.streams.video[0]
        c.seek(max(0, int((t0 - tol) / stream.time_base)), stream=stream, backward=True, any_frame=False)
        out: list[np.ndarray] = []
        for frame in c.decode(stream):
            if frame.time < t0 - tol:
                continue
            out.append(frame.to_ndarray(format="rgb24"))
            if len(out) == n:
                break
        if len(out) != n:
            raise LeRobotFormatError(f"{where}: {len(out)} frames from t={t0:.3f} s, the episode has {n}")
        return np.stack(out)

    def _image_column(self, table: Any, key: str, where: str) -> np.ndarray:
        import cv2

        frames = []
        for cell in table.column(key).to_pylist():
            data = cell.get("bytes") if isinstance(cell, dict) else cell
            img = None if data is None else cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if img is None:
                raise LeRobotFormatError(f"{where}: image feature {key} has a frame that does not decode")
            frames.append(img[..., ::-1])
        return np.stack(frames)

    def __len__(self) -> int:
        return len(self.episodes)

    def episode(self, i: int, images: bool = True) -> Episode:
        """Episode ``i`` (position in the episode table) as our Episode."""
        row = self.episodes[i]
        t = self.frames(row)
        where = f"episode {row['episode_index']} ({self.data_file(row).relative_to(self.root)})"
        cols = {k: _matrix(t, k, where) for k, f in self.features.items()
                if f["dtype"] in ("float32", "float64") and k in t.column_names and k != "timestamp"}
        if "action" not in cols:
            raise LeRobotFormatError(f"{where}: no 'action' column")
        if "observation.state" not in cols:
            raise LeRobotFormatError(f"{where}: no 'observation.state' column")
        meta = json.loads(row.get("roboalign/meta") or "{}")
        final = meta.pop("final_state", None)
        fields = _to_fields(cols, self.layout.get("columns"), self.action_space, self.layout.get("shapes") or {})
        imgs = {camera_of(k): (self.video_frames(row, k) if self.features[k]["dtype"] == "video"
                               else self._image_column(t, k, where)) for k in self.camera_keys} if images else {}
        task_index = int(t.column("task_index")[0].as_py())
        instruction = self.tasks.get(task_index, (row.get("tasks") or [""])[0])
        meta.setdefault("source", "lerobot_v3")
        meta |= {"lerobot": {"root": str(self.root), "episode_index": row["episode_index"]}}
        state_names = self.features["observation.state"].get("names")
        if isinstance(state_names, list) and len(state_names) == fields["state"].shape[1]:
            meta.setdefault("state_names", [str(n) for n in state_names])
        phases = None
        if "phase_index" in t.column_names and self.layout.get("phase_names"):
            names = self.layout["phase_names"]
            phases = [names[j] for j in t.column("phase_index").to_numpy()]
        return Episode(task=row.get("roboalign/task") or slug(instruction), instruction=instruction,
                       success=bool(row.get("roboalign/success", True)), images=imgs, state=fields["state"],
                       actions=fields["actions"], phases=phases, robot=fields["robot"],
                       privileged=fields["privileged"], final_state=None if final is None else np.asarray(final),
                       meta=meta)

    def close(self) -> None:
        for c in self._containers.values():
            c.close()
        self._containers.clear()


def _matrix(table: Any, key: str, where: str) -> np.ndarray:
    col = table.column(key).combine_chunks()
    try:
        values = col.flatten().to_numpy(zero_copy_only=False) if hasattr(col, "flatten") else col.to_numpy()
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for nested data
        raise LeRobotFormatError(f"{where}: column {key} is not numeric: {e}") from e
    m = np.asarray(values, np.float32).reshape(table.num_rows, -1)
    if not np.isfinite(m).all():
        bad = int(np.argwhere(~np.isfinite(m).all(axis=1))[0, 0])
        raise LeRobotFormatError(f"{where}: column {key} has a non-finite value at frame {bad}")
    return m


def _to_fields(cols: dict[str, np.ndarray], layout: dict[str, str] | None, action_space: str,
               shapes: dict[str, list[int]]) -> dict[str, Any]:
    """Our Episode fields from the LeRobot columns (using the layout we wrote, or the naming convention)."""
    out: dict[str, Any] = {"actions": {}, "robot": {}, "privileged": {}, "state": cols["observation.state"]}
    for key, v in cols.items():
        src = (layout or {}).get(key)
        if src is None:
            if key == "action":
                src = f"actions.{action_space}"
            elif key.startswith("action."):
                name = key[7:]
                src = f"actions.{name}" if name in ACTION_SPACES else f"robot.{name}"
            elif key.startswith("privileged."):
                src = key
            elif key.startswith("observation.") and key != "observation.state":
                src = f"robot.{key[12:]}"
            else:
                continue
        group, _, name = src.partition(".")
        if group in out and name:
            out[group][name] = v.reshape(len(v), *shapes[src]) if src in shapes else v
    return out
