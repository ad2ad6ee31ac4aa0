"""Stage 3 — GRPO alignment on the format + accuracy reward (TRL ``GRPOTrainer``).

Starts from an SFT checkpoint folder (``roboalign.models.aligned``). Prompts are robot samples (images +
instruction + state) with their target FAST ids in the ``target_fast`` column (and, for ``reward: language`` /
``trajectory2d``, the true phrase / pixel waypoints in ``target_text`` / ``target_points``); for each prompt the policy
samples ``num_generations`` (5) completions, scored by ``roboalign.spec.rewards`` (r = (r_f + r_a) / 2 via
``reward_weights=[0.5, 0.5]``), advantages are group-normalised, and the clipped policy-gradient loss
plus ``beta`` × KL to the frozen SFT model (TRL's k3 estimator = EasyR1's ``low_var_kl``) is minimised.
All parameters are trained (the paper: "all parameters trained") unless ``freeze_vision`` is set.

The reference model is re-loaded by TRL from the checkpoint folder (``config._name_or_path``) with
``local_files_only`` and safetensors. Multi-GPU: ``accelerate launch --config_file
training/configs/accelerate_zero3.yaml -m roboalign.training.grpo --config training/configs/grpo_qwen25vl_7b.yaml``
(optionally ``use_vllm: true`` for vLLM generation, colocated or as a server).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from roboalign.models.aligned import AlignedModel, load_aligned, save_specs
from roboalign.models.backbone import freeze_vision_tower
from roboalign.spec.rewards import TARGET_COLUMNS, RoboAlignRewards
from roboalign.training.config import GRPORunConfig, config_to_dict, sample_config
from roboalign.training.curves import CurveLogger
from roboalign.training.data_builders import EpisodeView, Mixture, robot_samples, to_hf_dataset
from roboalign.training.overrides import parse_run_config
from roboalign.training.resume import resolve_checkpoint, restore_weights
from roboalign.training.run_output import RUN_CONFIG_FILE, finish_trainer_run, report, start_run

log = logging.getLogger(__name__)
GRPO_COLUMNS = ("prompt", "images", "target_fast")


def grpo_columns(reward: str) -> tuple[str, ...]:
    """The dataset columns GRPO keeps for ``reward``: prompt, images, target FAST ids and the reward's truth."""
    extra = TARGET_COLUMNS[reward]
    return GRPO_COLUMNS if extra in GRPO_COLUMNS else (*GRPO_COLUMNS, extra)


def check_answer_format(init_checkpoint: str | Path, reward: str) -> None:
    """Refuse GRPO with ``reward`` on an SFT checkpoint whose ``run_config.json`` names another ``reward``
    (its answers would never score); a checkpoint without one answers in FAST tokens (``action``)."""
    run_config = Path(init_checkpoint) / RUN_CONFIG_FILE
    if not run_config.is_file():
        return
    trained = json.loads(run_config.read_text()).get("reward", "action")
    if trained != reward:
        raise ValueError(f"GRPO reward={reward} but the SFT checkpoint {init_checkpoint} was trained to answer for "
                         f"reward={trained}; set reward={trained} or start from an SFT run with reward={reward}")


def grpo_samples(aligned: AlignedModel, views: list[EpisodeView], cfg: GRPORunConfig) -> list[dict[str, Any]]:
    """Robot prompts with their target FAST ids and the truth of ``cfg.reward`` (the spec's cameras/chunk length;
    the run's stride)."""
    spec = aligned.spec
    if tuple(cfg.data.cameras) != spec.cameras or cfg.data.chunk_len != spec.chunk_len:
        raise ValueError(
            f"GRPO data uses cameras={cfg.data.cameras} chunk_len={cfg.data.chunk_len} but the checkpoint was "
            f"trained with cameras={spec.cameras} chunk_len={spec.chunk_len}"
        )
    scfg = sample_config(cfg.data, cfg.reward)
    mix = Mixture()
    mix.add("robot", robot_samples(views, aligned.norm, aligned.fast, aligned.template, aligned.action_vocab, scfg),
            cfg.data.mixture.get("robot", 1.0))
    samples = mix.build(seed=cfg.data.seed)
    return samples[: cfg.data.max_samples] if cfg.data.max_samples else samples


