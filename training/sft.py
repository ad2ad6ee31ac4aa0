"""Stage 1 — SFT of the MLLM to reason and then answer with FAST action tokens (TRL ``SFTTrainer``).

Steps (``run_sft``): read the episodes → fit (or load) the action NormStats + FAST tokenizer → build the
backbone (tiny, or Qwen2.5-VL / Qwen3-VL from a local folder), add the action vocabulary and resize the
embeddings (the paper's new-token step: FAST ids are not mapped onto rare tokens) → write the spec files into the output folder (before training, so every
intermediate checkpoint has them) → build the robot + VQA mixture → train with cosine LR, 3 % warmup,
vision tower frozen → save the aligned checkpoint folder (``roboalign.models.aligned``) + curves.

Multi-GPU / multi-node / CPU multi-process: launch this module with ``accelerate launch`` (DeepSpeed
ZeRO-3 or FSDP configs in ``training/configs/``); TRL's trainer picks the distributed setup up from
accelerate. Every process builds the same data deterministically; only the main process writes files.

    accelerate launch --config_file training/configs/accelerate_zero3.yaml -m roboalign.training.sft \
        --config training/configs/sft_qwen25vl_7b.yaml
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from roboalign.models.aligned import FAST_DIR, AlignedModel, AlignSpec, save_specs
from roboalign.models.backbone import Backbone, TinyBackboneConfig, build_tiny_backbone, load_backbone
from roboalign.spec.action_vocab import ActionVocabSpec, add_action_vocabulary
from roboalign.spec.fast import FastTokenizer
from roboalign.spec.normalization import FILE_NAME as NORM_FILE
from roboalign.spec.normalization import NormStats
from roboalign.spec.prompts import PromptTemplate
from roboalign.training.config import DataConfig, ModelConfig, SFTRunConfig, config_to_dict, sample_config
from roboalign.training.curves import CurveLogger
from roboalign.training.data_builders import (
    DataError,
    EpisodeView,
    Mixture,
    fit_norm_and_fast,
    load_extra_dataset,
    robot_samples,
    to_hf_dataset,
    vqa_samples,
)
from roboalign.training.overrides import parse_run_config
from roboalign.training.resume import resolve_checkpoint, restore_weights
from roboalign.training.run_output import finish_trainer_run, report, start_run

log = logging.getLogger(__name__)
SFT_COLUMNS = ("prompt", "completion", "images")


def build_backbone(cfg: ModelConfig) -> Backbone:
    """The configured backbone: tiny (built locally) or a local Qwen2.5-VL / Qwen3-VL folder."""
    if cfg.is_tiny:
        family = "qwen3_vl" if cfg.name_or_path == "tiny-qwen3" else "qwen2_5_vl"
        tiny = TinyBackboneConfig(family=family, **cfg.tiny)
        bb = build_tiny_backbone(family, tiny, min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels)
        if not cfg.freeze_vision:
            for p in bb.model.parameters():
                p.requires_grad_(True)
        return bb
    bb = load_backbone(cfg.name_or_path, dtype=getattr(torch, cfg.dtype), freeze_vision=cfg.freeze_vision,
                       attn_implementation=cfg.attn_implementation)
    set_image_pixels(bb, cfg.min_pixels, cfg.max_pixels)
    return bb


def set_image_pixels(backbone: Backbone, min_pixels: int, max_pixels: int) -> None:
    """Bound the resized image area of the Qwen-VL image processor (fewer pixels = fewer image tokens)."""
    ip = backbone.processor.image_processor
    ip.size = {"shortest_edge": int(min_pixels), "longest_edge": int(max_pixels)}
    for name, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        if hasattr(ip, name):
            setattr(ip, name, int(value))


def norm_and_fast(data: DataConfig, train: list[EpisodeView], existing: Path | None = None
                  ) -> tuple[NormStats, FastTokenizer]:
    """Load the FAST tokenizer (+ stats) from ``data.fast_tokenizer`` or ``existing``, else fit on ``train``."""
    for folder in (Path(data.fast_tokenizer) if data.fast_tokenizer else None, existing):
        if folder is None:
            continue
        fast_dir = folder / FAST_DIR if (folder / FAST_DIR).is_dir() else folder
        norm_file = folder / NORM_FILE if (folder / NORM_FILE).is_file() else fast_dir / NORM_FILE
        if not norm_file.is_file():
            raise FileNotFoundError(f"FAST tokenizer folder {folder}: missing {NORM_FILE} (the action stats "
                                    "the tokenizer was fitted with)")
        return NormStats.load(norm_file), FastTokenizer.load(fast_dir)
    return fit_norm_and_fast(train, data.chunk_len, preset=data.fast_preset, vocab_size=data.fast_vocab_size,
                             scale=data.fast_scale)


def prepare_aligned(backbone: Backbone, norm: NormStats, fast: FastTokenizer, data: DataConfig,
                    train: list[EpisodeView]) -> AlignedModel:
    """Add the action vocabulary to the backbone and bundle it with its specs (stage ``base``)."""
    vocab = add_action_vocabulary(backbone.model, backbone.tokenizer, ActionVocabSpec.for_fast(fast))
    backbone.processor.tokenizer = backbone.tokenizer
    spec = AlignSpec(action_space=data.action_space, cameras=data.cameras, chunk_len=data.chunk_len,
                     action_dim=fast.config.action_dim, state_dim=int(train[0].states.shape[1]), stage="base",
                     stride=data.stride, dataset=data.dataset)
    return AlignedModel(backbone, vocab, fast, norm, PromptTemplate(include_state=data.include_state), spec)


def build_mixture(aligned: AlignedModel, views: list[EpisodeView], data: DataConfig, reward: str = "action"
                  ) -> list[dict[str, Any]]:
    """Robot + VQA samples from the episodes and the extra datasets, mixed by the configured weights; robot
    samples answer as ``reward`` asks (FAST tokens, language action or pixel waypoints)."""
    scfg = sample_config(data, reward)
    mix = Mixture()
    if data.mixture.get("robot", 0) > 0:
        mix.add("robot", robot_samples(views, aligned.norm, aligned.fast, aligned.template, aligned.action_vocab, scfg),
                data.mixture["robot"])
    if data.mixture.get("vqa", 0) > 0:
        mix.add("vqa", vqa_samples(views, aligned.template, scfg), data.mixture["vqa"])
    for i, extra in enumerate(data.extra_datasets):
        rows = load_extra_dataset(extra, aligned.template, aligned.action_vocab, aligned.norm, aligned.fast)
        if reward != "action" and any(r["kind"] == "robot" for r in rows):
            raise DataError(f"extra dataset {extra.path}: robot rows answer in FAST tokens, but reward={reward} "
                            "teaches other answers; leave it out or train with reward=action")
        mix.add(extra.name or f"extra{i}:{extra.path}", rows, extra.weight)
    samples = mix.build(seed=data.seed)
    return samples[: data.max_samples] if data.max_samples else samples


def make_sft_trainer(aligned: AlignedModel, train_dataset: Any, cfg: SFTRunConfig, callbacks: list | None = None) -> Any:
    """TRL SFTTrainer on prompt-completion samples (loss on the completion only)."""
    from trl import SFTConfig, SFTTrainer

    use_cpu = not torch.cuda.is_available()
    args = SFTConfig(
        output_dir=cfg.output_dir,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps (transformers 5)
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        activation_checkpointing=cfg.gradient_checkpointing,  # transformers 5: gradient checkpointing
        bf16=aligned.backbone.model.dtype == torch.bfloat16,
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        save_only_model=False,
        dataloader_num_workers=cfg.dataloader_num_workers,
        max_length=cfg.max_length,
        completion_only_loss=True,
        seed=cfg.seed,
        report_to=[],
        use_cpu=use_cpu,
        **cfg.trainer_overrides,
    )
    return SFTTrainer(model=aligned.backbone.model, args=args, train_dataset=train_dataset,
                      processing_class=aligned.backbone.processor, callbacks=callbacks or [])


def run_sft(cfg: SFTRunConfig, train: list[EpisodeView] | None = None) -> AlignedModel:
    """The whole SFT stage; returns the aligned model (stage ``sft``) saved in ``cfg.output_dir``."""
    from transformers import set_seed

    from roboalign.training.episode_views import load_views

    out = Path(cfg.output_dir)
    set_seed(cfg.seed)  # the new action-token embeddings are drawn from the global RNG (mean resizing)
    train = train if train is not None else load_views(cfg.data, cfg.data.split)
    resuming = bool(cfg.resume_from_checkpoint) and (out / FAST_DIR).is_dir()
    norm, fast = norm_and_fast(cfg.data, train, existing=out if resuming else None)
    aligned = prepare_aligned(build_backbone(cfg.model), norm, fast, cfg.data, train)
    start_run(out, config_to_dict(cfg), lambda folder: save_specs(aligned, folder))
    samples = build_mixture(aligned, train, cfg.data, cfg.reward)
    kinds = {k: sum(s["kind"] == k for s in samples) for k in ("robot", "vqa")}
    log.info("SFT on %d samples (%s) from %d episodes", len(samples), kinds, len(train))
    trainer = make_sft_trainer(aligned, to_hf_dataset(samples, SFT_COLUMNS), cfg, [CurveLogger(out, "sft")])
    checkpoint = resolve_checkpoint(cfg.resume_from_checkpoint, out)
    if checkpoint:
        restore_weights(trainer, checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    aligned = aligned.with_stage("sft")
    finish_trainer_run(trainer, aligned, out)
    return aligned


def main(argv: list[str] | None = None) -> int:
    cfg, _ = parse_run_config("sft", __doc__.split("\n")[0], argv)  # --config, --set key=value, shortcuts
    logging.basicConfig(level=os.environ.get("ROBOALIGN_LOG", "INFO"))
    run_sft(cfg)
    report("sft", cfg.output_dir)
    return 0


if __name__ == "__main__":  # e.g. under accelerate launch: user errors in one line as with `roboalign train`
    import sys

    from roboalign.spec.user_errors import run_main

    raise SystemExit(run_main("roboalign.training.sft", main, sys.argv[1:]))
