"""The SFT and GRPO stage checks of ``roboalign check-config``, each on the meta device (the VLA's: :mod:`.vla_stage`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from roboalign.paper_scale import meta_models as mm
from roboalign.paper_scale.accelerate_setup import DistSetup
from roboalign.paper_scale.memory import estimate
from roboalign.paper_scale.resolve import Resolved, resolve_backbone, resolve_missing, sft_config_with_output
from roboalign.paper_scale.shared_checks import (
    answer_tokens,
    build,
    count,
    dataset_note,
    fast_vocab_size,
    image_layout,
    memory_line,
    precision_note,
    prompt_tokens,
    shape_model,
)
from roboalign.sim.constants import SIM_CAMERA_SIZE


# ---------------------------------------------------------------------------------------------- SFT
def check_sft(path: Path, opts: Any, setup: DistSetup, report: Any) -> None:
    from roboalign.training.config import load_config

    cfg = load_config(path)
    dataset_note(cfg.data.dataset, "data.dataset", report)
    res = resolve_backbone(cfg.model.name_or_path, "model.name_or_path", str(path), opts.allow_missing,
                           cfg.model.tiny)
    model = build(res, fast_vocab_size(cfg.data), cfg.model.freeze_vision, report)
    total, trainable = count(model, report, "vision encoder frozen" if cfg.model.freeze_vision else "all trained")
    if not cfg.model.freeze_vision:
        report.add("model.freeze_vision=false: the paper freezes the vision encoder in SFT", "WARN")
    n_cam, image_hw = len(cfg.data.cameras), (SIM_CAMERA_SIZE, SIM_CAMERA_SIZE)
    spec, grid = image_layout(res.family, image_hw, cfg.model.min_pixels, cfg.model.max_pixels)
    text, image = prompt_tokens(n_cam, spec.tokens_per_image(image_hw))
    answer = answer_tokens(cfg.data.chunk_len, cfg.data.action_space)
    seq = text + image + answer
    report.add(f"tokens per sample: {seq} = prompt text {text} + {n_cam} x {spec.tokens_per_image(image_hw)} image "
               f"tokens ({image_hw[0]}x{image_hw[1]} -> grid {grid}) + answer <= {answer} (+ the reasoning text)")
    if cfg.max_length is not None and seq > cfg.max_length:
        raise ValueError(f"{path}: max_length={cfg.max_length} is shorter than a sample's prompt + answer ({seq} "
                         "tokens): raise max_length or lower model.max_pixels")
    b = cfg.per_device_train_batch_size
    vision, llm, _ = mm.export_wrappers(model, res.family, grid, spec, 0, mm.text_dims(model)[2])
    feats = mm.vision_pass(vision, b * n_cam, spec.target_size(image_hw))
    hidden = mm.llm_pass(llm, b, seq, feats)
    logits, loss = mm.token_loss(model, hidden)
    report.add(mm.Shapes("SFT batch -> loss", {"frames": (b * n_cam, *spec.target_size(image_hw), 3),
                         **{f"vision.{i}": tuple(f.shape) for i, f in enumerate(feats)}, "input_ids": (b, seq),
                         "hidden": tuple(hidden.shape), "logits": tuple(logits.shape), "loss": tuple(loss.shape)}
                         ).describe())
    report.facts["tokens_per_sample"] = seq
    precision_note(cfg.model.dtype, setup, cfg.learning_rate, report)
    shape = shape_model(model, trainable, total)
    memory_line(report, estimate(shape, setup, cfg.model.dtype, b, seq, seq, cfg.gradient_checkpointing), opts)
    if cfg.max_length:
        worst = estimate(shape, setup, cfg.model.dtype, b, cfg.max_length, cfg.max_length, cfg.gradient_checkpointing)
        report.add(f"memory if a micro-batch reaches max_length={cfg.max_length}: {worst.total:.1f} GiB per GPU "
                   f"(logits {worst.logits:.1f})", "OK" if worst.total <= opts.gpu_memory_gb else "WARN")


# ---------------------------------------------------------------------------------------------- GRPO
def grpo_backbone(cfg: Any, path: Path, opts: Any, report: Any) -> tuple[Resolved, int]:
    """The SFT checkpoint GRPO starts from (or, when it is not here, the SFT config that writes it)."""
    init = cfg.init_checkpoint
    if Path(init).exists() or not opts.allow_missing:
        res = resolve_backbone(init, "init_checkpoint", str(path), opts.allow_missing)
        return res, fast_vocab_size(cfg.data)
    sft = sft_config_with_output(init, path.parent)
    if sft is None:
        return resolve_missing(init, "init_checkpoint", str(path), True), fast_vocab_size(cfg.data)
    from roboalign.training.config import load_config

    sft_cfg = load_config(sft)
    report.add(f"init_checkpoint {init!r} is not here; it is the output_dir of {sft}: checking its model")
    res = resolve_backbone(sft_cfg.model.name_or_path, "model.name_or_path", str(sft), True, sft_cfg.model.tiny)
    return res, fast_vocab_size(sft_cfg.data)


def check_grpo(path: Path, opts: Any, setup: DistSetup, report: Any) -> None:
    from roboalign.training.config import load_config

    cfg = load_config(path)
    dataset_note(cfg.data.dataset, "data.dataset", report)
    per_gen = cfg.steps_per_generation or cfg.gradient_accumulation_steps
    gen_batch = cfg.per_device_train_batch_size * setup.num_processes * per_gen
    if gen_batch % cfg.num_generations:
        raise ValueError(f"{path}: per_device_train_batch_size x num_processes x steps_per_generation = {gen_batch} "
                         f"completions is not a multiple of num_generations={cfg.num_generations}")
    update = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * setup.num_processes
    report.add(f"batches: {update // cfg.num_generations} prompts x {cfg.num_generations} completions per update, "
               f"{gen_batch // cfg.num_generations} prompts per rollout (paper: 128 / 512)")
    res, num_fast = grpo_backbone(cfg, path, opts, report)
    model = build(res, num_fast, cfg.freeze_vision, report)
    total, trainable = count(model, report, "vision frozen" if cfg.freeze_vision else "all parameters, as the paper")
    if cfg.freeze_vision:
        report.add("freeze_vision=true: the paper's GRPO trains all parameters", "WARN")
    n_cam, image_hw = len(cfg.data.cameras), (SIM_CAMERA_SIZE, SIM_CAMERA_SIZE)
    spec, grid = image_layout(res.family, image_hw, 56 * 56, 28 * 28 * 256)
    text, image = prompt_tokens(n_cam, spec.tokens_per_image(image_hw))
    prompt, g, length = text + image, cfg.per_device_train_batch_size, cfg.max_completion_length
    vision, llm, _ = mm.export_wrappers(model, res.family, grid, spec, 0, mm.text_dims(model)[2])
    feats = mm.vision_pass(vision, g * n_cam, spec.target_size(image_hw))
    tensors = mm.grpo_tensors(model, llm, feats, g, prompt, length, with_reference=cfg.beta > 0)
    report.add(mm.Shapes("GRPO step (one micro-batch of completions)", tensors).describe())
    report.add(f"tokens per sample: prompt {prompt} (text {text} + images {image}) + completion <= {length}")
    report.facts["tokens_per_sample"] = prompt + length
    est = estimate(shape_model(model, trainable, total), setup, "bfloat16", g, prompt + length, length,
                   cfg.gradient_checkpointing)
    if cfg.beta > 0:  # the frozen reference policy for the KL term, sharded like the policy
        ref = total * 2 / setup.shards / 1024**3
        est = type(est)(**{**est.__dict__, "weights": est.weights + ref})
        report.add(f"reference model for the KL term (beta={cfg.beta}): +{ref:.1f} GiB per GPU")
    memory_line(report, est, opts)
