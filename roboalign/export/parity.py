"""Parity of the exported graphs with PyTorch: cosine similarity and max abs difference per module.

Inputs are real: observations (camera images, state, a task instruction from the checkpoint's task set)
go through the runtime's real pre-processing (tokenizer, image processor, RoPE positions), batch 2 with
prompts of different lengths (padding) and batch 1. Each module is compared on the *same* inputs as its
PyTorch reference so errors do not compound:

* ``vision``: stock image-processor patches -> ``visual(pixel_values, grid_thw).pooler_output`` vs
  ``vision.onnx`` on the uint8 frames (so the in-graph normalisation and patchify are checked too);
* ``llm``: the checkpoint's truncated backbone (stock HF forward, layer-k hidden states) vs ``llm.onnx``
  fed the PyTorch image features, compared on non-padding tokens;
* ``head``: ``FlowMatchingActionHead`` (Euler loop) vs ``head.onnx`` on the PyTorch hidden states and a
  fixed noise;
* ``pipeline``: the three graphs chained vs the PyTorch VLA end to end (normalised action chunk).

A module passes when its cosine similarity is at least ``min_cosine`` (0.999 by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from roboalign.runtime.types import Observation

DEFAULT_MIN_COSINE = 0.999


class ParityError(RuntimeError):
    """An exported graph disagrees with PyTorch beyond tolerance."""


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(a @ b / (na * nb))


def compare(ref: np.ndarray, got: np.ndarray, min_cosine: float = DEFAULT_MIN_COSINE) -> dict[str, Any]:
    ref, got = np.asarray(ref), np.asarray(got)
    if ref.shape != got.shape:
        raise ParityError(f"shape mismatch: PyTorch {ref.shape} vs ONNX {got.shape}")
    if not np.all(np.isfinite(got)):
        return {"cosine": 0.0, "max_abs_diff": float("inf"), "ref_max_abs": float(np.abs(ref).max()), "ok": False}
    c = cosine(ref, got)
    diff = float(np.abs(ref.astype(np.float64) - got).max()) if ref.size else 0.0
    return {"cosine": c, "max_abs_diff": diff, "ref_max_abs": float(np.abs(ref).max()) if ref.size else 0.0,
            "ok": bool(c >= min_cosine)}


def merge(results: Sequence[dict[str, Any]], min_cosine: float) -> dict[str, Any]:
    """Worst case over several comparisons of one module."""
    c = min(r["cosine"] for r in results)
    return {"cosine": c, "max_abs_diff": max(r["max_abs_diff"] for r in results),
            "ref_max_abs": max(r["ref_max_abs"] for r in results), "ok": bool(c >= min_cosine), "cases": len(results)}


def module_parity(vla: Any, preprocessor: Any, sessions: dict[str, Any], observation_sets: Sequence[Sequence[Observation]],
                  min_cosine: float = DEFAULT_MIN_COSINE, seed: int = 0) -> dict[str, Any]:
    """Compare ``sessions`` (onnxruntime, keyed vision/llm/head) with ``vla`` on every observation set."""
    import torch

    results: dict[str, list[dict[str, Any]]] = {"vision": [], "llm": [], "head": [], "pipeline": []}
    rng = np.random.default_rng(seed)
    model = vla.backbone.model
    hc = vla.cfg.head
    for observations in observation_sets:
        x = preprocessor(observations)
        b, n = x.batch, x.frames.shape[0]
        noise = rng.standard_normal((b, hc.horizon, hc.action_dim)).astype(np.float32)
        ref_in = x.as_reference_dict()
        with torch.no_grad():
            vis_ref = model.model.visual(torch.from_numpy(ref_in["pixel_values"]),
                                         grid_thw=torch.from_numpy(x.image_grid_thw)).pooler_output
            vis_ref = vis_ref.numpy().reshape(n, -1, vis_ref.shape[-1])  # (N, T, D)
            hidden_ref, _ = vla.features(ref_in)  # (B, S - start, D), stock HF forward
            hidden_ref = hidden_ref.numpy()
        vis_onnx = sessions["vision"].run(None, {"frames": x.frames})[0]
        results["vision"].append(compare(vis_ref, vis_onnx, min_cosine))
        llm_feed = {"input_ids": x.input_ids, "attention_mask": x.attention_mask, "position_ids": x.position_ids,
                    "image_embeds": vis_ref.reshape(b, -1, vis_ref.shape[-1])}
        hidden_onnx = sessions["llm"].run(None, llm_feed)[0][:, x.token_start:]
        valid = x.attention_mask[:, x.token_start:].astype(bool)  # (B, S') compare real tokens only
        results["llm"].append(compare(hidden_ref[valid], hidden_onnx[valid], min_cosine))
        mask = np.ascontiguousarray(x.attention_mask[:, x.token_start:])
        with torch.no_grad():
            head_ref = vla.head(torch.from_numpy(hidden_ref), torch.from_numpy(mask), torch.from_numpy(x.state),
                                torch.from_numpy(noise), torch.from_numpy(x.embodiment)).numpy()
        head_feed = {"vl_tokens": np.ascontiguousarray(hidden_ref), "vl_mask": mask, "state": x.state, "noise": noise,
                     "embodiment": x.embodiment}
        results["head"].append(compare(head_ref, sessions["head"].run(None, head_feed)[0], min_cosine))
        # the whole pipeline, graphs chained on their own outputs
        emb = sessions["vision"].run(None, {"frames": x.frames})[0]
        llm_feed["image_embeds"] = emb.reshape(b, -1, emb.shape[-1])
        hid = np.ascontiguousarray(sessions["llm"].run(None, llm_feed)[0][:, x.token_start:])
        chunk = sessions["head"].run(None, {**head_feed, "vl_tokens": hid})[0]
        results["pipeline"].append(compare(vla.predict_normalized(ref_in, noise), chunk, min_cosine))
    report = {name: merge(r, min_cosine) for name, r in results.items()}
    report["min_cosine"] = min_cosine
    report["ok"] = all(report[m]["ok"] for m in results)
    report["inputs"] = (f"{len(observation_sets)} batches of synthetic table-top observations "
                        f"(batch sizes {[len(o) for o in observation_sets]}) through the runtime pre-processing")
    return report
