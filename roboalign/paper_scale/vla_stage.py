"""The VLA check of ``roboalign check-config``: frozen backbone cut at layer k + the flow-matching head, on meta.

Built with the same code as training (``roboalign.training.vla_head.head_config`` and
``roboalign.models.vla.build_vla``), so the checks are the ones a real run makes, but the field names in
the errors are the YAML's. Shapes go through the export graphs (vision, LLM at layer k, head with its
Euler loop) at batch 1 and through the head's training loss at the configured batch size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from roboalign.paper_scale import meta_models as mm
from roboalign.paper_scale.resolve import resolve_backbone
from roboalign.paper_scale.shared_checks import (
    STATE_DIM,
    build,
    count,
    dataset_note,
    param_text,
    prompt_tokens,
)
from roboalign.spec.action_space import get_action_space
from roboalign.spec.normalization import NormStats


def _meta_backbone(model: Any, family: str) -> Any:
    """A ``Backbone`` around the meta model (tiny tokenizer + the family's processor: never called here)."""
    from roboalign.models.backbone import Backbone, build_processor
    from roboalign.models.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    return Backbone(model=model, tokenizer=tok, processor=build_processor(tok, family=family), family=family)


def _check_head_fields(cfg: Any, where: str, layers: int, hidden: int) -> None:
    layer = cfg.backbone_layer
    if layer is not None and not 0 <= layer <= layers:
        raise ValueError(f"{where}: backbone_layer={layer} but the backbone has {layers} decoder layers "
                         f"(valid: 0..{layers}; the paper reads layer 18 of Qwen2.5-VL-7B's 28)")
    width = cfg.head_overrides.get("backbone_dim")
    if width is not None and width != hidden:
        raise ValueError(f"{where}: head_overrides.backbone_dim={width} but the backbone's hidden size is {hidden}: "
                         "the head reads the backbone's hidden states; drop the override or set it to the hidden size")
    if cfg.head_overrides.get("backbone_layer") not in (None, layer if layer is not None else -1):
        raise ValueError(f"{where}: head_overrides.backbone_layer is set; use the top-level backbone_layer field")


def build_meta_vla(cfg: Any, model: Any, family: str) -> Any:
    from roboalign.models.vla import build_vla
    from roboalign.models.vla_inputs import VLAInputSpec
    from roboalign.training.config import EMBODIMENT
    from roboalign.training.vla_head import head_config

    backbone = _meta_backbone(model, family)
    space = get_action_space(cfg.action_space)
    hc = head_config(cfg, backbone, space.dim, STATE_DIM)
    rng = np.random.default_rng(0)
    actions = NormStats.from_data(rng.uniform(-1, 1, (64, space.dim)), names=space.names)
    state = NormStats.from_data(rng.uniform(-1, 1, (64, STATE_DIM)), names=[f"s{i}" for i in range(STATE_DIM)])
    inputs = VLAInputSpec(cameras=cfg.cameras, image_size=cfg.image_size, prompt_state=cfg.prompt_state,
                          embodiment_id=EMBODIMENT[cfg.action_space], drop_system_tokens=cfg.drop_system_tokens)
    import torch

    with torch.device("meta"):
        return build_vla(backbone, hc, actions, state, space, inputs=inputs, backbone_source=cfg.backbone)


def check_vla(path: Path, opts: Any, report: Any) -> None:
    from roboalign.training.config import load_config

    cfg = load_config(path, kind="vla")
    dataset_note(cfg.dataset, "dataset", report)
    res = resolve_backbone(cfg.backbone, "backbone", str(path), opts.allow_missing)
    # an aligned (SFT/GRPO) backbone carries the action vocabulary; not here: assume FAST+ (2 + 2048 tokens)
    model = build(res, None if res.tiny else 2048, False, report)
    hidden, _, layers, _ = mm.text_dims(model)
    _check_head_fields(cfg, str(path), layers, hidden)
    vla = build_meta_vla(cfg, model, res.family)
    k = vla.cfg.head.backbone_layer
    total, trainable = count(vla, report, f"backbone frozen, cut at layer {k} of {layers}; head trainable")
    report.add(f"head: {vla.cfg.head.num_layers} DiT layers, {vla.cfg.head.num_heads} x {vla.cfg.head.head_dim}, "
               f"horizon {vla.cfg.head.horizon}, {vla.cfg.head.num_inference_steps} Euler steps, reads width "
               f"{vla.cfg.head.backbone_dim} ({param_text(trainable)})")
    shapes(vla, cfg, res.family, report)
    weights = (total - trainable) * 2 + trainable * 16  # bf16 frozen backbone; fp32 head + grads + AdamW
    report.add(f"memory estimate: {weights / 1024**3:.1f} GiB of weights and optimizer state on one GPU "
               "(+ activations of the frozen forward, no gradients through the backbone)")
    report.facts["memory_gib"] = {"weights_and_optimizer": round(weights / 1024**3, 2)}


def shapes(vla: Any, cfg: Any, family: str, report: Any) -> None:
    """Export graphs at batch 1 (inputs -> outputs) and the head's training loss at ``batch_size``."""
    from roboalign.export.onnx_export import graph_io

    model = vla.backbone.model
    n_cam = len(cfg.cameras)
    spec = mm.image_spec(family, 56 * 56, 28 * 28 * 1280)
    grid = spec.grid(cfg.image_size)
    vision, llm, n_deep = mm.export_wrappers(model, family, grid, spec, 0, vla.cfg.head.backbone_layer)
    text, image = prompt_tokens(n_cam, spec.tokens_per_image(cfg.image_size))
    seq = text + image
    feats = mm.vision_pass(vision, n_cam, spec.target_size(cfg.image_size))
    hidden = mm.llm_pass(llm, 1, seq, feats)
    head = mm.head_tensors(vla.head, 1, seq, STATE_DIM, vla.cfg.inputs.embodiment_id, cfg.batch_size)
    io = graph_io(n_deep)
    report.add(mm.Shapes("export vision graph", {"frames": (n_cam, *spec.target_size(cfg.image_size), 3),
                         **{n: tuple(f.shape) for n, f in zip(io["vision"]["outputs"], feats, strict=True)}}).describe())
    report.add(mm.Shapes("export llm graph (layer k)", {"input_ids": (1, seq), "position_ids": (3, 1, seq),
                         "hidden": tuple(hidden.shape)}).describe())
    report.add(mm.Shapes("export head graph / training", head).describe())
    report.add(f"tokens per sample: {seq} = prompt text {text} + {n_cam} x {spec.tokens_per_image(cfg.image_size)} "
               f"image tokens ({cfg.image_size[0]}x{cfg.image_size[1]} -> grid {grid})")
    report.facts["tokens_per_sample"] = seq
