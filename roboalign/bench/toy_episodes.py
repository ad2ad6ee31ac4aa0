"""Small scripted pick-and-place episodes: the alignment tests' fixtures and ``roboalign bench align --toy N``.

A 2-D top view (64x64 RGB): the object is a coloured square, the basket a brown ring, the gripper a white
dot; a scripted expert moves the gripper to the object, grasps, carries it to the basket and releases.
Actions are end-effector deltas + gripper (7-D, like LIBERO's OSC space), states are eef xyz + gripper.
The privileged facts (positions, phase, gripper) are filled in as the sim recorder would.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from roboalign.data import Episode, write_episode, write_meta
from roboalign.training.data_builders import EpisodeView

OBJECTS = ("milk", "ketchup", "butter", "cream cheese")
COLORS = {"milk": (240, 240, 250), "ketchup": (200, 30, 30), "butter": (240, 220, 60), "cream cheese": (90, 140, 230)}


def top_view_pixels(xy, size: int = 64) -> np.ndarray:
    """World (x, y) metres (..., 2) -> the (column, row) pixel where the top view draws that point."""
    return np.clip(((np.asarray(xy) + 0.3) / 0.6 * (size - 1)).round().astype(int), 0, size - 1)


def _render(obj_xy, basket_xy, eef_xy, color, size=64) -> np.ndarray:
    img = np.full((size, size, 3), 110, dtype=np.uint8)

    def px(xy):
        return top_view_pixels(xy, size)

    bx, by = px(basket_xy)
    img[max(by - 6, 0) : by + 7, max(bx - 6, 0) : bx + 7] = (120, 80, 40)
    img[max(by - 4, 0) : by + 5, max(bx - 4, 0) : bx + 5] = (110, 110, 110)
    ox, oy = px(obj_xy)
    img[max(oy - 3, 0) : oy + 4, max(ox - 3, 0) : ox + 4] = color
    ex, ey = px(eef_xy)
    img[max(ey - 1, 0) : ey + 2, max(ex - 1, 0) : ex + 2] = (255, 255, 255)
    return img


def make_episode(seed: int, object_name: str | None = None, steps: int = 40, privileged: bool = True) -> EpisodeView:
    """One episode; ``privileged=False`` leaves out positions/phases (short reasoning: only the object)."""
    rng = np.random.default_rng(seed)
    obj = object_name or OBJECTS[seed % len(OBJECTS)]
    obj_pos = np.array([*rng.uniform(-0.2, 0.2, 2), 0.02])
    basket = np.array([*rng.uniform(-0.2, 0.2, 2), 0.0])
    eef = np.array([0.0, 0.0, 0.25])
    grip_open = True
    held = False
    rows = {k: [] for k in ("eef", "obj", "phase", "open", "act", "img")}
    for _ in range(steps):
        if not held and np.linalg.norm(eef[:2] - obj_pos[:2]) > 0.02:
            phase, goal, close = "approach", np.array([*obj_pos[:2], 0.12]), False
        elif not held and eef[2] > 0.04:
            phase, goal, close = "descend", obj_pos + [0, 0, 0.01], False
        elif not held:
            phase, goal, close = "grasp", eef.copy(), True
        elif np.linalg.norm(eef[:2] - basket[:2]) > 0.02:
            phase, goal, close = "carry", np.array([*basket[:2], 0.15]), True
        else:
            phase, goal, close = "release", eef.copy(), False
        delta = np.clip(goal - eef, -0.04, 0.04)
        act = np.concatenate([delta / 0.04, np.zeros(3), [1.0 if close else -1.0]])
        rows["eef"].append(eef.copy())
        rows["obj"].append(obj_pos.copy())
        rows["phase"].append(phase)
        rows["open"].append(grip_open)
        rows["act"].append(act)
        rows["img"].append(_render(obj_pos[:2], basket[:2], eef[:2], COLORS[obj]))
        eef = eef + delta
        grip_open = not close
        if phase == "grasp":
            held = True
        if phase == "release":
            held = False
        if held:
            obj_pos = eef - [0, 0, 0.01]
    eefs = np.array(rows["eef"])
    states = np.concatenate([eefs, np.array(rows["open"], dtype=float)[:, None]], axis=1)
    facts = dict(phases=rows["phase"], object_pos=np.array(rows["obj"]), target_pos=np.repeat(basket[None], steps, axis=0),
                 eef_pos=eefs, gripper_open=np.array(rows["open"]),
                 gripper_pixels={"agentview": top_view_pixels(eefs[:, :2])}) if privileged else {}
    return EpisodeView(
        name=f"toy_{seed}", instruction=f"pick up the {obj} and place it in the basket",
        images={"agentview": np.stack(rows["img"])}, states=states, actions=np.array(rows["act"]),
        object_name=obj, task="toy_pick_place", **facts,
    )


def make_episodes(n: int, start: int = 0, steps: int = 40, privileged: bool = True) -> list[EpisodeView]:
    return [make_episode(start + i, steps=steps, privileged=privileged) for i in range(n)]


def write_dataset(root: str | Path, n: int, start: int = 0, steps: int = 40) -> Path:
    """Write ``n`` scripted episodes as a real episode dataset folder (``roboalign.data`` writer API).

    Tasks are named by the LIBERO-Object object (``milk``, ``cream_cheese``, …) so the reader resolves
    the object names through ``roboalign.spec.tasks``. Returns the folder.
    """
    root = Path(root)
    for i in range(n):
        v = make_episode(start + i, steps=steps)
        task = v.object_name.replace(" ", "_")
        ep = Episode(
            task=task, instruction=v.instruction, success=True, images=v.images, state=v.states.astype(np.float32),
            actions={"eef_delta": v.actions.astype(np.float32)}, phases=list(v.phases),
            robot={"eef_pos": v.eef_pos}, privileged={"object_pos": v.object_pos, "target_pos": v.target_pos},
            meta={"seed": start + i},
        )
        write_episode(root / "episodes" / f"{task}_{start + i:05d}.hdf5", ep)
    write_meta(root, {"source": "roboalign/bench/toy_episodes.py", "episodes": n, "steps": steps})
    return root


def ensure_dataset(root: str | Path, n: int, steps: int = 40) -> Path:
    """``root`` holding ``n`` scripted episodes: written unless it already has exactly these (its meta.json)."""
    root = Path(root)
    meta = root / "meta.json"
    want = {"episodes": n, "steps": steps}
    if meta.is_file() and all(json.loads(meta.read_text()).get(k) == v for k, v in want.items()):
        return root
    if (root / "episodes").is_dir():
        for f in (root / "episodes").glob("*.hdf5"):
            f.unlink()
    return write_dataset(root, n, steps=steps)
