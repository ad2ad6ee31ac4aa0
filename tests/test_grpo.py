"""GRPO stage: TRL GRPOTrainer on the tiny Qwen2.5-VL with real images and the RoboAlign rewards.

An SFT model over-fitted on four robot samples (greedy: every answer right) samples 5 completions per
prompt at temperature 1; some are right and some not, so rewards vary within groups, advantages are
non-zero and the policy moves. We check the logged rewards against the reward definition, that the KL
term is on, that parameters change, and that the GRPO checkpoint folder loads back.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from align_fixtures import make_episode, make_episodes  # noqa: E402

from roboalign.models.aligned import load_aligned, missing_files  # noqa: E402
from roboalign.training.config import DataConfig, GRPORunConfig, SFTRunConfig  # noqa: E402
from roboalign.training.evaluate import evaluate  # noqa: E402
from roboalign.training.grpo import grpo_samples, run_grpo  # noqa: E402
from roboalign.training.sft import run_sft  # noqa: E402

DATA = DataConfig(dataset="toy", chunk_len=4, stride=4, fast_vocab_size=64, mixture={"robot": 1.0})


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def episodes():
    return make_episodes(1, steps=16, privileged=False)  # 4 robot samples, short reasoning


@pytest.fixture(scope="module")
def sft_dir(episodes, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft")
    cfg = SFTRunConfig(output_dir=str(out), data=DATA, learning_rate=5e-3, lr_scheduler_type="constant",
                       warmup_ratio=0.0, max_steps=40, per_device_train_batch_size=4, logging_steps=10,
                       save_steps=1000)
    run_sft(cfg, train=episodes)
    return out


def test_grpo_steps_with_real_rewards(episodes, sft_dir, tmp_path):
    sft = load_aligned(sft_dir)
    prompts = grpo_samples(sft, episodes, GRPORunConfig(data=DATA))
    assert len(prompts) == 4 and all(p["images"][0].size == (64, 64) for p in prompts)
    greedy = evaluate(sft, prompts, progress=False)
    assert greedy.format == 1.0 and greedy.acc > 0.5, greedy  # the SFT model is good, so rewards vary
    before = {n: p.detach().clone() for n, p in sft.backbone.model.named_parameters()}

    out = tmp_path / "grpo"
    cfg = GRPORunConfig(init_checkpoint=str(sft_dir), output_dir=str(out), data=DATA, learning_rate=1e-3,
                        max_steps=3, num_generations=5, per_device_train_batch_size=10, max_completion_length=40,
                        beta=0.01, logging_steps=1, save_steps=1000, seed=1)
    aligned = run_grpo(cfg, train=episodes)

    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward" in r]
    assert len(steps) == 3
    for r in steps:
        # the total reward TRL optimises is the mean of format and prefix accuracy (weights 0.5 / 0.5)
        want = 0.5 * r["rewards/format/mean"] + 0.5 * r["rewards/accuracy/mean"]
        assert r["reward"] == pytest.approx(want, abs=1e-5)
        assert 0.0 <= r["rewards/accuracy/mean"] <= 1.0
        assert "kl" in r  # beta > 0: KL to the reference model is computed
    assert any(r["reward_std"] > 0 for r in steps), "rewards never varied within a group"
    assert any(r["rewards/accuracy/mean"] > 0 for r in steps)

    changed = [n for n, p in aligned.backbone.model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert changed, "GRPO did not change any parameter"
    assert any(n.startswith("model.visual") for n in changed)  # GRPO trains all parameters (the paper)
    assert missing_files(out) == [] and (out / "curves.png").is_file()
    loaded = load_aligned(out)
    assert loaded.spec.stage == "grpo"
    assert loaded.backbone.tokenizer.padding_side == sft.backbone.tokenizer.padding_side  # left only while training
    for k, v in loaded.backbone.model.state_dict().items():
        torch.testing.assert_close(v, aligned.backbone.model.state_dict()[k], msg=k)


def test_grpo_rejects_mismatched_data(sft_dir, episodes):
    sft = load_aligned(sft_dir)
    with pytest.raises(ValueError, match="trained with cameras=\\('agentview',\\) chunk_len=4"):
        grpo_samples(sft, episodes, GRPORunConfig(data=replace(DATA, chunk_len=8)))
    with pytest.raises(ValueError, match="must be a multiple of num_generations=5"):
        GRPORunConfig(per_device_train_batch_size=8)


def test_reward_weights_can_be_overridden_for_ablations(sft_dir, episodes, tmp_path):
    """``trainer_overrides: {reward_weights: [0, 1]}`` (accuracy only) reaches TRL instead of clashing."""
    from roboalign.training.data_builders import to_hf_dataset
    from roboalign.training.grpo import GRPO_COLUMNS, make_grpo_trainer

    sft = load_aligned(sft_dir)
    prompts = grpo_samples(sft, episodes, GRPORunConfig(data=DATA))
    for overrides, want in (({}, [0.5, 0.5]), ({"reward_weights": [0.0, 1.0]}, [0.0, 1.0])):
        cfg = GRPORunConfig(init_checkpoint=str(sft_dir), output_dir=str(tmp_path / "g"), data=DATA, max_steps=1,
                            per_device_train_batch_size=10, trainer_overrides=overrides)
        trainer = make_grpo_trainer(sft, to_hf_dataset(prompts, GRPO_COLUMNS), cfg)
        assert list(trainer.args.reward_weights) == want
        assert trainer.reward_weights.tolist() == want


def test_loss_pass_sees_the_token_types_of_generation(sft_dir, episodes, tmp_path):
    """Prompts of different lengths: the loss pass's ``mm_token_type_ids`` mark exactly the image tokens of the
    left-padded prompt ids the completions were generated from (right padding shifted a shorter prompt's)."""
    from roboalign.training.data_builders import to_hf_dataset
    from roboalign.training.grpo import GRPO_COLUMNS, make_grpo_trainer

    sft = load_aligned(sft_dir)
    tok = sft.backbone.tokenizer
    views = [*episodes, make_episode(3, steps=16, privileged=False)]  # milk, cream cheese: different lengths
    prompts = grpo_samples(sft, views, GRPORunConfig(data=DATA))
    text = [sft.backbone.processor.apply_chat_template(p["prompt"], add_generation_prompt=True, tokenize=False)
            for p in prompts]
    lengths = [len(tok(t)["input_ids"]) for t in text]
    short, long = prompts[lengths.index(min(lengths))], prompts[lengths.index(max(lengths))]
    assert min(lengths) < max(lengths), lengths
    cfg = GRPORunConfig(init_checkpoint=str(sft_dir), output_dir=str(tmp_path / "g"), data=DATA, max_steps=1,
                        num_generations=2, per_device_train_batch_size=4, max_completion_length=8)
    trainer = make_grpo_trainer(sft, to_hf_dataset([short, long], GRPO_COLUMNS), cfg)
    batch = trainer._generate_and_score_completions([row for row in trainer.train_dataset for _ in range(2)])
    ids, mask = batch["prompt_ids"], batch["prompt_mask"]
    assert (mask[:, 0] == 0).any() and (mask[:, -1] == 1).all()  # left-padded, one prompt shorter
    image = (ids == tok.convert_tokens_to_ids("<|image_pad|>")) & (mask == 1)
    per_image = batch["image_grid_thw"].prod(-1) // 4  # merge 2 x 2 patches per token
    assert image.sum(1).tolist() == per_image.tolist()
    torch.testing.assert_close(batch["mm_token_type_ids"][:, : ids.shape[1]], image.to(batch["mm_token_type_ids"].dtype))
