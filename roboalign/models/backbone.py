"""The multimodal LLM backbone: Qwen2.5-VL / Qwen3-VL through transformers, tiny or paper-scale.

What lives here (and nowhere else):

* ``build_tiny_tokenizer`` — a byte-level BPE tokenizer trained locally with HF ``tokenizers`` on a small
  built-in corpus of robot / instruction / reasoning text, with the same pre-tokenizer, decoder and
  special tokens as the Qwen2.5-VL tokenizer, wrapped as a transformers ``Qwen2Tokenizer``
  (``Qwen2TokenizerFast`` is an alias of it in transformers 5) with the Qwen2-VL chat template.
* ``build_tiny_qwen25vl`` / ``build_tiny_qwen3vl`` — random-initialised models of the real classes
  (``Qwen2_5_VLForConditionalGeneration``, ``Qwen3VLForConditionalGeneration``) from small configs
  whose vocabulary matches the tokenizer (~1 M parameters; CPU tests and the align benchmark).
* ``build_processor`` / ``load_processor`` — the image+text processor. The stock ``AutoProcessor`` for
  Qwen2.5-VL / Qwen3-VL also builds a *video* processor, and that one needs torchvision, which does not
  import beside torch 2.13 on this machine. We therefore build the stock ``Qwen2_5_VLProcessor`` /
  ``Qwen3VLProcessor`` ourselves from the PIL/numpy image processor (``Qwen2VLImageProcessorPil``,
  same resize/normalise/patchify maths as the torchvision one) plus the tokenizer, with
  ``video_processor=None``. Images work exactly as with the stock processor; videos are unsupported.
  Where torchvision is present the same code still works (we never need the fast image processor).
* ``load_backbone`` — real loading of Qwen2.5-VL-7B-Instruct / Qwen3-VL-8B-Instruct (or one of our own
  checkpoints) from a LOCAL folder: safetensors only, ``local_files_only=True``, no remote code, and a
  clear error naming the missing files. The vision encoder is frozen as in the paper.
* ``save_backbone`` — writes a checkpoint folder (``config.json`` + ``*.safetensors`` + tokenizer +
  processor files) that ``load_backbone`` reads back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    PreTrainedModel,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2Tokenizer,
    Qwen2VLImageProcessorPil,
)

try:  # Qwen3-VL exists in transformers >= 4.57
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor
except ImportError:  # pragma: no cover - depends on the installed transformers
    Qwen3VLConfig = Qwen3VLForConditionalGeneration = Qwen3VLProcessor = None  # type: ignore[assignment,misc]

# --------------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------
# Processor (no torchvision)
# --------------------------------------------------------------------------------------------------

FAMILIES = ("qwen2_5_vl", "qwen3_vl")


class Qwen2_5_VLImageProcessor(Qwen2_5_VLProcessor):
    """The stock ``Qwen2_5_VLProcessor`` with image + text only (no video processor, hence no torchvision).

    ``ProcessorMixin`` derives a processor's parts from its ``__init__`` signature, so dropping the
    ``video_processor`` argument here is all it takes; everything else is the stock class.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


if Qwen3VLProcessor is not None:

    class Qwen3VLImageProcessor(Qwen3VLProcessor):
        """The stock ``Qwen3VLProcessor`` with image + text only (see ``Qwen2_5_VLImageProcessor``)."""

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)
else:  # pragma: no cover
    Qwen3VLImageProcessor = None  # type: ignore[assignment,misc]
_PATCH = {"qwen2_5_vl": 14, "qwen3_vl": 16}


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown backbone family {family!r}; valid: {', '.join(FAMILIES)}")
    if family == "qwen3_vl" and Qwen3VLForConditionalGeneration is None:
        raise ImportError("this transformers has no Qwen3-VL (needs transformers >= 4.57)")


