"""GRPO raises the reward it is given: a test that fails when GRPO is wired wrong.

Setting: the 8 robot prompts of one scripted episode (distinct states, one object), an SFT model trained
briefly on exactly these prompts, then GRPO (TRL, the RoboAlign reward r = (r_f + r_a) / 2, 8 generations
per prompt, every prompt in every step) on the same prompts. The SFT model must have room to improve: SFT
runs SFT_STEPS (most first) until its sampled r_a lands in ROOM, because where a run lands is chaotic (the
same 60 steps land at 0.89 or 0.93 on two installs; from 0.93 GRPO can gain only noise-level r_a).

Statistic, on these fixed prompts: per prompt p, r_p = mean r_a of K completions sampled at temperature 1
(seeded); delta = mean_p (r_p after - r_p before); its standard error is the sampling noise of the two
measurements, se = sqrt(sum_p (s2_p,after + s2_p,before) / K) / P. The real run must give delta > 3 se;
the same run with the advantage sign flipped (rewards negated: the group-normalised advantage is odd in
r) or with rewards shuffled across the completions of a batch must not (delta < 1 se). Breaking the
completion mask, scoring the wrong completion's tokens or shifting the FAST-id <-> token mapping each makes
the real run fail (numbers in docs/alignment.md)."""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from align_fixtures import make_episodes  # noqa: E402
from export_fixtures import built_once  # noqa: E402

from roboalign.models.aligned import AlignedModel, load_aligned  # noqa: E402
from roboalign.training.config import DataConfig, GRPORunConfig, SFTRunConfig  # noqa: E402
from roboalign.training.data_builders import to_hf_dataset  # noqa: E402
from roboalign.training.evaluate import evaluate  # noqa: E402
from roboalign.training.grpo import GRPO_COLUMNS, grpo_samples, make_grpo_trainer  # noqa: E402
from roboalign.training.sft import run_sft  # noqa: E402

DATA = DataConfig(dataset="toy", chunk_len=4, stride=4, fast_vocab_size=64, mixture={"robot": 1.0})
K = 128  # completions per prompt for each measurement
Z_PASS, Z_CONTROL = 3.0, 1.0
GRPO_LR, GRPO_STEPS, GRPO_BATCH = 3e-4, 45, 64  # 8 prompts x 8 generations per step
SFT_STEPS, ROOM = (60, 50, 40, 30), (0.25, 0.85)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setting(shared_tmp_path):
    """Built once per test run: parallel workers run this module's tests side by side (tests/parallel.py)."""
    return built_once(shared_tmp_path / "grpo_learns_setting", saved_setting)


def saved_setting(root: Path) -> tuple[Path, list[dict], np.ndarray]:
    """make_setting(root), or the setting an earlier call (in this or another process) wrote to root: the SFT
    folder and its r_a as JSON + .npy (no pickle); the prompts are rebuilt from the saved model and the episodes."""
    chosen, scores = root / "setting.json", root / "before.npy"
    if not chosen.is_file():
        sft_dir, _, before = make_setting(root)
        np.save(scores, before, allow_pickle=False)
        chosen.write_text(json.dumps({"sft_dir": str(sft_dir)}))
    sft_dir = Path(json.loads(chosen.read_text())["sft_dir"])
    prompts = grpo_samples(load_aligned(sft_dir), make_episodes(1, steps=32, privileged=False), GRPORunConfig(data=DATA))
    return sft_dir, prompts, np.load(scores, allow_pickle=False)


def make_setting(root: Path) -> tuple[Path, list[dict], np.ndarray]:
    """(SFT folder, the 8 prompts, r_a of the SFT model: P x K) for the longest SFT_STEPS run within ROOM."""
    episodes = make_episodes(1, steps=32, privileged=False)
    seen = []
    for steps in SFT_STEPS:
        sft_dir = root / f"sft{steps}"
        sft = sft_model(sft_dir, steps, episodes)
        prompts = grpo_samples(sft, episodes, GRPORunConfig(data=DATA))
        before = sampled_accuracy(sft, prompts)
        if ROOM[0] < before.mean() < ROOM[1]:
            return sft_dir, prompts, before
        seen.append(f"{steps} steps: {before.mean():.3f}")
    raise AssertionError(f"no SFT run has sampled r_a within {ROOM}: {', '.join(seen)}")


