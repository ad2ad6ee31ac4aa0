"""Train the VLA: a flow-matching action head on the frozen (aligned) MLLM, from episode datasets.

``roboalign train vla --config training/configs/vla_tiny.yaml [--set key=value ...]``

Steps: read the episode folder (``roboalign.data.EpisodeDataset``), split by episode, compute the
normalisation stats (actions in the chosen space, states) on the train split, load the backbone (``tiny``
or a local folder: the base model or an SFT / GRPO checkpoint of the alignment stage) and truncate it at
layer k, then train the head with the flow-matching loss (``FlowMatchingActionHead.compute_loss``) and
write a checkpoint folder (``roboalign.models.vla.save_vla``) + ``loss.csv`` / ``loss.png`` /
``metrics.json``.

Feature cache (``cache_features: true``, the CPU default): the backbone is frozen, so the head's inputs
(layer-k hidden states of each frame's prompt) never change during training. They are computed once per
frame (every ``frame_stride``-th step of every episode), stored as float16 in ``<cache_dir>/<key>.npz``
(the key hashes the backbone files, layer k, input spec, dataset and stride, so SFT and GRPO backbones get
their own caches and a re-run reuses them), and training then only runs the head. With
``cache_features: false`` (paper scale, GPU) every batch runs the backbone on the fly on the same
pre-processing; the two paths produce the same head inputs. Image augmentation is therefore not used.

Action spaces: ``eef_delta`` (LIBERO OSC, embodiment 0) and ``joint_position`` (absolute joint targets as
the real Franka bridge sends them, embodiment 1); both come from the same episodes.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from roboalign.data import EpisodeDataset
from roboalign.data.formats import Expect, require
from roboalign.models.action_head import ActionHeadConfig
from roboalign.models.backbone import Backbone, TinyBackboneConfig, build_tiny_backbone, load_backbone
from roboalign.models.vla import VLA, build_vla, save_vla
from roboalign.models.vla_inputs import VLAInputSpec
from roboalign.sim.default_dataset import resolve_dataset
from roboalign.sim.libero_import import as_episode_folder
from roboalign.spec.action_space import get_action_space
from roboalign.spec.policy_io import Observation
from roboalign.spec.tasks import DEFAULT_TASKS, TaskSet
from roboalign.training.config import EMBODIMENT, VLATrainConfig
from roboalign.training.curves import write_loss_curves
from roboalign.training.overrides import parse_run_config
from roboalign.training.run_output import finish_run, report, start_run


# ---------------------------------------------------------------------------------------------- model
def load_any_backbone(name_or_path: str) -> Backbone:
    """``tiny`` / ``tiny-qwen3`` (built locally, deterministic) or a local folder (``load_backbone``)."""
    if name_or_path == "tiny":
        return build_tiny_backbone("qwen2_5_vl")
    if name_or_path == "tiny-qwen3":
        return build_tiny_backbone("qwen3_vl", cfg=TinyBackboneConfig(family="qwen3_vl"))
    return load_backbone(name_or_path)


def head_config(cfg: VLATrainConfig, backbone: Backbone, action_dim: int, state_dim: int) -> ActionHeadConfig:
    base = ActionHeadConfig.paper() if cfg.head == "paper" else ActionHeadConfig.tiny()
    layer = cfg.backbone_layer
    if layer is None:
        layer = min(base.backbone_layer, backbone.num_layers) if cfg.head == "paper" else max(backbone.num_layers - 1, 0)
    values = {**base.to_dict(), "action_dim": action_dim, "state_dim": state_dim, "backbone_dim": backbone.hidden_size,
              "backbone_layer": layer, **cfg.head_overrides}
    return ActionHeadConfig(**values)


def build_model(cfg: VLATrainConfig, action_stats: Any, state_stats: Any, tasks: TaskSet) -> VLA:
    backbone = load_any_backbone(cfg.backbone)
    space = get_action_space(cfg.action_space)
    hc = head_config(cfg, backbone, space.dim, state_stats.dim)
    if hc.backbone_layer > backbone.num_layers:
        raise ValueError(f"backbone_layer={hc.backbone_layer} but {cfg.backbone} has {backbone.num_layers} layers")
    inputs = VLAInputSpec(cameras=cfg.cameras, image_size=cfg.image_size, prompt_state=cfg.prompt_state,
                          embodiment_id=EMBODIMENT[cfg.action_space], drop_system_tokens=cfg.drop_system_tokens)
    return build_vla(backbone, hc, action_stats, state_stats, space, inputs=inputs, tasks=tasks,
                     backbone_source=cfg.backbone, seed=cfg.seed)


# ---------------------------------------------------------------------------------------------- data
@dataclass
class FrameTable:
    """Frames used for training/eval: per frame the normalised state and action chunk (+ mask)."""

    episode: np.ndarray  # (N,) index into the split's episodes
    step: np.ndarray  # (N,)
    state: np.ndarray  # (N, S) normalised float32
    actions: np.ndarray  # (N, H, A) normalised float32
    action_mask: np.ndarray  # (N, H) bool
    task: list[str]


def frame_table(split: Any, vla: VLA, stride: int) -> FrameTable:
    """Normalised states and action chunks of every ``stride``-th step of every episode of ``split``."""
    h = vla.cfg.head.horizon
    space = vla.cfg.action_space
    eps, steps, states, acts, masks, tasks = [], [], [], [], [], []
    for e in range(len(split)):
        ep = split.load(e, images=False)
        ts = list(range(0, ep.length, stride))
        chunks, mask = ep.action_chunks(space, h, steps=ts)  # (n, H, A), (n, H)
        acts.append(vla.action_stats.normalize(chunks).astype(np.float32))
        masks.append(mask)
        states.append(vla.state_stats.normalize(ep.state[ts]).astype(np.float32))
        eps += [e] * len(ts)
        steps += ts
        tasks += [ep.task] * len(ts)
    return FrameTable(np.asarray(eps), np.asarray(steps), np.concatenate(states), np.concatenate(acts),
                      np.concatenate(masks), tasks)


def frame_observations(ep: Any, steps: list[int], cameras: tuple[str, ...]) -> list[Observation]:
    missing = [c for c in cameras if c not in ep.images]
    if missing:
        raise KeyError(f"episode of task {ep.task!r} has no images for cameras {missing}; it has {sorted(ep.images)}")
    return [Observation(images={c: ep.images[c][t] for c in cameras}, state=ep.state[t], instruction=ep.instruction)
            for t in steps]


@torch.no_grad()
def compute_features(vla: VLA, observations: list[Observation]) -> tuple[np.ndarray, np.ndarray]:
    """Head inputs for observations: (B, S', D) float32 features and (B, S') bool mask."""
    feats, mask = vla.features(vla.preprocess(observations))
    return feats.float().numpy(), mask.numpy().astype(bool)


def backbone_fingerprint(name_or_path: str) -> str:
    if name_or_path.startswith("tiny"):
        return name_or_path
    p = Path(name_or_path).resolve()
    parts = [str(p)] + [f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}" for f in sorted(p.glob("*.safetensors"))]
    return "|".join(parts)


def cache_key(cfg: VLATrainConfig, vla: VLA, split_name: str, n_episodes: int) -> str:
    desc = json.dumps({"backbone": backbone_fingerprint(cfg.backbone), "layer": vla.cfg.head.backbone_layer,
                       "inputs": vla.cfg.inputs.to_dict(), "dataset": str(resolve_dataset(cfg.dataset, collect=False).resolve()),
                       "tasks": cfg.tasks, "val_fraction": cfg.val_fraction, "seed": cfg.seed,
                       "max_eps": cfg.max_episodes_per_task, "stride": cfg.frame_stride, "split": split_name,
                       "n": n_episodes}, sort_keys=True)
    return hashlib.sha256(desc.encode()).hexdigest()[:16]


def build_feature_cache(vla: VLA, split: Any, table: FrameTable, cfg: VLATrainConfig, path: Path | None,
                        desc: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, S', D) float16 features and (N, S') mask for every frame of ``table`` (loaded from ``path`` if there)."""
    if path is not None and path.is_file():
        with np.load(path) as z:
            feats, mask = z["features"], z["mask"]
        if len(feats) == len(table.step):
            return feats, mask
    chunks_f, chunks_m = [], []
    bar = tqdm(total=len(table.step), desc=f"features {desc}", unit="frame")
    for e in range(len(split)):
        ep = split.load(e, images=True)
        steps = table.step[table.episode == e].tolist()
        for i in range(0, len(steps), cfg.feature_batch):
            f, m = compute_features(vla, frame_observations(ep, steps[i:i + cfg.feature_batch], cfg.cameras))
            chunks_f.append(f.astype(np.float16))
            chunks_m.append(m)
            bar.update(len(f))
    bar.close()
    s_max = max(f.shape[1] for f in chunks_f)
    feats = np.zeros((len(table.step), s_max, chunks_f[0].shape[2]), dtype=np.float16)
    mask = np.zeros((len(table.step), s_max), dtype=bool)
    k = 0
    for f, m in zip(chunks_f, chunks_m, strict=True):
        feats[k:k + len(f), : f.shape[1]] = f
        mask[k:k + len(f), : f.shape[1]] = m
        k += len(f)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, features=feats, mask=mask)
        tmp.replace(path)
    return feats, mask


