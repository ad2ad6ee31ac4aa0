"""GR00T-N1.5-style flow-matching action head (a DiT built from diffusers blocks).

The head turns backbone vision-language tokens (hidden states of layer k of the frozen MLLM), the robot
state and a noisy action chunk into a velocity, and samples an action chunk with a few Euler steps.
Structure (after NVIDIA Isaac-GR00T ``FlowmatchingActionHead`` / ``DiT``; re-written here on diffusers'
``Attention``, ``FeedForward``, ``AdaLayerNorm``, ``Timesteps``/``TimestepEmbedding`` and
``BasicTransformerBlock``):

- VL tokens: LayerNorm -> linear projection to the head width -> a small self-attention stack.
- State: per-embodiment MLP -> one token. Noisy actions + flow time: per-embodiment action encoder
  (W1 action, concat sinusoidal time, W2 + swish, W3) + learned position embedding.
- Sequence ``[state, future tokens (learned, ``num_future_tokens``), action tokens]`` goes through the
  DiT: blocks alternate cross-attention to the VL tokens (even blocks) and self-attention (odd blocks),
  each with an AdaLN whose scale/shift come from the flow-time embedding; output AdaLN + projection;
  per-embodiment MLP decoder on the action tokens -> velocity.

Flow-matching convention (GR00T's, which is the opposite end from pi0's): ``t = 0`` is pure noise and
``t = 1`` is the clean action, ``x_t = (1 - t) * noise + t * action`` and the target velocity is
``action - noise``. Training draws ``u ~ Beta(1.5, 1.0)`` and sets ``t = (s - u) / s`` with
``s = 0.999``, i.e. the noise fraction ``1 - t = u / s`` follows a Beta(1.5, 1) scaled by 1/0.999, so
training concentrates on the noisy end. Sampling integrates ``dx/dt = v`` with ``num_inference_steps``
Euler steps from ``t = 0`` (the given noise) to ``t = 1``; the flow time enters the network as the
bucket ``floor(t * num_timestep_buckets)`` as in GR00T. The noise is an input of :meth:`forward`, so
sampling is deterministic given the noise (ONNX export and parity tests rely on that).

Real-time chunking (:mod:`roboalign.models.rtc`): :meth:`FlowMatchingActionHead.forward` takes an optional
committed prefix (B, H, A) with its length ``d`` and soft-mask horizon ``s`` and samples a chunk that
continues it (variants ``inpaint``, ``guided``, ``trained``). With ``rtc_max_delay > 0`` training draws a
delay ``d`` per example, gives the first ``d`` rows clean (row flow time 1) and leaves them out of the loss.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from diffusers.models.attention import BasicTransformerBlock, FeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import TimestepEmbedding, Timesteps, get_timestep_embedding
from diffusers.models.normalization import AdaLayerNorm
from torch import nn

from roboalign.models.rtc import check_variant, guided_sample, inpaint_sample
from roboalign.spec.loader import build

__all__ = ["ActionHeadConfig", "FlowMatchingActionHead", "sample_flow_time", "sample_prefix_len"]


@dataclass(frozen=True)
class ActionHeadConfig:
    """Size and flow-matching settings of the action head.

    ``backbone_layer`` is the index into the backbone's ``output_hidden_states`` tuple that the head reads
    (0 = embeddings, k = output of decoder layer k); the VLA truncates the backbone there.
    """

    action_dim: int = 7
    state_dim: int = 8
    horizon: int = 16
    backbone_dim: int = 3584
    backbone_layer: int = 18
    num_layers: int = 16  # DiT depth (alternating cross / self attention)
    num_heads: int = 32
    head_dim: int = 48
    vl_self_attn_layers: int = 4
    num_future_tokens: int = 32
    encoder_hidden: int = 1024  # hidden width of the state / action-decoder MLPs
    num_embodiments: int = 2  # 0 = LIBERO sim Panda (eef_delta), 1 = real Franka FR3 (joint_position)
    num_inference_steps: int = 4
    num_timestep_buckets: int = 1000
    noise_beta_alpha: float = 1.5
    noise_beta_beta: float = 1.0
    noise_s: float = 0.999
    dropout: float = 0.0
    max_horizon: int = 64  # size of the learned action position table
    rtc_max_delay: int = 0  # training-time RTC: largest committed prefix drawn per example (0 = off)

    def __post_init__(self) -> None:
        positive = ("action_dim", "state_dim", "horizon", "backbone_dim", "num_layers", "num_heads", "head_dim",
                    "num_future_tokens", "encoder_hidden", "num_embodiments", "num_inference_steps",
                    "num_timestep_buckets", "max_horizon")
        bad = [name for name in positive if int(getattr(self, name)) < 1]
        if bad:
            raise ValueError(f"ActionHeadConfig: these fields must be >= 1: {bad}")
        if self.backbone_layer < 0:
            raise ValueError(f"ActionHeadConfig.backbone_layer must be >= 0, got {self.backbone_layer}")
        if self.vl_self_attn_layers < 0:
            raise ValueError(f"ActionHeadConfig.vl_self_attn_layers must be >= 0, got {self.vl_self_attn_layers}")
        if self.horizon > self.max_horizon:
            raise ValueError(f"ActionHeadConfig.horizon={self.horizon} exceeds max_horizon={self.max_horizon}")
        if not 0.0 < self.noise_s <= 1.0:
            raise ValueError(f"ActionHeadConfig.noise_s must be in (0, 1], got {self.noise_s}")
        if self.noise_beta_alpha <= 0 or self.noise_beta_beta <= 0:
            raise ValueError("ActionHeadConfig.noise_beta_alpha and noise_beta_beta must be > 0")
        if not 0 <= self.rtc_max_delay < self.horizon:
            raise ValueError(f"ActionHeadConfig.rtc_max_delay must be in [0, horizon={self.horizon}), "
                             f"got {self.rtc_max_delay} (0 turns training-time RTC off)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ActionHeadConfig.dropout must be in [0, 1), got {self.dropout}")

    @property
    def width(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def rtc_variant(self) -> str:
        """The gradient-free RTC variant that fits this head: ``trained`` when trained with delays."""
        return "trained" if self.rtc_max_delay > 0 else "inpaint"

    @classmethod
    def paper(cls, action_dim: int = 7, state_dim: int = 8) -> ActionHeadConfig:
        """GR00T-N1.5 defaults on Qwen2.5-VL-7B (the paper's VLA reads layer 18; sizes unpublished): 16 layers, 32 x 48, horizon 16, layer 18."""
        return cls(action_dim=action_dim, state_dim=state_dim, horizon=16, backbone_dim=3584, backbone_layer=18,
                   num_layers=16, num_heads=32, head_dim=48, vl_self_attn_layers=4, num_future_tokens=32,
                   encoder_hidden=1024)

    @classmethod
    def tiny(cls, action_dim: int = 7, state_dim: int = 8, backbone_dim: int = 128,
             backbone_layer: int = 1) -> ActionHeadConfig:
        """A CPU-sized head (~0.3 M parameters) for tests and the measured tiny VLA."""
        return cls(action_dim=action_dim, state_dim=state_dim, horizon=16, backbone_dim=backbone_dim,
                   backbone_layer=backbone_layer, num_layers=4, num_heads=4, head_dim=16, vl_self_attn_layers=1,
                   num_future_tokens=8, encoder_hidden=128)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "ActionHeadConfig") -> ActionHeadConfig:
        return build(cls, data, source)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def sample_flow_time(batch: int, cfg: ActionHeadConfig, generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """GR00T flow time: ``t = (s - u) / s`` with ``u ~ Beta(alpha, beta)``; t=0 is noise. Returns (B,)."""
    # Beta via two Gammas so an explicit generator makes it reproducible (torch.distributions has none).
    a = torch._standard_gamma(torch.full((batch,), cfg.noise_beta_alpha, device=device), generator=generator)
    b = torch._standard_gamma(torch.full((batch,), cfg.noise_beta_beta, device=device), generator=generator)
    u = a / (a + b)  # (B,) ~ Beta(alpha, beta)
    return (cfg.noise_s - u) / cfg.noise_s


def sample_prefix_len(batch: int, cfg: ActionHeadConfig, generator: torch.Generator | None = None,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """Training-time RTC delays: ``d ~ U{0..rtc_max_delay}`` per example, (B,) long."""
    return torch.randint(0, cfg.rtc_max_delay + 1, (batch,), generator=generator, device=device)


class CategorySpecificLinear(nn.Module):
    """A linear layer with one weight matrix per embodiment (GR00T's per-embodiment projector)."""

    def __init__(self, num_categories: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_categories, in_dim, out_dim) / math.sqrt(in_dim))
        self.bias = nn.Parameter(torch.zeros(num_categories, out_dim))

    def forward(self, x: torch.Tensor, cat_ids: torch.Tensor) -> torch.Tensor:
        # x (B, T, in), cat_ids (B,) -> (B, T, out)
        return torch.bmm(x, self.weight[cat_ids]) + self.bias[cat_ids].unsqueeze(1)


class CategorySpecificMLP(nn.Module):
    """Two per-embodiment linear layers with a ReLU between (state encoder, action decoder)."""

    def __init__(self, num_categories: int, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.layer1 = CategorySpecificLinear(num_categories, in_dim, hidden)
        self.layer2 = CategorySpecificLinear(num_categories, hidden, out_dim)

    def forward(self, x: torch.Tensor, cat_ids: torch.Tensor) -> torch.Tensor:
        return self.layer2(F.relu(self.layer1(x, cat_ids)), cat_ids)


class ActionEncoder(nn.Module):
    """Noisy action chunk + flow time -> action tokens, per embodiment (GR00T's MultiEmbodimentActionEncoder)."""

    def __init__(self, num_categories: int, action_dim: int, width: int) -> None:
        super().__init__()
        self.width = width
        self.w1 = CategorySpecificLinear(num_categories, action_dim, width)
        self.w2 = CategorySpecificLinear(num_categories, 2 * width, width)
        self.w3 = CategorySpecificLinear(num_categories, width, width)

    def forward(self, actions: torch.Tensor, t_bucket: torch.Tensor, cat_ids: torch.Tensor) -> torch.Tensor:
        """``t_bucket`` is (B,) (one flow time per chunk) or (B, H) (one per row: RTC's clean prefix rows)."""
        b, h, _ = actions.shape  # (B, H, A)
        a_emb = self.w1(actions, cat_ids)  # (B, H, W)
        if t_bucket.ndim == 2:
            tau = get_timestep_embedding(t_bucket.reshape(-1).float(), self.width, flip_sin_to_cos=False,
                                         downscale_freq_shift=0).reshape(b, h, self.width)
            tau = tau.to(a_emb.dtype)  # (B, H, W)
        else:
            tau = get_timestep_embedding(t_bucket.float(), self.width, flip_sin_to_cos=False,
                                         downscale_freq_shift=0)  # (B, W)
            tau = tau.to(a_emb.dtype).unsqueeze(1).expand(b, h, self.width)  # (B, H, W), in the weights' dtype
        x = self.w2(torch.cat([a_emb, tau], dim=-1), cat_ids)  # (B, H, W)
        return self.w3(F.silu(x), cat_ids)  # (B, H, W)


class DiTBlock(nn.Module):
    """One DiT block: AdaLN(t) -> attention (cross to VL tokens, or self) -> LayerNorm -> feed-forward."""

    def __init__(self, width: int, heads: int, head_dim: int, cross_dim: int | None, dropout: float) -> None:
        super().__init__()
        self.is_cross = cross_dim is not None
        self.norm1 = AdaLayerNorm(width, num_embeddings=None, chunk_dim=1)  # per-sample shift/scale from temb
        self.attn = Attention(query_dim=width, cross_attention_dim=cross_dim, heads=heads, dim_head=head_dim,
                              dropout=dropout, bias=True, out_bias=True)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-5)
        self.ff = FeedForward(width, dropout=dropout, activation_fn="gelu-approximate", final_dropout=dropout > 0)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor,
                context_bias: torch.Tensor | None) -> torch.Tensor:
        # x (B, L, W), temb (B, W), context (B, S, W), context_bias (B, 1, S) additive or None
        h = self.norm1(x, temb=temb)
        if self.is_cross:
            h = self.attn(h, encoder_hidden_states=context, attention_mask=context_bias)
        else:
            h = self.attn(h)
        x = x + h
        return x + self.ff(self.norm2(x))


