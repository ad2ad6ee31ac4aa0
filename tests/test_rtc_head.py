"""Real-time chunking in the flow-matching head: prefix inpainting, guided RTC, training-time RTC."""

from __future__ import annotations

import math

import pytest
import torch

from roboalign.models.action_head import ActionHeadConfig, FlowMatchingActionHead, sample_prefix_len
from roboalign.models.rtc import guidance_weight, guided_sample, inpaint_sample, prefix_weights


def _tiny(**kw) -> ActionHeadConfig:
    return ActionHeadConfig(**{**ActionHeadConfig.tiny(backbone_dim=32).to_dict(), "horizon": 8, **kw})


def _inputs(cfg: ActionHeadConfig, b: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"vl_tokens": torch.randn(b, 6, cfg.backbone_dim, generator=g), "vl_mask": torch.ones(b, 6),
            "state": torch.randn(b, cfg.state_dim, generator=g),
            "noise": torch.randn(b, cfg.horizon, cfg.action_dim, generator=g),
            "embodiment": torch.zeros(b, dtype=torch.long)}


def _rtc(b: int, cfg: ActionHeadConfig, d: list[int], s: list[int], seed: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"prefix_actions": torch.rand(b, cfg.horizon, cfg.action_dim, generator=g) * 2 - 1,
            "prefix_len": torch.tensor(d), "soft_horizon": torch.tensor(s)}


def test_prefix_weights_follow_the_papers_exponential_ramp():
    w = prefix_weights(10, torch.tensor([2, 0]), torch.tensor([6, 0]))
    assert w.shape == (2, 10)
    assert torch.equal(w[0, :2], torch.ones(2)) and torch.equal(w[0, 6:], torch.zeros(4))
    c = 4 / 5  # row 2: c = (s - i) / (s - d + 1)
    assert w[0, 2].item() == pytest.approx(c * (math.exp(c) - 1) / (math.e - 1), rel=1e-6)
    ramp = w[0, 2:6]
    assert torch.all(ramp[1:] < ramp[:-1]) and torch.all((ramp > 0) & (ramp < 1))
    assert torch.equal(w[1], torch.zeros(10))  # d = s = 0: no RTC


@pytest.mark.parametrize("variant", ["inpaint", "trained"])
def test_prefix_rows_equal_the_prefix_exactly_and_no_prefix_is_the_plain_sampler(variant):
    cfg = _tiny()
    head = FlowMatchingActionHead(cfg).eval()
    x = _inputs(cfg)
    r = _rtc(3, cfg, d=[3, 0, 5], s=[6, 0, 5])
    with torch.no_grad():
        plain = head(**x)
        out = head(**x, **r, rtc=variant)
    assert torch.equal(out[0, :3], r["prefix_actions"][0, :3])
    assert torch.equal(out[2, :5], r["prefix_actions"][2, :5])
    assert torch.equal(out[1], plain[1])  # d = s = 0 in one row of the batch: the plain chunk, bit for bit
    assert not torch.allclose(out[0, 3:], plain[0, 3:])  # the free rows react to the prefix


def _towards(goal: torch.Tensor, calls: list | None = None):
    """A row-local velocity field whose Euler flow from any x reaches ``goal`` at t = 1."""
    def velocity(x: torch.Tensor, t: torch.Tensor, row_t: torch.Tensor | None) -> torch.Tensor:
        if calls is not None:
            calls.append((x.clone(), t.clone(), None if row_t is None else row_t.clone()))
        return (goal - x) / (1.0 - t)[:, None, None]
    return velocity


def test_inpainting_holds_the_prefix_at_every_step_and_leaves_rows_after_s_alone():
    g = torch.Generator().manual_seed(0)
    noise, goal, prefix = (torch.randn(2, 10, 3, generator=g) for _ in range(3))
    d, s = torch.tensor([2, 4]), torch.tensor([6, 7])
    calls: list = []
    out = inpaint_sample(_towards(goal, calls), noise, prefix, d, s, steps=4)
    plain = inpaint_sample(_towards(goal), noise, prefix, torch.zeros(2, dtype=torch.long),
                           torch.zeros(2, dtype=torch.long), steps=4)
    torch.testing.assert_close(plain, goal)  # the field reaches its goal without RTC
    for k, (x, t, row_t) in enumerate(calls):  # every step sees the prefix rows on the noise -> prefix path
        assert row_t is None and t[0].item() == k / 4
        path = (1 - k / 4) * noise + (k / 4) * prefix
        torch.testing.assert_close(x[0, :2], path[0, :2])
        torch.testing.assert_close(x[1, :4], path[1, :4])
    assert torch.equal(out[0, :2], prefix[0, :2]) and torch.equal(out[1, :4], prefix[1, :4])
    torch.testing.assert_close(out[0, 6:], plain[0, 6:])  # rows after s: as without RTC
    torch.testing.assert_close(out[1, 7:], plain[1, 7:])
    soft = out[0, 2:6]  # the ramp pulls the soft rows towards the prefix, less so further out
    dist = (soft - prefix[0, 2:6]).norm(dim=-1) / (goal[0, 2:6] - prefix[0, 2:6]).norm(dim=-1)
    assert torch.all(dist < 1.0) and torch.all(dist[1:] > dist[:-1])


