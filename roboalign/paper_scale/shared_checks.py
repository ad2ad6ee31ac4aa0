"""What the stage checks of ``roboalign check-config`` share: the meta model, counts, token lengths, notes.

The SFT and GRPO checks (:mod:`.stages`) and the VLA check (:mod:`.vla_stage`) build the configured backbone on the
meta device with its action vocabulary (:func:`build`), report parameter counts and a per-GPU memory line, count a
robot prompt's tokens with the real template, and note a dataset or precision setting that a real run would trip on.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from roboalign.paper_scale import meta_models as mm
from roboalign.paper_scale.accelerate_setup import DistSetup
from roboalign.paper_scale.memory import ModelShape
from roboalign.paper_scale.resolve import Resolved
from roboalign.sim.default_dataset import DEFAULT, default_dataset_dir, is_complete
from roboalign.spec.action_space import get_action_space

STATE_DIM = 8  # 7 joints + gripper: the state every dataset and the bridge use
INSTRUCTION = "pick up the chocolate pudding and place it in the basket"  # the longest LIBERO-Object task


def param_text(n: int) -> str:
    """A parameter count as ``1.23 B`` (from 0.1 B) or ``4.56 M``."""
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
               f"{param_text(built)} parameters" + (f" (model card: {res.published_params:.2f} B)" if res.published_params
                                             else ""))
    if res.published_params and abs(built / 1e9 - res.published_params) > 0.01 * res.published_params:
        raise ValueError(f"{res.source}: the built model has {param_text(built)} parameters, the model card says "
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
    report.add(f"parameters: total {param_text(total)}, trainable {param_text(trainable)} ({what})")
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
