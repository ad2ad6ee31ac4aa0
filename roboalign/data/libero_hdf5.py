"""Reader for LIBERO's official demonstration files (robomimic HDF5 layout) -> :class:`Episode` s.

Users who own the LIBERO datasets (e.g. ``libero_object/pick_up_the_ketchup_and_place_it_in_the_basket_demo.hdf5``)
can train on them with the same code as on our collected episodes. Layout read::

    data.attrs["problem_info"]        JSON with "language_instruction" (and "problem_name")
    data/demo_<k>/actions             (T, 7)  OSC_POSE deltas + gripper (-1 open, +1 close)
    data/demo_<k>/obs/agentview_rgb   (T, H, W, 3) uint8, stored upside down as rendered
    data/demo_<k>/obs/eye_in_hand_rgb (T, H, W, 3) uint8
    data/demo_<k>/obs/joint_states    (T, 7)
    data/demo_<k>/obs/gripper_states  (T, 2)  finger joint positions
    data/demo_<k>/obs/ee_pos          (T, 3)  (optional; also ee_ori / ee_states)

Converted to our conventions: images flipped vertically (right way up, cameras ``agentview`` /
``wrist``), state = joint_states + gripper width (fingers[0] - fingers[1]), ``eef_delta`` actions as
recorded, ``joint_position`` actions = next step's joint_states + the gripper command (the last step
targets its own joints). Phases are unknown (None); demos count as successful.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from roboalign.data.episodes import CorruptEpisodeError, Episode, open_hdf5
from roboalign.spec.action_space import STATE_NAMES
from roboalign.spec.tasks import SCENE_SETS

CAMERA_KEYS = {"agentview": "agentview_rgb", "wrist": "eye_in_hand_rgb"}
REQUIRED_OBS = ("joint_states", "gripper_states")


def _demo_keys(data) -> list[str]:
    keys = [k for k in data.keys() if re.fullmatch(r"demo_\d+", k)]
    return sorted(keys, key=lambda k: int(k.split("_")[1]))


def _instruction(path: Path, data) -> tuple[str, str]:
    """(problem name, instruction) from the attributes, else from the file name as LIBERO does."""
    stem = re.sub(r"_demo$", "", path.stem)
    if "problem_info" in data.attrs:
        info = json.loads(data.attrs["problem_info"])
        instr = info.get("language_instruction")
        if instr:
            return info.get("problem_name", stem), " ".join(str(instr).split())
    words = re.sub(r"^[A-Z0-9_]*SCENE\d+_", "", stem)
    return stem, words.replace("_", " ")


def libero_task_name(problem: str, instruction: str) -> str:
    """Our task name when the demo is one of the four tasks' sim scenes (either scene set), else the file stem."""
    for tasks in SCENE_SETS.values():
        for t in tasks:
            if problem == t.sim.problem or instruction.lower() == t.sim.instruction:
                return t.name
    return problem


def read_libero_hdf5(path: str | Path, images: bool = True, demos: list[int] | None = None) -> list[Episode]:
    """All (or the selected) demos of one LIBERO HDF5 file as Episodes. Raises naming file and demo."""
    path = Path(path)
    with open_hdf5(path, "LIBERO demo file") as f:
        if "data" not in f:
            raise CorruptEpisodeError(f"{path}: no 'data' group; not a LIBERO/robomimic demo file")
        data = f["data"]
        problem, instruction = _instruction(path, data)
        task = libero_task_name(problem, instruction)
        keys = _demo_keys(data)
        if demos is not None:
            wanted = {f"demo_{i}" for i in demos}
            missing = sorted(wanted - set(keys))
            if missing:
                raise KeyError(f"{path}: demos {missing} not in file (has {len(keys)} demos)")
            keys = [k for k in keys if k in wanted]
        out = []
        for k in keys:
            try:
                out.append(_convert(data[k], task, instruction, images, source=f"{path.name}/{k}"))
            except (KeyError, OSError, ValueError) as e:
                raise CorruptEpisodeError(f"{path}: demo {k!r} unreadable: {e}") from e
        return out


def _convert(demo, task: str, instruction: str, images: bool, source: str) -> Episode:
    obs = demo["obs"]
    missing = [k for k in (*REQUIRED_OBS, *CAMERA_KEYS.values()) if k not in obs] + (
        ["actions"] if "actions" not in demo else [])
    if missing:
        raise KeyError(f"missing {missing}")
    actions = demo["actions"][()].astype(np.float32)  # (T, 7)
    joints = obs["joint_states"][()].astype(np.float32)  # (T, 7)
    fingers = obs["gripper_states"][()].astype(np.float32)  # (T, 2)
    t = len(actions)
    if actions.shape != (t, 7) or joints.shape != (t, 7) or fingers.shape != (t, 2):
        raise ValueError(f"shapes actions {actions.shape}, joint_states {joints.shape}, gripper_states {fingers.shape}")
    state = np.concatenate([joints, fingers[:, :1] - fingers[:, 1:]], axis=1)  # (T, 8)
    next_q = np.concatenate([joints[1:], joints[-1:]])  # (T, 7)
    joint_targets = np.concatenate([next_q, actions[:, 6:7]], axis=1)  # (T, 8)
    imgs = {}
    if images:
        for cam, key in CAMERA_KEYS.items():
            frames = obs[key][()]
            if frames.dtype != np.uint8 or frames.ndim != 4 or len(frames) != t:
                raise ValueError(f"{key} has shape {frames.shape} {frames.dtype}, expected ({t}, H, W, 3) uint8")
            imgs[cam] = np.ascontiguousarray(frames[:, ::-1])  # stored upside down -> right way up
    robot = {"gripper_qpos": fingers}
    if "ee_pos" in obs:
        robot["eef_pos"] = obs["ee_pos"][()].astype(np.float32)
    return Episode(task=task, instruction=instruction, success=True, images=imgs, state=state,
                   actions={"eef_delta": actions, "joint_position": joint_targets}, phases=None, robot=robot,
                   final_state=state[-1], meta={"source": source, "state_names": list(STATE_NAMES)})
