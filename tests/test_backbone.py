"""The backbone: locally trained Qwen2-style tokenizer, tiny real Qwen2.5-VL / Qwen3-VL, processor without
torchvision, save/load round trip, vision tower frozen, clear errors on incomplete folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from roboalign.models.backbone import (
    QWEN_SPECIAL_TOKENS,
    Backbone,
    TinyBackboneConfig,
    build_tiny_backbone,
    build_tiny_tokenizer,
    check_backbone_folder,
    count_parameters,
    image_token_count,
    load_backbone,
    save_backbone,
    vision_tower,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny() -> Backbone:
    return build_tiny_backbone("qwen2_5_vl")


def _inputs(backbone: Backbone, text: str = "pick up the milk and place it in the basket", size: int = 128):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    prompt = backbone.processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    return prompt, backbone.processor(text=[prompt], images=[img], return_tensors="pt")


def test_tokenizer_is_qwen_like_and_round_trips():
    tok = build_tiny_tokenizer()
    for special in QWEN_SPECIAL_TOKENS:
        ids = tok(special, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, f"{special} must be one token, got {ids}"
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|endoftext|>")  # as Qwen2.5-VL-Instruct
    text = "<|im_start|>user\nPick up the ketchup: <think>it is left</think><answer>ok 12.5</answer><|im_end|>"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    assert len(ids) < len(text) / 2, "BPE should compress the in-domain corpus"
    # byte-level: arbitrary unicode never becomes unknown
    assert tok.decode(tok("Grüße ✓ 机器人")["input_ids"]) == "Grüße ✓ 机器人"
    # deterministic training
    assert build_tiny_tokenizer().get_vocab() == tok.get_vocab()


def test_chat_template_inserts_vision_tokens(tiny):
    prompt, inputs = _inputs(tiny)
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert "<|vision_start|><|image_pad|><|vision_end|>pick up the milk" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    n_pad = int((inputs["input_ids"] == tiny.model.config.image_token_id).sum())
    assert n_pad == image_token_count(tiny.processor, 128, 128) == 16
    # (grid_t * grid_h * grid_w, 3 * temporal_patch * patch^2)
    assert tuple(inputs["pixel_values"].shape) == (64, 3 * 2 * 14 * 14)


def test_tiny_model_is_real_qwen25vl_with_frozen_vision(tiny):
    model = tiny.model
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert model.get_input_embeddings().num_embeddings == len(tiny.tokenizer)
    assert 3e5 < count_parameters(model) < 2e6
    assert all(not p.requires_grad for p in vision_tower(model).parameters())
    trainable = count_parameters(model, trainable_only=True)
    assert 0 < trainable < count_parameters(model)
    _, inputs = _inputs(tiny)
    with torch.no_grad():
        logits = model(**inputs).logits  # (1, L, V)
    assert logits.shape == (1, inputs["input_ids"].shape[1], len(tiny.tokenizer))
    assert torch.isfinite(logits).all()
    # the image really reaches the LLM: a different image changes the logits
    _, other = _inputs(tiny)
    other["pixel_values"] = other["pixel_values"] + 1.0
    with torch.no_grad():
        assert not torch.allclose(model(**other).logits, logits)


def test_save_load_round_trip(tiny, tmp_path):
    _, inputs = _inputs(tiny)
    save_backbone(tiny, tmp_path / "ckpt", extra_files={"note.txt": "hello"})
    for f in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json", "note.txt"):
        assert (tmp_path / "ckpt" / f).is_file(), f
    loaded = load_backbone(tmp_path / "ckpt")
    assert loaded.family == "qwen2_5_vl"
    assert loaded.tokenizer.get_vocab() == tiny.tokenizer.get_vocab()
    assert loaded.tokenizer.chat_template == tiny.tokenizer.chat_template
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(**inputs).logits, tiny.model(**inputs).logits)
    assert all(not p.requires_grad for p in vision_tower(loaded.model).parameters())
    _, again = _inputs(loaded)
    assert torch.equal(again["input_ids"], inputs["input_ids"])
    assert torch.equal(again["pixel_values"], inputs["pixel_values"])


def test_missing_files_are_named(tiny, tmp_path):
    ckpt = save_backbone(tiny, tmp_path / "ckpt")
    (ckpt / "model.safetensors").unlink()
    (ckpt / "preprocessor_config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"preprocessor_config\.json.*\*\.safetensors"):
        load_backbone(ckpt)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_backbone_folder(tmp_path / "nope")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (bad / "preprocessor_config.json").write_text("{}")
    (bad / "tokenizer.json").write_text("{}")
    (bad / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="model_type='llama'.*valid: qwen2_5_vl, qwen3_vl"):
        load_backbone(bad)


def test_sharded_index_names_missing_shard(tiny, tmp_path):
    ckpt = save_backbone(tiny, tmp_path / "ckpt")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(FileNotFoundError, match="model-00001-of-00002.safetensors"):
        check_backbone_folder(ckpt)


def test_qwen3vl_tiny_round_trip(tmp_path):
    bb = build_tiny_backbone("qwen3_vl")
    assert type(bb.model).__name__ == "Qwen3VLForConditionalGeneration"
    _, inputs = _inputs(bb)
    save_backbone(bb, tmp_path / "q3")
    loaded = load_backbone(tmp_path / "q3")
    assert loaded.family == "qwen3_vl"
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(**inputs).logits, bb.model(**inputs).logits)


def test_config_validation_lists_options():
    with pytest.raises(ValueError, match="valid: qwen2_5_vl, qwen3_vl"):
        TinyBackboneConfig(family="llava")
    with pytest.raises(ValueError, match="even-sized heads"):
        TinyBackboneConfig(hidden_size=100, num_heads=3)


def test_hub_layout_folder_loads(tiny, tmp_path):
    """A folder laid out like Qwen/Qwen2.5-VL-7B-Instruct (chat_template.json, min/max_pixels keys)."""
    ckpt = save_backbone(tiny, tmp_path / "hub")
    template = (ckpt / "chat_template.jinja").read_text()
    (ckpt / "chat_template.jinja").unlink()
    (ckpt / "chat_template.json").write_text(json.dumps({"chat_template": template}))
    tok_cfg = json.loads((ckpt / "tokenizer_config.json").read_text())
    tok_cfg.pop("chat_template", None)
    (ckpt / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    pre = json.loads((ckpt / "preprocessor_config.json").read_text())
    pre.update(min_pixels=3136, max_pixels=12544, image_processor_type="Qwen2VLImageProcessor")
    (ckpt / "preprocessor_config.json").write_text(json.dumps(pre))
    loaded = load_backbone(ckpt)
    assert loaded.tokenizer.chat_template == template
    _, inputs = _inputs(loaded)
    assert int((inputs["input_ids"] == loaded.model.config.image_token_id).sum()) == 16


def test_family_table_drives_processor_and_tiny_configs():
    from roboalign.models.families import FAMILIES, family_of_tiny_name, get_family

    for fam in FAMILIES.values():
        bb = build_tiny_backbone(fam.name)
        ip = bb.processor.image_processor
        assert (ip.patch_size, tuple(ip.image_mean), tuple(ip.image_std)) == (fam.patch_size, fam.image_mean,
                                                                               fam.image_std)
        vc = bb.model.config.vision_config
        assert vc.patch_size == fam.patch_size and vc.spatial_merge_size == fam.merge_size
        assert type(bb.model).__name__ == fam.model_class and family_of_tiny_name(fam.tiny_name) is fam
        assert hasattr(vc, "deepstack_visual_indexes") == fam.deepstack
    with pytest.raises(ValueError, match="unknown backbone family 'llava'; valid: qwen2_5_vl, qwen3_vl"):
        get_family("llava")