class FeatureSource:
    """Gives the head its VL tokens for frame indices: from the cache, or by running the backbone."""

    def __init__(self, vla: VLA, split: Any, table: FrameTable, cfg: VLATrainConfig, cache: Path | None,
                 desc: str) -> None:
        self.vla, self.split, self.table, self.cfg = vla, split, table, cfg
        self.feats = self.mask = None
        if cfg.cache_features:
            self.feats, self.mask = build_feature_cache(vla, split, table, cfg, cache, desc)

    def get(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if self.feats is not None:
            m = self.mask[idx]  # (B, S')
            s = int(m.any(0).nonzero()[0].max()) + 1  # trim the common right padding of this batch
            return torch.from_numpy(self.feats[idx, :s].astype(np.float32)), torch.from_numpy(m[:, :s])
        obs = []
        for i in idx:
            ep = self.split.load(int(self.table.episode[i]), images=True)
            obs += frame_observations(ep, [int(self.table.step[i])], self.cfg.cameras)
        f, m = compute_features(self.vla, obs)
        return torch.from_numpy(f), torch.from_numpy(m)


# ---------------------------------------------------------------------------------------------- training
def lr_at(step: int, cfg: VLATrainConfig) -> float:
    """Linear warmup then cosine decay to 0 (per-step multiplier of ``learning_rate``)."""
    warm = max(1, int(cfg.warmup_ratio * cfg.steps))
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, cfg.steps - warm)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def batch_tensors(table: FrameTable, idx: np.ndarray, emb: int) -> dict[str, torch.Tensor]:
    return {"state": torch.from_numpy(table.state[idx]), "actions": torch.from_numpy(table.actions[idx]),
            "action_mask": torch.from_numpy(table.action_mask[idx]),
            "embodiment": torch.full((len(idx),), emb, dtype=torch.long)}