def test_trained_variant_gives_the_prefix_clean_at_row_time_one():
    g = torch.Generator().manual_seed(1)
    noise, goal, prefix = (torch.randn(2, 8, 3, generator=g) for _ in range(3))
    calls: list = []
    inpaint_sample(_towards(goal, calls), noise, prefix, torch.tensor([3, 0]), torch.tensor([3, 0]), steps=3,
                   trained=True)
    for k, (x, _t, row_t) in enumerate(calls):
        assert torch.equal(x[0, :3], prefix[0, :3])  # clean prefix rows at every step
        assert torch.equal(row_t[0, :3], torch.ones(3))
        assert torch.all(row_t[0, 3:] == k / 3) and torch.all(row_t[1] == k / 3)


def test_guidance_weight_is_pigdm_clipped_at_beta():
    assert guidance_weight(0.0) == 5.0 and guidance_weight(0.0, 10.0) == 10.0
    assert guidance_weight(0.5) == pytest.approx(2.0)  # r^2 = 0.5: 0.5 / (0.5 * 0.5)
    assert guidance_weight(0.75) == pytest.approx(0.25 / (0.75 * 0.1))
    assert guidance_weight(0.1) == 5.0  # 0.9 / (0.1 * 0.9^2 / 0.82) > 5: clipped


def test_guided_rtc_pulls_the_chunk_towards_the_prefix():
    g = torch.Generator().manual_seed(2)
    noise, goal, prefix = (torch.randn(1, 8, 3, generator=g) for _ in range(3))

    def velocity(x: torch.Tensor, t: torch.Tensor, row_t: torch.Tensor | None) -> torch.Tensor:
        return goal - 0.5 * x  # row-local, with a Jacobian dx1/dx = 1 - (1 - t) / 2 that guidance acts through

    guided = guided_sample(velocity, noise, prefix, torch.tensor([3]), torch.tensor([5]), steps=4)
    free = guided_sample(velocity, noise, prefix, torch.tensor([0]), torch.tensor([0]), steps=4)
    err_g, err_f = (guided - prefix)[0, :3].norm(), (free - prefix)[0, :3].norm()
    assert err_g < 0.5 * err_f, (err_g, err_f)
    torch.testing.assert_close(guided[0, 5:], free[0, 5:])  # weight 0 after s, a row-local field: untouched


def test_guided_rtc_in_the_head_runs_under_inference_mode():
    cfg = _tiny()
    head = FlowMatchingActionHead(cfg).eval()
    x = _inputs(cfg, b=2)
    r = _rtc(2, cfg, d=[4, 0], s=[6, 0])
    with torch.inference_mode():
        plain = head(**x)
        guided = head(**x, **r, rtc="guided")
    torch.testing.assert_close(guided[1], plain[1])
    assert (guided[0, :4] - r["prefix_actions"][0, :4]).norm() < (plain[0, :4] - r["prefix_actions"][0, :4]).norm()


def test_rtc_inputs_are_checked():
    cfg = _tiny()
    head = FlowMatchingActionHead(cfg).eval()
    x = _inputs(cfg, b=1)
    with pytest.raises(ValueError, match="RTC variant 'ramp' is unknown"):
        head(**x, **_rtc(1, cfg, [1], [2]), rtc="ramp")
    with pytest.raises(ValueError, match="prefix_len"):
        head(**x, prefix_actions=torch.zeros(1, cfg.horizon, cfg.action_dim))
    with pytest.raises(ValueError, match="prefix_actions must be"):
        head(**x, prefix_actions=torch.zeros(1, 3, cfg.action_dim), prefix_len=torch.tensor([1]),
             soft_horizon=torch.tensor([2]))


