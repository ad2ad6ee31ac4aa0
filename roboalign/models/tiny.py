"""The tiny CPU backbone's parts: a locally trained Qwen-style tokenizer, its built-in corpus, and small configs.

* ``build_tiny_tokenizer`` — a byte-level BPE tokenizer trained locally with HF ``tokenizers`` on a small
  built-in corpus of robot / instruction / reasoning text, with the same pre-tokenizer, decoder and
  special tokens as the Qwen2.5-VL tokenizer, wrapped as a transformers ``Qwen2Tokenizer``
  (``Qwen2TokenizerFast`` is an alias of it in transformers 5) with the Qwen2-VL chat template.
* ``TinyBackboneConfig`` + ``tiny_qwen25vl_config`` / ``tiny_qwen3vl_config`` — small configs of the real
  classes whose vocabulary matches the tokenizer (~1 M parameters; CPU tests and the align benchmark).
  ``tiny_model_config`` picks the builder of a family (``TINY_CONFIGS``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import Qwen2Tokenizer

from roboalign.models.families import get_family

# The Qwen2.5-VL special tokens, in the order of the real tokenizer (ids 151643.. there; 0.. here).
QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Added (non-special) tokens: Qwen3-VL's tokenizer has <think>/</think> as single added tokens; we give the
# tiny tokenizer the same so reasoning tags survive ``skip_special_tokens=True`` decoding.
QWEN_ADDED_TOKENS: tuple[str, ...] = ("<think>", "</think>", "<tool_call>", "</tool_call>")

# Pre-tokenisation regex of the Qwen2 tokenizer (transformers' tokenization_qwen2.PRETOKENIZE_REGEX).
QWEN_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# The Qwen2-VL / Qwen2.5-VL chat template (as shipped in their tokenizer_config.json / chat_template.json).
QWEN_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Words of the built-in corpus: LIBERO-Object objects and places, robot verbs, phases, spatial words.
_OBJECTS = (
    "alphabet soup", "cream cheese", "salad dressing", "bbq sauce", "ketchup", "tomato sauce", "butter",
    "milk", "chocolate pudding", "orange juice", "basket", "bowl", "plate", "tray", "box", "cup",
)
_PHASES = ("approach", "grasp", "lift", "carry", "release", "retreat", "descend", "align", "place")
_DIRECTIONS = ("left", "right", "forward", "backward", "up", "down", "above", "below", "behind", "in front of")
_SENTENCES = (
    "You are a helpful assistant.",
    "You are a robot control assistant for a Franka arm with a parallel gripper.",
    "First think about the scene and the task inside <think> </think>, then give the answer inside "
    "<answer> </answer>.",
    "The answer holds the next action chunk as FAST action tokens between <ACTION_START> and <ACTION_END>.",
    "The robot state is the joint positions and the gripper opening.",
    "The end effector is at x y z and the gripper is open.",
    "The gripper is closed around the object, so the next step is to lift it.",
    "The object is on the table to the left of the basket.",
    "Where is the object relative to the gripper? How far is it? Which object is closest?",
    "Answer with a short phrase. Is the gripper holding anything? Yes. No.",
    "Move the arm towards the object, open the gripper, descend, close the gripper and lift.",
    "Carry the object over the basket, lower it and open the gripper to release it.",
    "What should the robot do next? Which phase is the robot in?",
)


def builtin_corpus() -> list[str]:
    """The deterministic text the tiny tokenizer is trained on (a few thousand short lines)."""
    lines = list(_SENTENCES)
    for obj in _OBJECTS:
        lines.append(f"pick up the {obj} and place it in the basket")
        lines.append(f"Pick up the {obj} and put it in the basket.")
        lines.append(f"Task: pick up the {obj}. The {obj} is the target object.")
        for phase in _PHASES:
            lines.append(f"<think>The target is the {obj}. The robot is in the {phase} phase.</think>")
        for d in _DIRECTIONS:
            lines.append(f"The {obj} is {d} of the gripper. The basket is {d} of the {obj}.")
    for i in range(-100, 101):
        lines.append(f"{i} {i / 100:.2f} {i * 3} cm {abs(i)} mm state {i / 10:.1f}")
    lines += [
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>What is in the image?<|im_end|>\n"
        "<|im_start|>assistant\n<think>reasoning</think><answer>the answer</answer><|im_end|>\n"
    ] * 4
    return lines


def build_tiny_tokenizer(
    vocab_size: int = 1024, extra_texts: Iterable[str] = (), min_frequency: int = 2
) -> Qwen2Tokenizer:
    """Train a small Qwen2-style byte-level BPE tokenizer locally (no hub) and wrap it for transformers.

    The pipeline (NFC normaliser, Qwen2 split regex + byte-level pre-tokenizer, byte-level decoder) and
    the special tokens are those of the real Qwen2.5-VL tokenizer; only the merges are ours. The result
    carries the Qwen2-VL chat template and, like Qwen2.5-VL-*Instruct*, ``eos = <|im_end|>`` (generation
    stops at the end of the assistant turn) and ``pad = <|endoftext|>``.
    """
    if vocab_size < 256 + len(QWEN_SPECIAL_TOKENS):
        raise ValueError(f"vocab_size={vocab_size} is too small: need >= {256 + len(QWEN_SPECIAL_TOKENS)}")
    bpe = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(QWEN_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(builtin_corpus() + list(extra_texts), trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = state["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tok = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[t for t in QWEN_SPECIAL_TOKENS if t not in ("<|endoftext|>", "<|im_end|>")],
        model_max_length=32768,
        padding_side="right",
        errors="replace",
        split_special_tokens=False,
    )
    tok.add_tokens(list(QWEN_ADDED_TOKENS), special_tokens=False)
    tok.chat_template = QWEN_VL_CHAT_TEMPLATE
    return tok


@dataclass(frozen=True)
class TinyBackboneConfig:
    """Sizes of the tiny random-initialised backbone (CPU tests, the align benchmark)."""

    family: str = "qwen2_5_vl"
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 256
    vision_hidden_size: int = 64
    vision_depth: int = 2
    vision_heads: int = 2
    vision_intermediate_size: int = 128
    tie_word_embeddings: bool = True
    # ~1/sqrt(hidden): HF's 0.02 suits wide models; a 128-wide random model trains several times faster with
    # this (measured: loss 6.5 -> 0.1 in 35 steps on a fixed batch, vs 0.7 with 0.02)
    initializer_range: float = 0.1
    max_position_embeddings: int = 4096
    seed: int = 0

    def __post_init__(self) -> None:
        get_family(self.family).classes()  # unknown family / missing transformers classes fail here
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise ValueError(f"hidden_size={self.hidden_size} must split into {self.num_heads} even-sized heads")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads={self.num_heads} must be a multiple of num_kv_heads={self.num_kv_heads}")
        if self.vision_hidden_size % self.vision_heads:
            raise ValueError("vision_hidden_size must be a multiple of vision_heads")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def mrope_section(self) -> list[int]:
        """Split head_dim/2 rotary frequencies over (time, height, width) like Qwen's 16/24/24 of 64."""
        half = self.head_dim // 2
        t = half // 4
        h = (half - t) // 2
        return [t, h, half - t - h]


