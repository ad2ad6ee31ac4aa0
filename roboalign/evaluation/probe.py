"""Representation probe (paper Table 8): KNN classification of robot-state phases from backbone features.

Labels: the episodes of one task are aligned to a reference episode by dynamic time warping (DTW) over
their robot-state sequences, and the reference's phase segmentation (its scripted-expert phase labels)
is transferred along the warping path: frame i of an episode gets the phase of the reference frame it is
matched to (the majority phase when it is matched to several). Features: the backbone's layer-k hidden
states of each frame's prompt (images + instruction + state), mean-pooled over the non-padding tokens.
Probe: cosine-similarity k-nearest-neighbour majority vote, trained on the frames of half of the episodes
and tested on the frames of the other half (split by episode, so near-identical neighbouring frames of
one episode never sit on both sides). Chance level is reported beside the accuracy.

DTW is the textbook O(N*M) recursion (Sakoe & Chiba 1978) written with numpy; states are z-scored per
dimension (over all frames of the task) before Euclidean distances so joints and gripper weigh alike.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from roboalign.data import EpisodeDataset
from roboalign.sim.default_dataset import resolve_dataset
from roboalign.spec.normalization import NormStats
from roboalign.spec.policy_io import Observation


def dtw_path(a: np.ndarray, b: np.ndarray) -> tuple[float, list[tuple[int, int]]]:
    """DTW between sequences a (N, D) and b (M, D) with Euclidean frame cost.

    Returns (total cost, warping path as (i, j) pairs from (0, 0) to (N-1, M-1)), steps in
    {(1, 0), (0, 1), (1, 1)}.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) == 0 or len(b) == 0:
        raise ValueError(f"dtw_path needs two non-empty (N, D) arrays with the same D, got {a.shape} and {b.shape}")
    n, m = len(a), len(b)
    cost = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))  # (N, M)
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        row, prev = acc[i], acc[i - 1]
        ci = cost[i - 1]
        # the diagonal/vertical candidates vectorise; the horizontal one is a running recursion
        best_dv = np.minimum(prev[:-1], prev[1:])  # (M,): min(acc[i-1, j-1], acc[i-1, j]) for j = 1..M
        left = np.inf
        for j in range(1, m + 1):
            v = ci[j - 1] + (best_dv[j - 1] if best_dv[j - 1] < left else left)
            row[j] = v
            left = v
    # backtrack
    i, j = n, m
    path = [(i - 1, j - 1)]
    while i > 1 or j > 1:
        steps = ((acc[i - 1, j - 1], i - 1, j - 1), (acc[i - 1, j], i - 1, j), (acc[i, j - 1], i, j - 1))
        _, i, j = min(steps, key=lambda s: s[0])
        path.append((i - 1, j - 1))
    path.reverse()
    return float(acc[n, m]), path


def transfer_labels(path: Sequence[tuple[int, int]], ref_labels: Sequence[str], n: int) -> list[str]:
    """Labels for the n frames of a sequence aligned to a reference by ``path`` (majority over its matches)."""
    votes: list[Counter] = [Counter() for _ in range(n)]
    for i, j in path:
        votes[i][ref_labels[j]] += 1
    if any(not v for v in votes):
        raise ValueError("the warping path does not cover every frame")
    # ties resolved by the reference order (earliest phase) for determinism
    order = {lab: k for k, lab in enumerate(dict.fromkeys(ref_labels))}
    return [min(v.items(), key=lambda kv: (-kv[1], order[kv[0]]))[0] for v in votes]


def dtw_phase_labels(states: Sequence[np.ndarray], ref_index: int, ref_labels: Sequence[str]) -> list[list[str]]:
    """Phase labels for every episode (states: list of (T_i, D)) from the reference episode's labels."""
    if len(ref_labels) != len(states[ref_index]):
        raise ValueError(f"reference episode {ref_index} has {len(states[ref_index])} frames but "
                         f"{len(ref_labels)} phase labels")
    allf = np.concatenate(states, axis=0)
    mu, sd = allf.mean(0), allf.std(0)
    sd = np.where(sd < 1e-8, 1.0, sd)
    z = [(s - mu) / sd for s in states]
    out = []
    for k, s in enumerate(z):
        if k == ref_index:
            out.append(list(ref_labels))
            continue
        _, path = dtw_path(s, z[ref_index])
        out.append(transfer_labels(path, ref_labels, len(s)))
    return out


