"""``roboalign bench fast``: FAST vs naive 256-bin tokenisation on demonstration action chunks.

Demonstrations are smooth synthetic pick-and-place episodes (min-jerk reach / grasp / lift / carry /
release, 20 Hz, 7-D: 6 end-effector velocity deltas + gripper, with teleoperation-like noise) until a
recorded dataset is passed with ``--dataset`` (``.npz`` with ``actions`` (S, D) and optional
``episode_ends``; a dataset folder once ``roboalign.data`` provides a reader).

Protocol: split episodes 80/20; fit the normalisation stats and the FAST BPE on the training episodes;
measure on the held-out chunks (sliding windows of ``--chunk-len`` steps): FAST tokens per chunk, the
naive per-dimension 256-bin tokenizer's tokens per chunk (T*D), the worst round-trip error (normalised
units, against the rounding bound of ``roboalign.spec.fast``) and batch encode+decode throughput, both
tokenizers side by side. Writes ``fast.png`` and ``fast.json`` to ``--out``. Final line:

    fast: tokens_per_chunk=<F> binning_tokens_per_chunk=<B> roundtrip_max_err=<E> encode_decode_chunks_per_s=<R>
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from roboalign.data import EpisodeDataset
from roboalign.spec.fast import FastConfig, FastTokenizer
from roboalign.spec.normalization import NormStats

ACTION_NAMES = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")


# ---------------------------------------------------------------------- synthetic demonstrations
def min_jerk(s: np.ndarray) -> np.ndarray:
    """Minimum-jerk position profile on s in [0, 1]: 10 s^3 - 15 s^4 + 6 s^5."""
    return s**3 * (10.0 - 15.0 * s + 6.0 * s**2)


def synthetic_episode(rng: np.random.Generator, hz: float = 20.0, noise: float = 0.05) -> np.ndarray:
    """One pick-and-place demonstration -> (S, 7) actions: EEF velocity deltas (6) + gripper (-1 open, 1 closed).

    The end effector follows min-jerk segments between waypoints (above object, grasp, lift, carry over the
    target, lower, retreat); ``noise`` adds Gaussian jitter with that fraction of the episode's per-dimension
    velocity spread (teleoperation noise).
    """
    obj = np.r_[rng.uniform(0.35, 0.65), rng.uniform(-0.25, 0.25), 0.02]
    tgt = np.r_[rng.uniform(0.35, 0.65), rng.uniform(-0.25, 0.25), 0.05]
    home = np.r_[0.45 + rng.normal(0, 0.03), rng.normal(0, 0.03), 0.35 + rng.normal(0, 0.02)]
    rot0 = np.r_[math.pi, 0.0, 0.0] + rng.normal(0, 0.05, 3)
    yaw = rng.uniform(-0.8, 0.8)
    grasp_rot = rot0 + np.r_[rng.normal(0, 0.05), rng.normal(0, 0.05), yaw]
    place_rot = grasp_rot + np.r_[0.0, 0.0, rng.uniform(-0.4, 0.4)]
    up = np.r_[0.0, 0.0, 1.0]
    # (position, rotation, duration in s, gripper during the segment)
    plan = [
        (obj + 0.12 * up, grasp_rot, rng.uniform(1.2, 2.5), -1.0),  # reach above the object
        (obj, grasp_rot, rng.uniform(0.6, 1.0), -1.0),  # descend
        (obj, grasp_rot, rng.uniform(0.4, 0.6), 1.0),  # close the gripper
        (obj + 0.20 * up, grasp_rot, rng.uniform(0.6, 1.0), 1.0),  # lift
        (tgt + 0.15 * up, place_rot, rng.uniform(1.2, 2.5), 1.0),  # carry
        (tgt + 0.03 * up, place_rot, rng.uniform(0.5, 0.8), 1.0),  # lower
        (tgt + 0.03 * up, place_rot, rng.uniform(0.3, 0.5), -1.0),  # release
        (tgt + 0.18 * up, place_rot, rng.uniform(0.5, 1.0), -1.0),  # retreat
    ]
    pose = np.r_[home, rot0]  # (6,)
    poses, grip = [pose[None]], []
    for pos, rot, dur, g in plan:
        n = max(2, int(round(dur * hz)))
        s = min_jerk(np.arange(1, n + 1) / n)[:, None]  # (n, 1)
        goal = np.r_[pos, rot]
        poses.append(pose + s * (goal - pose))  # (n, 6)
        grip.append(np.full(n, g))
        pose = goal
    traj = np.concatenate(poses)  # (S + 1, 6)
    vel = np.diff(traj, axis=0) * hz  # (S, 6) m/s and rad/s
    vel += rng.normal(size=vel.shape) * noise * vel.std(axis=0, keepdims=True)
    return np.concatenate([vel, np.concatenate(grip)[:, None]], axis=1)  # (S, 7)


def synthetic_episodes(n: int, seed: int = 0, hz: float = 20.0, noise: float = 0.05) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [synthetic_episode(rng, hz, noise) for _ in range(n)]


def load_action_episodes(path: Path) -> list[np.ndarray]:
    """Episodes of actions from a recorded dataset (list of (S, D) arrays)."""
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            if "actions" not in data:
                raise ValueError(f"{path}: needs an 'actions' array (S, D); found {sorted(data.files)}")
            actions = np.asarray(data["actions"], dtype=np.float64)
            ends = np.asarray(data["episode_ends"]) if "episode_ends" in data else np.array([len(actions)])
        if actions.ndim != 2:
            raise ValueError(f"{path}: 'actions' must be (S, D), got {actions.shape}")
        if ends.ndim != 1 or np.any(np.diff(np.r_[0, ends]) <= 0) or ends[-1] != len(actions):
            raise ValueError(f"{path}: 'episode_ends' must increase strictly and end at {len(actions)}, got {ends}")
        return np.split(actions, ends[:-1])
    if path.is_dir():
        ds = EpisodeDataset(path)
        return [np.asarray(ds.load(i, images=False).actions["eef_delta"], dtype=np.float64) for i in range(len(ds))]
    raise SystemExit(f"--dataset {path}: expected an .npz file or a dataset folder")


def windows(episodes: list[np.ndarray], chunk_len: int, stride: int) -> np.ndarray:
    """Sliding windows inside each episode -> (N, T, D)."""
    out = [
        np.lib.stride_tricks.sliding_window_view(ep, chunk_len, axis=0)[::stride].transpose(0, 2, 1)
        for ep in episodes
        if len(ep) >= chunk_len
    ]
    if not out:
        raise SystemExit(f"no episode is at least {chunk_len} steps long")
    return np.concatenate(out)


# ---------------------------------------------------------------------- the naive baseline
def binning_encode(chunks: np.ndarray, bins: int = 256) -> np.ndarray:
    """(N, T, D) in [-1, 1] -> (N, T*D) bin ids: one token per dimension per step (RT-2 / OpenVLA style)."""
    ids = np.floor((chunks + 1.0) * 0.5 * bins).astype(np.int64)
    return np.clip(ids, 0, bins - 1).reshape(chunks.shape[0], -1)


def binning_decode(ids: np.ndarray, chunk_len: int, action_dim: int, bins: int = 256) -> np.ndarray:
    """(N, T*D) bin ids -> (N, T, D) bin centres."""
    return ((ids + 0.5) / bins * 2.0 - 1.0).reshape(ids.shape[0], chunk_len, action_dim)


def best_time(fn: Callable[[], object], repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


# ---------------------------------------------------------------------- plot
def plot(path: Path, tokens: np.ndarray, binning: int, chunk: np.ndarray, decoded: np.ndarray, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.2))
    ax0.hist(tokens, bins=min(60, max(5, int(tokens.max() - tokens.min() + 1))), color="tab:blue", alpha=0.8,
             label=f"FAST (mean {tokens.mean():.1f})")
    ax0.axvline(binning, color="tab:red", lw=2, label=f"256-bin ({binning})")
    ax0.set_xlabel("tokens per chunk")
    ax0.set_ylabel("chunks")
    ax0.set_title("tokens per action chunk (held-out)")
    ax0.legend()
    t = np.arange(chunk.shape[0])
    for j in range(chunk.shape[1]):
        (line,) = ax1.plot(t, chunk[:, j], lw=1.5, label=ACTION_NAMES[j] if j < len(ACTION_NAMES) else f"dim {j}")
        ax1.plot(t, decoded[:, j], ls="--", marker=".", color=line.get_color())
    ax1.set_xlabel("step")
    ax1.set_ylabel("normalised action")
    ax1.set_title("round trip: original (solid) vs decode(encode) (dashed)")
    ax1.legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="roboalign bench fast", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, default=None, help="recorded actions (.npz or dataset folder)")
    p.add_argument("--episodes", type=int, default=200, help="synthetic episodes (without --dataset)")
    p.add_argument("--noise", type=float, default=0.05, help="synthetic teleoperation noise (fraction)")
    p.add_argument("--hz", type=float, default=20.0, help="synthetic control rate")
    p.add_argument("--chunk-len", type=int, default=16, help="T, actions per chunk")
    p.add_argument("--stride", type=int, default=2, help="window stride inside an episode")
    p.add_argument("--preset", default="fast", help="FAST preset: fast | fast+")
    p.add_argument("--vocab-size", type=int, default=None, help="override the preset's BPE vocabulary size")
    p.add_argument("--scale", type=float, default=None, help="override the preset's DCT scale")
    p.add_argument("--repeats", type=int, default=5, help="timing repeats (best is kept)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("bench_results"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dataset is not None:
        episodes, source = load_action_episodes(args.dataset), str(args.dataset)
    else:
        episodes = synthetic_episodes(args.episodes, args.seed, args.hz, args.noise)
        source = f"synthetic min-jerk pick-and-place, {args.episodes} episodes, {args.hz:g} Hz, noise {args.noise:g}"
    dim = episodes[0].shape[1]
    order = np.random.default_rng(args.seed + 1).permutation(len(episodes))
    n_train = max(1, int(round(0.8 * len(episodes))))
    train_eps = [episodes[i] for i in order[:n_train]]
    test_eps = [episodes[i] for i in order[n_train:]] or train_eps
    names = ACTION_NAMES if dim == len(ACTION_NAMES) else tuple(f"dim_{i}" for i in range(dim))
    stats = NormStats.from_data(np.concatenate(train_eps), names=names)
    train = stats.normalize(windows(train_eps, args.chunk_len, args.stride))  # (N, T, D)
    test = stats.normalize(windows(test_eps, args.chunk_len, args.stride))  # (M, T, D)
    overrides = {k: v for k, v in (("vocab_size", args.vocab_size), ("scale", args.scale)) if v is not None}
    config = FastConfig.preset(args.preset, args.chunk_len, dim, **overrides)
    print(f"data: {source}; {len(train)} train / {len(test)} held-out chunks of {args.chunk_len}x{dim}")

    t0 = time.perf_counter()
    fast = FastTokenizer.fit(train, config, show_progress=False)
    fit_s = time.perf_counter() - t0
    print(f"fit: {fast.vocab_size} BPE tokens (alphabet {config.alphabet_size}) in {fit_s:.2f} s")

    ids = fast.encode(test)
    decoded, reports = fast.decode(ids, strict=True)  # every sequence must decode exactly
    tokens = np.array([len(r) for r in ids])
    err = float(np.abs(decoded - test).max())
    bound = config.roundtrip_bound
    binning_tokens = args.chunk_len * dim
    bin_err = float(np.abs(binning_decode(binning_encode(test), args.chunk_len, dim) - test).max())

    fast_s = best_time(lambda: fast.decode(fast.encode(test)), args.repeats)
    bin_s = best_time(lambda: binning_decode(binning_encode(test), args.chunk_len, dim), args.repeats)
    rate = len(test) / fast_s
    print(f"fast: tokens/chunk mean {tokens.mean():.2f} (min {tokens.min()}, max {tokens.max()}), "
          f"compression {binning_tokens / tokens.mean():.2f}x vs 256-bin")
    print(f"roundtrip: FAST max err {err:.4g} (bound {bound:.4g} = 0.5/scale * max row-L1 of IDCT; "
          f"{'within' if err <= bound + 1e-9 else 'EXCEEDS'}), 256-bin max err {bin_err:.4g}")
    print(f"speed: FAST encode+decode {rate:.1f} chunks/s, 256-bin {len(test) / bin_s:.1f} chunks/s "
          f"(ratio {fast_s / bin_s:.1f}x slower), batch of {len(test)}")

    args.out.mkdir(parents=True, exist_ok=True)
    k = int(np.argmax(tokens))  # the hardest held-out chunk
    plot(args.out / "fast.png", tokens, binning_tokens, test[k], decoded[k],
         f"FAST ({args.preset}, vocab {fast.vocab_size}, scale {config.scale:g}) on {len(test)} held-out chunks")
    results = {
        "source": source, "config": config.to_dict(), "trained_vocab_size": fast.vocab_size,
        "train_chunks": len(train), "test_chunks": len(test), "fit_s": fit_s,
        "tokens_per_chunk": float(tokens.mean()), "binning_tokens_per_chunk": binning_tokens,
        "roundtrip_max_err": err, "roundtrip_bound": bound, "binning_roundtrip_max_err": bin_err,
        "encode_decode_chunks_per_s": rate, "binning_encode_decode_chunks_per_s": len(test) / bin_s,
        "decode_status": sorted({r.status.value for r in reports}),
    }
    (args.out / "fast.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out / 'fast.png'} and {args.out / 'fast.json'}")
    print(f"fast: tokens_per_chunk={tokens.mean():.2f} binning_tokens_per_chunk={binning_tokens} "
          f"roundtrip_max_err={err:.4g} encode_decode_chunks_per_s={rate:.1f}")
    return 0 if tokens.mean() < binning_tokens and err <= bound + 1e-9 else 1


if __name__ == "__main__":
    raise SystemExit(main())
