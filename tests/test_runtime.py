"""The runtime ``Policy``: the fast pre-processing equals the stock processor, onnxruntime gives the torch
chunk for the same noise (also batched, with padding), corrupt / truncated graphs and mismatched manifests
are refused with clear errors, TensorRT reports its absence, and spec mismatches are refused."""

from __future__ import annotations

import importlib.util
import json
import logging

import numpy as np
import pytest
import torch
from export_fixtures import copy_export

from roboalign.models.vla import load_vla
from roboalign.runtime import Policy, SpecMismatchError
from roboalign.runtime.checkpoint_specs import check_specs
from roboalign.runtime.manifest import ManifestError
from roboalign.runtime.ort_backend import OnnxRuntimeBackend, resolve_providers
from roboalign.runtime.preprocess import draw_noise, synthetic_observations
from roboalign.runtime.tensorrt_engines import TensorRTUnavailable
from roboalign.runtime.torch_backend import preprocessor_for_vla
from roboalign.spec.policy_io import ActionChunk, BasePolicy, Observation

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def torch_policy(tiny_vla_export):
    return Policy.from_checkpoint(tiny_vla_export[0], "torch", num_threads=1)


@pytest.fixture(scope="module")
def ort_policy(tiny_vla_export):
    return Policy.from_checkpoint(tiny_vla_export[1], "onnxruntime", providers="cpu", num_threads=1)


def _obs(policy: Policy, n: int, seed: int) -> list[Observation]:
    return synthetic_observations(policy.specs, n, seed=seed)


def test_fast_preprocessing_equals_the_stock_processor(tiny_vla_export):
    vla = load_vla(tiny_vla_export[0])
    pre = preprocessor_for_vla(vla)
    rng = np.random.default_rng(0)
    obs = [Observation(images={"agentview": rng.integers(0, 256, (128, 128, 3), dtype=np.uint8),
                               "wrist": rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)},  # cv2 resize path
                       state=rng.normal(size=8).astype(np.float32), instruction=text)
           for text in ("pick up the ketchup and place it in the basket", "put the alphabet soup, carefully!")]
    ref = vla.preprocess(obs)  # roboalign.models.vla_inputs.preprocess: the stock Qwen-VL processor
    x = pre(obs)
    got = x.as_reference_dict()
    assert set(got) == set(ref)
    for k in ref:
        assert got[k].dtype == ref[k].dtype and np.array_equal(got[k], ref[k]), k  # bit-identical
    assert x.attention_mask[1].sum() != x.attention_mask[0].sum()  # the batch really is padded
    t = {k: torch.from_numpy(v) for k, v in ref.items()}
    pos, _ = vla.backbone.model.model.get_rope_index(t["input_ids"], t["mm_token_type_ids"], t["image_grid_thw"],
                                                     attention_mask=t["attention_mask"])
    assert np.array_equal(x.position_ids, pos.numpy())
    assert x.token_start == vla.token_start(ref)


def test_torch_backend_is_the_vla_reference(torch_policy, tiny_vla_export):
    vla = torch_policy.backend.vla
    x = torch_policy.preprocessor(_obs(torch_policy, 2, seed=1))
    noise = draw_noise(np.random.default_rng(2), 2, 16, 7)
    got, stages = torch_policy.backend.infer(x, noise)
    np.testing.assert_allclose(got, vla.predict_normalized(x.as_reference_dict(), noise), atol=1e-6)
    assert set(stages) == {"vision", "llm", "head"}


def test_onnxruntime_gives_the_torch_chunk_for_the_same_noise(torch_policy, ort_policy):
    assert isinstance(torch_policy, BasePolicy) and isinstance(ort_policy, BasePolicy)
    obs = _obs(torch_policy, 3, seed=4)
    # the export's tokenizer/processor files give exactly the checkpoint's inputs
    a, b = torch_policy.preprocessor(obs), ort_policy.preprocessor(obs)
    for k in ("input_ids", "attention_mask", "position_ids", "frames", "state", "embodiment"):
        assert np.array_equal(getattr(a, k), getattr(b, k)), k
    noise = draw_noise(np.random.default_rng(5), 3, 16, 7)
    for i, o in enumerate(obs):
        a = torch_policy.act(o, noise[i : i + 1])
        b = ort_policy.act(o, noise[i : i + 1])
        np.testing.assert_allclose(a.actions, b.actions, atol=1e-5)
    # batched (prompts of different lengths -> padding) equals one-by-one, on both backends
    for policy in (torch_policy, ort_policy):
        batch = policy.act_batch(obs, noise)
        for i, o in enumerate(obs):
            np.testing.assert_allclose(batch[i].actions, policy.act(o, noise[i : i + 1]).actions, atol=1e-5)
    # without explicit noise both draw the same sequence after reset()
    torch_policy.reset()
    ort_policy.reset()
    np.testing.assert_allclose(torch_policy.act(obs[0]).actions, ort_policy.act(obs[0]).actions, atol=1e-5)


