"""The VLA: truncated frozen backbone reads the right layer, checkpoints round-trip, training runs end to end."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from roboalign.data import Episode, write_episode
from roboalign.models.action_head import ActionHeadConfig
from roboalign.models.backbone import build_tiny_backbone, language_layers
from roboalign.models.vla import build_vla, load_vla, save_vla
from roboalign.models.vla_inputs import VLAInputSpec
from roboalign.runtime.policy import Policy
from roboalign.runtime.torch_backend import TorchBackend
from roboalign.sim.libero_env import STATE_NAMES
from roboalign.spec.action_space import eef_delta
from roboalign.spec.normalization import NormStats
from roboalign.spec.policy_io import Observation

INSTR = "pick up the ketchup and place it in the basket"


def _obs(rng: np.random.Generator, instruction: str = INSTR, size: int = 128) -> Observation:
    return Observation(images={c: rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for c in ("agentview", "wrist")},
                       state=rng.normal(size=8).astype(np.float32), instruction=instruction)


def _stats(rng: np.random.Generator) -> tuple[NormStats, NormStats]:
    return (NormStats.from_data(rng.normal(size=(200, 7)), names=eef_delta.names),
            NormStats.from_data(rng.normal(size=(200, 8)), names=STATE_NAMES))


def _vla(layer: int, seed: int = 0, **inputs):
    a, s = _stats(np.random.default_rng(seed))
    return build_vla(build_tiny_backbone(), ActionHeadConfig.tiny(backbone_layer=layer, state_dim=8), a, s, eef_delta,
                     inputs=VLAInputSpec(**inputs))


@pytest.fixture(scope="module")
def full_hidden_states():
    """Reference: the untruncated tiny model's output_hidden_states for two prompts of different length."""
    rng = np.random.default_rng(0)
    obs = [_obs(rng), _obs(rng, "pick up the alphabet soup and place it in the basket please")]
    vla = _vla(2, drop_system_tokens=False)  # layer 2 of 2 keeps every layer: used only for preprocessing
    inputs = vla.preprocess(obs)
    full = build_tiny_backbone().model
    with torch.no_grad():
        t = {k: torch.from_numpy(v) for k, v in inputs.items() if k not in ("state", "embodiment")}
        hs = full(**t, output_hidden_states=True).hidden_states
    return obs, inputs, hs


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_features_are_hidden_state_k_of_the_full_model(full_hidden_states, layer):
    obs, inputs, hs = full_hidden_states
    assert len(hs) == 3  # embeddings + 2 layers
    vla = _vla(layer, drop_system_tokens=False)
    feats, mask = vla.features(inputs)
    m = mask.bool()
    errs = [(feats[m] - h[m]).abs().max().item() for h in hs]
    assert errs[layer] < 1e-5, errs
    assert all(e > 1e-3 for i, e in enumerate(errs) if i != layer), errs  # a different k reads another state
    assert len(language_layers(vla.backbone.model)) == layer


def test_truncation_never_runs_upper_layers():
    bb = build_tiny_backbone()
    layers = list(language_layers(bb.model))
    calls = []
    for i, lay in enumerate(layers):
        lay.register_forward_hook(lambda *_, i=i: calls.append(i))
    a, s = _stats(np.random.default_rng(0))
    vla = build_vla(bb, ActionHeadConfig.tiny(backbone_layer=1), a, s, eef_delta)
    vla.features(vla.preprocess([_obs(np.random.default_rng(1))]))
    assert calls == [0]
    assert not any(p.requires_grad for p in vla.backbone.parameters())


def test_system_tokens_dropped_and_padding_does_not_change_features():
    rng = np.random.default_rng(3)
    short, long_ = _obs(rng), _obs(rng, "pick up the chocolate pudding and place it in the basket " * 3)
    vla = _vla(1)
    f_alone, m_alone = vla.features(vla.preprocess([short]))
    f_batch, m_batch = vla.features(vla.preprocess([short, long_]))
    n = int(m_alone.sum())
    assert m_alone.all() and int(m_batch[0].sum()) == n  # right padding only
    torch.testing.assert_close(f_batch[0, :n], f_alone[0], atol=1e-5, rtol=1e-4)
    full = vla.preprocess([short])
    vs = vla.vision_start_id
    assert full["input_ids"][0, vla.token_start(full)] == vs and (full["input_ids"][0, :vla.token_start(full)] != vs).all()


