"""Models of the configured size on the meta device (no weights, no memory) and shapes pushed through them.

The model classes are the real transformers ones and the action head is ours, built from config values
only; the vision and LLM passes run through the export wrappers (``roboalign.export.modules``), which
precompute everything grid-dependent on the CPU, so no data-dependent Python (``.tolist()``, ``.item()``)
touches a meta tensor. Every function returns shapes, never values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from roboalign.models.backbone import freeze_vision_tower, language_layers, text_config, vision_tower
from roboalign.models.families import get_family
from roboalign.runtime.preprocess import ImageProcessorSpec

META = torch.device("meta")


def build_meta_model(family: str, config: Any) -> nn.Module:
    """The family's ``...ForConditionalGeneration`` on the meta device, from a config object or config.json dict."""
    config_cls, model_cls, _ = get_family(family).classes()
    cfg = config if not isinstance(config, dict) else config_cls(**config)
    with META:
        model = model_cls(cfg)
    return model.eval()


def resize_for_action_vocab(model: nn.Module, tokenizer_len: int, num_fast: int) -> dict[str, int]:
    """Append ``<ACTION_START>``, ``<ACTION_END>`` and one token per FAST id after the tokenizer's last id and
    grow the embeddings as ``ActionVocab.resize_embeddings`` does (never shrinks: Qwen pads its matrix)."""
    rows = int(model.get_input_embeddings().weight.shape[0])
    needed = tokenizer_len + 2 + num_fast
    if needed > rows:
        model.resize_token_embeddings(needed, mean_resizing=False)  # mean resizing needs real values
    return {"tokenizer_len": tokenizer_len, "added_tokens": 2 + num_fast, "rows_before": rows,
            "rows_after": int(model.get_input_embeddings().weight.shape[0]),
            "lm_head_rows": int(model.get_output_embeddings().weight.shape[0])}


def apply_freezing(model: nn.Module, freeze_vision: bool) -> None:
    """SFT (paper): vision encoder frozen; GRPO (paper): all parameters trained."""
    model.requires_grad_(True)
    if freeze_vision:
        freeze_vision_tower(model)


def param_counts(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameters (tied weights counted once)."""
    params = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def largest_layer_params(model: nn.Module) -> int:
    """Parameters of the largest unit ZeRO-3 / FSDP gathers at once (a decoder layer or the embeddings)."""
    sizes = [sum(p.numel() for p in layer.parameters()) for layer in language_layers(model)]
    return max(sizes + [model.get_input_embeddings().weight.numel()])


def image_spec(family: str, min_pixels: int, max_pixels: int) -> ImageProcessorSpec:
    """The runtime image-processor parameters of a family (patch, mean/std from the family table)."""
    fam = get_family(family)
    return ImageProcessorSpec(patch_size=fam.patch_size, temporal_patch_size=fam.temporal_patch_size,
                              merge_size=fam.merge_size, image_mean=fam.image_mean, image_std=fam.image_std,
                              min_pixels=min_pixels, max_pixels=max_pixels)


def num_deepstack(model: nn.Module, layers_kept: int) -> int:
    indexes = getattr(model.config.vision_config, "deepstack_visual_indexes", None) or []
    return min(len(indexes), layers_kept)


def _materialize_vision_rotary(visual: nn.Module) -> None:
    # the rotary tables of a meta tower are meta too; they are config-only, so rebuild them on the CPU
    rot = visual.rotary_pos_emb
    if rot.inv_freq.is_meta:
        with torch.device("cpu"):
            visual.rotary_pos_emb = type(rot)(rot.config)


@dataclass
class Shapes:
    """Named tensor shapes of one stage, in order (for the report and the tests)."""

    stage: str
    tensors: dict[str, tuple[int, ...]]

    def describe(self) -> str:
        return f"{self.stage}: " + ", ".join(f"{k} {tuple(v)}" for k, v in self.tensors.items())


def export_wrappers(model: nn.Module, family: str, grid: tuple[int, int, int], spec: ImageProcessorSpec,
                    image_token_id: int, layers_kept: int) -> tuple[nn.Module, nn.Module, int]:
    """The vision and LLM export wrappers of a meta model, moved to the meta device."""
    from roboalign.export.modules import Qwen3VisionEncoderExport, TruncatedLLMExport, VisionEncoderExport

    visual = vision_tower(model)
    _materialize_vision_rotary(visual)
    n_deep = num_deepstack(model, layers_kept) if get_family(family).deepstack else 0
    if get_family(family).deepstack:
        vision = Qwen3VisionEncoderExport(visual, grid, spec.lut(), n_deep)
    else:
        vision = VisionEncoderExport(visual, grid, spec.lut())
    llm = TruncatedLLMExport(model, image_token_id, n_deep)
    return vision.to(META).eval(), llm.to(META).eval(), n_deep


def vision_pass(vision: nn.Module, n_images: int, image_hw: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    """uint8 frames (N, h, w, 3) -> image_embeds (N, T, D)[, deepstack (N, T, L, D)] on meta."""
    frames = torch.empty((n_images, *image_hw, 3), dtype=torch.uint8, device=META)
    out = vision(frames)
    return out if isinstance(out, tuple) else (out,)


def llm_pass(llm: nn.Module, batch: int, seq: int, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """(B, S) prompt + per-observation image features -> hidden (B, S, D) on meta."""
    ids = torch.empty((batch, seq), dtype=torch.long, device=META)
    mask = torch.empty((batch, seq), dtype=torch.long, device=META)
    pos = torch.empty((3, batch, seq), dtype=torch.long, device=META)
    per_obs = tuple(f.reshape(batch, -1, *f.shape[2:]) for f in feats)
    return llm(ids, mask, pos, *per_obs)


def token_loss(model: nn.Module, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token cross-entropy over the LM head: (logits (B, S, V), loss ())."""
    logits = model.get_output_embeddings()(hidden)
    labels = torch.empty(hidden.shape[:2], dtype=torch.long, device=META)
    return logits, F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)


