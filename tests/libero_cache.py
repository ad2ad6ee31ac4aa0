"""Shared LIBERO envs for the sim tests: building a scene takes ~10 s and ~2 GB, so the sim tests use
two scenes in total (can_to_bowl with eef_delta, bottle_to_basket with joint_position) and reuse them."""

from __future__ import annotations

import atexit
import functools


@functools.cache
def get_env(task: str = "bottle_to_basket", action_space: str = "eef_delta", camera_size: int = 64):
    from roboalign.sim.libero_env import LiberoEnv, LiberoEnvConfig

    env = LiberoEnv(LiberoEnvConfig(task=task, action_space=action_space, camera_size=camera_size,
                                    antialias=False))
    atexit.register(env.close)
    return env
