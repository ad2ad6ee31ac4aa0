"""The torch runtime backend: a trained VLA checkpoint behind the ``BasePolicy`` API.

``act(obs)`` = shared pre-processing (:func:`roboalign.models.vla_inputs.preprocess`) -> frozen
truncated backbone -> flow-matching head (Euler, from seeded noise) -> un-normalisation with the
checkpoint's action stats -> :class:`~roboalign.runtime.types.ActionChunk` with timings. The noise comes
from a numpy generator re-seeded by ``reset()``, so an episode is reproducible and another backend
(onnxruntime) given the same noise must return the same chunk.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from roboalign.models.vla import VLA, load_vla
from roboalign.runtime.types import ActionChunk, Observation


def draw_noise(rng: np.random.Generator, batch: int, horizon: int, action_dim: int) -> np.ndarray:
    """Standard-normal flow-matching start point (B, H, A) float32 — shared by every backend."""
    return rng.standard_normal((batch, horizon, action_dim)).astype(np.float32)


class TorchVLAPolicy:
    """BasePolicy over a :class:`~roboalign.models.vla.VLA` in PyTorch eager mode."""

    def __init__(self, vla: VLA, seed: int = 0, num_threads: int | None = None) -> None:
        self.vla = vla.eval()
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        if num_threads is not None:
            torch.set_num_threads(num_threads)

    @classmethod
    def from_checkpoint(cls, path: str | Path, seed: int = 0) -> TorchVLAPolicy:
        return cls(load_vla(path), seed=seed)

    @property
    def action_space(self) -> str:
        return self.vla.cfg.action_space

    @property
    def action_names(self) -> tuple[str, ...]:
        return self.vla.action_stats.names

    def reset(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def act(self, obs: Observation, noise: np.ndarray | None = None) -> ActionChunk:
        t0 = time.perf_counter()
        inputs = self.vla.preprocess([obs])
        t1 = time.perf_counter()
        hc = self.vla.cfg.head
        if noise is None:
            noise = draw_noise(self.rng, 1, hc.horizon, hc.action_dim)
        norm = self.vla.predict_normalized(inputs, noise)  # (1, H, A)
        t2 = time.perf_counter()
        actions = self.vla.unnormalize_actions(norm[0])  # (H, A)
        t3 = time.perf_counter()
        timings = {"preprocess": (t1 - t0) * 1e3, "model": (t2 - t1) * 1e3, "postprocess": (t3 - t2) * 1e3,
                   "total": (t3 - t0) * 1e3}
        return ActionChunk(actions=actions, action_space=self.action_space, action_names=self.action_names,
                           dt=self.vla.action_space.dt, stamp=obs.stamp, timings=timings)
