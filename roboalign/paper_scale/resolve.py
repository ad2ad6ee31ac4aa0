"""Which architecture a config's model field means: tiny, a local folder's config.json, or a published model.

``tiny`` / ``tiny-qwen3`` are built as training builds them; an existing folder is read (its files
checked, its config.json compared with the published values); a missing folder is an error unless
``allow_missing``, then the published architecture its name implies is used, or the model of the SFT
config whose ``output_dir`` it is (a GRPO ``init_checkpoint``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from roboalign.models.families import family_of_model_type, family_of_tiny_name
from roboalign.paper_scale.architectures import ARCHITECTURES, architecture_from_name, compare_with_facts


@dataclass
class Resolved:
    """A backbone to build on the meta device."""

    family: str
    config: Any  # a transformers config object (tiny) or a config.json dict
    tokenizer_len: int
    source: str  # what the architecture was taken from (for the report)
    has_action_vocab: bool = False  # a checkpoint of ours: the action tokens are already in its vocabulary
    notes: tuple[str, ...] = ()
    tiny: bool = False
    published_params: float = 0.0  # billions, when built from the published architecture


def resolve_tiny(name: str, overrides: dict[str, Any] | None = None) -> Resolved | None:
    fam = family_of_tiny_name(name)
    if fam is None:
        return None
    from roboalign.models.tiny import TinyBackboneConfig, build_tiny_tokenizer, tiny_model_config

    tok = build_tiny_tokenizer()
    cfg = tiny_model_config(tok, TinyBackboneConfig(family=fam.name, **(overrides or {})))
    return Resolved(fam.name, cfg, len(tok), f"tiny {fam.name} (roboalign.models.tiny)", tiny=True)


def _tokenizer_len(path: Path) -> int:
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False))


def resolve_folder(path: Path, where: str) -> Resolved:
    """A local model folder: its files and config.json (the VLA checkpoint's backbone/ for a VLA folder)."""
    from roboalign.models.backbone import check_backbone_folder

    if (path / "backbone").is_dir() and (path / "head.safetensors").is_file():
        path = path / "backbone"
    try:
        check_backbone_folder(path)
    except FileNotFoundError as e:
        raise ValueError(f"{where}: {e}") from None
    config = json.loads((path / "config.json").read_text())
    family = family_of_model_type(config.get("model_type"), str(path / "config.json")).name
    notes = []
    for arch in ARCHITECTURES.values():
        text = config.get("text_config", config)
        if arch.family == family and text.get("hidden_size") == arch.hidden_size:
            diffs = compare_with_facts(config, arch)
            notes.append(f"{path}/config.json differs from the published {arch.name}: {'; '.join(diffs)}" if diffs
                         else f"{path}/config.json matches the published {arch.name} ({arch.source})")
    return Resolved(family, config, _tokenizer_len(path), f"{path}/config.json",
                    has_action_vocab=(path / "action_vocab.json").is_file() or (path.parent / "action_vocab.json").is_file(),
                    notes=tuple(notes))


def sft_config_with_output(path: str, config_dir: Path) -> Path | None:
    """The SFT config in ``config_dir`` whose ``output_dir`` is ``path`` (where a GRPO run starts)."""
    for cand in sorted(config_dir.glob("*.yaml")):
        data = yaml.safe_load(cand.read_text()) or {}
        if isinstance(data, dict) and data.get("kind") == "sft" and str(data.get("output_dir", "")).rstrip("/") == \
                str(path).rstrip("/"):
            return cand
    return None


def resolve_missing(path: str, field_name: str, where: str, allow_missing: bool) -> Resolved:
    """A model folder that is not here: an error, or (``allow_missing``) the architecture its name implies."""
    if not allow_missing:
        raise ValueError(f"{where}: {field_name}={path!r} does not exist: give a local model folder (safetensors; "
                         "nothing is downloaded), or pass --allow-missing to check the architecture its name implies")
    arch = architecture_from_name(path)
    if arch is None:
        raise ValueError(f"{where}: {field_name}={path!r} does not exist and its name names none of the published "
                         f"architectures ({', '.join(ARCHITECTURES)}); give a local model folder")
    return Resolved(arch.family, arch.config_dict(), arch.tokenizer_len, f"published {arch.name} config.json "
                    f"({arch.source}) — {field_name} {path!r} is not on this machine",
                    published_params=arch.published_params)


def resolve_backbone(name_or_path: str, field_name: str, where: str, allow_missing: bool,
                     tiny_overrides: dict[str, Any] | None = None) -> Resolved:
    """See module docstring."""
    tiny = resolve_tiny(name_or_path, tiny_overrides)
    if tiny is not None:
        return tiny
    path = Path(name_or_path)
    if path.exists():
        return resolve_folder(path, where)
    return resolve_missing(name_or_path, field_name, where, allow_missing)
