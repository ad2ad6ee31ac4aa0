"""The three stage checks of ``roboalign check-config``: SFT, GRPO and the VLA, each on the meta device."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from roboalign.paper_scale import meta_models as mm
from roboalign.paper_scale.accelerate_setup import DistSetup
from roboalign.paper_scale.memory import ModelShape, estimate
from roboalign.paper_scale.resolve import Resolved, resolve_backbone, resolve_missing, sft_config_with_output

STATE_DIM = 8  # 7 joints + gripper: the state every dataset and the bridge use
INSTRUCTION = "pick up the chocolate pudding and place it in the basket"  # the longest LIBERO-Object task


def _b(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e8 else f"{n / 1e6:.2f} M"


def fast_vocab_size(data: Any) -> int:
    from roboalign.spec.fast import PRESETS

    return int(data.fast_vocab_size or PRESETS[data.fast_preset]["vocab_size"])


def build(res: Resolved, num_fast: int | None, freeze_vision: bool, report: Any) -> torch.nn.Module:
    """Meta model + action vocabulary (``num_fast`` None: none, a plain base model) + freezing."""
    model = mm.build_meta_model(res.family, res.config)
    report.add(f"architecture: {res.source}", "WARN" if "not on this machine" in res.source else "OK")
    for note in res.notes:
        report.add(note, "WARN" if "differs" in note else "OK")
    d, i, n_layers, rows = mm.text_dims(model)
    built = mm.param_counts(model)[0]
    report.add(f"built on meta: {type(model).__name__}, {n_layers} decoder layers, hidden {d}, MLP {i}, "
               f"{_b(built)} parameters" + (f" (model card: {res.published_params:.2f} B)" if res.published_params
                                             else ""))
    if res.published_params and abs(built / 1e9 - res.published_params) > 0.01 * res.published_params:
        raise ValueError(f"{res.source}: the built model has {_b(built)} parameters, the model card says "
                         f"{res.published_params} B: the architecture values are wrong")
    report.facts["built_params"] = built
    if res.has_action_vocab:
        report.add(f"vocabulary: {rows} rows, the checkpoint's tokenizer already holds the action tokens")
    elif num_fast is None:
        report.add(f"vocabulary: {rows} rows (a base model: no action tokens)")
    else:
        v = mm.resize_for_action_vocab(model, res.tokenizer_len, num_fast)
        report.add(f"vocabulary: {v['tokenizer_len']} tokens + 2 markers + {num_fast} FAST = "
                   f"{v['tokenizer_len'] + v['added_tokens']} -> embeddings {v['rows_before']} -> {v['rows_after']} "
                   f"rows (LM head {v['lm_head_rows']})")
        report.facts["vocabulary"] = v
    mm.apply_freezing(model, freeze_vision)
    return model


def count(model: torch.nn.Module, report: Any, what: str) -> tuple[int, int]:
    total, trainable = mm.param_counts(model)
    report.add(f"parameters: total {_b(total)}, trainable {_b(trainable)} ({what})")
    report.facts["params"] = {"total": total, "trainable": trainable}
    return total, trainable


@functools.cache
def counting_tokenizer() -> Any:
    """The tiny tokenizer, built once, for token counts (never modified)."""
    from roboalign.models.tiny import build_tiny_tokenizer

    return build_tiny_tokenizer()


def prompt_tokens(n_images: int, tokens_per_image: int) -> tuple[int, int]:
    """(text tokens, image tokens) of one robot prompt: the real template and chat format, counted with the
    tiny tokenizer (a 1 K-token BPE: an upper bound for Qwen's 151 K-token one); images exactly."""
    from roboalign.spec.prompts import PromptTemplate

    tok = counting_tokenizer()
    msgs = PromptTemplate().robot_messages(INSTRUCTION, np.zeros(STATE_DIM), n_images)
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return len(ids) - n_images, n_images * tokens_per_image  # one <|image_pad|> per image before expansion


def answer_tokens(chunk_len: int, action_space: str) -> int:
    """An upper bound of the answer without its reasoning: the tags and markers (tiny tokenizer) plus one FAST
    token per DCT coefficient (BPE merges only shorten it)."""
    from roboalign.spec.action_space import get_action_space
    from roboalign.spec.prompts import PromptTemplate

    template = PromptTemplate()
    tags = template.completion("", template.action_answer(""))
    n_tags = len(counting_tokenizer()(tags, add_special_tokens=False)["input_ids"])
    return n_tags + chunk_len * get_action_space(action_space).dim


def image_layout(family: str, image_hw: tuple[int, int], min_pixels: int, max_pixels: int) -> tuple[Any, Any]:
    spec = mm.image_spec(family, min_pixels, max_pixels)
    return spec, spec.grid(image_hw)


def shape_model(model: torch.nn.Module, trainable: int, total: int) -> ModelShape:
    d, i, n_layers, rows = mm.text_dims(model)
    return ModelShape(total_params=total, trainable_params=trainable, largest_layer_params=mm.largest_layer_params(model),
                      hidden=d, intermediate=i, layers=n_layers, vocab=rows)


def memory_line(report: Any, est: Any, opts: Any) -> None:
    status = "OK" if est.total <= opts.gpu_memory_gb else "WARN"
    hint = "" if status == "OK" else (f" > {opts.gpu_memory_gb:.0f} GiB: lower the micro-batch, enable gradient "
                                      "checkpointing, offload the optimizer, or use more GPUs")
    report.add(f"memory estimate: {est.describe()}{hint}", status)
    report.facts["memory_gib"] = est.to_dict()


def dataset_note(path: str, field_name: str, report: Any) -> None:
    """Training needs the dataset; its absence is no reason to stop checking the model."""
    from roboalign.sim.default_dataset import DEFAULT, default_dataset_dir, is_complete

    if path == DEFAULT:
        if not is_complete(default_dataset_dir()):
            report.add(f"{field_name}=default: not collected yet at {default_dataset_dir()} (the first `roboalign "
                       "train` run collects it)", "WARN")
    elif not Path(path).exists():
        report.add(f"{field_name}={path!r} is not on this machine (needed to train, not to check)", "WARN")


def precision_note(dtype: str, setup: DistSetup, lr: float, report: Any) -> None:
    """Weights loaded in bf16/fp16 without DeepSpeed's fp32 master copy are updated in 16 bits."""
    if dtype == "float32" or setup.strategy == "deepspeed":
        return
    report.add(f"model.dtype={dtype} with {setup.strategy.upper()}: weights and AdamW state stay in {dtype} (no fp32 "
               f"master copy), and an update of lr {lr:g} is below {dtype}'s resolution (2^-8 relative) for most "
               "weights", "WARN")


# ---------------------------------------------------------------------------------------------- SFT
def check_sft(path: Path, opts: Any, setup: DistSetup, report: Any) -> None:
    from roboalign.sim.constants import SIM_CAMERA_SIZE
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
    from roboalign.sim.constants import SIM_CAMERA_SIZE
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


# ---------------------------------------------------------------------------------------------- VLA
def check_vla(path: Path, opts: Any, setup: DistSetup, report: Any) -> None:
    from roboalign.paper_scale.vla_stage import check_vla as run

    run(path, opts, report)