def test_chunk_is_unnormalised_with_metadata_and_timings(ort_policy):
    ort_policy.reset()
    o = _obs(ort_policy, 1, seed=6)[0]
    chunk = ort_policy.act(o)
    assert isinstance(chunk, ActionChunk) and chunk.actions.shape == (16, 7) and chunk.actions.dtype == np.float32
    specs = ort_policy.specs
    assert chunk.action_space == "eef_delta" and chunk.action_names == specs.action_names
    assert chunk.dt == specs.action_space.dt and chunk.stamp == o.stamp
    stats = specs.action_stats
    assert np.all(chunk.actions >= stats.q01 - 1e-6) and np.all(chunk.actions <= stats.q99 + 1e-6)
    assert np.ptp(chunk.actions) > 0  # not a constant: really un-normalised model output
    assert {"preprocess", "vision", "llm", "head", "model", "postprocess", "total"} <= set(chunk.timings)
    assert chunk.timings["total"] >= chunk.timings["model"] >= chunk.timings["head"] > 0
    ort_policy.reset()
    again = ort_policy.act(o)
    np.testing.assert_array_equal(again.actions, chunk.actions)  # reset() restarts the noise sequence
    assert not np.array_equal(ort_policy.act(o).actions, chunk.actions)  # next step: new noise


def test_spec_mismatch_is_refused(tiny_vla_export, ort_policy):
    with pytest.raises(SpecMismatchError, match="requested 'joint_position'.*emits 'eef_delta'"):
        Policy.from_checkpoint(tiny_vla_export[1], "onnxruntime", action_space="joint_position", warmup=0)
    with pytest.raises(SpecMismatchError, match=r"needs \['wrist'\]"):
        Policy.from_checkpoint(tiny_vla_export[0], "torch", cameras=["agentview"], warmup=0)
    with pytest.raises(SpecMismatchError, match=r"does not use \['side'\]"):
        check_specs(ort_policy.specs, cameras=["agentview", "wrist", "side"])
    check_specs(ort_policy.specs, action_space="eef_delta", cameras=["wrist", "agentview"])  # order is free


def test_bad_observations_name_the_problem(ort_policy):
    o = _obs(ort_policy, 1, seed=7)[0]
    with pytest.raises(KeyError, match="wrist"):
        ort_policy.act(Observation(images={"agentview": o.images["agentview"]}, state=o.state, instruction="x"))
    with pytest.raises(ValueError, match="expects 8"):
        ort_policy.act(Observation(images=o.images, state=o.state[:5], instruction=o.instruction))
    with pytest.raises(ValueError, match="uint8"):
        ort_policy.act(Observation(images={**o.images, "wrist": o.images["wrist"].astype(np.float32)},
                                   state=o.state, instruction=o.instruction))
    with pytest.raises(ValueError, match=r"noise must have shape \(1, 16, 7\)"):
        ort_policy.act(o, noise=np.zeros((1, 8, 7), np.float32))