def head_loss(vla: VLA, source: FeatureSource, idx: np.ndarray, generator: torch.Generator) -> torch.Tensor:
    """The head's flow-matching loss on the frames ``idx`` of ``source`` (noise and flow times from ``generator``)."""
    vl, m = source.get(idx)
    b = batch_tensors(source.table, idx, vla.cfg.inputs.embodiment_id)
    return vla.head.compute_loss(vl, m, b["state"], b["actions"], b["embodiment"], b["action_mask"],
                                 generator=generator)


@torch.no_grad()
def eval_loss(vla: VLA, source: FeatureSource, idx: np.ndarray, batch: int, seed: int) -> float:
    """Flow-matching loss on fixed frames with fixed noise and flow times (comparable across steps)."""
    head = vla.head
    was = head.training
    head.eval()
    g = torch.Generator().manual_seed(seed)
    total, n = 0.0, 0
    for i in range(0, len(idx), batch):
        j = idx[i:i + batch]
        total += head_loss(vla, source, j, g).item() * len(j)
        n += len(j)
    head.train(was)
    return total / max(n, 1)


@torch.no_grad()
def sampled_action_mse(vla: VLA, source: FeatureSource, idx: np.ndarray, batch: int, seed: int) -> dict[str, float]:
    """MSE between sampled chunks (Euler from fixed noise) and the data: normalised, raw units, first step."""
    head = vla.head.eval()
    rng = np.random.default_rng(seed)
    hc = vla.cfg.head
    se_norm, se_raw, se_first, n_el, n_first = 0.0, 0.0, 0.0, 0, 0
    for i in range(0, len(idx), batch):
        j = idx[i:i + batch]
        vl, m = source.get(j)
        b = batch_tensors(source.table, j, vla.cfg.inputs.embodiment_id)
        noise = torch.from_numpy(rng.standard_normal((len(j), hc.horizon, hc.action_dim)).astype(np.float32))
        pred = head(vl, m, b["state"], noise, b["embodiment"]).numpy()  # (B, H, A)
        gt = b["actions"].numpy()
        mask = b["action_mask"].numpy()[..., None]  # (B, H, 1)
        raw_p, raw_g = vla.action_stats.unnormalize(pred), vla.action_stats.unnormalize(gt)
        se_norm += float((((pred - gt) ** 2) * mask).sum())
        se_raw += float((((raw_p - raw_g) ** 2) * mask).sum())
        se_first += float(((raw_p[:, 0] - raw_g[:, 0]) ** 2).sum())
        n_el += int(mask.sum()) * hc.action_dim
        n_first += len(j) * hc.action_dim
    return {"mse_normalized": se_norm / max(n_el, 1), "mse_raw": se_raw / max(n_el, 1),
            "mse_first_step_raw": se_first / max(n_first, 1)}