def knn_predict(train_x: np.ndarray, train_y: Sequence[str], test_x: np.ndarray, k: int = 5) -> list[str]:
    """Cosine-similarity k-NN majority vote (ties -> the label of the nearest neighbour among the tied)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    tr = train_x / np.maximum(np.linalg.norm(train_x, axis=1, keepdims=True), 1e-12)
    te = test_x / np.maximum(np.linalg.norm(test_x, axis=1, keepdims=True), 1e-12)
    sim = te @ tr.T  # (N_test, N_train)
    k = min(k, len(tr))
    nn_idx = np.argsort(-sim, axis=1)[:, :k]  # (N_test, k), nearest first
    labels = np.asarray(train_y)
    preds = []
    for row in nn_idx:
        cand = labels[row]
        counts = Counter(cand.tolist())
        top = max(counts.values())
        preds.append(next(lab for lab in cand if counts[lab] == top))
    return preds


@dataclass
class ProbeResult:
    accuracy: float
    chance: float  # accuracy of always predicting the most frequent training label
    n_train: int
    n_test: int
    per_phase: dict[str, float]
    per_episode: dict[int, float] = field(default_factory=dict)  # test episode index -> its frames' accuracy


def knn_probe(features: Sequence[np.ndarray], labels: Sequence[Sequence[str]], test_episodes: Sequence[int],
              k: int = 5) -> ProbeResult:
    """features[i]: (T_i, D) per-frame features of episode i; labels[i]: T_i phase names."""
    test = set(test_episodes)
    tr_x = [f for i, f in enumerate(features) if i not in test]
    te_x = [f for i, f in enumerate(features) if i in test]
    if not tr_x or not te_x:
        raise ValueError("knn_probe needs at least one train and one test episode")
    tr_y = [lab for i, ls in enumerate(labels) if i not in test for lab in ls]
    te_y = [lab for i, ls in enumerate(labels) if i in test for lab in ls]
    pred = knn_predict(np.concatenate(tr_x), tr_y, np.concatenate(te_x), k=k)
    hits = np.asarray(pred) == np.asarray(te_y)
    majority = Counter(tr_y).most_common(1)[0][0]
    per_phase = {p: float(hits[np.asarray(te_y) == p].mean()) for p in sorted(set(te_y))}
    owner = np.concatenate([[i] * len(ls) for i, ls in enumerate(labels) if i in test])
    per_episode = {int(i): float(hits[owner == i].mean()) for i in sorted(test)}
    return ProbeResult(accuracy=float(hits.mean()), chance=float(np.mean(np.asarray(te_y) == majority)),
                       n_train=len(tr_y), n_test=len(te_y), per_phase=per_phase, per_episode=per_episode)


# ---------------------------------------------------------------------------------------------- features + run
def episode_features(backbone: Any, datasets: Sequence[Any], layer: int, spec: Any, batch: int = 16,
                     progress: bool = True) -> list[np.ndarray]:
    """Mean-pooled layer-``layer`` hidden states (T_i, D) of every frame of every episode of ``datasets``, in order.

    The backbone is truncated at ``layer`` in place (``TruncatedBackbone``); the prompt is the VLA prompt
    (``VLAInputSpec`` ``spec``: cameras, image size, whether the state is printed); pooling runs over the
    tokens from the first image on (the system prefix is identical for every frame).
    """
    import torch

    from roboalign.models.vla import TruncatedBackbone
    from roboalign.models.vla_inputs import preprocess, vl_token_start
    from roboalign.spec.prompts import PromptTemplate

    trunc = TruncatedBackbone(backbone, layer)
    template = PromptTemplate()
    vs_id = int(backbone.tokenizer.convert_tokens_to_ids("<|vision_start|>"))
    out = []
    bar = tqdm(total=sum(e.length for ds in datasets for e in ds.episodes), desc=f"probe features L{layer}",
               disable=not progress)
    for ep in (ds.load(e, images=True) for ds in datasets for e in range(len(ds))):
        stats = NormStats.from_data(ep.state.astype(np.float64))  # only to satisfy preprocess; unused here
        feats = []
        for i in range(0, ep.length, batch):
            ts = range(i, min(i + batch, ep.length))
            obs = [Observation(images={c: ep.images[c][t] for c in spec.cameras}, state=ep.state[t],
                               instruction=ep.instruction) for t in ts]
            inp = preprocess(obs, spec, template, backbone.processor, stats)
            with torch.no_grad():
                h = trunc(*(torch.from_numpy(inp[k]) for k in ("input_ids", "attention_mask", "pixel_values",
                                                               "image_grid_thw")),
                          torch.from_numpy(inp["mm_token_type_ids"]) if "mm_token_type_ids" in inp else None)
            start = vl_token_start(inp["input_ids"], vs_id)
            m = torch.from_numpy(inp["attention_mask"][:, start:]).float().unsqueeze(-1)  # (B, S', 1)
            pooled = (h[:, start:].float() * m).sum(1) / m.sum(1)  # (B, D)
            feats.append(pooled.numpy())
            bar.update(len(obs))
        out.append(np.concatenate(feats))
    bar.close()
    return out


@dataclass(frozen=True)
class ProbeSetting:
    """What the probe sees and how it is split: the knobs that move it off saturation (see ``run_probe``)."""

    cameras: tuple[str, ...] = ("agentview", "wrist")
    image_size: tuple[int, int] = (112, 112)
    prompt_state: str = "none"
    feature_dim: int = 0  # > 0: fixed random projections to this many dimensions (the same for every backbone)
    projections: int = 5  # feature_dim > 0: results are the mean over this many seeded projections
    split: str = "episodes"  # episodes: the last test_fraction of each task's episodes; tasks: leave one task out
    k: int = 5
    test_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.split not in ("episodes", "tasks"):
            raise ValueError(f"split must be 'episodes' or 'tasks', got {self.split!r}")
        if self.feature_dim < 0 or self.projections < 1 or not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"feature_dim >= 0, projections >= 1 and 0 < test_fraction < 1 needed, got "
                             f"{self.feature_dim}, {self.projections}, {self.test_fraction}")


def project(features: Sequence[np.ndarray], dim: int, seed: int = 0) -> list[np.ndarray]:
    """``features`` through one seeded Gaussian projection to ``dim`` dimensions (``dim`` 0: unchanged)."""
    if dim <= 0:
        return list(features)
    width = features[0].shape[1]
    basis = np.random.default_rng(seed).standard_normal((width, dim)) / np.sqrt(dim)
    return [f @ basis for f in features]


def probe_splits(task_of: Sequence[str], setting: ProbeSetting) -> dict[str, list[int]]:
    """Held-out episode indices per fold: one fold of each task's last episodes, or one fold per task."""
    tasks = list(dict.fromkeys(task_of))
    by_task = {t: [i for i, x in enumerate(task_of) if x == t] for t in tasks}
    if setting.split == "tasks":
        if len(tasks) < 2:
            raise ValueError("split 'tasks' (leave one task out) needs episodes of at least two tasks")
        return by_task
    held = [i for idx in by_task.values() for i in idx[len(idx) - max(1, round(setting.test_fraction * len(idx))):]]
    return {"episodes": held}