def make_grpo_trainer(aligned: AlignedModel, train_dataset: Any, cfg: GRPORunConfig, callbacks: list | None = None,
                      freeze_vision: bool = False) -> Any:
    """TRL GRPOTrainer with the RoboAlign rewards and the configured sampling / KL settings."""
    from trl import GRPOConfig, GRPOTrainer

    model = aligned.backbone.model
    if not getattr(model.config, "_name_or_path", ""):
        raise ValueError("GRPO needs the policy loaded from a checkpoint folder (the KL reference is re-loaded "
                         "from it); load it with roboalign.models.aligned.load_aligned")
    if freeze_vision:
        freeze_vision_tower(model)
    funcs, weights = RoboAlignRewards(aligned.action_vocab, reward=cfg.reward).trl_functions()
    # TRL left-pads prompt ids but builds the loss pass's mm_token_type_ids with the processor's own padding
    # side: with right padding a shorter prompt's image tokens are shifted against its ids (run_grpo restores it)
    aligned.backbone.processor.tokenizer.padding_side = "left"
    use_cpu = not torch.cuda.is_available()
    args = GRPOConfig(
        output_dir=cfg.output_dir,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        num_generations=cfg.num_generations,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        steps_per_generation=cfg.steps_per_generation,
        beta=cfg.beta,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        top_k=cfg.top_k,
        max_completion_length=cfg.max_completion_length,
        epsilon=cfg.epsilon,
        epsilon_high=cfg.epsilon_high,
        loss_type=cfg.loss_type,
        scale_rewards=cfg.scale_rewards,
        reward_weights=cfg.trainer_overrides.get("reward_weights", weights),  # [w_format, w_accuracy]
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        activation_checkpointing=cfg.gradient_checkpointing,  # transformers 5: gradient checkpointing
        bf16=model.dtype == torch.bfloat16,
        use_vllm=cfg.use_vllm,
        vllm_mode=cfg.vllm_mode,
        model_init_kwargs={"use_safetensors": True, "local_files_only": True, "trust_remote_code": False},
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        seed=cfg.seed,
        report_to=[],
        use_cpu=use_cpu,
        **{k: v for k, v in cfg.trainer_overrides.items() if k != "reward_weights"},
    )
    return GRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=train_dataset,
                       processing_class=aligned.backbone.processor, callbacks=callbacks or [])


def run_grpo(cfg: GRPORunConfig, train: list[EpisodeView] | None = None) -> AlignedModel:
    """The whole GRPO stage; returns the aligned model (stage ``grpo``) saved in ``cfg.output_dir``."""
    from roboalign.training.episode_views import load_views

    out = Path(cfg.output_dir)
    check_answer_format(cfg.init_checkpoint, cfg.reward)
    aligned = load_aligned(cfg.init_checkpoint, freeze_vision=False)
    train = train if train is not None else load_views(cfg.data, cfg.data.split)
    aligned = aligned.with_stage("grpo")
    start_run(out, config_to_dict(cfg), lambda folder: save_specs(aligned, folder))
    samples = grpo_samples(aligned, train, cfg)
    padding_side = aligned.backbone.processor.tokenizer.padding_side
    log.info("GRPO on %d prompts from %d episodes", len(samples), len(train))
    trainer = make_grpo_trainer(aligned, to_hf_dataset(samples, grpo_columns(cfg.reward)), cfg, [CurveLogger(out, "grpo")],
                                freeze_vision=cfg.freeze_vision)
    checkpoint = resolve_checkpoint(cfg.resume_from_checkpoint, out)
    if checkpoint:
        restore_weights(trainer, checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    aligned.backbone.processor.tokenizer.padding_side = padding_side
    finish_trainer_run(trainer, aligned, out)
    return aligned


def main(argv: list[str] | None = None) -> int:
    cfg, _ = parse_run_config("grpo", __doc__.split("\n")[0], argv)  # --config, --set key=value, shortcuts
    logging.basicConfig(level=os.environ.get("ROBOALIGN_LOG", "INFO"))
    run_grpo(cfg)
    report("grpo", cfg.output_dir)
    return 0


if __name__ == "__main__":  # e.g. under accelerate launch: user errors in one line as with `roboalign train`
    import sys

    from roboalign.spec.user_errors import run_main

    raise SystemExit(run_main("roboalign.training.grpo", main, sys.argv[1:]))