def load_splits(cfg: VLATrainConfig) -> tuple[Any, Any]:
    root = as_episode_folder(resolve_dataset(cfg.dataset))  # LIBERO's official demo files: imported once
    ds = EpisodeDataset(root, tasks=list(cfg.tasks) if cfg.tasks else None)
    if len(ds) == 0:
        raise ValueError(f"{cfg.dataset}: no successful episodes" + (f" for tasks {cfg.tasks}" if cfg.tasks else ""))
    # every episode has the config's action space and cameras, or one error naming the episodes
    require([e.path for e in ds.episodes], Expect(cfg.action_space, tuple(cfg.cameras)), "the training config")
    train, val = ds.split(cfg.val_fraction, seed=cfg.seed)
    if cfg.max_episodes_per_task is not None:
        keep = []
        for task in train.tasks:
            keep += [i for i, e in enumerate(train.episodes) if e.task == task][: cfg.max_episodes_per_task]
        train = train.subset(sorted(keep))
    return train, val


def dataset_tasks(ds: Any) -> TaskSet:
    """The TaskSet saved in the dataset's meta.json (falls back to the default tasks present in it)."""
    meta = ds.meta if hasattr(ds, "meta") else {}
    if isinstance(meta.get("tasks"), dict):
        return TaskSet.from_dict(meta["tasks"])
    names = set(ds.tasks)
    return TaskSet([t for t in DEFAULT_TASKS if t.name in names] or list(DEFAULT_TASKS))


def frame_tables(cfg: VLATrainConfig, vla: VLA, splits: dict[str, Any]) -> dict[str, FrameTable]:
    """The frame table of the train split, and of the val split when it has episodes."""
    return {name: frame_table(split, vla, cfg.frame_stride) for name, split in splits.items()
            if name == "train" or len(split)}


def feature_sources(cfg: VLATrainConfig, vla: VLA, splits: dict[str, Any], tables: dict[str, FrameTable],
                    out: Path) -> dict[str, FeatureSource]:
    """The head's inputs per split, cached under ``cache_dir`` (default ``<output_dir>/feature_cache``)."""
    cache_root = Path(cfg.cache_dir) if cfg.cache_dir else out / "feature_cache"
    return {name: FeatureSource(vla, splits[name], table, cfg,
                                cache_root / f"{cache_key(cfg, vla, name, len(splits[name]))}.npz", name)
            for name, table in tables.items()}


