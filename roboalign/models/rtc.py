"""Real-time chunking (RTC) samplers for the flow-matching head: the new chunk continues the committed prefix.

While chunk n executes, chunk n+1 is computed from an observation ``d`` control steps old. Its rows are
aligned with the time of that observation, so rows ``0..d-1`` are what chunk n executes meanwhile (the
*committed prefix*) and the new chunk can take over at row ``d``. Three variants (Black et al. 2025,
arXiv 2506.07339, and the training-time variant of arXiv 2512.05964):

- ``inpaint`` (gradient-free, exportable): at every Euler step the rows are blended towards the prefix on
  the same noise path, ``x <- W * ((1 - t) * noise + t * prefix) + (1 - W) * x``, with the paper's weights
  ``W``: 1 on rows ``< d``, an exponential ramp ``c * (e^c - 1) / (e - 1)``, ``c = (s - i) / (s - d + 1)``, on
  rows ``d..s-1``, 0 from row ``s`` on. The first ``d`` rows of the result equal the prefix exactly.
- ``guided`` (the reference, torch only): ΠGDM guidance, ``v + min(beta, (1 - t) / (t * r_t^2)) *
  (Y - x1)^T diag(W) dx1/dx`` with ``x1 = x + (1 - t) * v`` and ``r_t^2 = (1 - t)^2 / (t^2 + (1 - t)^2)``,
  the vector-Jacobian product by autograd; ``beta`` is the clipped guidance weight (5 in the paper).
- ``trained`` (exportable, for heads trained with ``rtc_max_delay > 0``): the prefix rows are given clean
  (row flow time 1) at every step and not integrated; rows ``d..s-1`` are blended as in ``inpaint``.

Flow time follows the head: ``t = 0`` is noise, ``t = 1`` the clean chunk. ``d`` (``prefix_len``) and ``s``
(``soft_horizon``) are (B,) integer tensors, so the exported graph takes them as inputs; ``d = s = 0`` gives
the plain sampler's chunk bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

VARIANTS = ("inpaint", "guided", "trained")
EXPORTABLE_VARIANTS = ("inpaint", "trained")
MAX_GUIDANCE_WEIGHT = 5.0  # the paper's beta

# velocity(x (B, H, A), t (B,), row_t (B, H) or None) -> (B, H, A)
VelocityFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def check_variant(variant: str) -> str:
    """``variant`` if it is one of :data:`VARIANTS`, else a ValueError naming the valid ones."""
    if variant not in VARIANTS:
        raise ValueError(f"RTC variant {variant!r} is unknown; valid: {', '.join(VARIANTS)}")
    return variant


def prefix_weights(horizon: int, prefix_len: torch.Tensor, soft_horizon: torch.Tensor,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The paper's soft mask (B, H): 1 on rows < d, an exponential ramp on rows d..s-1, 0 from row s on."""
    i = torch.arange(horizon, device=prefix_len.device).to(dtype).unsqueeze(0)  # (1, H)
    d = prefix_len.to(dtype).unsqueeze(1)  # (B, 1)
    s = soft_horizon.to(dtype).unsqueeze(1)  # (B, 1)
    c = (s - i) / torch.clamp(s - d + 1.0, min=1.0)  # (B, H)
    ramp = c * (torch.exp(c) - 1.0) / (math.e - 1.0)
    zero = torch.zeros_like(ramp)
    return torch.where(i < d, torch.ones_like(ramp), torch.where(i < s, ramp, zero))


def _hard_rows(horizon: int, prefix_len: torch.Tensor) -> torch.Tensor:
    """(B, H, 1) bool: the rows < d that are held to the prefix."""
    i = torch.arange(horizon, device=prefix_len.device).unsqueeze(0)  # (1, H)
    return (i < prefix_len.unsqueeze(1)).unsqueeze(-1)


def inpaint_sample(velocity: VelocityFn, noise: torch.Tensor, prefix: torch.Tensor, prefix_len: torch.Tensor,
                   soft_horizon: torch.Tensor, steps: int, trained: bool = False) -> torch.Tensor:
    """Gradient-free RTC (``inpaint``, or ``trained`` when ``trained``): Euler steps from ``noise`` (B, H, A)."""
    b, h, _ = noise.shape
    w = prefix_weights(h, prefix_len, soft_horizon, noise.dtype).unsqueeze(-1)  # (B, H, 1)
    hard = _hard_rows(h, prefix_len)  # (B, H, 1)
    dt = 1.0 / steps
    x = noise
    for k in range(steps):
        tk = k * dt
        x = w * ((1.0 - tk) * noise + tk * prefix) + (1.0 - w) * x
        t = torch.full((b,), tk, dtype=noise.dtype, device=noise.device)
        row_t = None
        if trained:  # the prefix rows are clean, as in training
            x = torch.where(hard, prefix, x)
            row_t = torch.where(hard.squeeze(-1), torch.ones_like(w.squeeze(-1)), t.unsqueeze(1).expand(b, h))
        x = x + dt * velocity(x, t, row_t)
    return torch.where(hard, prefix, w * prefix + (1.0 - w) * x)


def guidance_weight(t: float, max_weight: float = MAX_GUIDANCE_WEIGHT) -> float:
    """ΠGDM's weight ``(1 - t) / (t * r_t^2)`` clipped at ``max_weight`` (infinite at t = 0, so clipped)."""
    if t <= 0.0:
        return max_weight
    r2 = (1.0 - t) ** 2 / (t ** 2 + (1.0 - t) ** 2)
    if r2 == 0.0:
        return max_weight
    return min(max_weight, (1.0 - t) / (t * r2))


def guided_sample(velocity: VelocityFn, noise: torch.Tensor, prefix: torch.Tensor, prefix_len: torch.Tensor,
                  soft_horizon: torch.Tensor, steps: int,
                  max_guidance_weight: float = MAX_GUIDANCE_WEIGHT) -> torch.Tensor:
    """Guided RTC (ΠGDM, autograd); the reference variant. Runs under ``torch.inference_mode`` callers too."""
    b, h, _ = noise.shape
    with torch.inference_mode(False), torch.enable_grad():
        noise, prefix = noise.clone(), prefix.clone()
        w = prefix_weights(h, prefix_len.clone(), soft_horizon.clone(), noise.dtype).unsqueeze(-1)  # (B, H, 1)
        dt = 1.0 / steps
        x = noise
        for k in range(steps):
            tk = k * dt
            xg = x.detach().requires_grad_(True)
            v = velocity(xg, torch.full((b,), tk, dtype=noise.dtype, device=noise.device), None)
            x1 = xg + (1.0 - tk) * v  # predicted clean chunk
            grad = torch.autograd.grad(x1, xg, grad_outputs=(prefix - x1.detach()) * w)[0]
            x = (xg + dt * (v + guidance_weight(tk, max_guidance_weight) * grad)).detach()
    return x
