"""Export of a tiny VLA to ONNX: graphs + manifest, parity with PyTorch (and that parity catches a wrong
graph), the export-friendly vision wrapper on other grids, the TensorRT operator check, the engine
builder's clear failure without TensorRT, and the ``roboalign export`` command."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from roboalign.export.cli import main as export_main
from roboalign.export.modules import VisionEncoderExport
from roboalign.export.parity import module_parity
from roboalign.export.trt_compat import check_file, check_model, tensorrt_ops
from roboalign.models.vla import load_vla
from roboalign.runtime.checkpoint_specs import RuntimeSpecs
from roboalign.runtime.manifest import MODULES, load_manifest
from roboalign.runtime.ort_backend import make_session
from roboalign.runtime.preprocess import ImageProcessorSpec, patchify, synthetic_observations
from roboalign.runtime.tensorrt_engines import (
    TensorRTUnavailable,
    TRTBuildConfig,
    build_engines,
    engine_cache_key,
    trtexec_commands,
)
from roboalign.runtime.torch_backend import preprocessor_for_vla

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def vla(tiny_vla_export):
    return load_vla(tiny_vla_export[0])


def test_export_writes_three_graphs_and_a_complete_manifest(tiny_vla_export, vla):
    ckpt, out = tiny_vla_export
    man = load_manifest(out)
    assert man["opset"] == 17 and man["exporter"] == "legacy"
    for name in MODULES:
        assert (out / man["modules"][name]["file"]).stat().st_size == man["modules"][name]["bytes"]
    ins = {m: {t["name"]: t for t in man["modules"][m]["inputs"]} for m in MODULES}
    assert ins["vision"]["frames"]["dtype"] == "uint8" and ins["vision"]["frames"]["shape"] == ["num_images", 112, 112, 3]
    assert ins["llm"]["position_ids"]["shape"] == [3, "batch", "seq"]
    assert ins["head"]["noise"]["shape"] == ["batch", 16, 7]
    assert man["modules"]["head"]["outputs"][0]["shape"] == ["batch", 16, 7]
    prof = man["modules"]["llm"]["profile"]["input_ids"]
    assert prof["min"][0] == 1 and prof["max"][0] == 8 and prof["min"][1] <= prof["opt"][1] <= prof["max"][1]
    # specs carried over from the checkpoint, one definition each
    specs = RuntimeSpecs.from_dict(man["specs"])
    assert specs.action_space == vla.action_space and specs.action_stats == vla.action_stats
    assert specs.state_stats == vla.state_stats and specs.template == vla.template
    assert specs.cameras == vla.cfg.inputs.cameras and specs.inputs.image_size == vla.cfg.inputs.image_size
    assert specs.tasks.names == vla.tasks.names and specs.horizon == vla.cfg.head.horizon
    assert man["layout"]["image_grid_thw"] == [1, 8, 8] and man["layout"]["tokens_per_image"] == 16
    assert man["checkpoint"] == str(ckpt.resolve())
    # parity figures per module, all within tolerance, and the TensorRT check passed
    for m in (*MODULES, "pipeline"):
        assert man["parity"][m]["cosine"] >= 0.999 and man["parity"][m]["max_abs_diff"] < 1e-4, m
    assert man["parity"]["ok"] and man["tensorrt_compat"]["ok"]


def test_parity_check_catches_a_graph_that_differs_from_pytorch(tiny_vla_export, vla):
    _, out = tiny_vla_export
    pre = preprocessor_for_vla(vla)
    sessions = {m: make_session(out / f"{m}.onnx") for m in MODULES}
    obs = [synthetic_observations(RuntimeSpecs.from_vla(vla), 2, seed=3)]
    good = module_parity(vla, pre, sessions, obs)
    assert good["ok"]
    wrong = load_vla(tiny_vla_export[0])
    with torch.no_grad():
        for p in wrong.head.action_decoder.parameters():
            p.mul_(-1.0)  # the exported head.onnx no longer matches this model
    bad = module_parity(wrong, pre, sessions, obs)
    assert bad["vision"]["ok"] and bad["llm"]["ok"]
    assert not bad["head"]["ok"] and not bad["pipeline"]["ok"] and not bad["ok"]


@pytest.mark.parametrize("grid", [(1, 8, 8), (1, 12, 12), (1, 6, 10)])
def test_vision_wrapper_matches_stock_tower_on_other_grids(vla, grid):
    # (1, 12, 12): 6x6 merged tokens in 2x2 windows (equal); (1, 6, 10): 3x5 merged tokens -> unequal windows
    visual = vla.backbone.model.model.visual
    spec = ImageProcessorSpec.from_image_processor(vla.processor.image_processor)
    wrapper = VisionEncoderExport(visual, grid, spec.lut()).eval()
    frames = np.random.default_rng(1).integers(0, 256, (3, grid[1] * 14, grid[2] * 14, 3), dtype=np.uint8)
    pixels = patchify(frames, spec)  # the stock processor layout
    with torch.no_grad():
        ref = visual(torch.from_numpy(pixels.reshape(-1, pixels.shape[-1])),
                     grid_thw=torch.tensor([grid] * 3)).pooler_output.reshape(3, -1, 128)
        got = wrapper(torch.from_numpy(frames))
        wrapper.window_len = 0  # force the block-diagonal mask path
        got_mask = wrapper(torch.from_numpy(frames))
    assert torch.allclose(got, ref, atol=1e-5) and torch.allclose(got_mask, ref, atol=1e-5)


def test_tensorrt_op_table_is_documented_data():
    table = tensorrt_ops()
    assert "onnx-tensorrt" in table["source"] and table["tensorrt_version"]
    assert {"MatMul", "Softmax", "LayerNormalization", "Gather"} <= set(table["supported"])
    assert not set(table["supported"]) & set(table["unsupported"])


def _model(nodes, inputs, outputs, opset=17, inits=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_tensorrt_check_flags_unsupported_ops_opset_domain_and_dynamic_axes():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])
    ok = check_model(_model([helper.make_node("Relu", ["x"], ["y"])], [x], [y]))
    assert ok.ok and ok.op_types == ["Relu"]
    unique = check_model(_model([helper.make_node("Unique", ["x"], ["y"])], [x], [y], opset=11))
    assert not unique.ok and "Unique" in unique.errors[0]
    old = check_model(_model([helper.make_node("Relu", ["x"], ["y"])], [x], [y], opset=8))
    assert not old.ok and "opset 8" in old.errors[0]
    custom = check_model(_model([helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft")], [x], [y]))
    assert not custom.ok and "plugin" in custom.errors[0]
    axes = helper.make_tensor_value_info("axes", TensorProto.INT64, [1])
    dyn = check_model(_model([helper.make_node("Unsqueeze", ["x", "axes"], ["y"])], [x, axes], [y]))
    assert not dyn.ok and "constant" in dyn.errors[0]
    const = helper.make_tensor("axes", TensorProto.INT64, [1], [0])
    fixed = check_model(_model([helper.make_node("Unsqueeze", ["x", "axes"], ["y"])], [x], [y], inits=[const]))
    assert fixed.ok


def test_tensorrt_check_of_the_exported_graphs_and_a_corrupt_file(tiny_vla_export, tmp_path):
    _, out = tiny_vla_export
    for m in MODULES:
        rep = check_file(out / f"{m}.onnx", m)
        assert rep.ok and rep.opset == 17 and "MatMul" in rep.op_types
    bad = tmp_path / "bad.onnx"
    bad.write_bytes((out / "head.onnx").read_bytes()[:1000])
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        check_file(bad)


def test_engine_cache_key_and_build_config():
    base = dict(gpu="NVIDIA RTX 4090", trt_version="10.15.1", onnx_sha256="ab" * 32, precision="fp16",
                profile={"x": {"min": [1], "opt": [1], "max": [8]}})
    key = engine_cache_key(**base)
    for change in ({"gpu": "Jetson AGX Orin"}, {"trt_version": "10.16.0"}, {"onnx_sha256": "cd" * 32},
                   {"precision": "bf16"}):
        assert engine_cache_key(**{**base, **change}) != key
    assert engine_cache_key(**base) == key
    with pytest.raises(ValueError, match="fp32, fp16, bf16"):
        TRTBuildConfig(precision="int4")
    with pytest.raises(ValueError, match="min <= opt <= max"):
        TRTBuildConfig(profiles={"llm": {"input_ids": {"min": [1, 64], "opt": [1, 32], "max": [8, 512]}}})


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_tensorrt_builder_reports_its_absence_and_names_the_alternative(tiny_vla_export):
    with pytest.raises(TensorRTUnavailable, match="--backend onnxruntime"):
        build_engines(tiny_vla_export[1])


def test_trtexec_commands_carry_the_profiles(tiny_vla_export):
    cmds = trtexec_commands(tiny_vla_export[1], TRTBuildConfig(precision="bf16"))
    assert len(cmds) == 3 and all(c.startswith("trtexec --onnx=") and " --bf16" in c for c in cmds)
    assert "--minShapes=frames:2x112x112x3" in cmds[0] and "--maxShapes=frames:16x112x112x3" in cmds[0]


def test_export_cli_check_only_print_trtexec_and_tensorrt_absence(tiny_vla_export, capsys):
    ckpt, out = tiny_vla_export
    before = (out / "manifest.json").read_text()
    assert export_main(["--checkpoint", str(ckpt), "--out", str(out), "--check-only"]) == 0
    text = capsys.readouterr().out
    assert "parity vs PyTorch" in text and "export: out=" in text and "parity_ok=True" in text
    assert (out / "manifest.json").read_text() == before  # --check-only never rewrites the export
    assert export_main(["--out", str(out), "--print-trtexec"]) == 0
    assert capsys.readouterr().out.count("trtexec --onnx=") == 3
    if importlib.util.find_spec("tensorrt") is None:
        assert export_main(["--checkpoint", str(ckpt), "--out", str(out), "--tensorrt"]) == 2
        assert "--backend onnxruntime" in capsys.readouterr().err
    assert json.loads(before)["format"] == "roboalign.export/1"


def test_exported_graph_names_match_the_manifest(tiny_vla_export):
    _, out = tiny_vla_export
    man = load_manifest(out)
    for m in MODULES:
        graph = onnx.load(str(out / f"{m}.onnx"))
        assert [i.name for i in graph.graph.input] == [t["name"] for t in man["modules"][m]["inputs"]]
