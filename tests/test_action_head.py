"""The flow-matching action head: learns, is deterministic given the noise, follows the GR00T conventions."""

from __future__ import annotations

import pytest
import torch

from roboalign.models.action_head import ActionHeadConfig, FlowMatchingActionHead, sample_flow_time


def _batch(cfg: ActionHeadConfig, b: int = 8, s: int = 12, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, s)
    mask[0, s // 2:] = 0  # one padded sample
    return {
        "vl_tokens": torch.randn(b, s, cfg.backbone_dim, generator=g),
        "vl_mask": mask,
        "state": torch.randn(b, cfg.state_dim, generator=g),
        "actions": torch.rand(b, cfg.horizon, cfg.action_dim, generator=g) * 2 - 1,
        "embodiment": torch.zeros(b, dtype=torch.long),
    }


def _tiny(**kw) -> ActionHeadConfig:
    return ActionHeadConfig(**{**ActionHeadConfig.tiny(backbone_dim=32).to_dict(), "horizon": 8, **kw})


def test_training_steps_reduce_loss_on_fixed_batch():
    torch.manual_seed(0)
    cfg = _tiny()
    head = FlowMatchingActionHead(cfg)
    b = _batch(cfg)
    opt = torch.optim.AdamW(head.parameters(), lr=2e-3)
    before = {n: p.detach().clone() for n, p in head.named_parameters()}

    def loss_at_fixed_noise() -> float:
        with torch.no_grad():
            return head.compute_loss(**b, generator=torch.Generator().manual_seed(123)).item()

    first = loss_at_fixed_noise()
    for _ in range(30):  # a fixed batch: same actions, same noise, same flow times every step
        loss = head.compute_loss(**b, generator=torch.Generator().manual_seed(123))
        opt.zero_grad()
        loss.backward()
        opt.step()
    last = loss_at_fixed_noise()
    assert last < 0.5 * first, (first, last)
    changed = [n for n, p in head.named_parameters() if not torch.equal(p, before[n])]
    # every trainable piece gets gradient: VL stack, encoders, future tokens, DiT blocks, decoder
    for prefix in ("vl_proj", "vl_self_attn", "state_encoder", "action_encoder", "future_tokens", "blocks.0",
                   "blocks.1", "action_decoder", "time_embed"):
        assert any(n.startswith(prefix) for n in changed), prefix


def test_sampling_is_deterministic_given_noise_and_depends_on_it():
    cfg = _tiny()
    head = FlowMatchingActionHead(cfg).eval()
    b = _batch(cfg)
    noise = torch.randn(b["actions"].shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out1 = head(b["vl_tokens"], b["vl_mask"], b["state"], noise, b["embodiment"])
        out2 = head(b["vl_tokens"], b["vl_mask"], b["state"], noise.clone(), b["embodiment"])
        out3 = head(b["vl_tokens"], b["vl_mask"], b["state"], noise + 0.5, b["embodiment"])
    assert out1.shape == (8, cfg.horizon, cfg.action_dim)
    assert torch.equal(out1, out2)
    assert not torch.allclose(out1, out3)


def test_euler_sampler_integrates_the_velocity_field():
    """forward() must equal a hand-written Euler loop over velocity() with t_k = k / N from t = 0 (noise)."""
    cfg = _tiny(num_inference_steps=3)
    head = FlowMatchingActionHead(cfg).eval()
    b = _batch(cfg, b=2)
    noise = torch.randn(b["actions"].shape)
    with torch.no_grad():
        vl, bias = head.encode_vl(b["vl_tokens"], b["vl_mask"])
        x = noise.clone()
        for k in range(3):
            t = torch.full((2,), k / 3)
            x = x + head.velocity(vl, bias, b["state"], x, t, b["embodiment"]) / 3
        out = head(b["vl_tokens"], b["vl_mask"], b["state"], noise, b["embodiment"])
    torch.testing.assert_close(out, x)


def test_loss_uses_groot_interpolation_and_velocity_target():
    """With t given, the loss must be MSE(v(x_t), action - noise) at x_t = (1 - t) noise + t action."""
    cfg = _tiny()
    head = FlowMatchingActionHead(cfg).eval()
    b = _batch(cfg, b=3)
    noise = torch.randn(b["actions"].shape)
    t = torch.tensor([0.1, 0.5, 0.9])
    with torch.no_grad():
        loss = head.compute_loss(**b, noise=noise, t=t)
        vl, bias = head.encode_vl(b["vl_tokens"], b["vl_mask"])
        x_t = (1 - t)[:, None, None] * noise + t[:, None, None] * b["actions"]
        ref = ((head.velocity(vl, bias, b["state"], x_t, t, b["embodiment"]) - (b["actions"] - noise)) ** 2).mean()
    torch.testing.assert_close(loss, ref)


def test_padded_vl_tokens_are_ignored():
    cfg = _tiny()
    head = FlowMatchingActionHead(cfg).eval()
    b = _batch(cfg, b=1)
    noise = torch.randn(b["actions"].shape)
    garbage = b["vl_tokens"].clone()
    garbage[0, 6:] = 100.0  # positions masked out in _batch for sample 0
    with torch.no_grad():
        a = head(b["vl_tokens"], b["vl_mask"], b["state"], noise, b["embodiment"])
        c = head(garbage, b["vl_mask"], b["state"], noise, b["embodiment"])
    torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)


def test_flow_time_distribution_is_groot_beta():
    cfg = _tiny()
    t = sample_flow_time(20000, cfg, generator=torch.Generator().manual_seed(0))
    assert t.min() >= (cfg.noise_s - 1) / cfg.noise_s - 1e-6 and t.max() <= 1.0
    # 1 - t = u / s with u ~ Beta(1.5, 1): E[u] = 0.6 -> E[t] = 1 - 0.6 / 0.999; mass near the noise end
    assert abs(t.mean().item() - (1 - 0.6 / 0.999)) < 0.01
    assert (t < 0.5).float().mean() > 0.6
    again = sample_flow_time(20000, cfg, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, t)


def test_per_embodiment_projectors_differ():
    cfg = _tiny()
    head = FlowMatchingActionHead(cfg).eval()
    b = _batch(cfg, b=2)
    b["state"][1] = b["state"][0]
    b["vl_tokens"][1] = b["vl_tokens"][0]
    b["vl_mask"][1] = b["vl_mask"][0]
    noise = torch.randn(1, cfg.horizon, cfg.action_dim).repeat(2, 1, 1)
    with torch.no_grad():
        out = head(b["vl_tokens"], b["vl_mask"], b["state"], noise, torch.tensor([0, 1]))
    assert not torch.allclose(out[0], out[1])


def test_config_validation_and_paper_scale():
    with pytest.raises(ValueError, match="horizon"):
        ActionHeadConfig(horizon=100, max_horizon=64)
    with pytest.raises(ValueError, match="num_heads"):
        ActionHeadConfig(num_heads=0)
    with pytest.raises(ValueError, match="unknown fields"):
        ActionHeadConfig.from_dict({"width": 3})
    p = ActionHeadConfig.paper()
    assert (p.num_layers, p.num_heads, p.head_dim, p.horizon, p.backbone_layer, p.backbone_dim) == (
        16, 32, 48, 16, 18, 3584)
    assert p.num_inference_steps == 4 and p.num_future_tokens == 32 and p.width == 1536
    assert ActionHeadConfig.from_dict(p.to_dict()) == p


def test_bad_shapes_are_reported():
    cfg = _tiny()
    head = FlowMatchingActionHead(cfg)
    b = _batch(cfg, b=2)
    with pytest.raises(ValueError, match="state must be"):
        head.compute_loss(b["vl_tokens"], b["vl_mask"], b["state"][:, :3], b["actions"], b["embodiment"])
    with pytest.raises(ValueError, match="backbone_dim"):
        head.compute_loss(b["vl_tokens"][..., :5], b["vl_mask"], b["state"], b["actions"], b["embodiment"])
