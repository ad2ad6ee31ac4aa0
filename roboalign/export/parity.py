"""Parity of the exported graphs with PyTorch: cosine similarity and max abs difference per module.

Inputs are real: observations (camera images, state, a task instruction from the checkpoint's task set)
go through the runtime's real pre-processing (tokenizer, image processor, RoPE positions), batch 2 with
prompts of different lengths (padding) and batch 1. Each module is compared on the *same* inputs as its
PyTorch reference so errors do not compound:

* ``vision``: stock image-processor patches -> ``visual(pixel_values, grid_thw).pooler_output`` (and the
  DeepStack features of Qwen3-VL) vs ``vision.onnx`` on the uint8 frames (so the in-graph normalisation
  and patchify are checked too);
* ``llm``: the checkpoint's truncated backbone (stock HF forward, layer-k hidden states) vs ``llm.onnx``
  fed the PyTorch vision features, compared on non-padding tokens;
* ``head``: ``FlowMatchingActionHead`` (Euler loop) vs ``head.onnx`` on the PyTorch hidden states and a
  fixed noise;
* ``head_rtc`` (graphs with real-time chunking inputs): the head's RTC sampler of the exported variant vs
  ``head.onnx`` fed a committed prefix, with d and s differing across the batch;
* ``pipeline``: the three graphs chained vs the PyTorch VLA end to end (normalised action chunk).

A module passes when its cosine similarity is at least ``min_cosine`` (0.999 by default); ``head_rtc``
also needs its largest absolute difference within ``RTC_MAX_ABS_DIFF`` (1e-4) of the PyTorch chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from roboalign.spec.policy_io import Observation

DEFAULT_MIN_COSINE = 0.999
RTC_MAX_ABS_DIFF = 1e-4  # the RTC head must match PyTorch to this, times max(1, largest |value|)


class ParityError(RuntimeError):
    """An exported graph disagrees with PyTorch beyond tolerance."""


def rtc_example(batch: int, horizon: int, action_dim: int, seed: int) -> dict[str, np.ndarray]:
    """RTC inputs for tracing and parity: a random prefix, d and s differing across the batch (row 0: d=3, s=8)."""
    rng = np.random.default_rng(seed)
    d = np.array([min(3, horizon - 1), *[0] * (batch - 1)], dtype=np.int64)
    s = np.array([min(8, horizon), *[0] * (batch - 1)], dtype=np.int64)
    if batch > 1:
        d[-1], s[-1] = min(2, horizon - 1), min(2, horizon)  # a hard prefix with no soft rows
    return {"prefix_actions": rng.uniform(-1, 1, (batch, horizon, action_dim)).astype(np.float32),
            "prefix_len": d, "soft_horizon": s}


def no_prefix(batch: int, horizon: int, action_dim: int) -> dict[str, np.ndarray]:
    """RTC inputs that sample without a prefix (d = s = 0)."""
    return {"prefix_actions": np.zeros((batch, horizon, action_dim), np.float32),
            "prefix_len": np.zeros(batch, np.int64), "soft_horizon": np.zeros(batch, np.int64)}


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


def vision_reference(vla: Any, ref_in: dict[str, np.ndarray], num_images: int, deepstack: bool
                     ) -> list[np.ndarray]:
    """The stock vision tower on the processor's patches: image features (N, T, D) and, for DeepStack
    towers, the features the truncated LLM reads (N, T, L, D)."""
    import torch

    with torch.no_grad():
        out = vla.backbone.model.model.visual(torch.from_numpy(ref_in["pixel_values"]),
                                              grid_thw=torch.from_numpy(ref_in["image_grid_thw"]))
    emb = out.pooler_output.numpy()
    feats = [emb.reshape(num_images, -1, emb.shape[-1])]
    if deepstack:
        n_deep = min(len(out.deepstack_features), int(vla.cfg.head.backbone_layer))
        deep = torch.stack(list(out.deepstack_features[:n_deep]), dim=1).numpy()  # (N*T, L, D)
        feats.append(deep.reshape(num_images, -1, *deep.shape[1:]))
    return feats


def head_rtc_parity(vla: Any, session: Any, head_feed: dict[str, np.ndarray], rtc: str, seed: int,
                    min_cosine: float = DEFAULT_MIN_COSINE) -> dict[str, Any]:
    """The head graph's RTC inputs vs the PyTorch RTC sampler of variant ``rtc`` on the same feed."""
    import torch

    hc = vla.cfg.head
    feed = {**head_feed, **rtc_example(head_feed["noise"].shape[0], hc.horizon, hc.action_dim, seed)}
    with torch.no_grad():
        ref = vla.head(*(torch.from_numpy(np.ascontiguousarray(v)) for v in feed.values()), rtc=rtc).numpy()
    result = compare(ref, session.run(None, feed)[0], min_cosine)
    result["ok"] = bool(result["ok"] and result["max_abs_diff"] <= RTC_MAX_ABS_DIFF * max(1.0, result["ref_max_abs"]))
    return result


