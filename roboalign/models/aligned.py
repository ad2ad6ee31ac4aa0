"""The aligned MLLM checkpoint: backbone + every spec its outputs depend on, in one folder.

Written by SFT and GRPO (``roboalign train sft|grpo``), read by GRPO, the align benchmark and the VLA
(which puts its action head on the frozen aligned backbone). Folder layout::

    config.json  model.safetensors  generation_config.json      the transformers model (safetensors only)
    tokenizer.json  tokenizer_config.json  chat_template.jinja    the tokenizer (with the action tokens)
    preprocessor_config.json                                      the Qwen-VL image processor
    backbone.json                                                 the family (qwen2_5_vl | qwen3_vl)
    action_vocab.json                                             <ACTION_START>/<ACTION_END>/<FAST_i> ids
    fast/fast_config.json  fast/tokenizer.json                    the FAST tokenizer (subfolder: its
                                                                  tokenizer.json is not the LLM's)
    norm_stats.json                                               action normalisation (FAST input)
    prompt_template.json                                          THE prompt template
    align_spec.json                                               data spec: cameras, action space, chunk…

``load_aligned`` checks every file first and names all missing ones in one error.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from roboalign.models.backbone import Backbone, check_backbone_folder, load_backbone, save_backbone
from roboalign.spec.action_vocab import FILE_NAME as ACTION_VOCAB_FILE
from roboalign.spec.action_vocab import ActionVocab
from roboalign.spec.fast import CONFIG_FILE as FAST_CONFIG_FILE
from roboalign.spec.fast import TOKENIZER_FILE as FAST_TOKENIZER_FILE
from roboalign.spec.fast import FastTokenizer
from roboalign.spec.folder_kind import wrong_kind
from roboalign.spec.loader import build, load_spec
from roboalign.spec.normalization import FILE_NAME as NORM_FILE
from roboalign.spec.normalization import NormStats
from roboalign.spec.prompts import FILE_NAME as PROMPT_FILE
from roboalign.spec.prompts import PromptTemplate, check_markers

SPEC_FILE = "align_spec.json"
FAST_DIR = "fast"
FORMAT = "roboalign.align_spec/1"
STAGES = ("base", "sft", "grpo")


@dataclass(frozen=True)
class AlignSpec:
    """How robot samples were made for this checkpoint (the VLA and the runtime must do the same)."""

    action_space: str
    cameras: tuple[str, ...]
    chunk_len: int
    action_dim: int
    state_dim: int
    stage: str = "base"
    stride: int = 1
    dataset: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "cameras", tuple(self.cameras))
        if self.stage not in STAGES:
            raise ValueError(f"AlignSpec.stage={self.stage!r}; valid: {', '.join(STAGES)}")
        if not self.cameras:
            raise ValueError("AlignSpec.cameras must not be empty")
        for name in ("chunk_len", "action_dim", "state_dim", "stride"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"AlignSpec.{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self), "cameras": list(self.cameras)}

    @classmethod
    def load(cls, path: str | os.PathLike) -> AlignSpec:
        data, source = load_spec(path, FORMAT, SPEC_FILE, "align spec")
        return build(cls, data, source)


@dataclass
class AlignedModel:
    """An MLLM that speaks FAST actions, with its specs."""

    backbone: Backbone
    action_vocab: ActionVocab
    fast: FastTokenizer
    norm: NormStats
    template: PromptTemplate
    spec: AlignSpec

    def with_stage(self, stage: str) -> AlignedModel:
        spec = AlignSpec(**{**asdict(self.spec), "stage": stage})
        return AlignedModel(self.backbone, self.action_vocab, self.fast, self.norm, self.template, spec)


def save_specs(aligned: AlignedModel, path: str | os.PathLike) -> Path:
    """Write every spec file (not the model) into ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    aligned.action_vocab.save(path)
    aligned.fast.save(path / FAST_DIR)
    aligned.norm.save(path / NORM_FILE)
    aligned.template.save(path)
    (path / SPEC_FILE).write_text(json.dumps(aligned.spec.to_dict(), indent=2) + "\n")
    return path


def save_aligned(aligned: AlignedModel, path: str | os.PathLike) -> Path:
    """Write the whole checkpoint folder (model + tokenizer + processor + specs)."""
    path = save_backbone(aligned.backbone, path)
    return save_specs(aligned, path)


def missing_files(path: str | os.PathLike) -> list[str]:
    """Every missing file of an aligned checkpoint folder (empty when complete)."""
    path = Path(path)
    missing = []
    try:
        check_backbone_folder(path)
    except FileNotFoundError as e:
        missing.append(str(e))
    for rel in (ACTION_VOCAB_FILE, f"{FAST_DIR}/{FAST_CONFIG_FILE}", f"{FAST_DIR}/{FAST_TOKENIZER_FILE}", NORM_FILE,
                PROMPT_FILE, SPEC_FILE):
        if not (path / rel).is_file():
            missing.append(rel)
    return missing


def load_aligned(path: str | os.PathLike, freeze_vision: bool = True, **backbone_kwargs: Any) -> AlignedModel:
    """Load an aligned checkpoint folder; raises FileNotFoundError naming every missing file."""
    path = Path(path)
    missing = missing_files(path)
    if missing:
        raise FileNotFoundError(f"aligned checkpoint {path} is incomplete; missing: {'; '.join(missing)}"
                                f"{wrong_kind(path, 'aligned')}")
    backbone = load_backbone(path, freeze_vision=freeze_vision, **backbone_kwargs)
    vocab = ActionVocab.load(path, tokenizer=backbone.tokenizer)
    fast = FastTokenizer.load(path / FAST_DIR)
    if vocab.spec.num_fast_tokens != fast.vocab_size:
        raise ValueError(f"{path}: action vocabulary has {vocab.spec.num_fast_tokens} FAST tokens, the FAST "
                         f"tokenizer {fast.vocab_size}")
    rows = backbone.model.get_input_embeddings().num_embeddings
    if max(vocab.llm_ids) >= rows:
        raise ValueError(f"{path}: action token id {max(vocab.llm_ids)} has no embedding row (model has {rows})")
    template = check_markers(PromptTemplate.load(path), vocab.spec, str(path))
    return AlignedModel(backbone, vocab, fast, NormStats.load(path / NORM_FILE), template, AlignSpec.load(path))