def build_processor(
    tokenizer: Qwen2Tokenizer,
    family: str = "qwen2_5_vl",
    min_pixels: int = 56 * 56,
    max_pixels: int = 28 * 28 * 1280,
    image_processor: Qwen2VLImageProcessorPil | None = None,
) -> Qwen2_5_VLProcessor:
    """The stock Qwen2.5-VL / Qwen3-VL processor built without a video processor (no torchvision).

    ``min_pixels``/``max_pixels`` bound the resized image area (Qwen defaults: 3136 and 1003520); a
    128x128 sim image becomes 126x126 -> 9x9 patches of 14 px... rounded to the 28 px merge grid.
    """
    _check_family(family)
    if image_processor is None:
        patch = _PATCH[family]
        image_processor = Qwen2VLImageProcessorPil(
            patch_size=patch,
            temporal_patch_size=2,
            merge_size=2,
            size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
            image_mean=[0.48145466, 0.4578275, 0.40821073] if family == "qwen2_5_vl" else [0.5, 0.5, 0.5],
            image_std=[0.26862954, 0.26130258, 0.27577711] if family == "qwen2_5_vl" else [0.5, 0.5, 0.5],
        )
    cls = Qwen2_5_VLImageProcessor if family == "qwen2_5_vl" else Qwen3VLImageProcessor
    chat_template = getattr(tokenizer, "chat_template", None) or QWEN_VL_CHAT_TEMPLATE
    return cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template)


def load_processor(path: str | os.PathLike, family: str | None = None) -> Qwen2_5_VLProcessor:
    """Load tokenizer + image processor from a local folder and assemble the processor (no video)."""
    from transformers import AutoTokenizer

    path = Path(path)
    family = family or _family_from_config(path)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(path, local_files_only=True)
    if not getattr(tokenizer, "chat_template", None):
        # hub folders ship the template as chat_template.json ({"chat_template": ...}); ours as .jinja
        jinja, js = path / "chat_template.jinja", path / "chat_template.json"
        if jinja.is_file():
            tokenizer.chat_template = jinja.read_text()
        elif js.is_file():
            tokenizer.chat_template = json.loads(js.read_text())["chat_template"]
        else:
            raise FileNotFoundError(f"{path}: no chat template (tokenizer_config.json, chat_template.jinja/.json)")
    return build_processor(tokenizer, family=family, image_processor=image_processor)


# --------------------------------------------------------------------------------------------------
# Tiny models
# --------------------------------------------------------------------------------------------------


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
        _check_family(self.family)
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


def tiny_qwen25vl_config(tokenizer: Qwen2Tokenizer, cfg: TinyBackboneConfig | None = None) -> Qwen2_5_VLConfig:
    """A Qwen2_5_VLConfig of the tiny sizes whose vocabulary matches ``tokenizer``."""
    cfg = cfg or TinyBackboneConfig()
    text = _text_kwargs(tokenizer, cfg)
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": cfg.mrope_section()}
    vision = dict(
        depth=cfg.vision_depth,
        hidden_size=cfg.vision_hidden_size,
        intermediate_size=cfg.vision_intermediate_size,
        num_heads=cfg.vision_heads,
        out_hidden_size=cfg.hidden_size,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=56,
        fullatt_block_indexes=[cfg.vision_depth - 1],
        initializer_range=cfg.initializer_range,
    )
    return Qwen2_5_VLConfig(
        text_config=text, vision_config=vision, tie_word_embeddings=cfg.tie_word_embeddings, **_token_ids(tokenizer)
    )


def tiny_qwen3vl_config(tokenizer: Qwen2Tokenizer, cfg: TinyBackboneConfig | None = None) -> Any:
    """A Qwen3VLConfig of the tiny sizes whose vocabulary matches ``tokenizer``."""
    _check_family("qwen3_vl")
    cfg = cfg or TinyBackboneConfig(family="qwen3_vl")
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
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        num_position_embeddings=64,
        deepstack_visual_indexes=[0],
        initializer_range=cfg.initializer_range,
    )
    return Qwen3VLConfig(
        text_config=text, vision_config=vision, tie_word_embeddings=cfg.tie_word_embeddings, **_token_ids(tokenizer)
    )


def _seeded_init(config: Any, cls: type[PreTrainedModel], seed: int) -> PreTrainedModel:
    devices = []  # fork_rng keeps the caller's global RNG untouched
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model = cls(config)
    model.eval()
    return model


def build_tiny_qwen25vl(
    tokenizer: Qwen2Tokenizer, cfg: TinyBackboneConfig | None = None, freeze_vision: bool = True
) -> Qwen2_5_VLForConditionalGeneration:
    """A tiny random-initialised ``Qwen2_5_VLForConditionalGeneration`` (vision tower frozen by default)."""
    cfg = cfg or TinyBackboneConfig()
    model = _seeded_init(tiny_qwen25vl_config(tokenizer, cfg), Qwen2_5_VLForConditionalGeneration, cfg.seed)
    if freeze_vision:
        freeze_vision_tower(model)
    return model