def test_checkpoint_round_trip_and_policy(tmp_path):
    vla = _vla(1)
    save_vla(vla, tmp_path / "ckpt")
    rng = np.random.default_rng(5)
    obs = _obs(rng)
    p1, p2 = Policy(TorchBackend(vla), seed=7), Policy.from_checkpoint(tmp_path / "ckpt", "torch", seed=7)
    c1, c2 = p1.act(obs), p2.act(obs)
    assert c1.actions.shape == (16, 7) and c1.action_space == "eef_delta" and c1.action_names == eef_delta.names
    np.testing.assert_allclose(c1.actions, c2.actions, atol=1e-5)
    assert {"preprocess", "model", "total"} <= set(c1.timings)
    # the runtime policy is the VLA's own pipeline: stock processor + predict_normalized + the action stats
    noise = np.random.default_rng(7).standard_normal((1, 16, 7)).astype(np.float32)
    ref = vla.action_stats.unnormalize(vla.predict_normalized(vla.preprocess([obs]), noise)[0])
    np.testing.assert_allclose(c1.actions, ref, atol=1e-5)
    # deterministic per episode: reset re-seeds the noise; the next call draws new noise
    c3 = p2.act(obs)
    p2.reset()
    np.testing.assert_array_equal(p2.act(obs).actions, c2.actions)
    assert not np.allclose(c3.actions, c2.actions)
    # un-normalised with the checkpoint's stats: every value inside the stats' [q01, q99] box
    lo, hi = vla.action_stats.q01, vla.action_stats.q99
    assert np.all(c1.actions >= lo - 1e-5) and np.all(c1.actions <= hi + 1e-5)
    with pytest.raises(KeyError, match="wrist"):
        p1.act(Observation(images={"agentview": obs.images["agentview"]}, state=obs.state, instruction=INSTR))
    with pytest.raises(ValueError, match="state has 3 values|expects 8"):
        p1.act(Observation(images=obs.images, state=np.zeros(3), instruction=INSTR))


def test_checkpoint_errors_name_the_file(tmp_path):
    ckpt = save_vla(_vla(1), tmp_path / "ckpt")
    broken = tmp_path / "broken"
    shutil.copytree(ckpt, broken)
    (broken / "norm_stats_action.json").unlink()
    with pytest.raises(FileNotFoundError, match="norm_stats_action.json"):
        load_vla(broken)
    shutil.copytree(ckpt, tmp_path / "mismatch")
    cfg = json.loads((tmp_path / "mismatch" / "config.json").read_text())
    cfg["head"]["num_layers"] = 6
    (tmp_path / "mismatch" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"head\.safetensors"):
        load_vla(tmp_path / "mismatch")
    shutil.copytree(ckpt, tmp_path / "dims")
    NormStats.from_data(np.random.default_rng(0).normal(size=(50, 8)), names=STATE_NAMES).save(
        tmp_path / "dims" / "norm_stats_action.json")
    with pytest.raises(ValueError, match="action"):
        load_vla(tmp_path / "dims")
    shutil.copytree(ckpt, tmp_path / "layer")
    cfg = json.loads((tmp_path / "layer" / "config.json").read_text())
    cfg["head"]["backbone_layer"] = 9
    (tmp_path / "layer" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="backbone_layer"):
        load_vla(tmp_path / "layer")