class FlowMatchingActionHead(nn.Module):
    """The action head. ``forward`` samples an action chunk from given noise; ``compute_loss`` trains it."""

    def __init__(self, cfg: ActionHeadConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w, e = cfg.width, cfg.num_embodiments
        # VL side: norm, projection to head width, small self-attention stack (diffusers blocks).
        self.vl_norm = nn.LayerNorm(cfg.backbone_dim)
        self.vl_proj = nn.Linear(cfg.backbone_dim, w)
        self.vl_self_attn = nn.ModuleList(
            BasicTransformerBlock(w, cfg.num_heads, cfg.head_dim, dropout=cfg.dropout, activation_fn="gelu-approximate",
                                  attention_bias=True, norm_type="layer_norm")
            for _ in range(cfg.vl_self_attn_layers))
        # State / action side.
        self.state_encoder = CategorySpecificMLP(e, cfg.state_dim, cfg.encoder_hidden, w)
        self.action_encoder = ActionEncoder(e, cfg.action_dim, w)
        self.action_pos = nn.Embedding(cfg.max_horizon, w)
        self.future_tokens = nn.Embedding(cfg.num_future_tokens, w)
        nn.init.normal_(self.action_pos.weight, std=0.02)
        nn.init.normal_(self.future_tokens.weight, std=0.02)
        # DiT: flow-time embedding, alternating cross (even) / self (odd) attention blocks, output AdaLN.
        self.time_proj = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=1)
        self.time_embed = TimestepEmbedding(256, w)
        self.blocks = nn.ModuleList(
            DiTBlock(w, cfg.num_heads, cfg.head_dim, cross_dim=w if i % 2 == 0 else None, dropout=cfg.dropout)
            for i in range(cfg.num_layers))
        self.norm_out = AdaLayerNorm(w, num_embeddings=None, chunk_dim=1)
        self.proj_out = nn.Linear(w, w)
        self.action_decoder = CategorySpecificMLP(e, w, cfg.encoder_hidden, cfg.action_dim)

    # --- pieces -------------------------------------------------------------------------------------------
    def encode_vl(self, vl_tokens: torch.Tensor, vl_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, S, D_backbone) + (B, S) 1/0 mask -> (B, S, W) tokens and a (B, 1, S) additive attention bias."""
        if vl_tokens.shape[-1] != self.cfg.backbone_dim:
            raise ValueError(f"VL tokens have width {vl_tokens.shape[-1]}, the head expects "
                             f"backbone_dim={self.cfg.backbone_dim}")
        bias = None
        if vl_mask is not None:
            bias = (1.0 - vl_mask.to(vl_tokens.dtype)).unsqueeze(1) * -1e4  # (B, 1, S)
        x = self.vl_proj(self.vl_norm(vl_tokens))  # (B, S, W)
        for block in self.vl_self_attn:
            x = block(x, attention_mask=bias)
        return x, bias

    def velocity(self, vl: torch.Tensor, vl_bias: torch.Tensor | None, state: torch.Tensor, x_t: torch.Tensor,
                 t: torch.Tensor, embodiment: torch.Tensor, row_t: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted velocity (B, H, A) at flow time t (B,) for encoded VL tokens ``vl`` (B, S, W).

        ``row_t`` (B, H): a flow time per action row for the action encoder (RTC's clean prefix rows have 1);
        the DiT's time embedding stays ``t``.
        """
        b, h, _ = x_t.shape
        t_bucket = torch.floor(t * self.cfg.num_timestep_buckets)  # (B,) as in GR00T
        temb = self.time_embed(self.time_proj(t_bucket).to(x_t.dtype))  # (B, W)
        state_tok = self.state_encoder(state.unsqueeze(1), embodiment)  # (B, 1, W)
        row_bucket = t_bucket if row_t is None else torch.floor(row_t * self.cfg.num_timestep_buckets)
        act_tok = self.action_encoder(x_t, row_bucket, embodiment) + self.action_pos.weight[:h].unsqueeze(0)
        future = self.future_tokens.weight.unsqueeze(0).expand(b, -1, -1)  # (B, F, W)
        x = torch.cat([state_tok, future, act_tok], dim=1)  # (B, 1 + F + H, W)
        for block in self.blocks:
            x = block(x, temb, vl, vl_bias)
        x = self.proj_out(self.norm_out(x, temb=temb))  # (B, L, W)
        return self.action_decoder(x[:, -h:], embodiment)  # (B, H, A)

    def _check(self, state: torch.Tensor, actions: torch.Tensor, embodiment: torch.Tensor) -> None:
        cfg = self.cfg
        if state.ndim != 2 or state.shape[1] != cfg.state_dim:
            raise ValueError(f"state must be (B, {cfg.state_dim}), got {tuple(state.shape)}")
        if actions.ndim != 3 or actions.shape[1:] != (cfg.horizon, cfg.action_dim):
            raise ValueError(f"actions/noise must be (B, {cfg.horizon}, {cfg.action_dim}), got {tuple(actions.shape)}")
        if embodiment.ndim != 1 or embodiment.shape[0] != state.shape[0]:
            raise ValueError(f"embodiment must be (B,) long, got {tuple(embodiment.shape)}")

    # --- training -----------------------------------------------------------------------------------------
    def compute_loss(self, vl_tokens: torch.Tensor, vl_mask: torch.Tensor | None, state: torch.Tensor,
                     actions: torch.Tensor, embodiment: torch.Tensor, action_mask: torch.Tensor | None = None,
                     noise: torch.Tensor | None = None, t: torch.Tensor | None = None,
                     generator: torch.Generator | None = None, prefix_len: torch.Tensor | None = None) -> torch.Tensor:
        """Flow-matching MSE between predicted and target velocity ``action - noise``.

        vl_tokens (B, S, D), vl_mask (B, S), state (B, S_dim), actions (B, H, A) normalised, embodiment (B,),
        action_mask (B, H) or (B, H, A) with 1 = supervised (0 for padding past an episode's end).
        ``noise`` / ``t`` may be given (tests); otherwise drawn from ``generator``. ``prefix_len`` (B,)
        (training-time RTC; drawn when ``rtc_max_delay > 0`` and not given): the first ``d`` rows are given
        clean at row flow time 1 and left out of the loss.
        """
        self._check(state, actions, embodiment)
        b, h, _ = actions.shape
        if noise is None:
            noise = torch.randn(actions.shape, generator=generator, dtype=actions.dtype, device=actions.device)
        if t is None:
            t = sample_flow_time(b, self.cfg, generator=generator, device=actions.device).to(actions.dtype)
        if prefix_len is None and self.cfg.rtc_max_delay > 0:
            prefix_len = sample_prefix_len(b, self.cfg, generator=generator, device=actions.device)
        tt = t[:, None, None]  # (B, 1, 1)
        x_t = (1.0 - tt) * noise + tt * actions  # (B, H, A); t = 0 is noise
        target = actions - noise  # (B, H, A)
        row_t, free = None, None
        if prefix_len is not None:
            hard = torch.arange(h, device=actions.device).unsqueeze(0) < prefix_len.unsqueeze(1)  # (B, H)
            x_t = torch.where(hard.unsqueeze(-1), actions, x_t)
            row_t = torch.where(hard, torch.ones_like(hard, dtype=t.dtype), t.unsqueeze(1).expand(b, h))
            free = (~hard).to(actions.dtype)
        vl, bias = self.encode_vl(vl_tokens, vl_mask)
        pred = self.velocity(vl, bias, state, x_t, t, embodiment, row_t)
        return self._masked_mse((pred - target) ** 2, action_mask, free)

    @staticmethod
    def _masked_mse(err: torch.Tensor, action_mask: torch.Tensor | None, free: torch.Tensor | None) -> torch.Tensor:
        """Mean of ``err`` (B, H, A) over supervised entries (``action_mask``) of free rows (``free`` (B, H))."""
        if action_mask is None and free is None:
            return err.mean()
        m = torch.ones_like(err) if action_mask is None else action_mask.to(err.dtype)
        if m.ndim == 2:
            m = m.unsqueeze(-1)
        m = m.expand_as(err)
        if free is not None:
            m = m * free.unsqueeze(-1)
        return (err * m).sum() / m.sum().clamp_min(1.0)

    # --- inference ----------------------------------------------------------------------------------------
    def forward(self, vl_tokens: torch.Tensor, vl_mask: torch.Tensor | None, state: torch.Tensor,
                noise: torch.Tensor, embodiment: torch.Tensor, prefix_actions: torch.Tensor | None = None,
                prefix_len: torch.Tensor | None = None, soft_horizon: torch.Tensor | None = None,
                rtc: str | None = None, max_guidance_weight: float = 5.0) -> torch.Tensor:
        """Sample a normalised action chunk (B, H, A) by Euler integration from ``noise`` (B, H, A).

        With ``prefix_actions`` (B, H, A) normalised, ``prefix_len`` d and ``soft_horizon`` s (B,) long, the
        chunk continues the committed prefix (real-time chunking); ``rtc`` picks the variant (default: the
        config's :attr:`ActionHeadConfig.rtc_variant`).
        """
        self._check(state, noise, embodiment)
        vl, bias = self.encode_vl(vl_tokens, vl_mask)
        n = self.cfg.num_inference_steps
        if prefix_actions is not None:
            return self._sample_rtc(vl, bias, state, noise, embodiment, prefix_actions, prefix_len, soft_horizon,
                                    check_variant(rtc or self.cfg.rtc_variant), max_guidance_weight)
        dt = 1.0 / n
        x = noise
        for k in range(n):
            t = torch.full((x.shape[0],), k * dt, dtype=x.dtype, device=x.device)  # (B,)
            x = x + dt * self.velocity(vl, bias, state, x, t, embodiment)
        return x

    def _sample_rtc(self, vl: torch.Tensor, bias: torch.Tensor | None, state: torch.Tensor, noise: torch.Tensor,
                    embodiment: torch.Tensor, prefix: torch.Tensor, prefix_len: torch.Tensor | None,
                    soft_horizon: torch.Tensor | None, variant: str, max_guidance_weight: float) -> torch.Tensor:
        if prefix.shape != noise.shape:
            raise ValueError(f"prefix_actions must be {tuple(noise.shape)} like the noise, got {tuple(prefix.shape)}")
        if prefix_len is None or soft_horizon is None:
            raise ValueError("RTC needs prefix_len (d) and soft_horizon (s) with prefix_actions, each (B,) long")
        prefix = prefix.to(noise.dtype)
        n = self.cfg.num_inference_steps
        if variant == "guided":  # autograd through the head: leave inference mode, take plain copies
            with torch.inference_mode(False):
                vl, state, embodiment = vl.clone(), state.clone(), embodiment.clone()
                bias = None if bias is None else bias.clone()

        def velocity(x: torch.Tensor, t: torch.Tensor, row_t: torch.Tensor | None) -> torch.Tensor:
            return self.velocity(vl, bias, state, x, t, embodiment, row_t)

        if variant == "guided":
            return guided_sample(velocity, noise, prefix, prefix_len, soft_horizon, n, max_guidance_weight)
        return inpaint_sample(velocity, noise, prefix, prefix_len, soft_horizon, n, trained=variant == "trained")

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
