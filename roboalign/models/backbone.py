"""The multimodal LLM backbone: Qwen2.5-VL / Qwen3-VL through transformers, tiny or paper-scale.

What lives here (the family table is :mod:`roboalign.models.families`, the tiny tokenizer and configs
:mod:`roboalign.models.tiny`; both are re-exported here):

* ``build_tiny_backbone`` / ``build_tiny_model`` — random-initialised models of the real classes
  (``Qwen2_5_VLForConditionalGeneration``, ``Qwen3VLForConditionalGeneration``) from the tiny configs.
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

import functools
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, Qwen2Tokenizer, Qwen2VLImageProcessorPil

from roboalign.models.families import FAMILIES, BackboneFamily, family_of_model_type, get_family
from roboalign.models.tiny import (
    QWEN_ADDED_TOKENS,
    QWEN_SPECIAL_TOKENS,
    QWEN_VL_CHAT_TEMPLATE,
    TinyBackboneConfig,
    build_tiny_tokenizer,
    builtin_corpus,
    tiny_model_config,
    tiny_qwen3vl_config,
    tiny_qwen25vl_config,
)

# --------------------------------------------------------------------------------------------------
# Processor (no torchvision)
# --------------------------------------------------------------------------------------------------


@functools.cache
def image_only_processor_class(family: str) -> type:
    """The family's stock processor class with image + text only (no video processor, hence no torchvision).

    ``ProcessorMixin`` derives a processor's parts from its ``__init__`` signature, so dropping the
    ``video_processor`` argument is all it takes; everything else is the stock class.
    """
    stock = get_family(family).classes()[2]

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):  # noqa: N807
        stock.__init__(self, image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    name = stock.__name__.replace("Processor", "ImageProcessor")
    return type(name, (stock,), {"__init__": __init__, "__module__": __name__, "__doc__": (
        f"The stock ``{stock.__name__}`` with image + text only (see ``image_only_processor_class``).")})


def __getattr__(name: str) -> type:
    """``Qwen2_5_VLImageProcessor`` / ``Qwen3VLImageProcessor`` by name (imports, pickling across processes)."""
    for fam in FAMILIES.values():
        if fam.processor_class.replace("Processor", "ImageProcessor") == name:
            return image_only_processor_class(fam.name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check_family(family: str) -> BackboneFamily:
    fam = get_family(family)
    fam.classes()  # ImportError naming the transformers version this family needs
    return fam


def default_image_processor(family: str, min_pixels: int, max_pixels: int) -> Qwen2VLImageProcessorPil:
    """The family's image processor (patch size, mean/std from the family table) with this pixel range."""
    fam = get_family(family)
    return Qwen2VLImageProcessorPil(
        patch_size=fam.patch_size, temporal_patch_size=fam.temporal_patch_size, merge_size=fam.merge_size,
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
        image_mean=list(fam.image_mean), image_std=list(fam.image_std))


def build_processor(
    tokenizer: Qwen2Tokenizer,
    family: str = "qwen2_5_vl",
    min_pixels: int = 56 * 56,
    max_pixels: int = 28 * 28 * 1280,
    image_processor: Qwen2VLImageProcessorPil | None = None,
) -> Any:
    """The stock Qwen2.5-VL / Qwen3-VL processor built without a video processor (no torchvision).

    ``min_pixels``/``max_pixels`` bound the resized image area (Qwen defaults: 3136 and 1003520); a
    128x128 sim image becomes 126x126 -> 9x9 patches of 14 px... rounded to the 28 px merge grid.
    """
    _check_family(family)
    if image_processor is None:
        image_processor = default_image_processor(family, min_pixels, max_pixels)
    chat_template = getattr(tokenizer, "chat_template", None) or QWEN_VL_CHAT_TEMPLATE
    cls = image_only_processor_class(family)
    return cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template)


def load_processor(path: str | os.PathLike, family: str | None = None) -> Any:
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


def _seeded_init(config: Any, cls: type[PreTrainedModel], seed: int) -> PreTrainedModel:
    devices = []  # fork_rng keeps the caller's global RNG untouched
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model = cls(config)
    model.eval()
    return model


def build_tiny_model(tokenizer: Qwen2Tokenizer, cfg: TinyBackboneConfig, freeze_vision: bool = True) -> PreTrainedModel:
    """A tiny random-initialised model of ``cfg.family``'s real class (vision tower frozen by default)."""
    model_cls = get_family(cfg.family).classes()[1]
    model = _seeded_init(tiny_model_config(tokenizer, cfg), model_cls, cfg.seed)
    if freeze_vision:
        freeze_vision_tower(model)
    return model


def build_tiny_qwen25vl(tokenizer: Qwen2Tokenizer, cfg: TinyBackboneConfig | None = None,
                        freeze_vision: bool = True) -> PreTrainedModel:
    """A tiny random-initialised ``Qwen2_5_VLForConditionalGeneration``."""
    return build_tiny_model(tokenizer, cfg or TinyBackboneConfig(), freeze_vision)


def build_tiny_qwen3vl(tokenizer: Qwen2Tokenizer, cfg: TinyBackboneConfig | None = None,
                       freeze_vision: bool = True) -> PreTrainedModel:
    """A tiny random-initialised ``Qwen3VLForConditionalGeneration``."""
    return build_tiny_model(tokenizer, cfg or TinyBackboneConfig(family="qwen3_vl"), freeze_vision)


# --------------------------------------------------------------------------------------------------
# Backbone bundle, freezing, loading, saving
# --------------------------------------------------------------------------------------------------


@dataclass
class Backbone:
    """A model with the tokenizer and processor that belong to it."""

    model: PreTrainedModel
    tokenizer: Qwen2Tokenizer
    processor: Any  # the family's image-only processor (image_only_processor_class)
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
    return Backbone(model=build_tiny_model(tokenizer, cfg), tokenizer=tokenizer, processor=processor, family=family)


def _family_from_config(path: Path) -> str:
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{path}: missing config.json (not a model folder)")
    return family_of_model_type(json.loads(cfg_file.read_text()).get("model_type"), str(cfg_file)).name


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
    cls = _check_family(family).classes()[1]
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


def image_token_count(processor: Any, height: int, width: int) -> int:
    """How many ``<|image_pad|>`` tokens one image of this size becomes."""
    data = processor._get_num_multimodal_tokens(image_sizes=[[height, width]])
    return int(data["num_image_tokens"][0])


__all__: Sequence[str] = (
    "FAMILIES",
    "QWEN_ADDED_TOKENS",
    "QWEN_SPECIAL_TOKENS",
    "builtin_corpus",
    "build_tiny_model",
    "default_image_processor",
    "image_only_processor_class",
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