def batch_indices(n: int, batch: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Sorted frame indices of each training batch: one permutation per epoch, a tail short of a batch skipped."""
    order, pos = rng.permutation(n), 0
    while True:
        if pos + batch > n:
            order, pos = rng.permutation(n), 0
        yield np.sort(order[pos:pos + batch])
        pos += batch


def curve_title(cfg: VLATrainConfig) -> str:
    return f"VLA head, backbone={Path(cfg.backbone).name}"


def train_head(cfg: VLATrainConfig, vla: VLA, sources: dict[str, FeatureSource], val_idx: np.ndarray | None,
               rng: np.random.Generator, out: Path, progress: bool) -> list[dict[str, Any]]:
    """AdamW on the head (warmup + cosine LR, clipped gradients); the validation loss every ``eval_every`` steps
    and at the end, with the curves redrawn. Returns one row per step (step, loss, lr, val_loss)."""
    head = vla.head.train()
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, cfg))
    batches = batch_indices(len(sources["train"].table.step), cfg.batch_size, rng)
    g = torch.Generator().manual_seed(cfg.seed)
    rows: list[dict[str, Any]] = []
    bar = tqdm(range(cfg.steps), desc="train vla head", disable=not progress)
    for step in bar:
        loss = head_loss(vla, sources["train"], next(batches), g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), cfg.max_grad_norm)
        opt.step()
        sched.step()
        row: dict[str, Any] = {"step": step + 1, "loss": float(loss.item()), "lr": sched.get_last_lr()[0]}
        if val_idx is not None and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps):
            row["val_loss"] = eval_loss(vla, sources["val"], val_idx, cfg.batch_size, cfg.seed)
            head.train()
            write_loss_curves(rows + [row], out, curve_title(cfg))
        rows.append(row)
        bar.set_postfix(loss=f"{row['loss']:.4f}", **({"val": f"{row['val_loss']:.4f}"} if "val_loss" in row else {}))
    head.eval()
    return rows


def train(cfg: VLATrainConfig, progress: bool = True) -> dict[str, Any]:
    """Run the whole training; returns the metrics written to ``metrics.json``."""
    torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.output_dir)
    start_run(out, cfg.to_dict())
    t_start = time.perf_counter()
    train_ds, val_ds = load_splits(cfg)
    splits = {"train": train_ds, "val": val_ds}
    vla = build_model(cfg, train_ds.norm_stats(f"actions.{cfg.action_space}"), train_ds.norm_stats("state"),
                      dataset_tasks(train_ds))
    tables = frame_tables(cfg, vla, splits)
    t_feat = time.perf_counter()
    sources = feature_sources(cfg, vla, splits, tables, out)
    feat_s = time.perf_counter() - t_feat
    rng = np.random.default_rng(cfg.seed)
    val_idx = None
    if "val" in tables:
        n_val = len(tables["val"].step)
        val_idx = np.sort(rng.choice(n_val, size=min(cfg.val_frames, n_val), replace=False))
    t_train = time.perf_counter()
    rows = train_head(cfg, vla, sources, val_idx, rng, out, progress)
    metrics: dict[str, Any] = {"backbone": cfg.backbone, "backbone_layer": vla.cfg.head.backbone_layer,
                               "train_frames": len(tables["train"].step), "train_episodes": len(train_ds),
                               "val_episodes": len(val_ds), "steps": cfg.steps,
                               "final_train_loss": float(np.mean([r["loss"] for r in rows[-50:]])),
                               "feature_seconds": feat_s, "train_seconds": time.perf_counter() - t_train,
                               "head_parameters": vla.head.num_parameters()}
    if val_idx is not None:
        metrics["val_loss"] = rows[-1].get("val_loss")
        metrics["val_offline"] = sampled_action_mse(vla, sources["val"], val_idx, cfg.batch_size, cfg.seed)
    finish_run(out, lambda: save_vla(vla, out / "checkpoint"), lambda: write_loss_curves(rows, out, curve_title(cfg)),
               metrics, started=t_start)
    return metrics


def main(argv: list[str] | None = None) -> int:
    cfg, args = parse_run_config("vla", __doc__.split("\n")[0], argv)
    metrics = train(cfg, progress=not args.no_progress)
    print(json.dumps({k: v for k, v in metrics.items() if k != "val_offline"}, indent=2))
    vo = metrics.get("val_offline")
    figures = {"val_loss": f"{metrics['val_loss']:.4f}", "val_mse_norm": f"{vo['mse_normalized']:.4f}",
               "val_mse_raw": f"{vo['mse_raw']:.5f}"} if vo else {}
    report("vla", metrics.get("checkpoint", cfg.output_dir), figures)
    return 0


if __name__ == "__main__":  # e.g. under accelerate launch: user errors in one line as with `roboalign train`
    import sys

    from roboalign.spec.user_errors import run_main

    raise SystemExit(run_main("roboalign.training.vla_head", main, sys.argv[1:]))