def test_truncated_and_corrupt_graphs_are_refused(tiny_vla_export, tmp_path):
    out = copy_export(tiny_vla_export[1], tmp_path / "export")
    head = out / "head.onnx"
    data = head.read_bytes()
    head.write_bytes(data[: len(data) // 2])
    with pytest.raises(ManifestError, match="head.onnx has .* bytes but the manifest records .* truncated"):
        OnnxRuntimeBackend(out)
    flipped = bytearray(data)
    flipped[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
    head.write_bytes(bytes(flipped))
    with pytest.raises(ManifestError, match="sha256 .* corrupt or was modified"):
        OnnxRuntimeBackend(out)
    garbage = bytes(np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8))
    head.write_bytes(garbage)  # same size, hash check off: onnxruntime itself must refuse it clearly
    with pytest.raises(ManifestError, match="cannot load .*head.onnx.*corrupt"):
        OnnxRuntimeBackend(out, check_hash=False)
    head.unlink()
    with pytest.raises(ManifestError, match="head.onnx is missing"):
        OnnxRuntimeBackend(out)


def _edit_manifest(out, fn):
    path = out / "manifest.json"
    man = json.loads(path.read_text())
    fn(man)
    path.write_text(json.dumps(man))


def test_mismatched_manifest_is_refused(tiny_vla_export, tmp_path):
    out = copy_export(tiny_vla_export[1], tmp_path / "export")
    original = (out / "manifest.json").read_text()

    def rename_input(m):
        m["modules"]["llm"]["inputs"][0]["name"] = "token_ids"
    _edit_manifest(out, rename_input)
    with pytest.raises(ManifestError, match=r"llm: manifest inputs \['token_ids'"):
        OnnxRuntimeBackend(out)
    (out / "manifest.json").write_text(original)

    def wrong_shape(m):
        m["modules"]["head"]["inputs"][3]["shape"] = ["batch", 8, 7]
    _edit_manifest(out, wrong_shape)
    with pytest.raises(ManifestError, match="input 'noise' has shape"):
        OnnxRuntimeBackend(out)
    (out / "manifest.json").write_text(original)

    def wrong_grid(m):
        m["layout"]["image_grid_thw"] = [1, 16, 16]
    _edit_manifest(out, wrong_grid)
    with pytest.raises(ManifestError, match="image_grid_thw"):
        OnnxRuntimeBackend(out)
    (out / "manifest.json").write_text(original)

    def failed_parity(m):
        m["parity"]["ok"] = False
    _edit_manifest(out, failed_parity)
    with pytest.raises(ManifestError, match="did not pass its parity check"):
        OnnxRuntimeBackend(out)
    OnnxRuntimeBackend(out, allow_parity_failure=True)  # explicit opt-in works
    (out / "manifest.json").write_text(original)

    _edit_manifest(out, lambda m: m.update(format="roboalign.export/0"))
    with pytest.raises(ManifestError, match="format is 'roboalign.export/0'"):
        OnnxRuntimeBackend(out)
    (out / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="roboalign export --checkpoint"):
        Policy.from_checkpoint(out, "onnxruntime")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_tensorrt_backend_reports_its_absence(tiny_vla_export):
    with pytest.raises(TensorRTUnavailable, match="--backend onnxruntime"):
        Policy.from_checkpoint(tiny_vla_export[1], "tensorrt")


def test_backend_and_provider_choices(tiny_vla_export, caplog):
    with pytest.raises(ValueError, match="unknown backend 'jax'; valid: torch, onnxruntime, tensorrt"):
        Policy.from_checkpoint(tiny_vla_export[1], "jax")
    with pytest.raises(ValueError, match="unknown execution provider 'tpu'"):
        resolve_providers(["tpu"])
    with pytest.raises(ValueError, match="providers= is an onnxruntime option"):
        Policy.from_checkpoint(tiny_vla_export[0], "torch", providers=["cuda"])
    with caplog.at_level(logging.WARNING):
        provs = resolve_providers(["tensorrt", "cuda", "cpu"], allow_cpu_fallback=True)
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert provs == ["CPUExecutionProvider"] and "falling back" in caplog.text
    # a checkpoint folder with its export in onnx/ works for the graph backends too
    policy = Policy.from_checkpoint(tiny_vla_export[0], "onnxruntime", providers=["cuda", "cpu"], warmup=0,
                                    allow_cpu_fallback=True)
    assert policy.describe()["providers"][-1] == "CPUExecutionProvider"


def test_graph_backend_runs_without_importing_torch(tiny_vla_export):
    import subprocess
    import sys

    code = ("import sys; from roboalign.runtime import Policy; "
            f"p = Policy.from_checkpoint({str(tiny_vla_export[1])!r}, 'onnxruntime', num_threads=1, warmup=1); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
