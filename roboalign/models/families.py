"""The table of backbone families (Qwen2.5-VL, Qwen3-VL): classes, image processing, export support.

Everything that differs between the families lives in one :class:`BackboneFamily` row; code elsewhere
looks the row up (``get_family``) instead of branching on the family name. The transformers classes are
named, not imported, so reading the table never imports a model class (``classes()`` resolves them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# CLIP statistics, used by the Qwen2-VL / Qwen2.5-VL image processors (their preprocessor_config.json)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class BackboneFamily:
    """One multimodal LLM family: what its config.json says, which classes build it, how images enter."""

    name: str  # our name, also config.json's model_type
    config_class: str  # transformers attribute names
    model_class: str
    processor_class: str
    patch_size: int  # ViT patch (px); images are resized to multiples of patch_size * merge_size
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    tiny_name: str  # ``name_or_path`` that builds the tiny random model of this family (training configs)
    min_transformers: str  # first transformers release with the classes
    temporal_patch_size: int = 2
    merge_size: int = 2
    # the vision tower hands intermediate ViT features to the first LLM layers (Qwen3-VL "DeepStack")
    deepstack: bool = False
    exportable: bool = True  # roboalign.export has graph wrappers for this family

    @property
    def factor(self) -> int:
        """Image sides are resized to multiples of this (patch x spatial merge)."""
        return self.patch_size * self.merge_size

    def classes(self) -> tuple[Any, Any, Any]:
        """(config class, model class, processor class) from the installed transformers."""
        import transformers

        try:
            return tuple(getattr(transformers, n) for n in (self.config_class, self.model_class,
                                                             self.processor_class))  # type: ignore[return-value]
        except AttributeError:
            raise ImportError(f"transformers {transformers.__version__} has no {self.model_class} "
                              f"(backbone family {self.name!r} needs transformers >= {self.min_transformers})") from None


FAMILIES: dict[str, BackboneFamily] = {
    "qwen2_5_vl": BackboneFamily(
        name="qwen2_5_vl", config_class="Qwen2_5_VLConfig", model_class="Qwen2_5_VLForConditionalGeneration",
        processor_class="Qwen2_5_VLProcessor", patch_size=14, image_mean=CLIP_MEAN, image_std=CLIP_STD,
        tiny_name="tiny", min_transformers="4.49"),
    "qwen3_vl": BackboneFamily(
        name="qwen3_vl", config_class="Qwen3VLConfig", model_class="Qwen3VLForConditionalGeneration",
        processor_class="Qwen3VLProcessor", patch_size=16, image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5),
        tiny_name="tiny-qwen3", min_transformers="4.57", deepstack=True),
}


def get_family(name: str) -> BackboneFamily:
    """The table row of ``name``; a ValueError lists the valid families."""
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown backbone family {name!r}; valid: {', '.join(FAMILIES)}") from None


def family_of_model_type(model_type: Any, source: str = "config.json") -> BackboneFamily:
    """The family of a config.json ``model_type`` (ValueError naming ``source`` and the valid types)."""
    if model_type not in FAMILIES:
        raise ValueError(f"{source}: model_type={model_type!r} is not supported; valid: {', '.join(FAMILIES)}")
    return FAMILIES[model_type]


def family_of_tiny_name(name: str) -> BackboneFamily | None:
    """The family a ``tiny`` / ``tiny-qwen3`` model name builds, or None for anything else (a folder)."""
    return next((f for f in FAMILIES.values() if f.tiny_name == name), None)
