"""Offline metric: action error of a VLA checkpoint on held-out episodes (no simulator).

For every ``frame_stride``-th step of every held-out episode the full policy pipeline (shared
pre-processing -> truncated backbone -> head, Euler from seeded noise) predicts a chunk, compared with
the recorded chunk of the same length. Reported: MSE in the normalised space (what the head is trained
on; padded rows past an episode's end excluded), MSE in raw action units, and the first-step raw MSE
(the action that would be executed next), overall and per task.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from tqdm import tqdm

from roboalign.models.vla import VLA
from roboalign.runtime.preprocess import draw_noise
from roboalign.spec.policy_io import Observation


def offline_mse(vla: VLA, episodes: Any, frame_stride: int = 4, batch: int = 16, seed: int = 0,
                progress: bool = True) -> dict[str, Any]:
    """``episodes``: a :class:`roboalign.data.EpisodeDataset` (e.g. the val split)."""
    if len(episodes) == 0:
        raise ValueError("offline_mse: no episodes to evaluate")
    hc = vla.cfg.head
    cams = vla.cfg.inputs.cameras
    rng = np.random.default_rng(seed)
    acc: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(5))  # se_norm, se_raw, n_el, se_first, n_first
    total = sum(e.length // frame_stride + 1 for e in episodes.episodes)
    bar = tqdm(total=total, desc="offline mse", disable=not progress)
    for e in range(len(episodes)):
        ep = episodes.load(e, images=True)
        missing = [c for c in cams if c not in ep.images]
        if missing:
            raise KeyError(f"{episodes.episodes[e].path}: no images for cameras {missing} (has {sorted(ep.images)})")
        steps = list(range(0, ep.length, frame_stride))
        gt, mask = ep.action_chunks(vla.cfg.action_space, hc.horizon, steps=steps)  # (N, H, A), (N, H)
        for i in range(0, len(steps), batch):
            s = steps[i:i + batch]
            obs = [Observation(images={c: ep.images[c][t] for c in cams}, state=ep.state[t],
                               instruction=ep.instruction) for t in s]
            pred_n = vla.predict_normalized(vla.preprocess(obs), draw_noise(rng, len(s), hc.horizon, hc.action_dim))
            g = gt[i:i + batch]
            m = mask[i:i + batch][..., None].astype(np.float64)  # (B, H, 1)
            g_n = vla.action_stats.normalize(g)
            pred_raw = vla.action_stats.unnormalize(pred_n)
            row = np.array([(((pred_n - g_n) ** 2) * m).sum(), (((pred_raw - g) ** 2) * m).sum(),
                            m.sum() * hc.action_dim, ((pred_raw[:, 0] - g[:, 0]) ** 2).sum(), len(s) * hc.action_dim])
            acc[ep.task] += row
            acc["all"] += row
            bar.update(len(s))
    bar.close()

    def summary(v: np.ndarray) -> dict[str, float]:
        return {"mse_normalized": float(v[0] / v[2]), "mse_raw": float(v[1] / v[2]),
                "mse_first_step_raw": float(v[3] / v[4]), "frames": int(v[4] // hc.action_dim)}

    return {"all": summary(acc.pop("all")), "per_task": {k: summary(v) for k, v in sorted(acc.items())}}