def build_tiny_qwen3vl(
    tokenizer: Qwen2Tokenizer, cfg: TinyBackboneConfig | None = None, freeze_vision: bool = True
) -> Any:
    """A tiny random-initialised ``Qwen3VLForConditionalGeneration`` (vision tower frozen by default)."""
    cfg = cfg or TinyBackboneConfig(family="qwen3_vl")
    model = _seeded_init(tiny_qwen3vl_config(tokenizer, cfg), Qwen3VLForConditionalGeneration, cfg.seed)
    if freeze_vision:
        freeze_vision_tower(model)
    return model


# --------------------------------------------------------------------------------------------------
# Backbone bundle, freezing, loading, saving
# --------------------------------------------------------------------------------------------------


@dataclass
class Backbone:
    """A model with the tokenizer and processor that belong to it."""

    model: PreTrainedModel
    tokenizer: Qwen2Tokenizer
    processor: Qwen2_5_VLProcessor
    family: str
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def hidden_size(self) -> int:
        return int(text_config(self.model).hidden_size)

    @property
    def num_layers(self) -> int:
        return int(text_config(self.model).num_hidden_layers)


def text_config(model: PreTrainedModel) -> Any:
    """The text (LLM) sub-config of a Qwen VL model."""
    return model.config.get_text_config()


def vision_tower(model: PreTrainedModel) -> torch.nn.Module:
    """The vision encoder (ViT + merger) of a Qwen2.5-VL / Qwen3-VL model."""
    inner = getattr(model, "model", model)
    visual = getattr(inner, "visual", None)
    if visual is None:
        raise AttributeError(f"{type(model).__name__} has no vision tower at .model.visual")
    return visual


def language_layers(model: PreTrainedModel) -> torch.nn.ModuleList:
    """The decoder layers of the LLM (``hidden_states[k]`` from ``output_hidden_states`` is after layer k-1)."""
    return model.model.language_model.layers


def freeze_vision_tower(model: PreTrainedModel) -> int:
    """Freeze the vision encoder as in the paper (SFT and GRPO train the LLM only). Returns #params frozen."""
    n = 0
    for p in vision_tower(model).parameters():
        p.requires_grad_(False)
        n += p.numel()
    return n


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def build_tiny_backbone(
    family: str = "qwen2_5_vl",
    cfg: TinyBackboneConfig | None = None,
    tokenizer: Qwen2Tokenizer | None = None,
    vocab_size: int = 1024,
    min_pixels: int = 56 * 56,
    max_pixels: int = 112 * 112,
) -> Backbone:
    """Tokenizer + processor + tiny model, all built locally. Images are resized to at most 112x112."""
    _check_family(family)
    cfg = cfg or TinyBackboneConfig(family=family)
    if cfg.family != family:
        raise ValueError(f"cfg.family={cfg.family!r} but family={family!r}")
    tokenizer = tokenizer or build_tiny_tokenizer(vocab_size=vocab_size)
    processor = build_processor(tokenizer, family=family, min_pixels=min_pixels, max_pixels=max_pixels)
    build = build_tiny_qwen25vl if family == "qwen2_5_vl" else build_tiny_qwen3vl
    return Backbone(model=build(tokenizer, cfg), tokenizer=tokenizer, processor=processor, family=family)


_MODEL_TYPES = {"qwen2_5_vl": "qwen2_5_vl", "qwen3_vl": "qwen3_vl"}


def _family_from_config(path: Path) -> str:
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{path}: missing config.json (not a model folder)")
    model_type = json.loads(cfg_file.read_text()).get("model_type")
    if model_type not in _MODEL_TYPES:
        raise ValueError(
            f"{cfg_file}: model_type={model_type!r} is not supported; valid: {', '.join(_MODEL_TYPES)}"
        )
    return _MODEL_TYPES[model_type]


