"""``roboalign check-config`` on every shipped config (how CI runs it), on the meta device: the published
7B/8B architectures give the model cards' parameter counts, the vocabulary grows by 2 + FAST ids, the
shapes of every stage come out, and each kind of bad input fails with a line naming the field."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import yaml

from roboalign.paper_scale.accelerate_setup import DistSetup
from roboalign.paper_scale.architectures import ARCHITECTURES, architecture_from_name
from roboalign.paper_scale.check_config import Options, check, main
from roboalign.paper_scale.memory import ModelShape, estimate

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"
SHIPPED = sorted(CONFIGS.glob("*.yaml"))
CI = Options(allow_missing=True)


@functools.cache
def _ci_report(name: str):
    return check(CONFIGS / name, CI)


@pytest.mark.parametrize("config", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_config_passes(config):
    report = _ci_report(config.name)
    assert report.ok, report.render()
    if "qwen" in config.name:
        arch = ARCHITECTURES["qwen3_vl_8b" if "qwen3" in config.name else "qwen2_5_vl_7b"]
        assert abs(report.facts["built_params"] / 1e9 - arch.published_params) < 0.005  # the model card's count
        if report.kind != "vla":
            assert report.facts["vocabulary"]["rows_after"] == arch.tokenizer_len + 2 + 2048
            assert "memory_gib" in report.facts and report.facts["memory_gib"]["total"] < 80


def test_stage_shapes_of_the_paper_configs():
    sft = _ci_report("sft_qwen25vl_7b.yaml").render()
    assert "logits (4, " in sft and ", 153715), loss ()" in sft and "vision.0 (8, 25, 3584)" in sft
    assert "trainable 7.63 B (vision encoder frozen)" in sft
    q3 = _ci_report("sft_qwen3vl_8b.yaml").render()
    assert "vision.1 (8, 16, 3, 4096)" in q3  # three DeepStack features per image token
    grpo = _ci_report("grpo_qwen25vl_7b.yaml").render()
    assert "128 prompts x 5 completions per update, 512 prompts per rollout" in grpo
    assert "completion_logits (10, 2048, 153715)" in grpo and "trainable 8.30 B" in grpo
    vla = _ci_report("vla_qwen25vl_7b.yaml").render()
    assert "cut at layer 18 of 28" in vla and "image_embeds (2, 64, 3584)" in vla
    assert "actions (1, 16, 7)" in vla and "train_vl_tokens (32, " in vla


def _variant(tmp_path: Path, name: str, **changes) -> Path:
    data = yaml.safe_load((CONFIGS / name).read_text())
    for key, value in changes.items():
        section, _, sub = key.partition(".")
        if sub:
            data[section][sub] = value
        else:
            data[key] = value
    out = tmp_path / f"{len(list(tmp_path.iterdir()))}_{name}"
    out.write_text(yaml.safe_dump(data))
    return out


def _fail(path: Path, opts: Options = CI) -> str:
    report = check(path, opts)
    assert not report.ok
    return next(t for s, t in report.lines if s == "FAIL")


def test_bad_input_names_the_field(tmp_path):
    acc = str(CONFIGS / "accelerate_zero3.yaml")
    assert "backbone_layer=40 but the backbone has 28 decoder layers" in _fail(
        _variant(tmp_path, "vla_qwen25vl_7b.yaml", backbone_layer=40))
    assert "head_overrides.backbone_dim=4096 but the backbone's hidden size is 3584" in _fail(
        _variant(tmp_path, "vla_qwen25vl_7b.yaml", head_overrides={"backbone_dim": 4096}))
    assert "model.name_or_path='/models/Qwen2.5-VL-7B-Instruct' does not exist" in _fail(
        CONFIGS / "sft_qwen25vl_7b.yaml", Options())
    assert "num_processes=8 but there are 4 GPU(s)" in _fail(CONFIGS / "sft_qwen25vl_7b.yaml",
                                                             Options(allow_missing=True, gpus=4))
    assert "max_length=100 is shorter" in _fail(_variant(tmp_path, "sft_qwen25vl_7b.yaml", max_length=100),
                                                Options(allow_missing=True, accelerate=acc))
    assert "not a multiple of num_generations=3" in _fail(
        _variant(tmp_path, "grpo_qwen25vl_7b.yaml", num_generations=3), Options(allow_missing=True, accelerate=acc))
    unfrozen = check(_variant(tmp_path, "sft_qwen25vl_7b.yaml", **{"model.freeze_vision": False}), CI)
    assert ("WARN", "model.freeze_vision=false: the paper freezes the vision encoder in SFT") in unfrozen.lines
    assert unfrozen.facts["params"]["trainable"] == unfrozen.facts["params"]["total"]
    assert "names none of the published architectures" in _fail(
        _variant(tmp_path, "vla_qwen25vl_7b.yaml", backbone="/models/llava-13b"))


def test_a_local_model_folder_is_read_and_its_files_checked(tmp_path):
    from roboalign.models.backbone import build_tiny_backbone, save_backbone

    folder = save_backbone(build_tiny_backbone("qwen3_vl"), tmp_path / "model")
    cfg = _variant(tmp_path, "sft_tiny.yaml", **{"model.name_or_path": str(folder)})
    report = check(cfg, Options())
    assert report.ok and f"architecture: {folder}/config.json" in report.render()
    assert "Qwen3VLForConditionalGeneration" in report.render()
    (folder / "model.safetensors").unlink()
    assert "model.name_or_path" not in _fail(cfg, Options()) and "*.safetensors" in _fail(cfg, Options())


def test_names_map_to_published_architectures():
    assert architecture_from_name("/models/Qwen2.5-VL-7B-Instruct").name == "qwen2_5_vl_7b"
    assert architecture_from_name("runs/sft_qwen3vl_8b").name == "qwen3_vl_8b"
    assert architecture_from_name("/models/roboalign-qwen25vl-7b-grpo").name == "qwen2_5_vl_7b"
    assert architecture_from_name("/models/Qwen2.5-VL-72B-Instruct") is None


def test_memory_estimate_shards_model_states():
    shape = ModelShape(total_params=8_000_000_000, trainable_params=7_000_000_000, largest_layer_params=10**9,
                       hidden=4096, intermediate=12288, layers=32, vocab=150_000)
    zero3 = estimate(shape, DistSetup("deepspeed", 8, zero_stage=3, mixed_precision="bf16"), "bfloat16", 1, 1000,
                     1000, True)
    gib = 1024**3
    assert zero3.weights == pytest.approx(8e9 * 2 / 8 / gib) and zero3.optimizer == pytest.approx(7e9 * 12 / 8 / gib)
    assert zero3.logits == pytest.approx(1000 * 150_000 * 10 / gib)
    ddp = estimate(shape, DistSetup("ddp", 8, mixed_precision="bf16"), "bfloat16", 1, 1000, 1000, True)
    assert ddp.weights == pytest.approx(8 * zero3.weights) and ddp.gathered == 0


def test_cli_prints_one_json_object_per_config(capsys):
    rc = main([str(CONFIGS / "vla_tiny.yaml"), str(CONFIGS / "accelerate_fsdp.yaml"), "--json", "--gpus", "8"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rc == 0 and [r["kind"] for r in rows] == ["vla", "accelerate"] and all(r["ok"] for r in rows)
    assert rows[1]["setup"]["strategy"] == "fsdp" and rows[0]["tokens_per_sample"] > 32


def test_bf16_weights_without_a_master_copy_are_flagged():
    fsdp = Options(allow_missing=True, gpus=8, accelerate=str(CONFIGS / "accelerate_fsdp.yaml"))
    report = check(CONFIGS / "sft_qwen25vl_7b.yaml", fsdp)
    warn = [t for s, t in report.lines if s == "WARN" and "no fp32 master copy" in t]
    assert report.ok and warn and "model.dtype=bfloat16 with FSDP" in warn[0]
    assert report.facts["memory_gib"]["optimizer"] < _ci_report("sft_qwen25vl_7b.yaml").facts["memory_gib"]["optimizer"]
    assert not any("master copy" in t for _, t in _ci_report("sft_qwen25vl_7b.yaml").lines)  # ZeRO-3 keeps fp32