def module_parity(vla: Any, preprocessor: Any, sessions: dict[str, Any], observation_sets: Sequence[Sequence[Observation]],
                  min_cosine: float = DEFAULT_MIN_COSINE, seed: int = 0, rtc: str | None = None) -> dict[str, Any]:
    """Compare ``sessions`` (onnxruntime, keyed vision/llm/head) with ``vla`` on every observation set.

    A head graph with RTC inputs is compared with a prefix too (``head_rtc``, variant ``rtc``, default the
    head config's) and with d = s = 0 everywhere else.
    """
    import torch

    from roboalign.runtime.ort_backend import llm_feed

    results: dict[str, list[dict[str, Any]]] = {"vision": [], "llm": [], "head": [], "pipeline": []}
    has_rtc = {"prefix_actions", "prefix_len", "soft_horizon"} <= {i.name for i in sessions["head"].get_inputs()}
    rtc = (rtc or vla.cfg.head.rtc_variant) if has_rtc else None
    if rtc:
        results["head_rtc"] = []
    rng = np.random.default_rng(seed)
    hc = vla.cfg.head
    names = [o.name for o in sessions["vision"].get_outputs()]  # image_embeds[, deepstack_embeds]
    for observations in observation_sets:
        x = preprocessor(observations)
        noise = rng.standard_normal((x.batch, hc.horizon, hc.action_dim)).astype(np.float32)
        ref_in = x.as_reference_dict()
        vis_ref = dict(zip(names, vision_reference(vla, ref_in, x.frames.shape[0], len(names) > 1), strict=True))
        with torch.no_grad():
            hidden_ref = vla.features(ref_in)[0].numpy()  # (B, S - start, D), stock HF forward
        vis_onnx = sessions["vision"].run(names, {"frames": x.frames})
        results["vision"] += [compare(vis_ref[k], v, min_cosine) for k, v in zip(names, vis_onnx, strict=True)]
        hidden_onnx = sessions["llm"].run(None, llm_feed(x, vis_ref))[0][:, x.token_start:]
        valid = x.attention_mask[:, x.token_start:].astype(bool)  # (B, S') compare real tokens only
        results["llm"].append(compare(hidden_ref[valid], hidden_onnx[valid], min_cosine))
        mask = np.ascontiguousarray(x.attention_mask[:, x.token_start:])
        with torch.no_grad():
            head_ref = vla.head(torch.from_numpy(hidden_ref), torch.from_numpy(mask), torch.from_numpy(x.state),
                                torch.from_numpy(noise), torch.from_numpy(x.embodiment)).numpy()
        head_feed = {"vl_tokens": np.ascontiguousarray(hidden_ref), "vl_mask": mask, "state": x.state, "noise": noise,
                     "embodiment": x.embodiment}
        if rtc:
            results["head_rtc"].append(head_rtc_parity(vla, sessions["head"], head_feed, rtc, seed, min_cosine))
            head_feed.update(no_prefix(x.batch, hc.horizon, hc.action_dim))
        results["head"].append(compare(head_ref, sessions["head"].run(None, head_feed)[0], min_cosine))
        # the whole pipeline, graphs chained on their own outputs
        vis = dict(zip(names, sessions["vision"].run(names, {"frames": x.frames}), strict=True))
        hid = np.ascontiguousarray(sessions["llm"].run(None, llm_feed(x, vis))[0][:, x.token_start:])
        chunk = sessions["head"].run(None, {**head_feed, "vl_tokens": hid})[0]
        results["pipeline"].append(compare(vla.predict_normalized(ref_in, noise), chunk, min_cosine))
    report = {name: merge(r, min_cosine) for name, r in results.items()}
    if rtc:  # the RTC head also has to meet RTC_MAX_ABS_DIFF in every case
        report["head_rtc"].update(ok=all(r["ok"] for r in results["head_rtc"]), variant=rtc)
    report["min_cosine"] = min_cosine
    report["ok"] = all(report[m]["ok"] for m in results)
    report["inputs"] = (f"{len(observation_sets)} batches of synthetic table-top observations "
                        f"(batch sizes {[len(o) for o in observation_sets]}) through the runtime pre-processing")
    return report