def _token_ids(tokenizer: Qwen2Tokenizer) -> dict[str, int]:
    ids = {}
    for name, tok in (
        ("image_token_id", "<|image_pad|>"),
        ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"),
        ("vision_end_token_id", "<|vision_end|>"),
    ):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if tid is None or tid == tokenizer.unk_token_id:
            raise ValueError(f"tokenizer lacks the special token {tok}; build it with build_tiny_tokenizer")
        ids[name] = int(tid)
    return ids


def _text_kwargs(tokenizer: Qwen2Tokenizer, cfg: TinyBackboneConfig) -> dict[str, Any]:
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        initializer_range=cfg.initializer_range,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )


def tiny_qwen25vl_config(tokenizer: Qwen2Tokenizer, cfg: TinyBackboneConfig | None = None) -> Any:
    """A Qwen2_5_VLConfig of the tiny sizes whose vocabulary matches ``tokenizer``."""
    cfg = cfg or TinyBackboneConfig()
    fam = get_family("qwen2_5_vl")
    text = _text_kwargs(tokenizer, cfg)
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": cfg.mrope_section()}
    vision = dict(
        depth=cfg.vision_depth,
        hidden_size=cfg.vision_hidden_size,
        intermediate_size=cfg.vision_intermediate_size,
        num_heads=cfg.vision_heads,
        out_hidden_size=cfg.hidden_size,
        patch_size=fam.patch_size,
        spatial_merge_size=fam.merge_size,
        temporal_patch_size=fam.temporal_patch_size,
        window_size=56,
        fullatt_block_indexes=[cfg.vision_depth - 1],
        initializer_range=cfg.initializer_range,
    )
    config_cls = fam.classes()[0]
    return config_cls(
        text_config=text, vision_config=vision, tie_word_embeddings=cfg.tie_word_embeddings, **_token_ids(tokenizer)
    )


def tiny_qwen3vl_config(tokenizer: Qwen2Tokenizer, cfg: TinyBackboneConfig | None = None) -> Any:
    """A Qwen3VLConfig of the tiny sizes whose vocabulary matches ``tokenizer``."""
    cfg = cfg or TinyBackboneConfig(family="qwen3_vl")
    fam = get_family("qwen3_vl")
    text = _text_kwargs(tokenizer, cfg)
    text["head_dim"] = cfg.head_dim
    text["rope_parameters"] = {
        "rope_type": "default", "rope_theta": 5e6, "mrope_section": cfg.mrope_section(), "mrope_interleaved": True,
    }
    vision = dict(
        depth=cfg.vision_depth,
        hidden_size=cfg.vision_hidden_size,
        intermediate_size=cfg.vision_intermediate_size,
        num_heads=cfg.vision_heads,
        out_hidden_size=cfg.hidden_size,
        patch_size=fam.patch_size,
        spatial_merge_size=fam.merge_size,
        temporal_patch_size=fam.temporal_patch_size,
        num_position_embeddings=64,
        deepstack_visual_indexes=[0],
        initializer_range=cfg.initializer_range,
    )
    config_cls = fam.classes()[0]
    return config_cls(
        text_config=text, vision_config=vision, tie_word_embeddings=cfg.tie_word_embeddings, **_token_ids(tokenizer)
    )


TINY_CONFIGS: dict[str, Callable[[Qwen2Tokenizer, TinyBackboneConfig], Any]] = {
    "qwen2_5_vl": tiny_qwen25vl_config,
    "qwen3_vl": tiny_qwen3vl_config,
}


def tiny_model_config(tokenizer: Qwen2Tokenizer, cfg: TinyBackboneConfig) -> Any:
    """The transformers config of the tiny model of ``cfg.family``."""
    return TINY_CONFIGS[cfg.family](tokenizer, cfg)
