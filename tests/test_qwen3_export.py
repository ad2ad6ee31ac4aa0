"""Qwen3-VL through export and the runtime, on a tiny random Qwen3-VL built from a config: the DeepStack
features travel from the vision graph to the LLM graph, parity holds per module, onnxruntime gives the
torch chunk, the fast pre-processing equals the stock Qwen3-VL processor; and the rule that configured
execution providers that are unavailable refuse to load unless ``allow_cpu_fallback`` is set."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from roboalign.bench.runtime import make_tiny_vla_checkpoint
from roboalign.export.onnx_export import export_checkpoint
from roboalign.runtime import Policy
from roboalign.runtime.manifest import load_manifest
from roboalign.runtime.ort_backend import ProviderUnavailable, llm_feed, make_session, resolve_providers
from roboalign.runtime.preprocess import draw_noise, synthetic_observations
from roboalign.runtime.torch_backend import preprocessor_for_vla

NO_CUDA = "CUDAExecutionProvider" not in ort.get_available_providers()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory):
    root = tmp_path_factory.mktemp("qwen3")
    ckpt = make_tiny_vla_checkpoint(root / "vla", family="qwen3_vl")
    export_checkpoint(ckpt, root / "vla" / "onnx")
    return ckpt, root / "vla" / "onnx"


@pytest.fixture(scope="module")
def policies(qwen3):
    ckpt, out = qwen3
    return (Policy.from_checkpoint(ckpt, "torch", num_threads=1),
            Policy.from_checkpoint(out, "onnxruntime", providers="cpu", num_threads=1))


def test_export_carries_deepstack_features_and_passes_parity(qwen3):
    man = load_manifest(qwen3[1])
    assert man["layout"]["family"] == "qwen3_vl" and man["layout"]["deepstack_layers"] == 1
    outs = {t["name"]: t["shape"] for t in man["modules"]["vision"]["outputs"]}
    tokens, dim = man["layout"]["tokens_per_image"], man["layout"]["hidden_size"]
    assert outs == {"image_embeds": ["num_images", tokens, dim], "deepstack_embeds": ["num_images", tokens, 1, dim]}
    assert [t["name"] for t in man["modules"]["llm"]["inputs"]][-1] == "deepstack_embeds"
    assert man["layout"]["image_grid_thw"] == [1, 6, 6]  # 112 px -> 96 px at patch 16 x merge 2
    for m in ("vision", "llm", "head", "pipeline"):
        assert man["parity"][m]["cosine"] >= 0.9999 and man["parity"][m]["max_abs_diff"] < 1e-4, m
    assert man["parity"]["ok"] and man["tensorrt_compat"]["ok"]


def test_deepstack_input_is_used_by_the_llm_graph(qwen3, policies):
    """Zeroing the DeepStack features changes the image tokens' hidden states: the graph does not ignore them."""
    out = qwen3[1]
    x = policies[1].preprocessor(synthetic_observations(policies[1].specs, 1, seed=3))
    vision = make_session(out / "vision.onnx")
    names = [o.name for o in vision.get_outputs()]
    feats = dict(zip(names, vision.run(names, {"frames": x.frames}), strict=True))
    llm = make_session(out / "llm.onnx")
    base = llm.run(None, llm_feed(x, feats))[0]
    zeroed = llm.run(None, llm_feed(x, {**feats, "deepstack_embeds": np.zeros_like(feats["deepstack_embeds"])}))[0]
    is_img = x.input_ids[0] == policies[1].preprocessor.image_token_id
    assert np.abs(base[0, is_img] - zeroed[0, is_img]).max() > 1e-3


def test_fast_preprocessing_equals_the_stock_qwen3_processor(policies):
    vla = policies[0].backend.vla
    obs = synthetic_observations(policies[0].specs, 2, seed=1)
    ref = vla.preprocess(obs)  # the stock Qwen3VLProcessor (image-only)
    x = preprocessor_for_vla(vla)(obs)
    got = x.as_reference_dict()
    for k in ref:
        assert np.array_equal(got[k], ref[k]), k
    t = {k: torch.from_numpy(v) for k, v in ref.items()}
    pos, _ = vla.backbone.model.model.get_rope_index(t["input_ids"], t["mm_token_type_ids"], t["image_grid_thw"],
                                                     attention_mask=t["attention_mask"])
    assert np.array_equal(x.position_ids, pos.numpy())


def test_onnxruntime_gives_the_torch_chunk(policies):
    torch_policy, ort_policy = policies
    obs = synthetic_observations(torch_policy.specs, 2, seed=4)
    noise = draw_noise(np.random.default_rng(5), 2, torch_policy.horizon, torch_policy.specs.action_dim)
    x = torch_policy.preprocessor(obs)
    got, stages = torch_policy.backend.infer(x, noise)  # split vision / llm timing for Qwen3-VL too
    np.testing.assert_allclose(got, torch_policy.backend.vla.predict_normalized(x.as_reference_dict(), noise),
                               atol=1e-6)
    assert stages["vision"] > 0 and stages["llm"] > 0
    for i, o in enumerate(obs):
        np.testing.assert_allclose(torch_policy.act(o, noise[i:i + 1]).actions,
                                   ort_policy.act(o, noise[i:i + 1]).actions, atol=1e-5)


@pytest.mark.skipif(not NO_CUDA, reason="this onnxruntime has the CUDA provider")
def test_unavailable_providers_refuse_unless_cpu_fallback_is_allowed(qwen3, caplog):
    with pytest.raises(ProviderUnavailable, match="CUDAExecutionProvider.*allow_cpu_fallback"):
        Policy.from_checkpoint(qwen3[1], "onnxruntime", providers=["cuda", "cpu"], warmup=0)
    with pytest.raises(ProviderUnavailable, match="TensorrtExecutionProvider, CUDAExecutionProvider"):
        resolve_providers("tensorrt,cuda", allow_cpu_fallback=False)
    policy = Policy.from_checkpoint(qwen3[1], "onnxruntime", providers=["cuda", "cpu"], warmup=0,
                                    allow_cpu_fallback=True)
    assert policy.describe()["providers"] == ["CPUExecutionProvider"] and "allow_cpu_fallback" in caplog.text
    assert resolve_providers(["cpu"], allow_cpu_fallback=False) == ["CPUExecutionProvider"]
    # what policy_node calls with its allow_cpu_fallback parameter (default false)
    from roboalign.control.backends import load_policy

    with pytest.raises(ProviderUnavailable, match="allow_cpu_fallback"):
        load_policy("onnxruntime", str(qwen3[1]), {"providers": ["cuda", "cpu"], "allow_cpu_fallback": False})