def test_training_time_rtc_loss_ignores_prefix_rows_and_sees_them_clean():
    cfg = _tiny()
    head = FlowMatchingActionHead(cfg).eval()
    x = _inputs(cfg)
    g = torch.Generator().manual_seed(3)
    actions = torch.rand(3, cfg.horizon, cfg.action_dim, generator=g)
    t = torch.tensor([0.2, 0.5, 0.8])
    d = torch.tensor([2, 0, 5])
    args = (x["vl_tokens"], x["vl_mask"], x["state"], actions, x["embodiment"])
    with torch.no_grad():
        loss = head.compute_loss(*args, noise=x["noise"], t=t, prefix_len=d)
        other = x["noise"].clone()
        other[0, :2] += 3.0  # noise under the prefix rows: neither the input (clean) nor the loss uses it
        other[2, :5] -= 2.0
        same = head.compute_loss(*args, noise=other, t=t, prefix_len=d)
        plain = head.compute_loss(*args, noise=x["noise"], t=t)
        # by hand: prefix rows clean at row time 1, MSE over the free rows only
        hard = torch.arange(cfg.horizon)[None] < d[:, None]
        x_t = torch.where(hard[..., None], actions, (1 - t)[:, None, None] * x["noise"] + t[:, None, None] * actions)
        row_t = torch.where(hard, 1.0, t[:, None].expand(3, cfg.horizon))
        vl, bias = head.encode_vl(x["vl_tokens"], x["vl_mask"])
        err = (head.velocity(vl, bias, x["state"], x_t, t, x["embodiment"], row_t) - (actions - x["noise"])) ** 2
        ref = err[~hard].mean()
    torch.testing.assert_close(loss, ref)
    assert loss.item() == same.item()
    assert loss.item() != plain.item()


def test_rtc_max_delay_draws_delays_and_is_validated():
    cfg = _tiny(rtc_max_delay=3)
    assert cfg.rtc_variant == "trained" and _tiny().rtc_variant == "inpaint"
    d = sample_prefix_len(400, cfg, torch.Generator().manual_seed(0))
    assert set(d.tolist()) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="rtc_max_delay must be in"):
        _tiny(rtc_max_delay=8)
    head = FlowMatchingActionHead(cfg)
    x = _inputs(cfg)
    actions = torch.rand(3, cfg.horizon, cfg.action_dim)
    args = (x["vl_tokens"], x["vl_mask"], x["state"], actions, x["embodiment"])
    with torch.no_grad():  # drawn delays: the loss equals the one with the same delays given explicitly
        drawn = head.compute_loss(*args, generator=torch.Generator().manual_seed(7))
        g = torch.Generator().manual_seed(7)
        noise = torch.randn(actions.shape, generator=g)
        from roboalign.models.action_head import sample_flow_time
        t = sample_flow_time(3, cfg, generator=g)
        given = head.compute_loss(*args, noise=noise, t=t, prefix_len=sample_prefix_len(3, cfg, g))
    assert drawn.item() == given.item()


@pytest.mark.usefixtures("one_torch_thread")
def test_training_time_rtc_teaches_the_head_to_continue_the_prefix():
    """Ramps whose offset and slope only the prefix reveals (the VL tokens and state carry nothing): a head trained
    with delays continues the clean prefix, far better than inpainting or sampling without it."""
    torch.manual_seed(0)
    cfg = ActionHeadConfig(**{**ActionHeadConfig.tiny(action_dim=2, state_dim=2, backbone_dim=16).to_dict(),
                              "horizon": 8, "rtc_max_delay": 4})
    head = FlowMatchingActionHead(cfg)
    g = torch.Generator().manual_seed(0)

    def ramps(n: int) -> torch.Tensor:
        off = torch.rand(n, 1, 2, generator=g) * 1.6 - 0.8
        return off + (torch.rand(n, 1, 2, generator=g) * 0.2 - 0.1) * torch.arange(8.0)[None, :, None]

    b = 64
    ctx = (torch.zeros(b, 2, 16), torch.ones(b, 2), torch.zeros(b, 2))
    emb = torch.zeros(b, dtype=torch.long)
    opt = torch.optim.AdamW(head.parameters(), lr=2e-3)
    for _ in range(300):
        loss = head.compute_loss(*ctx, ramps(b), emb, generator=g)  # delays d ~ U{0..4} drawn per example
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    a, noise = ramps(b), torch.randn(b, 8, 2, generator=g)
    d = torch.full((b,), 4)
    with torch.no_grad():
        err = {v: ((head(*ctx, noise, emb, a, d, d, rtc=v) - a)[:, 4:] ** 2).mean().item()
               for v in ("trained", "inpaint")}
        err["plain"] = ((head(*ctx, noise, emb) - a)[:, 4:] ** 2).mean().item()
    assert err["trained"] < 0.5 * err["inpaint"] and err["trained"] < 0.25 * err["plain"], err
