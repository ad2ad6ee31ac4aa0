"""SFT stage: real tiny Qwen2.5-VL + TRL SFTTrainer on samples built from scripted episodes.

A few steps change the trained parameters (not the frozen vision tower) and lower the loss on a fixed
batch; run_sft writes a complete checkpoint folder that loads back; training resumes from a checkpoint;
bad data is reported with the episode/step/file.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from align_fixtures import make_episode, make_episodes, write_dataset  # noqa: E402

from roboalign.models.aligned import load_aligned, missing_files  # noqa: E402
from roboalign.training.config import DataConfig, SFTRunConfig, load_config  # noqa: E402
from roboalign.training.data_builders import (  # noqa: E402
    DataError,
    ExtraDataset,
    load_extra_dataset,
    robot_samples,
    to_hf_dataset,
)
from roboalign.training.sft import (  # noqa: E402
    SFT_COLUMNS,
    build_backbone,
    build_mixture,
    make_sft_trainer,
    norm_and_fast,
    prepare_aligned,
    run_sft,
    sample_config,
)

DATA = DataConfig(dataset="toy", chunk_len=8, stride=8, fast_vocab_size=96, mixture={"robot": 1.0, "vqa": 0.5})

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def episodes():
    return make_episodes(3, steps=32)


def _aligned(episodes, cfg: SFTRunConfig):
    norm, fast = norm_and_fast(cfg.data, episodes)
    return prepare_aligned(build_backbone(cfg.model), norm, fast, cfg.data, episodes)


def _loss(model, batch) -> float:
    model.eval()
    with torch.no_grad():
        return float(model(**batch).loss)


def test_few_steps_change_params_and_lower_loss(episodes, tmp_path):
    torch.manual_seed(0)
    cfg = SFTRunConfig(output_dir=str(tmp_path / "out"), data=DATA, learning_rate=3e-3, max_steps=12,
                       per_device_train_batch_size=4, logging_steps=4, save_steps=1000, warmup_ratio=0.0)
    aligned = _aligned(episodes, cfg)
    samples = build_mixture(aligned, episodes, cfg.data)[:4]
    assert {s["kind"] for s in build_mixture(aligned, episodes, cfg.data)} == {"robot", "vqa"}
    trainer = make_sft_trainer(aligned, to_hf_dataset(samples, SFT_COLUMNS), cfg)
    batch = next(iter(trainer.get_train_dataloader()))  # the fixed batch: all 4 samples
    assert batch["pixel_values"].shape[0] == 4 * 16  # 4 images x (8 x 8) patches of 64x64 images
    labels = batch["labels"]
    assert (labels[:, :20] == -100).all(), "prompt tokens must not be trained on"
    model = aligned.backbone.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss0 = _loss(model, batch)
    trainer.train()
    loss1 = _loss(model, batch)
    assert loss1 < loss0 - 0.5, (loss0, loss1)
    vis = {n for n, _ in model.named_parameters() if n.startswith("model.visual")}
    assert vis
    for n, p in model.named_parameters():
        if n in vis:
            assert torch.equal(p, before[n]), f"frozen vision parameter {n} changed"
    changed = [n for n, p in model.named_parameters() if n not in vis and not torch.equal(p, before[n])]
    assert any("embed_tokens" in n for n in changed) and any("layers.1" in n for n in changed)


def test_run_sft_checkpoint_and_resume(tmp_path):
    """run_sft on an episode dataset folder (roboalign.data writer/reader), checkpoints, resume."""
    out = tmp_path / "sft"
    data = replace(DATA, dataset=str(write_dataset(tmp_path / "data", 4, steps=32)))
    cfg = SFTRunConfig(output_dir=str(out), data=data, learning_rate=1e-3, max_steps=4, save_steps=2,
                       per_device_train_batch_size=4, logging_steps=1)
    aligned = run_sft(cfg)
    assert missing_files(out) == []
    assert (out / "checkpoint-2").is_dir() and (out / "checkpoint-4").is_dir()
    for f in ("curves.png", "curves.csv", "train_log.jsonl", "run_config.json"):
        assert (out / f).is_file(), f
    log1 = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log1 if "loss" in r] == [1, 2, 3, 4]
    loaded = load_aligned(out)
    assert loaded.spec.stage == "sft" and loaded.spec.cameras == ("agentview",) and loaded.spec.state_dim == 4
    assert loaded.action_vocab.spec.num_fast_tokens == aligned.fast.vocab_size
    sd = aligned.backbone.model.state_dict()
    for k, v in loaded.backbone.model.state_dict().items():
        torch.testing.assert_close(v, sd[k], msg=k)
    # resume from checkpoint-2 and train on to step 6: the trainer continues its step count
    resumed = SFTRunConfig(**{**cfg.__dict__, "max_steps": 6, "resume_from_checkpoint": str(out / "checkpoint-2")})
    run_sft(resumed)
    log2 = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log2 if "loss" in r] == [1, 2, 3, 4, 5, 6]  # rows 1-2 kept, 3-6 from the resume
    # resumed step 3 sees the same weights (restored) and the same batch as in the first run: same loss
    # (step 4 differs: the cosine schedule is stretched to 6 steps)
    first = {r["step"]: r["loss"] for r in log1 if "loss" in r}
    again = {r["step"]: r["loss"] for r in log2 if "loss" in r}
    assert again[3] == pytest.approx(first[3], rel=1e-4)
    assert (out / "checkpoint-6").is_dir()


def test_bad_inputs_are_named(episodes, tmp_path):
    cfg = SFTRunConfig(output_dir=str(tmp_path / "x"), data=DATA)
    aligned = _aligned(episodes, cfg)
    scfg = sample_config(DATA)
    bad = make_episode(7, steps=32)
    bad.actions[9, 2] = np.nan
    with pytest.raises(DataError, match=r"episode toy_7 step 8: action chunk contains non-finite"):
        robot_samples([bad], aligned.norm, aligned.fast, aligned.template, aligned.action_vocab, scfg)
    no_cam = make_episode(8, steps=32)
    with pytest.raises(DataError, match=r"episode toy_8: camera 'wrist' missing at step 0"):
        robot_samples([no_cam], aligned.norm, aligned.fast, aligned.template, aligned.action_vocab,
                      sample_config(DataConfig(dataset="toy", cameras=("wrist",), chunk_len=8, stride=8)))
    # extra dataset: missing image file and unencodable action chunk, named by file and line
    (tmp_path / "ok.png").write_bytes(b"")
    jsonl = tmp_path / "extra.jsonl"
    jsonl.write_text(json.dumps({"images": ["nope.png"], "question": "q", "answer": "a"}) + "\n")
    with pytest.raises(DataError, match=r"extra.jsonl line 1: image file .*nope.png does not exist"):
        load_extra_dataset(ExtraDataset(str(jsonl)), aligned.template)
    jsonl.write_text("\n" + json.dumps({"kind": "robot", "instruction": "go", "actions": [[0.0] * 7] * 3}) + "\n")
    with pytest.raises(DataError, match=r"extra.jsonl line 2: action chunk has shape \(3, 7\)"):
        load_extra_dataset(ExtraDataset(str(jsonl)), aligned.template, aligned.action_vocab, aligned.norm,
                           aligned.fast)
    # a checkpoint folder missing files names them all
    run_dir = tmp_path / "ckpt"
    from roboalign.models.aligned import save_aligned

    save_aligned(aligned, run_dir)
    (run_dir / "fast" / "tokenizer.json").unlink()
    (run_dir / "prompt_template.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"fast/tokenizer.json; prompt_template.json"):
        load_aligned(run_dir)


def test_reasoning_detail_shortens_the_reasoning_only(episodes):
    norm, fast = norm_and_fast(DATA, episodes)
    aligned = prepare_aligned(build_backbone(SFTRunConfig().model), norm, fast, DATA, episodes)

    def texts(detail: str) -> tuple[list[str], list[list[int]]]:
        cfg = sample_config(replace(DATA, reasoning=detail))
        samples = robot_samples(episodes[:1], norm, fast, aligned.template, aligned.action_vocab, cfg)
        return [s["completion"][0]["content"][0]["text"] for s in samples], [s["target_fast"] for s in samples]

    (full, t_full), (phase, t_phase), (obj, t_obj) = texts("full"), texts("phase"), texts("object")
    assert t_full == t_phase == t_obj  # same targets, only the reasoning differs
    assert all(" cm " in t for t in full[:1]) and not any(" cm " in t for t in phase + obj)
    assert all("Phase:" in t for t in phase) and not any("Phase:" in t or "gripper" in t for t in obj)
    assert all(t.startswith("<think>The target is the ") for t in obj)
    with pytest.raises(ValueError, match="valid: full, phase, object"):
        DataConfig(reasoning="long")


def test_configs_load_and_validate(tmp_path):
    root = Path(__file__).parents[1] / "training" / "configs"
    sft7b = load_config(root / "sft_qwen25vl_7b.yaml")
    assert (sft7b.learning_rate, sft7b.warmup_ratio, sft7b.lr_scheduler_type) == (2e-5, 0.03, "cosine")
    grpo7b = load_config(root / "grpo_qwen25vl_7b.yaml")
    assert (grpo7b.num_generations, grpo7b.beta, grpo7b.learning_rate, grpo7b.data.max_samples) == (5, 0.01, 1e-6, 12800)
    # 10 completions x 8 accumulation x 8 GPUs = 640 = 128 prompts x 5 per update (paper's update batch)
    assert grpo7b.per_device_train_batch_size * grpo7b.gradient_accumulation_steps * 8 == 128 * 5
    assert load_config(root / "sft_tiny.yaml").model.name_or_path == "tiny"
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: sft\nlearning_rat: 1.0\n")
    with pytest.raises(ValueError, match=r"bad.yaml: unknown fields \['learning_rat'\]; valid fields: output_dir"):
        load_config(bad)
    bad.write_text("kind: sft\ndata: {action_space: cartesian}\n")
    with pytest.raises(ValueError, match="valid: eef_delta, joint_position"):
        load_config(bad)


def test_cli_runs_the_tiny_config(tmp_path):
    """``roboalign train sft --config training/configs/sft_tiny.yaml`` with a dataset and 1 step."""
    from roboalign.commands import train as cli

    data = write_dataset(tmp_path / "data", 4, steps=16)
    out = tmp_path / "cli"
    config = Path(__file__).parents[1] / "training" / "configs" / "sft_tiny.yaml"
    rc = cli.main(["sft", "--config", str(config), "--data", str(data), "--output-dir", str(out), "--max-steps", "1"])
    assert rc == 0 and missing_files(out) == []
    assert json.loads((out / "run_config.json").read_text())["data"]["dataset"] == str(data)
    assert cli.main(["nope"]) == 2
