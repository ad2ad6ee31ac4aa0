"""The RQ2 alignments by config: ``reward: action | language | trajectory2d`` — rewards, SFT answers, GRPO runs.

The reward values are checked on hand-made completions against the formulas of ``roboalign.spec.rewards``;
the builders' answers against the toy world's expert phases and its rendered top view (the white gripper dot);
the configs refuse an unknown reward naming the three; a 2-step GRPO run on the tiny model runs with each.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from align_fixtures import make_episode  # noqa: E402

from roboalign.commands.cli import main as roboalign_main  # noqa: E402
from roboalign.spec.loader import SpecError  # noqa: E402
from roboalign.spec.rewards import (  # noqa: E402
    TRAJECTORY_TOL_PX,
    RoboAlignRewards,
    answer_text,
    language_accuracy,
    parse_points,
    trajectory_accuracy,
)
from roboalign.training.config import DataConfig, GRPORunConfig, SFTRunConfig  # noqa: E402
from roboalign.training.data_builders import NEXT_STEP, DataError, SampleConfig, robot_samples  # noqa: E402
from roboalign.training.overrides import load_with_sets  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"
PHRASE = "lower the gripper around the milk"


def _completion(answer: str, reasoning: str = "The target is the milk.") -> list[dict[str, str]]:
    return [{"role": "assistant", "content": f"<think>{reasoning}</think><answer>{answer}</answer>"}]


# ------------------------------------------------------------------ language reward


def test_language_reward_exact_partial_wrong_and_unparsable():
    assert language_accuracy(PHRASE, PHRASE) == 1.0
    assert language_accuracy("  Lower the GRIPPER, around the milk. ", PHRASE) == 1.0  # case, punctuation, spaces
    # a different phase of the same object: 4 of 6 words shared (the, the, gripper, milk): F1 = 2/3, half of it
    assert language_accuracy("close the gripper on the milk", PHRASE) == pytest.approx(0.5 * 2 / 3)
    # extra words: 6 of 9 predicted words are right, all 6 target words found: P = 2/3, R = 1, F1 = 0.8
    assert language_accuracy("I will now lower the gripper around the milk", PHRASE) == pytest.approx(0.5 * 0.8)
    assert language_accuracy("milk the around gripper the lower", PHRASE) == pytest.approx(0.5)  # order matters
    assert language_accuracy("open fire", PHRASE) == 0.0
    assert language_accuracy(None, PHRASE) == 0.0
    assert language_accuracy("", PHRASE) == 0.0
    with pytest.raises(ValueError, match="target phrase is empty"):
        language_accuracy("x", " . ")


def test_language_reward_reads_the_answer_tag_only():
    rewards = RoboAlignRewards(None, reward="language")
    completions = [
        _completion(PHRASE),
        [{"role": "assistant", "content": f"Sure! <think>x</think><answer>{PHRASE}</answer> done"}],  # extra text
        _completion("carry the milk over the basket", reasoning=PHRASE),  # the phrase in the reasoning: no credit
        [{"role": "assistant", "content": PHRASE}],  # no <answer>: nothing parses
        f"<think>x</think><answer>{PHRASE}",  # cut off before </answer>
    ]
    acc = rewards.accuracy(completions, target_text=[PHRASE] * 5)
    assert acc[0] == 1.0 and acc[1] == 1.0 and acc[3] == 0.0 and acc[4] == 1.0
    assert acc[2] == pytest.approx(0.5 * 0.5)  # carry the milk over the basket: the, the, milk of 6 words: F1 = 0.5
    assert rewards.format(completions) == [1.0, 0.0, 1.0, 0.0, 0.0]
    total = rewards.total(completions, target_text=[PHRASE] * 5)
    assert total == pytest.approx([(f + a) / 2 for f, a in zip(rewards.format(completions), acc, strict=True)])
    with pytest.raises(KeyError, match="target_text"):
        rewards.accuracy(completions, target_fast=[[1]] * 5)


# ------------------------------------------------------------------ trajectory reward


def test_trajectory_reward_formula():
    truth = [[10, 20], [14, 23]]
    assert TRAJECTORY_TOL_PX == 8.0
    assert trajectory_accuracy("[(10, 20), (14, 23)]", truth) == 1.0
    # the second point 5 px off (3, 4): 1 - 5/8 = 0.375; mean over K = 2
    assert trajectory_accuracy("[(10, 20), (17, 27)]", truth) == pytest.approx((1 + 0.375) / 2)
    assert trajectory_accuracy("[(10, 20), (17, 27)]", truth, tol_px=10.0) == pytest.approx((1 + 0.5) / 2)
    assert trajectory_accuracy("[(10, 20)]", truth) == pytest.approx(0.5)  # a missing waypoint counts 0
    assert trajectory_accuracy("[(10, 20), (14, 23), (60, 60)]", truth) == 1.0  # points after the K-th ignored
    assert trajectory_accuracy("[(40, 40), (14, 23)]", truth) == pytest.approx(0.5)  # far beyond τ: 0, not < 0
    assert trajectory_accuracy("(10.4, 19.6) then (14,23)", truth) == pytest.approx(
        (1 - np.hypot(0.4, 0.4) / 8 + 1) / 2)
    assert trajectory_accuracy("no idea", truth) == 0.0
    assert trajectory_accuracy(None, truth) == 0.0
    assert parse_points("[(1, -2), (3.5, 4)]") == [(1.0, -2.0), (3.5, 4.0)]
    with pytest.raises(ValueError, match="no waypoints"):
        trajectory_accuracy("[(1, 2)]", [])


def test_trajectory_reward_as_trl_function():
    funcs, weights = RoboAlignRewards(None, reward="trajectory2d").trl_functions()
    assert [f.__name__ for f in funcs] == ["format", "accuracy"] and weights == [0.5, 0.5]
    truth = [[[10, 20], [14, 23]]] * 3
    completions = [_completion("[(10, 20), (14, 23)]"), _completion("[(10, 20)]"),
                   [{"role": "assistant", "content": "I cannot see the gripper"}]]
    assert funcs[1](completions, target_points=truth) == [1.0, 0.5, 0.0]
    assert funcs[0](completions) == [1.0, 1.0, 0.0]
    assert answer_text("<answer>a</answer><answer>b</answer>") == "a"
    with pytest.raises(ValueError, match="valid: action, language, trajectory2d"):
        RoboAlignRewards(None, reward="pixels")


# ------------------------------------------------------------------ builders


def _samples(episode, answer: str, chunk_len: int = 4, stride: int = 4):
    from roboalign.spec.action_vocab import ActionVocab, ActionVocabSpec
    from roboalign.spec.prompts import PromptTemplate
    from roboalign.training.data_builders import fit_norm_and_fast

    norm, fast = fit_norm_and_fast([episode], chunk_len, vocab_size=64)
    spec = ActionVocabSpec.for_fast(fast)
    vocab = ActionVocab(spec, 100, 101, range(102, 102 + spec.num_fast_tokens))
    cfg = SampleConfig(chunk_len=chunk_len, stride=stride, answer=answer)
    return robot_samples([episode], norm, fast, PromptTemplate(), vocab, cfg)


def _answer(sample) -> str:
    return answer_text(sample["completion"][-1]["content"] if isinstance(sample["completion"][-1]["content"], str)
                       else "".join(p["text"] for p in sample["completion"][-1]["content"]))


def test_language_answers_name_the_experts_motion():
    ep = make_episode(0, steps=40)
    samples = _samples(ep, "language")
    action = _samples(ep, "action")
    assert len(samples) == len(action) == 10
    for t, s, a in zip(range(0, 40, 4), samples, action, strict=True):
        want = NEXT_STEP[ep.phases[t]].format(obj=ep.object_name, tgt=ep.target_name)
        assert _answer(s) == want and s["target_text"] == want
        assert s["target_fast"] == a["target_fast"] and "<ACTION_START>" not in _answer(s)
        assert s["prompt"] == a["prompt"]  # the same prompt; only the answer differs
    assert {_answer(s).split()[0] for s in samples} >= {"move", "carry"}  # several phases are covered
    assert "target_text" not in action[0] and _answer(action[0]).startswith("<ACTION_START>")


def _white_dot(image: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(np.all(image == 255, axis=-1))
    return float(cols.mean()), float(rows.mean())


def test_trajectory_answers_are_the_rendered_gripper_positions():
    ep = make_episode(1, steps=40)
    samples = _samples(ep, "trajectory2d", chunk_len=4, stride=4)
    images = ep.images["agentview"]
    checked = 0
    for t, s in zip(range(0, 40, 4), samples, strict=True):
        points = s["target_points"]
        assert len(points) == 4 and parse_points(_answer(s)) == [tuple(map(float, p)) for p in points]
        for k, (x, y) in enumerate(points, start=1):
            step = min(t + k, 39)
            cx, cy = _white_dot(images[step])
            if 1 <= x <= 62 and 1 <= y <= 62:  # the 3x3 dot is whole away from the border
                assert (cx, cy) == (x, y), (t, k)
                checked += 1
    assert checked >= 30
    assert samples[-1]["target_points"][-1] == samples[-1]["target_points"][-2]  # t = 36: step 40 is past the end


def test_builders_refuse_episodes_without_what_the_reward_needs():
    bare = make_episode(2, steps=16, privileged=False)
    with pytest.raises(DataError, match="no expert phases; reward=language needs them"):
        _samples(bare, "language")
    with pytest.raises(DataError, match=r"no image-space gripper positions \(gripper_pixels\) for camera 'agentview'"):
        _samples(bare, "trajectory2d")
    with pytest.raises(ValueError, match="valid: action, language, trajectory2d"):
        SampleConfig(answer="pixels")


# ------------------------------------------------------------------ configs


@pytest.mark.parametrize("kind", ["sft", "grpo"])
def test_reward_is_a_config_choice(kind):
    cfg = load_with_sets(CONFIGS / f"{kind}_tiny.yaml", kind, [])
    assert cfg.reward == "action"
    assert load_with_sets(CONFIGS / f"{kind}_tiny.yaml", kind, ["reward=trajectory2d"]).reward == "trajectory2d"
    with pytest.raises(SpecError, match=r"reward='bogus'; valid: action, language, trajectory2d"):
        load_with_sets(CONFIGS / f"{kind}_tiny.yaml", kind, ["reward=bogus"])


def test_train_grpo_refuses_an_unknown_reward_in_one_line(capsys, monkeypatch):
    monkeypatch.delenv("ROBOALIGN_DEBUG", raising=False)
    assert roboalign_main(["train", "grpo", "--config", str(CONFIGS / "grpo_tiny.yaml"), "--set", "reward=bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "valid: action, language, trajectory2d" in err, err


# ------------------------------------------------------------------ tiny SFT -> GRPO with each reward


DATA = DataConfig(dataset="toy", chunk_len=4, stride=4, fast_vocab_size=64, mixture={"robot": 1.0})


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("reward", ["action", "language", "trajectory2d"])
def test_two_grpo_steps_with_each_reward(reward, tmp_path):
    from roboalign.models.aligned import load_aligned
    from roboalign.training.grpo import grpo_columns, grpo_samples, make_grpo_trainer, run_grpo
    from roboalign.training.sft import run_sft

    episodes = [make_episode(3, steps=16)]
    sft_dir = tmp_path / "sft"
    run_sft(SFTRunConfig(output_dir=str(sft_dir), data=DATA, reward=reward, learning_rate=1e-3, warmup_ratio=0.0,
                         max_steps=2, per_device_train_batch_size=4, logging_steps=1, save_steps=1000),
            train=episodes)
    assert json.loads((sft_dir / "run_config.json").read_text())["reward"] == reward
    cfg = GRPORunConfig(init_checkpoint=str(sft_dir), output_dir=str(tmp_path / "grpo"), data=DATA, reward=reward,
                        learning_rate=1e-4, max_steps=2, num_generations=2, per_device_train_batch_size=4,
                        max_completion_length=16, logging_steps=1, save_steps=1000, seed=1)

    # the trainer's reward functions score the SFT targets of its own dataset columns as right
    from roboalign.training.data_builders import to_hf_dataset

    sft = load_aligned(sft_dir)
    prompts = grpo_samples(sft, episodes, cfg)
    trainer = make_grpo_trainer(sft, to_hf_dataset(prompts, grpo_columns(reward)), cfg)
    columns = {c: [p[c] for p in prompts] for c in grpo_columns(reward)[2:]}
    ids = [sft.action_vocab.fast_to_llm_ids(p["target_fast"]) for p in prompts] if reward == "action" else None
    targets = [_completion(p["target_text"] if reward == "language" else _points(p) if reward == "trajectory2d"
                           else sft.action_vocab.fast_to_text(p["target_fast"])) for p in prompts]
    assert trainer.reward_funcs[1](targets, completion_ids=ids, **columns) == [1.0] * len(prompts)

    run_grpo(cfg, train=episodes)
    rows = [json.loads(x) for x in (tmp_path / "grpo" / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward" in r]
    assert len(steps) == 2
    for r in steps:
        assert r["reward"] == pytest.approx(0.5 * r["rewards/format/mean"] + 0.5 * r["rewards/accuracy/mean"], abs=1e-5)
    assert json.loads((tmp_path / "grpo" / "run_config.json").read_text())["reward"] == reward
    other = "language" if reward != "language" else "action"
    with pytest.raises(ValueError, match=f"GRPO reward={other} but the SFT checkpoint .* reward={reward}"):
        run_grpo(GRPORunConfig(init_checkpoint=str(sft_dir), output_dir=str(tmp_path / "g2"), data=DATA,
                               reward=other, max_steps=1), train=episodes)


def _points(prompt) -> str:
    from roboalign.spec.rewards import format_points

    return format_points(prompt["target_points"])