def _write_dataset(root, tasks=("bottle_to_basket", "box_to_plate"), per_task=3, length=20, seed=0):
    """Small episode folder in the real on-disk format (random images, smooth states and actions)."""
    rng = np.random.default_rng(seed)
    for task in tasks:
        for i in range(per_task):
            t = np.linspace(0, 1, length)[:, None]
            state = (np.sin(t * (2 + np.arange(8)) + rng.normal()) * 0.5).astype(np.float32)
            eef = (np.cos(t * 3 + np.arange(7) + rng.normal()) * 0.5).astype(np.float32)
            eef[:, 6] = np.where(t[:, 0] > 0.5, 1.0, -1.0)
            imgs = {c: rng.integers(0, 255, (length, 128, 128, 3), dtype=np.uint8) for c in ("agentview", "wrist")}
            phases = ["approach"] * (length // 2) + ["lift"] * (length - length // 2)
            ep = Episode(task=task, instruction=f"pick up the {task.split('_')[0]} and place it in the basket",
                         success=True, images=imgs, state=state, actions={"eef_delta": eef, "joint_position": state},
                         phases=phases, meta={"state_names": list(STATE_NAMES)})
            write_episode(root / "episodes" / f"{task}_{i:03d}.hdf5", ep)
    return root


@pytest.mark.parametrize("space", ["eef_delta", "joint_position"])
def test_train_end_to_end_both_action_spaces(tmp_path, space):
    from roboalign.training.vla_head import VLATrainConfig, train

    ds = _write_dataset(tmp_path / "ds")
    cfg = VLATrainConfig(dataset=str(ds), output_dir=str(tmp_path / "run"), action_space=space, steps=12,
                         batch_size=8, eval_every=6, val_fraction=0.34, frame_stride=2,
                         head_overrides={"num_layers": 2, "horizon": 8})
    m = train(cfg, progress=False)
    for f in ("loss.csv", "loss.png", "metrics.json", "run_config.json"):
        assert (tmp_path / "run" / f).is_file(), f
    assert m["train_episodes"] == 4 and m["val_episodes"] == 2 and m["train_frames"] == 40
    assert np.isfinite(m["val_loss"]) and np.isfinite(m["val_offline"]["mse_normalized"])
    vla = load_vla(m["checkpoint"])
    assert vla.cfg.action_space == space and vla.action_space.name == space
    assert vla.cfg.inputs.embodiment_id == (0 if space == "eef_delta" else 1)
    assert vla.action_stats.names == vla.action_space.names and vla.state_stats.names == STATE_NAMES
    chunk = Policy(TorchBackend(vla), warmup=0).act(_obs(np.random.default_rng(0)))
    assert chunk.actions.shape == (8, vla.action_space.dim) and chunk.action_space == space


def test_cached_features_equal_online_features(tmp_path):
    from roboalign.data import EpisodeDataset
    from roboalign.training.vla_head import FeatureSource, VLATrainConfig, build_model, frame_table

    ds_root = _write_dataset(tmp_path / "ds", tasks=("bottle_to_basket",), per_task=1, length=12)
    ds = EpisodeDataset(ds_root)
    cfg = VLATrainConfig(dataset=str(ds_root), output_dir=str(tmp_path / "run"), feature_batch=5)
    vla = build_model(cfg, ds.norm_stats("actions.eef_delta"), ds.norm_stats("state"), None)
    table = frame_table(ds, vla, stride=1)
    cached = FeatureSource(vla, ds, table, cfg, tmp_path / "c.npz", "t")
    again = FeatureSource(vla, ds, table, cfg, tmp_path / "c.npz", "t")  # read back from disk
    online = FeatureSource(vla, ds, table, VLATrainConfig(**{**cfg.to_dict(), "cache_features": False}), None, "t")
    idx = np.array([0, 3, 11])
    (fc, mc), (fa, ma), (fo, mo) = cached.get(idx), again.get(idx), online.get(idx)
    assert torch.equal(mc, mo) and torch.equal(mc, ma) and torch.equal(fc, fa)
    torch.testing.assert_close(fc, fo, atol=2e-2, rtol=1e-2)  # float16 storage


def test_train_config_validation(tmp_path):
    from roboalign.training.config import VLATrainConfig, load_config

    with pytest.raises(ValueError, match="action_space"):
        VLATrainConfig(action_space="cartesian")
    with pytest.raises(ValueError, match="head_overrides"):
        VLATrainConfig(head_overrides={"depth": 3})
    p = tmp_path / "c.yaml"
    p.write_text("steps: 3\nlearning_rat: 1.0\n")
    with pytest.raises(ValueError, match="learning_rat"):
        load_config(p, "vla")
