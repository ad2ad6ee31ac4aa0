"""One demonstration episode in memory (:class:`Episode`) and on disk (one HDF5 file per episode).

Why HDF5 and not LeRobot-v3 parquet + video: (1) crash safety — one self-contained file per episode,
written to ``<name>.tmp`` and renamed, so a crash or Ctrl-C loses at most the episode in flight and a
resumed collection simply skips finished files (LeRobot v3 appends many episodes into shared parquet /
MP4 files, which a crash can leave half-written); (2) random access to any (episode, step) without
decoding video, which chunked training reads need; (3) the same container and near-identical layout
as LIBERO's official demos (robomimic HDF5), so one reader stack serves both; (4) no video codec
dependency. Images are stored losslessly (gzip, one chunk per frame).

File layout (``roboalign.episode/1``), T = number of steps (one action per step)::

    attrs: format, task, instruction, success, length, meta (JSON: init_state, seed, env config, ...)
    obs/images/<camera>     (T, H, W, 3) uint8  RGB, right way up
    obs/state               (T, S) float32      state before the action (joint positions + gripper width)
    obs/final_state         (S,)   float32      state after the last action
    obs/<robot field>       (T, ...) float32    eef_pos (3), eef_quat (4, xyzw), gripper_qpos (2), joint_vel (7)
    actions/<space>         (T, D) float32      one dataset per action space (eef_delta, joint_position)
    phases                  (T,) int8           index into attrs ``phase_names`` (scripted expert phase)
    privileged/<field>      (T, ...) float32    object_pos, object_quat, target_pos, target_quat, ...

A file that cannot be opened or whose content is inconsistent raises :class:`CorruptEpisodeError`
naming the file; :func:`validate_dir` lists every bad file instead of stopping at the first.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from roboalign.spec.action_space import get_action_space
from roboalign.spec.folder_kind import wrong_kind

FORMAT = "roboalign.episode/1"
SUFFIX = ".hdf5"
TMP_SUFFIX = ".tmp"


class CorruptEpisodeError(ValueError):
    """An episode file is truncated, unreadable or inconsistent; the message names the file."""


@dataclass
class Episode:
    """All data of one episode. Per-step arrays share the leading dimension T.

    images: camera -> (T, H, W, 3) uint8.  state: (T, S) float32.  actions: space name -> (T, D).
    phases: T phase names (None when unknown, e.g. human demos).  robot / privileged: name -> (T, ...).
    """

    task: str
    instruction: str
    success: bool
    images: dict[str, np.ndarray]
    state: np.ndarray
    actions: dict[str, np.ndarray]
    phases: list[str] | None = None
    robot: dict[str, np.ndarray] = field(default_factory=dict)
    privileged: dict[str, np.ndarray] = field(default_factory=dict)
    final_state: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state = np.asarray(self.state, dtype=np.float32)
        if self.state.ndim != 2:
            raise ValueError(f"Episode.state must be (T, S), got {self.state.shape}")
        t = self.length
        if t == 0:
            raise ValueError("Episode has no steps")
        for group, arrays in (("images", self.images), ("actions", self.actions), ("robot", self.robot),
                              ("privileged", self.privileged)):
            for k, v in arrays.items():
                if len(v) != t:
                    raise ValueError(f"Episode.{group}[{k!r}] has {len(v)} steps, state has {t}")
        for k, v in self.images.items():
            if v.dtype != np.uint8 or v.ndim != 4 or v.shape[-1] != 3:
                raise ValueError(f"Episode.images[{k!r}] must be (T, H, W, 3) uint8, got {v.shape} {v.dtype}")
        if not self.actions:
            raise ValueError("Episode has no actions")
        if self.phases is not None and len(self.phases) != t:
            raise ValueError(f"Episode.phases has {len(self.phases)} entries, state has {t}")

    @property
    def length(self) -> int:
        return int(self.state.shape[0])

    def action_chunk(self, t: int, horizon: int, space: str) -> tuple[np.ndarray, np.ndarray]:
        """Actions t .. t+H-1 of ``space`` as (H, D) float32, and a (H,) bool mask of real (not padded) rows.

        Past the end, absolute spaces repeat the last action (hold the last target); delta spaces pad
        zero arm deltas and repeat the last gripper command (both mean "stay where you are").
        """
        chunks, mask = self.action_chunks(space, horizon, steps=[t])
        return chunks[0], mask[0]

    def action_chunks(self, space: str, horizon: int, steps: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, D) chunks starting at each of ``steps`` (default all T steps) and (N, H) masks."""
        if space not in self.actions:
            raise KeyError(f"episode has no actions for space {space!r}; has {sorted(self.actions)}")
        if horizon <= 0:
            raise ValueError(f"horizon must be > 0, got {horizon}")
        a = self.actions[space]  # (T, D)
        spec = get_action_space(space)
        pad = np.repeat(a[-1:], horizon, axis=0)  # (H, D)
        if spec.kind == "delta":
            pad[:, spec.arm_indices] = 0.0
        padded = np.concatenate([a, pad])  # (T + H, D)
        steps = list(range(self.length)) if steps is None else steps
        for s in steps:
            if not 0 <= s < self.length:
                raise IndexError(f"step {s} outside 0..{self.length - 1}")
        idx = np.asarray(steps)[:, None] + np.arange(horizon)[None]  # (N, H)
        return padded[idx].astype(np.float32), idx < self.length