def pooled_probe(features: Sequence[np.ndarray], labels: Sequence[Sequence[str]], folds: dict[str, list[int]],
                 k: int) -> dict[str, Any]:
    """``knn_probe`` on every fold; accuracy and chance pooled over all test frames, plus each fold's."""
    res = {name: knn_probe(features, labels, held, k=k) for name, held in folds.items()}
    n = sum(r.n_test for r in res.values())
    return {"accuracy": sum(r.accuracy * r.n_test for r in res.values()) / n,
            "chance": sum(r.chance * r.n_test for r in res.values()) / n, "n_test": n,
            "n_train": int(np.mean([r.n_train for r in res.values()])),
            "per_fold": {name: r.accuracy for name, r in res.items()},
            "per_phase": res[next(iter(res))].per_phase if len(res) == 1 else {},
            "per_episode": {i: a for r in res.values() for i, a in r.per_episode.items()}}


def projected_probe(features: Sequence[np.ndarray], labels: Sequence[Sequence[str]], folds: dict[str, list[int]],
                    setting: ProbeSetting) -> dict[str, Any]:
    """:func:`pooled_probe` averaged over ``setting.projections`` seeded projections (one when not projecting);
    ``accuracy_sd``: the spread over the projections."""
    seeds = range(setting.projections if setting.feature_dim else 1)
    runs = [pooled_probe(project(features, setting.feature_dim, seed=s), labels, folds, setting.k) for s in seeds]
    acc = [r["accuracy"] for r in runs]
    episodes = runs[0]["per_episode"]
    return {**runs[0], "accuracy": float(np.mean(acc)), "accuracy_sd": float(np.std(acc)),
            "per_fold": {f: float(np.mean([r["per_fold"][f] for r in runs])) for f in runs[0]["per_fold"]},
            "per_episode": {i: float(np.mean([r["per_episode"][i] for r in runs])) for i in episodes}}


