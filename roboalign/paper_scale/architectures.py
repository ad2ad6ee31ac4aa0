"""Published architecture values of the paper-scale backbones (their config.json), written down as facts.

Nothing here is downloaded: the values below are copied from each model's published ``config.json`` and
are what ``roboalign check-config`` builds on the meta device when the model folder is not on this
machine. Where the folder is there, its own ``config.json`` is used and compared with these.

Sources (the Hugging Face model repositories; the same values appear verbatim in public code that
embeds the configs, e.g. NVIDIA/TensorRT-LLM ``tests/unittest/_torch/modeling/test_modeling_qwen2_5vl.py``
and ``test_modeling_qwen3vl.py``, whose test copies shrink only ``num_hidden_layers`` and say so):

* Qwen2.5-VL-7B-Instruct: https://huggingface.co/Qwen/Qwen2.5-VL-7B-Instruct/blob/main/config.json
  (8.29 B parameters; ``len(tokenizer)`` = 151,665: 151,643 BPE tokens + 22 added special tokens,
  while the embedding matrix is padded to ``vocab_size`` 152,064).
* Qwen3-VL-8B-Instruct: https://huggingface.co/Qwen/Qwen3-VL-8B-Instruct/blob/main/config.json
  (8.77 B parameters; ``len(tokenizer)`` = 151,669: the Qwen3 tokenizer adds ``<think>``, ``</think>``,
  ``<tool_response>``, ``</tool_response>`` to Qwen2.5's 22; ``vocab_size`` 151,936).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Architecture:
    """One published model: its config.json values and the facts check-config compares against."""

    name: str
    family: str
    source: str
    config: dict[str, Any] = field(repr=False)
    tokenizer_len: int  # len(tokenizer) of the released tokenizer (ids 0 .. tokenizer_len-1 are used)
    published_params: float  # billions, as stated on the model card
    name_patterns: tuple[str, ...] = ()  # normalised substrings of a folder name that mean this model

    def config_dict(self) -> dict[str, Any]:
        """A deep copy of the config.json values (callers may edit it)."""
        return copy.deepcopy(self.config)

    @property
    def text(self) -> dict[str, Any]:
        return self.config.get("text_config", self.config)

    @property
    def num_layers(self) -> int:
        return int(self.text["num_hidden_layers"])

    @property
    def hidden_size(self) -> int:
        return int(self.text["hidden_size"])


QWEN25_VL_7B = Architecture(
    name="qwen2_5_vl_7b", family="qwen2_5_vl", tokenizer_len=151665, published_params=8.29,
    source="https://huggingface.co/Qwen/Qwen2.5-VL-7B-Instruct/blob/main/config.json",
    name_patterns=("qwen25vl7b",),
    config={
        "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
        "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645,
        "vision_start_token_id": 151652, "vision_end_token_id": 151653, "vision_token_id": 151654,
        "image_token_id": 151655, "video_token_id": 151656, "hidden_act": "silu", "hidden_size": 3584,
        "initializer_range": 0.02, "intermediate_size": 18944, "max_position_embeddings": 128000,
        "max_window_layers": 28, "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4,
        "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": False,
        "torch_dtype": "bfloat16", "transformers_version": "4.41.2", "use_cache": True, "use_sliding_window": False,
        "vision_config": {
            "depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
            "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2,
            "spatial_patch_size": 14, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31],
            "tokens_per_second": 2, "temporal_patch_size": 2},
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        "vocab_size": 152064,
    })

QWEN3_VL_8B = Architecture(
    name="qwen3_vl_8b", family="qwen3_vl", tokenizer_len=151669, published_params=8.77,
    source="https://huggingface.co/Qwen/Qwen3-VL-8B-Instruct/blob/main/config.json",
    name_patterns=("qwen3vl8b",),
    config={
        "architectures": ["Qwen3VLForConditionalGeneration"], "model_type": "qwen3_vl",
        "image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
        "vision_end_token_id": 151653, "tie_word_embeddings": False, "transformers_version": "4.57.0.dev0",
        "text_config": {
            "model_type": "qwen3_vl_text", "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 151643,
            "dtype": "bfloat16", "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 4096,
            "initializer_range": 0.02, "intermediate_size": 12288, "max_position_embeddings": 262144,
            "num_attention_heads": 32, "num_hidden_layers": 36, "num_key_value_heads": 8, "rms_norm_eps": 1e-06,
            "rope_scaling": {"mrope_interleaved": True, "mrope_section": [24, 20, 20], "rope_type": "default"},
            "rope_theta": 5000000, "tie_word_embeddings": False, "use_cache": True, "vocab_size": 151936},
        "vision_config": {
            "model_type": "qwen3_vl", "deepstack_visual_indexes": [8, 16, 24], "depth": 27,
            "hidden_act": "gelu_pytorch_tanh", "hidden_size": 1152, "in_channels": 3, "initializer_range": 0.02,
            "intermediate_size": 4304, "num_heads": 16, "num_position_embeddings": 2304, "out_hidden_size": 4096,
            "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2},
    })

ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in (QWEN25_VL_7B, QWEN3_VL_8B)}


def _normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def architecture_from_name(path: str) -> Architecture | None:
    """The published model a folder name refers to (``/models/Qwen2.5-VL-7B-Instruct``,
    ``runs/sft_qwen25vl_7b``: the last path component, case and punctuation ignored), or None."""
    leaf = _normalise(str(path).rstrip("/").rsplit("/", 1)[-1])
    hits = [a for a in ARCHITECTURES.values() if any(p in leaf for p in a.name_patterns)]
    return hits[0] if len(hits) == 1 else None


def compare_with_facts(config: dict[str, Any], arch: Architecture) -> list[str]:
    """Keys whose value in a local config.json differs from the published one (vocab_size may grow: ours)."""
    diffs = []
    for section in ("", "text_config", "vision_config"):
        want = arch.config.get(section, {}) if section else arch.config
        have = config.get(section, {}) if section else config
        for key, value in want.items():
            if isinstance(value, dict) or key in ("vocab_size", "transformers_version", "torch_dtype", "dtype",
                                                  "architectures", "use_cache"):
                continue
            if key in have and have[key] != value:
                diffs.append(f"{section + '.' if section else ''}{key}={have[key]!r} (published {value!r})")
    return diffs
