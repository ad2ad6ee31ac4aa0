"""Export-friendly module boundaries of the VLA: vision encoder, truncated LLM and action head.

The stock Qwen2.5-VL forward computes rotary positions, window indices and variable-length attention
segments from ``image_grid_thw`` with Python loops and ``.tolist()``, which a graph exporter freezes to
the example's shapes. A VLA checkpoint fixes every camera's image size (``VLAInputSpec.image_size``), so
all images share one patch grid; these wrappers precompute everything that depends on that grid once
(as buffers) and run the *same* HF sub-modules (patch embed, blocks' qkv/proj/MLP/norms, merger, decoder
layers, action head) with a batch axis instead of packed sequences:

* :class:`VisionEncoderExport` — ``frames (N, h, w, 3) uint8 -> image_embeds (N, P/m², D)`` for N
  images (N = batch x cameras, dynamic). The image processor's tensor work happens in the graph, not on the
  CPU side: rescale + normalise as a 768-entry lookup table (bit-identical to the processor), patchify as a
  reshape/transpose, and the temporal repeat of a still frame folded into the patch embedding (the
  Conv3d weights summed over time). Window attention becomes attention over equal windows (a reshape) or
  a block-diagonal mask when windows differ in size; both are exact.
* :class:`TruncatedLLMExport` — ``input_ids, attention_mask (B, S), position_ids (3, B, S),
  image_embeds (B, M, D) -> hidden (B, S, D)``: the layer-k hidden states of the truncated LLM, with the
  image features gathered into the ``<|image_pad|>`` slots and an explicit causal + padding mask.
* :class:`ActionHeadExport` — the flow-matching head with its Euler loop unrolled; the noise is an input, and
  so is the committed prefix of real-time chunking (``prefix_actions``, ``prefix_len``, ``soft_horizon``).

Parity with the stock forward is checked on real inputs by :mod:`roboalign.export.parity` at export time.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from roboalign.models.action_head import FlowMatchingActionHead
from roboalign.models.rtc import EXPORTABLE_VARIANTS


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class _VisionExportBase(nn.Module):
    """What both Qwen vision towers share for N images of one fixed patch grid: the uint8 -> patch
    embedding (normalisation LUT + patchify + the Conv3d folded over time), the 2-D RoPE tables, and
    multi-head attention with a batch axis."""

    def __init__(self, visual: nn.Module, grid_thw: tuple[int, int, int], lut: np.ndarray) -> None:
        super().__init__()
        from transformers.vision_utils import get_vision_position_ids

        cfg = visual.config
        self.visual = visual
        t, h, w = (int(v) for v in grid_thw)
        self.grid_thw = (t, h, w)
        self.num_patches = t * h * w
        self.merge_unit = visual.spatial_merge_unit
        if self.num_patches % self.merge_unit:
            raise ValueError(f"grid {grid_thw} is not a multiple of the spatial merge unit {self.merge_unit}")
        self.num_tokens = self.num_patches // self.merge_unit  # per image, after the merger
        self.hidden = int(cfg.hidden_size)
        self.heads = int(cfg.num_heads)
        self.head_dim = self.hidden // self.heads
        self.patch = int(cfg.patch_size)
        self.merge = int(visual.spatial_merge_size)
        self.grid = torch.tensor([[t, h, w]], dtype=torch.long)
        pos = get_vision_position_ids(self.grid, visual.spatial_merge_size)  # (P, 2)
        with torch.no_grad():
            cos, sin = visual.rotary_pos_emb(torch.zeros(1), pos)  # (P, head_dim) each
        self.register_buffer("cos", cos.float(), persistent=False)  # (P, head_dim), processor patch order
        self.register_buffer("sin", sin.float(), persistent=False)
        if tuple(lut.shape) != (3, 256):
            raise ValueError(f"lut must be (3, 256), got {lut.shape}")
        self.register_buffer("lut", torch.from_numpy(np.ascontiguousarray(lut, dtype=np.float32)).reshape(-1),
                             persistent=False)  # (768,)
        self.register_buffer("channel_offset", torch.arange(3, dtype=torch.long) * 256, persistent=False)
        proj = visual.patch_embed.proj  # Conv3d(C, E, (T, p, p))
        w = proj.weight.detach().float().sum(dim=2)  # (E, C, p, p): a still frame repeated T times
        self.register_buffer("patch_weight", w.reshape(w.shape[0], -1).t().contiguous(), persistent=False)
        bias = proj.bias.detach().float() if proj.bias is not None else torch.zeros(w.shape[0])
        self.register_buffer("patch_bias", bias, persistent=False)  # (E,): Qwen3-VL's patch embed has one

    def patch_embed(self, frames: torch.Tensor) -> torch.Tensor:
        # frames (N, h, w, 3) uint8 -> patch embeddings (N, P, E) in the processor's patch order
        n = frames.shape[0]
        _, gh, gw = self.grid_thw
        p, m = self.patch, self.merge
        x = self.lut[frames.long() + self.channel_offset]  # (N, h, w, 3) rescaled + normalised float32
        x = x.reshape(n, gh // m, m, p, gw // m, m, p, 3).permute(0, 1, 4, 2, 5, 7, 3, 6)  # (N, A, B, m, m, C, p, p)
        x = x.reshape(n, self.num_patches, 3 * p * p)  # (N, P, C*p*p)
        return x @ self.patch_weight + self.patch_bias  # (N, P, E)

    def _qkv(self, block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n, p = x.shape[0], x.shape[1]
        qkv = block.attn.qkv(x).reshape(n, p, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (N, heads, P, hd) each
        return q * self.cos + _rotate_half(q) * self.sin, k * self.cos + _rotate_half(k) * self.sin, v

    def _merge_heads(self, block: nn.Module, o: torch.Tensor) -> torch.Tensor:
        n, _, p, _ = o.shape
        return block.attn.proj(o.transpose(1, 2).reshape(n, p, self.hidden))  # (N, P, E)


class VisionEncoderExport(_VisionExportBase):
    """The Qwen2.5-VL vision tower for N images of one fixed patch grid (see module docstring)."""

    def __init__(self, visual: nn.Module, grid_thw: tuple[int, int, int], lut: np.ndarray) -> None:
        super().__init__(visual, grid_thw, lut)
        from transformers.vision_utils import get_vision_window_index

        if visual.patch_embed.proj.bias is not None:
            raise ValueError("expected a bias-free patch embedding")
        self.full_blocks = frozenset(int(i) for i in visual.fullatt_block_indexes)
        window_index, cu_win = get_vision_window_index(
            self.grid, spatial_merge_size=visual.spatial_merge_size, window_size=visual.window_size,
            patch_size=visual.patch_size)
        self.cos = self._permute(self.cos, window_index)  # window order
        self.sin = self._permute(self.sin, window_index)
        self.register_buffer("window_index", window_index.long(), persistent=False)  # (P/m²,)
        self.register_buffer("reverse_index", torch.argsort(window_index).long(), persistent=False)
        lens = (cu_win[1:] - cu_win[:-1]).tolist()
        self.window_len = int(lens[0]) if len(set(lens)) == 1 else 0  # 0: unequal windows -> mask
        mask = torch.full((self.num_patches, self.num_patches), float("-inf"))
        for a, b in zip(cu_win[:-1].tolist(), cu_win[1:].tolist(), strict=True):
            mask[a:b, a:b] = 0.0
        self.register_buffer("window_mask", mask, persistent=False)  # (P, P) additive, block diagonal

    def _permute(self, x: torch.Tensor, window_index: torch.Tensor) -> torch.Tensor:
        u = self.merge_unit
        return x.reshape(-1, u, x.shape[-1])[window_index].reshape(-1, x.shape[-1])

    def _attention(self, block: nn.Module, x: torch.Tensor, full: bool) -> torch.Tensor:
        n, p = x.shape[0], self.num_patches
        q, k, v = self._qkv(block, x)  # (N, heads, P, hd) each
        if full:
            o = F.scaled_dot_product_attention(q, k, v)  # (N, heads, P, hd)
        elif self.window_len:  # windows are contiguous runs of window_len tokens: fold them into the head axis
            wl = self.window_len
            shape = (n, self.heads * (p // wl), wl, self.head_dim)  # 4-D, as exporters and TensorRT expect
            o = F.scaled_dot_product_attention(q.reshape(shape), k.reshape(shape), v.reshape(shape))
            o = o.reshape(n, self.heads, p, self.head_dim)
        else:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=self.window_mask)
        return self._merge_heads(block, o)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        # frames (N, h, w, 3) uint8 -> (N, P/m², D)
        n, p, u = frames.shape[0], self.num_patches, self.merge_unit
        x = self.patch_embed(frames).reshape(n, p // u, u, self.hidden)
        x = x[:, self.window_index].reshape(n, p, self.hidden)  # window order
        for i, block in enumerate(self.visual.blocks):
            x = x + self._attention(block, block.norm1(x), full=i in self.full_blocks)
            x = x + block.mlp(block.norm2(x))
        merger = self.visual.merger
        y = merger.mlp(merger.ln_q(x).reshape(n, p // u, u * self.hidden))  # (N, P/m², D)
        return y[:, self.reverse_index]  # back to raster order


class Qwen3VisionEncoderExport(_VisionExportBase):
    """The Qwen3-VL vision tower for N images of one fixed grid: the learned position table resampled to
    the grid once (gather indices + bilinear weights as buffers), full attention per image, the merger,
    and the DeepStack features of the first ``num_deepstack`` deepstack ViT layers (the ones the
    truncated LLM reads): ``frames (N, h, w, 3) -> image_embeds (N, T, D)[, deepstack_embeds (N, T, L, D)]``.
    """

    def __init__(self, visual: nn.Module, grid_thw: tuple[int, int, int], lut: np.ndarray,
                 num_deepstack: int) -> None:
        super().__init__(visual, grid_thw, lut)
        from transformers.vision_utils import get_vision_interpolation_indices_and_weights

        idx, wts = get_vision_interpolation_indices_and_weights(
            self.grid, num_grid_per_side=visual.num_grid_per_side, mode=visual.interpolation_mode,
            align_corners=visual.interpolation_align_corners, spatial_merge_size=self.merge)
        self.register_buffer("interp_index", idx.long(), persistent=False)  # (P, taps)
        self.register_buffer("interp_weight", wts.float(), persistent=False)  # (P, taps)
        indexes = [int(i) for i in visual.deepstack_visual_indexes]
        if not 0 <= num_deepstack <= len(indexes):
            raise ValueError(f"num_deepstack={num_deepstack}: the tower has {len(indexes)} deepstack layers")
        self.deepstack_at = {layer: j for j, layer in enumerate(indexes[:num_deepstack])}

    def _attention(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._qkv(block, x)  # (N, heads, P, hd): each image attends to itself only
        return self._merge_heads(block, F.scaled_dot_product_attention(q, k, v))

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = frames.shape[0]
        pos = (self.visual.pos_embed(self.interp_index) * self.interp_weight[:, :, None]).sum(1)  # (P, E)
        x = self.patch_embed(frames) + pos  # (N, P, E)
        deep: list[torch.Tensor] = []
        for i, block in enumerate(self.visual.blocks):
            x = x + self._attention(block, block.norm1(x))
            x = x + block.mlp(block.norm2(x))
            if i in self.deepstack_at:
                merger = self.visual.deepstack_merger_list[self.deepstack_at[i]]
                deep.append(merger(x).reshape(n, self.num_tokens, -1))  # (N, T, D)
        y = self.visual.merger(x).reshape(n, self.num_tokens, -1)  # (N, T, D)
        if not deep:
            return (y,)
        return y, torch.stack(deep, dim=2)  # (N, T, D), (N, T, L, D)


class TruncatedLLMExport(nn.Module):
    """Embeddings + image-feature scatter + the first k decoder layers -> layer-k hidden states (B, S, D).

    With ``num_deepstack`` > 0 (Qwen3-VL) the graph takes ``deepstack_embeds (B, M, L, D)`` too and adds
    feature l to the image tokens' hidden states after decoder layer l, as ``Qwen3VLTextModel`` does.
    """

    def __init__(self, model: nn.Module, image_token_id: int, num_deepstack: int = 0) -> None:
        super().__init__()
        self.lm = model.model.language_model
        self.image_token_id = int(image_token_id)
        self.num_deepstack = int(num_deepstack)

    @staticmethod
    def _gather(feats: torch.Tensor, slot: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        # feats (B, M, D), slot (B, S) -> (B, S, D): the k-th image feature at the k-th image token
        return torch.gather(feats.to(dtype), 1, slot.unsqueeze(-1).expand(-1, -1, feats.shape[-1]))

    @staticmethod
    def _causal_bias(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        s = attention_mask.shape[1]
        idx = torch.arange(s, device=attention_mask.device)
        causal = idx.unsqueeze(0) <= idx.unsqueeze(1)  # (S, S): key j visible from query i iff j <= i
        keep = causal.unsqueeze(0).unsqueeze(0) & attention_mask.bool().unsqueeze(1).unsqueeze(1)  # (B, 1, S, S)
        return torch.zeros(keep.shape, dtype=dtype, device=attention_mask.device).masked_fill(
            ~keep, torch.finfo(dtype).min)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                image_embeds: torch.Tensor, deepstack_embeds: torch.Tensor | None = None) -> torch.Tensor:
        # input_ids, attention_mask (B, S) int64; position_ids (3, B, S) int64; image_embeds (B, M, D)
        emb = self.lm.embed_tokens(input_ids)  # (B, S, D)
        is_img = input_ids == self.image_token_id  # (B, S)
        slot = (torch.cumsum(is_img.long(), dim=1) - 1).clamp(min=0)  # (B, S): k-th image token -> k
        img = is_img.unsqueeze(-1)
        emb = torch.where(img, self._gather(image_embeds, slot, emb.dtype), emb)  # (B, S, D)
        bias = self._causal_bias(attention_mask, emb.dtype)
        if not self.num_deepstack:
            out = self.lm(inputs_embeds=emb, attention_mask={"full_attention": bias, "sliding_attention": bias},
                          position_ids=position_ids, use_cache=False)
            return out.last_hidden_state  # (B, S, D)
        h = emb
        rope = self.lm.rotary_emb(h, position_ids)
        for i, layer in enumerate(self.lm.layers):
            h = layer(h, attention_mask=bias, position_embeddings=rope)
            if i < self.num_deepstack:  # deepstack_embeds (B, M, L, D)
                h = torch.where(img, h + self._gather(deepstack_embeds[:, :, i], slot, h.dtype), h)
        return self.lm.norm(h)  # (B, S, D); the norm is the identity below the last layer


class ActionHeadExport(nn.Module):
    """The flow-matching head's sampler: hidden states + mask + state + noise -> normalised actions.

    With ``rtc`` (``inpaint`` or ``trained``) the graph takes the committed prefix too: ``prefix_actions``
    (B, H, A) normalised, ``prefix_len`` d and ``soft_horizon`` s (B,) int64; d = s = 0 samples without RTC.
    """

    def __init__(self, head: FlowMatchingActionHead, rtc: str | None = None) -> None:
        super().__init__()
        if rtc is not None and rtc not in EXPORTABLE_VARIANTS:
            raise ValueError(f"the head graph exports RTC variants {', '.join(EXPORTABLE_VARIANTS)}, not {rtc!r} "
                             "(guided RTC needs autograd: it runs in PyTorch only)")
        self.head = head
        self.rtc = rtc

    def forward(self, vl_tokens: torch.Tensor, vl_mask: torch.Tensor, state: torch.Tensor, noise: torch.Tensor,
                embodiment: torch.Tensor, prefix_actions: torch.Tensor | None = None,
                prefix_len: torch.Tensor | None = None, soft_horizon: torch.Tensor | None = None) -> torch.Tensor:
        # (B, S, D), (B, S), (B, S_dim), (B, H, A), (B,)[, (B, H, A), (B,), (B,)] -> (B, H, A)
        if self.rtc is None:
            return self.head(vl_tokens, vl_mask, state, noise, embodiment)
        return self.head(vl_tokens, vl_mask, state, noise, embodiment, prefix_actions, prefix_len, soft_horizon,
                         rtc=self.rtc)