def paired_deltas(backbones: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Each backbone's accuracy minus the first's, paired over the same test episodes: mean and standard error."""
    from roboalign.training.evaluate import paired_difference

    names = list(backbones)
    ref = backbones[names[0]]["per_episode"]
    out = {}
    for name in names[1:]:
        delta, se = paired_difference([ref[i] for i in ref], [backbones[name]["per_episode"][i] for i in ref])
        out[name] = {"vs": names[0], "delta": delta, "se": se}
    return out


def _task_labels(ds: Any, ref_episode: int) -> tuple[list[list[str]], float | None]:
    """DTW phase labels of one task's episodes and their agreement with the expert's own phases."""
    eps = [ds.load(i, images=False) for i in range(len(ds))]
    if eps[ref_episode].phases is None:
        raise ValueError(f"{ds.episodes[ref_episode].path}: the reference episode has no phase labels")
    labels = dtw_phase_labels([e.state for e in eps], ref_episode, eps[ref_episode].phases)
    agree = [np.mean(np.asarray(lab) == np.asarray(e.phases)) for i, (lab, e) in enumerate(zip(labels, eps, strict=True))
             if i != ref_episode and e.phases is not None]
    return labels, float(np.mean(agree)) if agree else None


def _task_datasets(dataset: str, tasks: Sequence[str], episodes: int) -> list[Any]:
    out = []
    for task in tasks:
        ds = EpisodeDataset(resolve_dataset(dataset), tasks=[task])
        if len(ds) < 4:
            raise ValueError(f"{dataset}: task {task!r} has {len(ds)} successful episodes, the probe needs >= 4")
        out.append(ds.subset(list(range(min(episodes, len(ds))))))
    return out


def run_probe(dataset: str, tasks: str | Sequence[str], backbones: dict[str, str], layer: int | None = None,
              episodes: int = 20, ref_episode: int = 0, setting: ProbeSetting | None = None,
              out: str | None = None, progress: bool = True) -> dict[str, Any]:
    """The Table-8 probe for several backbones (name -> ``tiny`` or a local folder) on one or more tasks.

    Each task's episodes get DTW labels from that task's reference episode; the frames of all tasks are
    pooled. At tiny scale one task with all features sits at the ceiling (neighbouring frames of the same
    task look alike); pooling the tasks and projecting to a few dimensions (``setting.feature_dim``) moves it
    off. ``setting.split`` 'tasks' trains on the other tasks' frames and tests on each task in turn (phases of
    an unseen object and scene).
    """
    from roboalign.models.vla_inputs import VLAInputSpec
    from roboalign.training.vla_head import load_any_backbone

    tasks = [tasks] if isinstance(tasks, str) else list(tasks)
    setting = setting or ProbeSetting()
    per_task = _task_datasets(dataset, tasks, episodes)
    labels, task_of, agree = [], [], {}
    for task, ds in zip(tasks, per_task, strict=True):
        lab, agree[task] = _task_labels(ds, ref_episode)
        labels += lab
        task_of += [task] * len(lab)
    folds = probe_splits(task_of, setting)
    spec = VLAInputSpec(cameras=setting.cameras, image_size=setting.image_size, prompt_state=setting.prompt_state)
    results: dict[str, Any] = {"task": ",".join(tasks), "tasks": tasks, "episodes": len(labels),
                               "setting": {**setting.__dict__}, "test_episodes": folds, "dtw_label_agreement_with_expert": _mean_or_none(agree),
                               "backbones": {}}
    for name, src in backbones.items():
        bb = load_any_backbone(src)
        lay = bb.num_layers - 1 if layer is None else layer
        feats = episode_features(bb, per_task, lay, spec, progress=progress)
        r = projected_probe(feats, labels, folds, setting)
        results["backbones"][name] = {"source": src, "layer": lay, **r}
    results["paired_deltas"] = paired_deltas(results["backbones"])
    if out is not None:
        write_probe_report(results, out)
    return results


def _mean_or_none(values: dict[str, float | None]) -> float | None:
    known = [v for v in values.values() if v is not None]
    return float(np.mean(known)) if known else None


def _delta_text(d: dict[str, float] | None) -> str:
    return "" if d is None else f"{100 * d['delta']:+.1f} ± {100 * d['se']:.1f} vs {d['vs']}"


def write_probe_report(results: dict[str, Any], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    (d / "probe.json").write_text(json.dumps(results, indent=2))
    rows = results["backbones"]
    st = results["setting"]
    lines = [f"KNN phase probe, task {results['task']}, {results['episodes']} episodes "
             f"(cameras {','.join(st['cameras'])}, features {st['feature_dim'] or 'all'}, split by {st['split']}, "
             f"k={st['k']}, DTW labels; agreement with expert phases "
             f"{100 * (results['dtw_label_agreement_with_expert'] or 0):.1f} %)", "",
             "| backbone | layer | KNN accuracy % (± sd over projections) | chance % | paired Δ ± se (test episodes) |", "|---|---|---|---|---|"]
    deltas = results["paired_deltas"]
    lines += [f"| {n} | {r['layer']} | {100 * r['accuracy']:.1f} ± {100 * r['accuracy_sd']:.1f} | "
              f"{100 * r['chance']:.1f} | {_delta_text(deltas.get(n))} |" for n, r in rows.items()]
    (d / "probe.md").write_text("\n".join(lines) + "\n")
    with open(d / "probe.csv", "w") as f:
        f.write("backbone,source,layer,accuracy,chance,n_train,n_test\n")
        for n, r in rows.items():
            f.write(f"{n},{r['source']},{r['layer']},{r['accuracy']:.4f},{r['chance']:.4f},{r['n_train']},{r['n_test']}\n")
    fig, ax = plt.subplots(figsize=(4, 3))
    names = list(rows)
    ax.bar(names, [100 * rows[n]["accuracy"] for n in names], color=["C0", "C1", "C2", "C3"][: len(names)])
    ax.axhline(100 * max(rows[n]["chance"] for n in names), color="gray", ls="--", label="majority class")
    ax.set_ylabel("KNN phase accuracy %")
    ax.set_title(f"phase probe: {results['task']}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(d / "probe.png", dpi=110)
    plt.close(fig)
