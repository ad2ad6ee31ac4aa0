"""Where a :class:`~roboalign.spec.tasks.SimTask`'s BDDL file and init states live, and how our own scenes get theirs.

LIBERO tasks (suite ``libero_*``) read ``<libero>/bddl_files/<suite>/<problem>.bddl`` and the official
``<libero>/init_files/<suite>/<problem>.pruned_init``. Our scenes (suite ``roboalign``) are BDDL files in
``roboalign/sim/scenes/``; their init states are either a LIBERO scene's official ones (``init_from``, for a
scene that only changes the goal of a LIBERO scene: same objects, same state vector) or
``<problem>.init.npy`` beside the BDDL, written by :func:`generate_init_states` (LIBERO's own placement
sampler, seeds 0..N-1, then the settled MuJoCo state as LIBERO's init files store it)::

    python -m roboalign.sim.scenes LIVING_ROOM_BOWL_pick_up_the_tomato_sauce_and_put_it_in_the_bowl
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from roboalign.sim.libero_setup import ensure_libero, libero_root
from roboalign.spec.tasks import SimTask

SCENES_DIR = Path(__file__).parent / "scenes"
OUR_SUITE = "roboalign"
INIT_SUFFIX = ".init.npy"


def bddl_path(task: SimTask) -> Path:
    """The BDDL file of a sim task (raises FileNotFoundError naming it)."""
    if task.suite == OUR_SUITE:
        path = SCENES_DIR / f"{task.problem}.bddl"
    else:
        path = libero_root() / "bddl_files" / task.suite / f"{task.problem}.bddl"
    if not path.is_file():
        raise FileNotFoundError(f"BDDL file of sim task {task.problem!r} not found: {path}")
    return path


def init_states_path(task: SimTask) -> Path:
    """The init-state file a sim task starts from (``.pruned_init`` of LIBERO or our ``.init.npy``)."""
    if task.init_from:
        suite, problem = task.init_from.split("/", 1)
    elif task.suite == OUR_SUITE:
        return SCENES_DIR / f"{task.problem}{INIT_SUFFIX}"
    else:
        suite, problem = task.suite, task.problem
    return libero_root() / "init_files" / suite / f"{problem}.pruned_init"


def generate_init_states(problem: str, n: int = 50, settle_steps: int = 10) -> Path:
    """Draw ``n`` init states of our scene ``problem`` with LIBERO's placement sampler; write ``.init.npy``."""
    ensure_libero()
    from libero.libero.envs import OffScreenRenderEnv

    bddl = SCENES_DIR / f"{problem}.bddl"
    env = OffScreenRenderEnv(bddl_file_name=str(bddl), use_camera_obs=False, has_offscreen_renderer=False,
                             ignore_done=True, horizon=10**6)
    states = []
    try:
        for seed in range(n):
            env.seed(seed)
            env.reset()
            for _ in range(settle_steps):  # let the sampled objects come to rest, as LIBERO's init files do
                env.env.step(np.r_[np.zeros(6), -1.0])
            states.append(env.env.sim.get_state().flatten())
    finally:
        env.close()
    out = SCENES_DIR / f"{problem}{INIT_SUFFIX}"
    np.save(out, np.asarray(states, dtype=np.float64))
    return out


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(generate_init_states(name))