def grpo_tensors(model: nn.Module, llm: nn.Module, feats: tuple[torch.Tensor, ...], completions: int,
                 prompt_len: int, completion_len: int, with_reference: bool) -> dict[str, tuple[int, ...]]:
    """One GRPO step's tensors for a micro-batch of ``completions`` (prompt + completion through the policy)."""
    seq = prompt_len + completion_len
    hidden = llm_pass(llm, completions, seq, feats)  # (G, S_p + L, D)
    logits = model.get_output_embeddings()(hidden[:, prompt_len - 1:-1])  # (G, L, V): predicts the completion
    completion = torch.empty((completions, completion_len), dtype=torch.long, device=META)
    logps = torch.gather(logits.float().log_softmax(-1), 2, completion.unsqueeze(-1)).squeeze(-1)  # (G, L)
    advantages = torch.empty((completions,), device=META)
    ratio = torch.exp(logps - logps)  # (G, L) pi / pi_old
    loss = -(ratio * advantages[:, None]).mean()
    out = {"prompt_ids": (completions, prompt_len), "completion_ids": tuple(completion.shape),
           "hidden": tuple(hidden.shape), "completion_logits": tuple(logits.shape), "per_token_logps": tuple(logps.shape),
           "advantages": tuple(advantages.shape), "loss": tuple(loss.shape)}
    if with_reference:
        out["ref_per_token_logps"] = tuple(logps.shape)
    return out


def head_tensors(head: nn.Module, batch: int, vl_seq: int, state_dim: int, embodiment: int,
                 train_batch: int) -> dict[str, tuple[int, ...]]:
    """The flow-matching head: the training loss at ``train_batch`` and the Euler sampler at ``batch``."""
    cfg = head.cfg

    def inputs(b: int) -> tuple[torch.Tensor, ...]:
        return (torch.empty((b, vl_seq, cfg.backbone_dim), device=META), torch.empty((b, vl_seq), dtype=torch.long,
                device=META), torch.empty((b, state_dim), device=META),
                torch.empty((b, cfg.horizon, cfg.action_dim), device=META),
                torch.full((b,), embodiment, dtype=torch.long, device=META))

    vl, mask, state, noise, emb = inputs(train_batch)
    loss = head.compute_loss(vl, mask, state, noise, emb, noise=noise, t=torch.empty((train_batch,), device=META))
    vl, mask, state, noise, emb = inputs(batch)
    actions = head(vl, mask, state, noise, emb)
    return {"train_vl_tokens": tuple(inputs(train_batch)[0].shape), "train_loss": tuple(loss.shape),
            "vl_tokens": tuple(vl.shape), "noise": tuple(noise.shape), "actions": tuple(actions.shape)}


def text_dims(model: nn.Module) -> tuple[int, int, int, int]:
    """(hidden, intermediate, layers, vocab rows) of the LLM."""
    tc = text_config(model)
    return (int(tc.hidden_size), int(tc.intermediate_size), len(language_layers(model)),
            int(model.get_input_embeddings().weight.shape[0]))