def _atomic_replace(tmp: Path, final: Path) -> None:
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    dfd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_episode(path: str | Path, ep: Episode, compression: int = 4) -> Path:
    """Write ``ep`` to ``path`` atomically (``path.tmp`` then rename). Returns the final path."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["task"] = ep.task
            f.attrs["instruction"] = ep.instruction
            f.attrs["success"] = bool(ep.success)
            f.attrs["length"] = ep.length
            f.attrs["meta"] = json.dumps(ep.meta)
            obs = f.create_group("obs")
            img = obs.create_group("images")
            for cam, frames in ep.images.items():
                img.create_dataset(cam, data=frames, chunks=(1, *frames.shape[1:]), compression="gzip",
                                   compression_opts=compression)
            obs.create_dataset("state", data=ep.state.astype(np.float32))
            if ep.final_state is not None:
                obs.create_dataset("final_state", data=np.asarray(ep.final_state, np.float32))
            for k, v in ep.robot.items():
                obs.create_dataset(k, data=np.asarray(v, np.float32))
            act = f.create_group("actions")
            for k, v in ep.actions.items():
                act.create_dataset(k, data=np.asarray(v, np.float32))
            if ep.phases is not None:
                names = list(dict.fromkeys(ep.phases))  # in order of first appearance; saved beside the ids
                f.attrs["phase_names"] = json.dumps(names)
                f.create_dataset("phases", data=np.array([names.index(p) for p in ep.phases], np.int8))
            priv = f.create_group("privileged")
            for k, v in ep.privileged.items():
                priv.create_dataset(k, data=np.asarray(v, np.float32))
        _atomic_replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def open_hdf5(path: Path, what: str = "episode file") -> Any:
    """``path`` opened read-only with h5py; missing -> FileNotFoundError, unreadable -> CorruptEpisodeError."""
    import h5py

    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise CorruptEpisodeError(f"{path}: cannot open {what} (truncated or not HDF5): {e}") from e


def _open(path: Path):
    f = open_hdf5(path)
    if f.attrs.get("format") != FORMAT:
        f.close()
        raise CorruptEpisodeError(f"{path}: not a {FORMAT} file (format attribute {f.attrs.get('format')!r})")
    return f


def read_header(path: str | Path) -> dict[str, Any]:
    """Episode attributes without loading arrays: task, instruction, success, length, meta, cameras."""
    path = Path(path)
    with _open(path) as f:
        try:
            head = {
                "path": path,
                "task": str(f.attrs["task"]),
                "instruction": str(f.attrs["instruction"]),
                "success": bool(f.attrs["success"]),
                "length": int(f.attrs["length"]),
                "meta": json.loads(f.attrs["meta"]),
                "cameras": sorted(f["obs/images"].keys()),
                "action_spaces": sorted(f["actions"].keys()),
            }
            _check_lengths(f, head["length"], path)
        except (KeyError, OSError, ValueError, json.JSONDecodeError) as e:
            if isinstance(e, CorruptEpisodeError):
                raise
            raise CorruptEpisodeError(f"{path}: damaged episode file: {e}") from e
    return head


def _check_lengths(f: Any, t: int, path: Path) -> None:
    def visit(name: str, obj: Any) -> None:
        if hasattr(obj, "shape") and name != "obs/final_state" and obj.shape[0] != t:
            raise CorruptEpisodeError(f"{path}: dataset {name!r} has {obj.shape[0]} steps, attrs say length {t}")

    f.visititems(visit)


def read_episode(path: str | Path, images: bool = True, cameras: list[str] | None = None) -> Episode:
    """Load an episode; ``images=False`` skips the (large) image arrays. Raises CorruptEpisodeError."""
    path = Path(path)
    head = read_header(path)
    with _open(path) as f:
        try:
            cams = head["cameras"] if cameras is None else cameras
            missing = [c for c in cams if c not in head["cameras"]]
            if missing:
                raise KeyError(f"cameras {missing} not in episode (has {head['cameras']})")
            imgs = {c: f[f"obs/images/{c}"][()] for c in cams} if images else {}
            obs = f["obs"]
            robot = {k: obs[k][()] for k in obs if k not in ("images", "state", "final_state")}
            phases = None
            if "phases" in f:
                names = json.loads(f.attrs["phase_names"])
                phases = [names[i] for i in f["phases"][()]]
            return Episode(
                task=head["task"],
                instruction=head["instruction"],
                success=head["success"],
                images=imgs,
                state=obs["state"][()],
                actions={k: f["actions"][k][()] for k in f["actions"]},
                phases=phases,
                robot=robot,
                privileged={k: f["privileged"][k][()] for k in f["privileged"]},
                final_state=obs["final_state"][()] if "final_state" in obs else None,
                meta=head["meta"],
            )
        except CorruptEpisodeError:
            raise
        except (KeyError, OSError, ValueError, IndexError) as e:
            raise CorruptEpisodeError(f"{path}: damaged episode file: {e}") from e


def episode_files(root: str | Path) -> list[Path]:
    """Finished episode files under ``root`` (or ``root/episodes``), sorted by name."""
    root = Path(root)
    d = root / "episodes" if (root / "episodes").is_dir() else root
    if not d.is_dir():
        raise FileNotFoundError(f"dataset {root} does not exist (record one with `roboalign collect --out {root}`, "
                                "or use the dataset 'default', collected into the project cache on first use)")
    if wrong_kind(root, "dataset"):
        raise NotADirectoryError(f"{root} is not an episode dataset{wrong_kind(root, 'dataset')}")
    return sorted(p for p in d.iterdir() if p.name.endswith(SUFFIX))


def in_flight_files(root: str | Path) -> list[Path]:
    """Leftover ``*.hdf5.tmp`` files of episodes that were being written when a run stopped."""
    root = Path(root)
    d = root / "episodes" if (root / "episodes").is_dir() else root
    return sorted(d.glob(f"*{SUFFIX}{TMP_SUFFIX}")) if d.is_dir() else []


def validate_dir(root: str | Path, full: bool = False) -> list[tuple[Path, str]]:
    """Every bad episode file under ``root`` with the reason (empty list = all good).

    ``full=True`` also decompresses every array (catches corrupt chunks inside a readable file).
    Leftover in-flight ``.tmp`` files are listed too (a resumed ``collect`` redoes those episodes).
    """
    bad: list[tuple[Path, str]] = []
    for p in episode_files(root):
        try:
            read_episode(p) if full else read_header(p)
        except CorruptEpisodeError as e:
            bad.append((p, str(e)))
    bad += [(p, "in-flight episode file left by an interrupted run (not an episode)") for p in in_flight_files(root)]
    return bad