def check_backbone_folder(path: str | os.PathLike) -> list[str]:
    """Raise FileNotFoundError naming every missing file of a local backbone folder; returns weight files."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"backbone folder {path} does not exist (no hub downloads: give a local folder)")
    missing = [f for f in ("config.json", "preprocessor_config.json") if not (path / f).is_file()]
    has_tok = (path / "tokenizer.json").is_file() or all((path / f).is_file() for f in ("vocab.json", "merges.txt"))
    if not has_tok:
        missing.append("tokenizer.json (or vocab.json + merges.txt)")
    weights = sorted(p.name for p in path.glob("*.safetensors"))
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing += [s for s in shards if not (path / s).is_file()]
    elif not weights:
        pickles = [p.name for p in path.glob("*.bin")] + [p.name for p in path.glob("*.pt")]
        hint = f" (found pickle weights {pickles}: convert them to safetensors)" if pickles else ""
        missing.append(f"*.safetensors{hint}")
    if missing:
        raise FileNotFoundError(f"backbone folder {path} is missing: {', '.join(missing)}")
    return weights


def load_backbone(
    path_or_config: str | os.PathLike | TinyBackboneConfig,
    *,
    dtype: torch.dtype | str | None = None,
    freeze_vision: bool = True,
    device_map: str | dict | None = None,
    attn_implementation: str | None = None,
) -> Backbone:
    """Load a backbone.

    * ``TinyBackboneConfig`` -> a fresh tiny model (``build_tiny_backbone``).
    * a local folder (Qwen/Qwen2.5-VL-7B-Instruct, Qwen/Qwen3-VL-8B-Instruct as downloaded, or one of our
      checkpoints) -> transformers ``from_pretrained`` with ``local_files_only=True``,
      ``use_safetensors=True`` and ``trust_remote_code=False``. The architecture is chosen from
      ``config.json``'s ``model_type``. Missing files raise ``FileNotFoundError`` naming them.

    The vision tower is frozen unless ``freeze_vision=False``.
    """
    if isinstance(path_or_config, TinyBackboneConfig):
        backbone = build_tiny_backbone(family=path_or_config.family, cfg=path_or_config)
        if not freeze_vision:
            for p in vision_tower(backbone.model).parameters():
                p.requires_grad_(True)
        return backbone
    path = Path(path_or_config)
    check_backbone_folder(path)
    family = _family_from_config(path)
    _check_family(family)
    cls = Qwen2_5_VLForConditionalGeneration if family == "qwen2_5_vl" else Qwen3VLForConditionalGeneration
    kwargs: dict[str, Any] = dict(local_files_only=True, use_safetensors=True, trust_remote_code=False)
    if dtype is not None:
        kwargs["dtype"] = dtype
    if device_map is not None:
        kwargs["device_map"] = device_map
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    model = cls.from_pretrained(path, **kwargs)
    processor = load_processor(path, family=family)
    if len(processor.tokenizer) > model.get_input_embeddings().num_embeddings:
        raise ValueError(
            f"{path}: tokenizer has {len(processor.tokenizer)} tokens but the model embeds only "
            f"{model.get_input_embeddings().num_embeddings}; the checkpoint is inconsistent"
        )
    if freeze_vision:
        freeze_vision_tower(model)
    return Backbone(model=model, tokenizer=processor.tokenizer, processor=processor, family=family)


def save_backbone(backbone: Backbone, path: str | os.PathLike, extra_files: dict[str, str] | None = None) -> Path:
    """Write a checkpoint folder: config.json + model.safetensors + tokenizer + processor files.

    ``extra_files`` maps file name -> text content for specs saved alongside (prompt template, etc.).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    backbone.model.save_pretrained(path, safe_serialization=True)
    backbone.tokenizer.save_pretrained(path)
    backbone.processor.image_processor.save_pretrained(path)
    if backbone.tokenizer.chat_template:
        (path / "chat_template.jinja").write_text(backbone.tokenizer.chat_template)
    (path / "backbone.json").write_text(json.dumps({"family": backbone.family, **backbone.extras}, indent=2))
    for name, text in (extra_files or {}).items():
        (path / name).write_text(text)
    return path


def tiny_config_dict(cfg: TinyBackboneConfig) -> dict[str, Any]:
    return asdict(cfg)


def image_token_count(processor: Qwen2_5_VLProcessor, height: int, width: int) -> int:
    """How many ``<|image_pad|>`` tokens one image of this size becomes."""
    data = processor._get_num_multimodal_tokens(image_sizes=[[height, width]])
    return int(data["num_image_tokens"][0])


__all__: Sequence[str] = (
    "QWEN_SPECIAL_TOKENS",
    "QWEN_VL_CHAT_TEMPLATE",
    "Backbone",
    "TinyBackboneConfig",
    "build_tiny_tokenizer",
    "build_processor",
    "load_processor",
    "build_tiny_qwen25vl",
    "build_tiny_qwen3vl",
    "build_tiny_backbone",
    "tiny_qwen25vl_config",
    "tiny_qwen3vl_config",
    "load_backbone",
    "save_backbone",
    "check_backbone_folder",
    "freeze_vision_tower",
    "vision_tower",
    "language_layers",
    "text_config",
    "count_parameters",
    "image_token_count",
)
