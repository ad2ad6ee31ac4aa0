"""Episodes for alignment training: the sim dataset (``roboalign.data``) read as ``EpisodeView`` objects.

``load_views(data_cfg, split)`` opens ``data.dataset`` (an ``EpisodeDataset`` folder written by
``roboalign collect``), splits it by episode (``EpisodeDataset.split``: per task, ``val_fraction``,
``seed``) and converts each episode with ``episode_view``:

* actions: ``actions[<action_space>]``; state: ``obs/state``; images: the configured cameras only;
* privileged facts for the reasoning text: ``privileged/object_pos``, ``privileged/target_pos``,
  ``obs/eef_pos``, the expert ``phases``, and whether the gripper is open (the gripper command in force
  at step t, i.e. the previous step's command; open at t = 0);
* the object's name from the task spec (``roboalign.spec.tasks``; "object" for an unknown task).
"""

from __future__ import annotations

import numpy as np

from roboalign.data import CorruptEpisodeError, EpisodeDataset, read_episode
from roboalign.sim.default_dataset import resolve_dataset
from roboalign.spec.action_space import get_action_space
from roboalign.spec.tasks import DEFAULT_TASKS, LIBERO_OBJECT_OBJECTS, TaskError, libero_object_task
from roboalign.training.config import DataConfig
from roboalign.training.data_builders import DataError, EpisodeView

SPLITS = ("train", "val", "all")


def object_label(task: str) -> tuple[str, str]:
    """(object, target) human names of a task (one of the four, or a LIBERO-Object object name)."""
    try:
        sim = DEFAULT_TASKS.get(task).sim
    except TaskError:
        key = task.replace(" ", "_")
        if key not in LIBERO_OBJECT_OBJECTS:
            return "object", "basket"
        sim = libero_object_task(key)
    return sim.object_label, sim.target_name.rsplit("_", 1)[0].replace("_", " ")


def episode_view(ep, name: str, action_space: str, cameras: tuple[str, ...] | None = None) -> EpisodeView:
    """A ``roboalign.data.Episode`` as the builders' EpisodeView (see module doc)."""
    if action_space not in ep.actions:
        raise DataError(f"episode {name}: no actions for space {action_space!r} (has {sorted(ep.actions)})")
    actions = np.asarray(ep.actions[action_space], dtype=np.float64)  # (T, D)
    gripper_open = None
    if "eef_delta" in ep.actions:
        spec = get_action_space("eef_delta")
        cmd = np.asarray(ep.actions["eef_delta"])[:, spec.gripper_index]  # (T,)
        gripper_open = np.concatenate([[True], cmd[:-1] < 0.0])  # command in force at step t
    obj, tgt = object_label(ep.task)
    images = ep.images if cameras is None else {c: ep.images[c] for c in cameras if c in ep.images}
    return EpisodeView(
        name=name,
        instruction=ep.instruction,
        images=images,
        states=np.asarray(ep.state, dtype=np.float64),
        actions=actions,
        object_name=obj,
        target_name=tgt,
        phases=ep.phases,
        object_pos=ep.privileged.get("object_pos"),
        target_pos=ep.privileged.get("target_pos"),
        eef_pos=ep.robot.get("eef_pos"),
        gripper_open=gripper_open,
        task=ep.task,
    )


def load_views(data: DataConfig, split: str = "train", images: bool = True) -> list[EpisodeView]:
    """Episodes of ``data.dataset`` (``split``: train | val | all) as EpisodeViews in ``data.action_space``."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; valid: {', '.join(SPLITS)}")
    root = resolve_dataset(data.dataset)  # 'default': the project cache's set, collected on first use
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist (collect one with `roboalign collect`)")
    ds = EpisodeDataset(root)
    if len(ds) == 0:
        raise DataError(f"dataset {root} has no successful episodes")
    train, val = ds.split(val_fraction=data.val_fraction, seed=data.seed)
    subset = {"train": train, "val": val, "all": ds}[split]
    infos = subset.episodes[: data.max_episodes] if data.max_episodes else subset.episodes
    views = []
    for info in infos:
        try:
            ep = read_episode(info.path, images=images, cameras=list(data.cameras) if images else None)
        except CorruptEpisodeError as e:
            raise DataError(str(e)) from e
        views.append(episode_view(ep, info.path.stem, data.action_space, data.cameras if images else None))
    return views