def sft_model(out: Path, steps: int, episodes: list) -> AlignedModel:
    """SFT from the tiny base for ``steps`` steps (lr 5e-3, constant), loaded back from ``out``."""
    run_sft(SFTRunConfig(output_dir=str(out), data=DATA, learning_rate=5e-3, lr_scheduler_type="constant",
                         warmup_ratio=0.0, max_steps=steps, per_device_train_batch_size=8, save_steps=10_000),
            train=episodes)
    return load_aligned(out)


def sampled_accuracy(aligned, prompts: list[dict], seed: int = 123) -> np.ndarray:
    """r_a of ``K`` temperature-1 completions per prompt, shape (P, K)."""
    torch.manual_seed(seed)
    e = evaluate(aligned, [p for p in prompts for _ in range(K)], do_sample=True, batch_size=64, progress=False)
    return np.asarray(e.per_sample_acc).reshape(len(prompts), K)


def paired_gain(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """Mean over prompts of the per-prompt gain and its standard error (sampling noise of both measurements)."""
    k = before.shape[1]
    d = after.mean(1) - before.mean(1)
    se = np.sqrt(((after.var(1, ddof=1) + before.var(1, ddof=1)) / k).sum()) / len(d)
    return float(d.mean()), float(se)


def negated(f: Callable) -> Callable:
    def g(*args, **kwargs):
        return [-r for r in f(*args, **kwargs)]
    g.__name__ = f.__name__
    return g


def shuffled(funcs: list[Callable], seed: int = 0) -> list[Callable]:
    """The reward functions with one random permutation per batch applied to all of them (rewards moved to
    other completions, across prompts)."""
    rng, perm = np.random.default_rng(seed), {}

    def wrap(f: Callable, first: bool) -> Callable:
        def g(*args, **kwargs):
            r = f(*args, **kwargs)
            if first:
                perm["p"] = rng.permutation(len(r))
            return [r[i] for i in perm["p"]]
        g.__name__ = f.__name__
        return g

    return [wrap(f, i == 0) for i, f in enumerate(funcs)]


def run(setting, tmp_path: Path, rewards: str = "real", patch: Callable | None = None) -> tuple[float, float]:
    """GRPO from the SFT model on its own prompts; (delta, se) of sampled r_a on those prompts.

    ``patch(trainer)``, if given, changes the trainer before training (to check that a break is caught)."""
    sft_dir, prompts, before = setting
    random.seed(0)
    aligned = load_aligned(sft_dir)
    cfg = GRPORunConfig(init_checkpoint=str(sft_dir), output_dir=str(tmp_path / rewards), data=DATA,
                        learning_rate=GRPO_LR, max_steps=GRPO_STEPS, num_generations=8, per_device_train_batch_size=GRPO_BATCH,
                        max_completion_length=48, beta=0.0, logging_steps=10, save_steps=10_000, seed=1)
    trainer = make_grpo_trainer(aligned, to_hf_dataset(prompts, GRPO_COLUMNS), cfg)
    if rewards == "negated":
        trainer.reward_funcs = [negated(f) for f in trainer.reward_funcs]
    elif rewards == "shuffled":
        trainer.reward_funcs = shuffled(list(trainer.reward_funcs))
    if patch is not None:
        patch(trainer)
    trainer.train()
    return paired_gain(before, sampled_accuracy(aligned, prompts))


def test_the_setting_has_reward_spread(setting):
    _, prompts, before = setting
    assert len(prompts) == 8
    assert ROOM[0] < before.mean() < ROOM[1], before.mean()  # room to improve
    assert (before.std(1) > 0).sum() >= 6  # most prompts' completions differ in r_a


def test_grpo_raises_the_accuracy_reward_on_its_prompts(setting, tmp_path):
    delta, se = run(setting, tmp_path)
    print(f"GRPO: delta r_a {delta:+.4f} se {se:.4f} z {delta / se:+.1f}")
    assert delta > Z_PASS * se, (delta, se)


@pytest.mark.parametrize("rewards", ["negated", "shuffled"])
def test_grpo_with_wrong_rewards_does_not(setting, tmp_path, rewards):
    delta, se = run(setting, tmp_path, rewards)
    print(f"GRPO with {rewards} rewards: delta r_a {delta:+.4f} se {se:.4f} z {delta / se:+.1f}")
    assert delta < Z_CONTROL * se, (delta, se)
