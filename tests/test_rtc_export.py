"""Real-time chunking inside the exported head graph: inputs, parity per variant, exports without the inputs."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from roboalign.export.modules import ActionHeadExport
from roboalign.export.onnx_export import ExportConfig, _export_graph, export_vla, graph_io
from roboalign.export.parity import RTC_MAX_ABS_DIFF, module_parity, rtc_example
from roboalign.models.vla import load_vla
from roboalign.runtime.checkpoint_specs import RuntimeSpecs
from roboalign.runtime.manifest import MODULES, load_manifest
from roboalign.runtime.ort_backend import OnnxRuntimeBackend, make_session
from roboalign.runtime.preprocess import draw_noise, synthetic_observations
from roboalign.runtime.torch_backend import preprocessor_for_vla

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def vla(tiny_vla_export):
    return load_vla(tiny_vla_export[0])


def _head_feed(vla, batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    hc, rng = vla.cfg.head, np.random.default_rng(seed)
    return {"vl_tokens": rng.standard_normal((batch, 5, hc.backbone_dim)).astype(np.float32),
            "vl_mask": np.ones((batch, 5), np.int64), "state": rng.standard_normal((batch, hc.state_dim)).astype(np.float32),
            "noise": rng.standard_normal((batch, hc.horizon, hc.action_dim)).astype(np.float32),
            "embodiment": np.zeros(batch, np.int64)}


def test_default_export_carries_the_prefix_inputs_with_parity(tiny_vla_export):
    _, out = tiny_vla_export
    man = load_manifest(out)
    assert man["layout"]["rtc"] == "inpaint" and man["layout"]["rtc_max_delay"] == 0
    ins = {t["name"]: t for t in man["modules"]["head"]["inputs"]}
    assert ins["prefix_actions"]["shape"] == ["batch", 16, 7] and ins["prefix_actions"]["dtype"] == "float32"
    assert ins["prefix_len"]["shape"] == ["batch"] and ins["soft_horizon"]["dtype"] == "int64"
    assert [t["name"] for t in man["modules"]["head"]["inputs"]][:5] == ["vl_tokens", "vl_mask", "state", "noise",
                                                                        "embodiment"]
    rtc = man["parity"]["head_rtc"]
    assert rtc["ok"] and rtc["max_abs_diff"] <= RTC_MAX_ABS_DIFF and rtc["cases"] == 2
    assert man["tensorrt_compat"]["head"]["ok"]
    assert man["modules"]["head"]["profile"]["prefix_len"] == {"min": [1], "opt": [1], "max": [8]}


def test_exported_inpainting_holds_the_prefix_rows(tiny_vla_export, vla):
    sess = make_session(tiny_vla_export[1] / "head.onnx")
    feed = {**_head_feed(vla), **rtc_example(2, 16, 7, seed=4)}
    out = sess.run(None, feed)[0]
    d = feed["prefix_len"]
    assert d[0] == 3 and np.array_equal(out[0, :3], feed["prefix_actions"][0, :3])
    assert np.array_equal(out[1, :d[1]], feed["prefix_actions"][1, :d[1]])
    zero = {**feed, "prefix_len": np.zeros(2, np.int64), "soft_horizon": np.zeros(2, np.int64)}
    with torch.no_grad():  # d = s = 0: the plain sampler's chunk
        plain = vla.head(*(torch.from_numpy(feed[k]) for k in ("vl_tokens", "vl_mask", "state", "noise",
                                                               "embodiment"))).numpy()
    np.testing.assert_allclose(sess.run(None, zero)[0], plain, atol=1e-5)


@pytest.fixture(scope="module")
def trained_head(vla, tmp_path_factory):
    """The head graph exported with the ``trained`` variant (the same weights)."""
    path = tmp_path_factory.mktemp("trained") / "head.onnx"
    feed = {**_head_feed(vla), **rtc_example(2, 16, 7, seed=1)}
    args = tuple(torch.from_numpy(v) for v in feed.values())
    _export_graph(ActionHeadExport(vla.head, "trained").eval(), args, path, "head", ExportConfig(),
                  graph_io(0, rtc=True))
    return make_session(path)


def test_trained_variant_graph_matches_pytorch_and_parity_tells_the_variants_apart(tiny_vla_export, vla,
                                                                                   trained_head):
    out = tiny_vla_export[1]
    sessions = {m: make_session(out / f"{m}.onnx") for m in ("vision", "llm")}
    sessions["head"] = trained_head
    obs = [synthetic_observations(RuntimeSpecs.from_vla(vla), 2, seed=3)]
    good = module_parity(vla, preprocessor_for_vla(vla), sessions, obs, rtc="trained")
    assert good["ok"] and good["head_rtc"]["max_abs_diff"] <= RTC_MAX_ABS_DIFF
    wrong = module_parity(vla, preprocessor_for_vla(vla), sessions, obs, rtc="inpaint")
    assert wrong["head"]["ok"] and not wrong["head_rtc"]["ok"] and not wrong["ok"]


def test_guided_rtc_is_not_exportable(vla):
    with pytest.raises(ValueError, match="guided RTC needs autograd"):
        ActionHeadExport(vla.head, "guided")
    with pytest.raises(ValueError, match="ExportConfig.rtc='ramp'"):
        ExportConfig(rtc="ramp")


def test_export_without_rtc_inputs_runs_without_rtc_and_says_so(vla, tmp_path, caplog):
    export_vla(vla, tmp_path / "plain", ExportConfig(rtc="off"))
    man = load_manifest(tmp_path / "plain")
    assert man["layout"]["rtc"] == "off" and "head_rtc" not in man["parity"]
    assert [t["name"] for t in man["modules"]["head"]["inputs"]] == ["vl_tokens", "vl_mask", "state", "noise",
                                                                     "embodiment"]
    backend = OnnxRuntimeBackend(tmp_path / "plain")
    assert not backend.has_rtc and sorted(backend.sessions) == sorted(MODULES)
    x = backend.preprocessor(synthetic_observations(backend.specs, 1, seed=2))
    noise = draw_noise(np.random.default_rng(0), 1, 16, 7)
    plain, _ = backend.infer(x, noise)
    with caplog.at_level(logging.WARNING, logger="roboalign.runtime.ort_backend"):
        got, _ = backend.infer(x, noise, rtc_example(1, 16, 7, seed=0))
    np.testing.assert_array_equal(got, plain)
    assert "takes no prefix_actions input; sampling without real-time chunking" in caplog.text


def test_policy_passes_the_committed_prefix_through_torch_and_onnxruntime_alike(tiny_vla_export):
    from roboalign.runtime.policy import Policy

    ckpt, out = tiny_vla_export
    torch_policy = Policy.from_checkpoint(ckpt, backend="torch", num_threads=1)
    ort_policy = Policy.from_checkpoint(out, backend="onnxruntime", num_threads=1)
    stats = torch_policy.specs.action_stats
    rng = np.random.default_rng(5)
    prefix = stats.unnormalize(rng.uniform(-0.9, 0.9, (16, 7)))  # (H, A) in action units, inside the stats' range
    obs = synthetic_observations(torch_policy.specs, 1, seed=6)[0]
    noise = draw_noise(rng, 1, 16, 7)
    chunks = [p.act(obs, noise, prefix=prefix, prefix_len=3, soft_horizon=8).actions for p in (torch_policy,
                                                                                                ort_policy)]
    np.testing.assert_allclose(chunks[0], chunks[1], atol=1e-4)
    np.testing.assert_allclose(chunks[0][:3], prefix[:3], atol=1e-5)  # the committed rows, in action units
    plain = torch_policy.act(obs, noise).actions
    assert np.max(np.abs(plain[:3] - prefix[:3])) > 1e-2  # (without the prefix the rows differ)
