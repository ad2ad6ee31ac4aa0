"""Offline alignment metrics: generate answers for held-out robot prompts and score them with the GRPO rewards.

For each robot sample the model generates greedily (deterministic; ``do_sample=True`` for the sampled
variant) from the prompt; the completion is scored with exactly the training rewards:
``acc`` = mean prefix accuracy r_a, ``format`` = mean format reward r_f, ``total`` = mean (r_f + r_a)/2.
Also reported: ``first_token`` (fraction whose first FAST token is right) and ``parsed`` (fraction with
a complete ``<ACTION_START> … <ACTION_END>`` block).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from roboalign.models.aligned import AlignedModel
from roboalign.spec.rewards import format_reward, prefix_accuracy, total_reward


@dataclass(frozen=True)
class AlignEval:
    acc: float
    format: float
    total: float
    first_token: float
    parsed: float
    n: int
    per_sample_acc: tuple[float, ...] = ()  # r_a of each sample, in order (for paired comparisons)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_max_new_tokens(aligned: AlignedModel, samples: list[dict[str, Any]], margin: float = 1.5) -> int:
    """Enough tokens for the longest target completion (+50 %)."""
    tok = aligned.backbone.tokenizer
    longest = max(len(tok(s["completion"][0]["content"][0]["text"], add_special_tokens=False)["input_ids"])
                  for s in samples)
    return int(longest * margin) + 8


@torch.no_grad()
def generate(aligned: AlignedModel, samples: list[dict[str, Any]], max_new_tokens: int, do_sample: bool = False,
             batch_size: int = 16, progress: bool = True, desc: str = "generate") -> list[tuple[str, list[int]]]:
    """(decoded text, completion token ids) per sample, generated from the sample's prompt and images."""
    model, processor = aligned.backbone.model, aligned.backbone.processor
    tok = aligned.backbone.tokenizer
    was_training = model.training
    model.eval()
    stop = {tok.pad_token_id, tok.eos_token_id}
    out: list[tuple[str, list[int]]] = []
    for i in tqdm(range(0, len(samples), batch_size), desc=desc, disable=not progress, leave=False):
        batch = samples[i : i + batch_size]
        texts = [processor.apply_chat_template(s["prompt"], add_generation_prompt=True, tokenize=False) for s in batch]
        images = [img for s in batch for img in s["images"]] or None
        inputs = processor(text=texts, images=images, padding=True, padding_side="left", return_tensors="pt")
        gen = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=do_sample,
                             temperature=1.0 if do_sample else None, top_p=1.0 if do_sample else None,
                             top_k=0 if do_sample else None, pad_token_id=tok.pad_token_id)
        for row in gen[:, inputs["input_ids"].shape[1] :].tolist():  # (B, new) -> per-sample ids
            ids = []
            for t in row:
                if t in stop:
                    break
                ids.append(t)
            out.append((tok.decode(ids, skip_special_tokens=True), ids))
    model.train(was_training)
    return out


def evaluate(aligned: AlignedModel, samples: list[dict[str, Any]], max_new_tokens: int | None = None,
             do_sample: bool = False, batch_size: int = 16, progress: bool = True, desc: str = "eval") -> AlignEval:
    """Mean r_a / r_f / total over robot samples (``target_fast`` non-empty)."""
    robot = [s for s in samples if s.get("target_fast")]
    if not robot:
        raise ValueError("evaluate needs robot samples with target_fast ids")
    max_new_tokens = max_new_tokens or default_max_new_tokens(aligned, robot)
    outs = generate(aligned, robot, max_new_tokens, do_sample=do_sample, batch_size=batch_size, progress=progress,
                    desc=desc)
    ra, rf, first, parsed = [], [], [], []
    for s, (text, ids) in zip(robot, outs, strict=True):
        p = aligned.action_vocab.parse_llm_ids(ids)
        ra.append(prefix_accuracy(list(p.fast_ids), s["target_fast"]))
        rf.append(format_reward(text))
        first.append(float(bool(p.fast_ids) and p.fast_ids[0] == s["target_fast"][0]))
        parsed.append(float(p.ok))
    n = len(robot)
    return AlignEval(acc=sum(ra) / n, format=sum(rf) / n, total=sum(total_reward(f, a) for f, a in zip(rf, ra, strict=True)) / n,
                     first_token=sum(first) / n, parsed=sum(parsed) / n, n=n, per_sample_acc=tuple(ra))


def paired_difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mean of ``b - a`` over the same samples and its standard error (the two models saw the same prompts)."""
    if len(a) != len(b) or not len(a):
        raise ValueError(f"paired_difference needs two equally long non-empty lists, got {len(a)} and {len(b)}")
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return float(d.mean()), se
