"""The VLA: the frozen (aligned) MLLM truncated at layer k + the flow-matching action head.

Backbone truncation: the LLM's decoder-layer list is cut to its first k layers (the upper layers are
deleted, never run), and the final RMSNorm is replaced by the identity when k < N, so the truncated
model's ``last_hidden_state`` equals ``hidden_states[k]`` of the full model's ``output_hidden_states``
(0 = embeddings incl. the scattered image features, k = output of decoder layer k; k = N keeps the
final norm, exactly like ``hidden_states[N]``). Vision tower and LLM are frozen and in eval mode.

Checkpoint folder (``save_vla`` / ``load_vla``), everything the policy needs to act:

- ``config.json``       format tag, head config, backbone info (family, total layers N, layer k), input
                        spec (cameras, image size, prompt-state mode, embodiment id), action space name.
- ``head.safetensors``  action-head weights.
- ``backbone/``         the truncated backbone (layers 0..k-1 only, a loadable Qwen-VL folder with
                        tokenizer and image processor, written by ``backbone.save_backbone``). We embed it
                        rather than reference the source folder: the head is only valid for these exact
                        frozen weights, and a path reference silently breaks when the source moves or is
                        re-trained. For the 7B model this costs k/N of its size (~10 GB at k=18).
- ``norm_stats_action.json`` / ``norm_stats_state.json``  :class:`roboalign.spec.normalization.NormStats`.
- ``prompt_template.json``  :class:`roboalign.spec.prompts.PromptTemplate` (the backbone prompt).
- ``action_space.json`` :class:`roboalign.spec.action_space.ActionSpace` (names, units, limits, dt).
- ``tasks.json``        :class:`roboalign.spec.tasks.TaskSet` (the tasks the policy was trained on).

``load_vla`` checks every file and the consistency between them (dims, k, widths) and raises naming the
offending file and field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from roboalign.models.action_head import ActionHeadConfig, FlowMatchingActionHead
from roboalign.models.backbone import Backbone, language_layers, load_backbone, save_backbone, text_config
from roboalign.models.vla_inputs import VLAInputSpec, preprocess, vl_token_start
from roboalign.spec.action_space import ActionSpace
from roboalign.spec.folder_kind import wrong_kind
from roboalign.spec.loader import build, check_format, read_spec_file
from roboalign.spec.normalization import NormStats
from roboalign.spec.policy_io import Observation
from roboalign.spec.prompts import FILE_NAME as PROMPT_FILE
from roboalign.spec.prompts import PromptTemplate
from roboalign.spec.tasks import DEFAULT_TASKS, TaskSet

FORMAT = "roboalign.vla/1"
ACTION_SPACES = ("eef_delta", "joint_position")
HEAD_FILE = "head.safetensors"
BACKBONE_DIR = "backbone"
ACTION_STATS_FILE = "norm_stats_action.json"
STATE_STATS_FILE = "norm_stats_state.json"
ACTION_SPACE_FILE = "action_space.json"
TASKS_FILE = "tasks.json"
REQUIRED_FILES = ("config.json", HEAD_FILE, ACTION_STATS_FILE, STATE_STATS_FILE, ACTION_SPACE_FILE, TASKS_FILE,
                  PROMPT_FILE)


class TruncatedBackbone(nn.Module):
    """A Qwen-VL model cut after decoder layer k; ``forward`` returns ``hidden_states[k]`` (B, S, D)."""

    def __init__(self, backbone: Backbone, layer: int, total_layers: int | None = None) -> None:
        super().__init__()
        layers = language_layers(backbone.model)
        total = int(total_layers if total_layers is not None else len(layers))
        if not 0 <= layer <= total:
            raise ValueError(f"backbone layer k={layer} is out of range: the backbone has {total} layers (0..{total})")
        if len(layers) < layer:
            raise ValueError(f"backbone holds only {len(layers)} decoder layers, cannot read layer {layer}")
        del layers[layer:]  # the unused upper layers are gone: never run, never stored
        lm = backbone.model.model.language_model
        self._final_norm = [lm.norm]  # kept (unregistered) so the saved backbone folder stays complete
        if layer < total:
            lm.norm = nn.Identity()  # hidden_states[k] for k < N is the raw residual stream
        tc = text_config(backbone.model)
        tc.num_hidden_layers = layer
        if getattr(tc, "layer_types", None) is not None:
            tc.layer_types = list(tc.layer_types)[:layer]
        backbone.model.requires_grad_(False)
        backbone.model.eval()
        self.backbone = backbone
        self.model = backbone.model
        self.layer = layer
        self.total_layers = total

    def train(self, mode: bool = True) -> TruncatedBackbone:  # frozen: always eval (no dropout)
        super().train(False)
        return self

    @property
    def hidden_size(self) -> int:
        return int(text_config(self.model).hidden_size)

    @contextmanager
    def with_final_norm(self) -> Iterator[None]:
        """Temporarily put the final norm back (saving a loadable folder without 'missing weight' noise)."""
        lm = self.model.model.language_model
        current = lm.norm
        lm.norm = self._final_norm[0]
        try:
            yield
        finally:
            lm.norm = current

    @property
    def num_kept_layers(self) -> int:
        return len(language_layers(self.model))

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor,
                image_grid_thw: torch.Tensor, mm_token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        kwargs: dict[str, Any] = {}
        if mm_token_type_ids is not None:
            kwargs["mm_token_type_ids"] = mm_token_type_ids
        out = self.model.model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                               image_grid_thw=image_grid_thw, use_cache=False, **kwargs)
        return out.last_hidden_state  # (B, S, D)


@dataclass
class VLAConfig:
    """Everything besides weights that defines a VLA checkpoint."""

    head: ActionHeadConfig
    inputs: VLAInputSpec = field(default_factory=VLAInputSpec)
    action_space: str = "eef_delta"
    backbone_family: str = "qwen2_5_vl"
    backbone_total_layers: int = 28
    backbone_source: str = ""  # where the backbone came from (informational)

    def __post_init__(self) -> None:
        if self.action_space not in ACTION_SPACES:
            raise ValueError(f"VLAConfig.action_space={self.action_space!r}; valid: {', '.join(ACTION_SPACES)}")
        if not 0 <= self.head.backbone_layer <= self.backbone_total_layers:
            raise ValueError(f"VLAConfig: head.backbone_layer={self.head.backbone_layer} not in "
                             f"0..{self.backbone_total_layers}")
        if self.inputs.embodiment_id >= self.head.num_embodiments:
            raise ValueError(f"VLAConfig: embodiment_id={self.inputs.embodiment_id} but the head has "
                             f"{self.head.num_embodiments} embodiments")

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "head": self.head.to_dict(), "inputs": self.inputs.to_dict(),
                "action_space": self.action_space, "backbone_family": self.backbone_family,
                "backbone_total_layers": self.backbone_total_layers, "backbone_source": self.backbone_source}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config.json") -> VLAConfig:
        return build(cls, check_format(data, FORMAT, source, "VLA config"), source)


class VLA(nn.Module):
    """Frozen truncated backbone + trainable flow-matching head + the specs to (un)normalise."""

    def __init__(self, cfg: VLAConfig, backbone: TruncatedBackbone, action_stats: NormStats, state_stats: NormStats,
                 action_space: ActionSpace, tasks: TaskSet | None = None, head: FlowMatchingActionHead | None = None,
                 template: PromptTemplate | None = None) -> None:
        super().__init__()
        if backbone.layer != cfg.head.backbone_layer:
            raise ValueError(f"backbone truncated at layer {backbone.layer} but head reads {cfg.head.backbone_layer}")
        if backbone.hidden_size != cfg.head.backbone_dim:
            raise ValueError(f"backbone hidden size {backbone.hidden_size} != head.backbone_dim {cfg.head.backbone_dim}")
        if action_stats.dim != cfg.head.action_dim:
            raise ValueError(f"action norm stats have {action_stats.dim} dims, head.action_dim={cfg.head.action_dim}")
        if state_stats.dim != cfg.head.state_dim:
            raise ValueError(f"state norm stats have {state_stats.dim} dims, head.state_dim={cfg.head.state_dim}")
        if action_space.name != cfg.action_space or action_space.dim != cfg.head.action_dim:
            raise ValueError(f"action space {action_space.name!r} ({action_space.dim} dims) does not match the config "
                             f"({cfg.action_space!r}, head.action_dim={cfg.head.action_dim})")
        if tuple(action_stats.names) != tuple(action_space.names):
            raise ValueError(f"action norm stats names {action_stats.names} != action space names {action_space.names}")
        self.cfg = cfg
        self.backbone = backbone
        self.head = head if head is not None else FlowMatchingActionHead(cfg.head)
        self.action_stats = action_stats
        self.state_stats = state_stats
        self.action_space = action_space
        self.tasks = tasks if tasks is not None else DEFAULT_TASKS
        self.template = template or PromptTemplate()

    @property
    def processor(self) -> Any:
        return self.backbone.backbone.processor

    def preprocess(self, observations: Sequence[Observation]) -> dict[str, np.ndarray]:
        return preprocess(observations, self.cfg.inputs, self.template, self.processor, self.state_stats)

    @property
    def vision_start_id(self) -> int:
        return int(self.backbone.backbone.tokenizer.convert_tokens_to_ids("<|vision_start|>"))

    def token_start(self, inputs: dict[str, np.ndarray]) -> int:
        """First token handed to the head (see ``VLAInputSpec.drop_system_tokens``)."""
        if not self.cfg.inputs.drop_system_tokens:
            return 0
        return vl_token_start(inputs["input_ids"], self.vision_start_id)

    def features(self, inputs: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's VL tokens: layer-k hidden states (B, S', D) and their mask (B, S') (from ``token_start``)."""
        t = {k: torch.from_numpy(v) for k, v in inputs.items()}
        feats = self.backbone(t["input_ids"], t["attention_mask"], t["pixel_values"], t["image_grid_thw"],
                              t.get("mm_token_type_ids"))
        start = self.token_start(inputs)
        return feats[:, start:], t["attention_mask"][:, start:]

    @torch.no_grad()
    def predict_normalized(self, inputs: dict[str, np.ndarray], noise: np.ndarray) -> np.ndarray:
        """Normalised action chunks (B, H, A) for preprocessed inputs and given noise (B, H, A)."""
        feats, mask = self.features(inputs)
        out = self.head(feats, mask, torch.from_numpy(inputs["state"]), torch.from_numpy(noise.astype(np.float32)),
                        torch.from_numpy(inputs["embodiment"]))
        return out.numpy()

    def unnormalize_actions(self, actions: np.ndarray) -> np.ndarray:
        return self.action_stats.unnormalize(actions).astype(np.float32)


# ---------------------------------------------------------------------------------------------- build / IO
def build_vla(backbone: Backbone, head_cfg: ActionHeadConfig, action_stats: NormStats, state_stats: NormStats,
              action_space: ActionSpace, inputs: VLAInputSpec | None = None, tasks: TaskSet | None = None,
              backbone_source: str = "", seed: int = 0, template: PromptTemplate | None = None) -> VLA:
    """A fresh VLA: truncates ``backbone`` in place at ``head_cfg.backbone_layer`` and initialises the head."""
    total = backbone.num_layers
    cfg = VLAConfig(head=head_cfg, inputs=inputs or VLAInputSpec(), action_space=action_space.name,
                    backbone_family=backbone.family, backbone_total_layers=total, backbone_source=backbone_source)
    trunc = TruncatedBackbone(backbone, head_cfg.backbone_layer, total)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = FlowMatchingActionHead(head_cfg)
    return VLA(cfg, trunc, action_stats, state_stats, action_space, tasks=tasks, head=head, template=template)


def save_head(head: FlowMatchingActionHead, path: str | Path) -> None:
    save_file({k: v.detach().contiguous() for k, v in head.state_dict().items()}, str(path))


def save_vla(vla: VLA, path: str | Path, save_backbone_weights: bool = True) -> Path:
    """Write the checkpoint folder described in the module docstring."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_head(vla.head, path / HEAD_FILE)
    vla.action_stats.save(path / ACTION_STATS_FILE)
    vla.state_stats.save(path / STATE_STATS_FILE)
    vla.template.save(path)
    vla.action_space.save(path / ACTION_SPACE_FILE)
    vla.tasks.save(path / TASKS_FILE)
    if save_backbone_weights:
        with vla.backbone.with_final_norm():
            save_backbone(vla.backbone.backbone, path / BACKBONE_DIR)
    (path / "config.json").write_text(json.dumps(vla.cfg.to_dict(), indent=2))
    return path


def check_vla_folder(path: str | Path) -> None:
    """Raise FileNotFoundError naming every missing file of a VLA checkpoint folder."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"VLA checkpoint folder {path} does not exist")
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if not (path / BACKBONE_DIR).is_dir():
        missing.append(f"{BACKBONE_DIR}/")
    if missing:
        raise FileNotFoundError(f"VLA checkpoint {path} is missing: {', '.join(missing)}{wrong_kind(path, 'vla')}")


def load_vla_config(path: str | Path) -> VLAConfig:
    cfg_file = Path(path) / "config.json"
    return VLAConfig.from_dict(read_spec_file(cfg_file, "VLA config file"), source=str(cfg_file))


def load_head(cfg: ActionHeadConfig, file: str | Path) -> FlowMatchingActionHead:
    head = FlowMatchingActionHead(cfg)
    state = load_file(str(file))
    expected = head.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{file}: does not match the head config: missing tensors {missing[:5]}"
                         f"{'...' if len(missing) > 5 else ''}, unexpected tensors {unexpected[:5]}")
    bad = [k for k in expected if tuple(expected[k].shape) != tuple(state[k].shape)]
    if bad:
        k = bad[0]
        raise ValueError(f"{file}: tensor {k!r} has shape {tuple(state[k].shape)}, the config in config.json "
                         f"expects {tuple(expected[k].shape)} ({len(bad)} mismatching tensors)")
    head.load_state_dict(state)
    head.eval()
    return head


def load_vla(path: str | Path, backbone: Backbone | None = None) -> VLA:
    """Load a checkpoint folder; ``backbone`` overrides the embedded one (it must have >= k layers)."""
    path = Path(path)
    check_vla_folder(path)
    cfg = load_vla_config(path)
    action_stats = NormStats.load(path / ACTION_STATS_FILE)
    state_stats = NormStats.load(path / STATE_STATS_FILE)
    action_space = ActionSpace.load(path / ACTION_SPACE_FILE)
    tasks = TaskSet.load(path / TASKS_FILE)
    template = PromptTemplate.load(path / PROMPT_FILE)
    if backbone is None:
        backbone = load_backbone(path / BACKBONE_DIR)
    if backbone.family != cfg.backbone_family:
        raise ValueError(f"{path}: config.json says backbone family {cfg.backbone_family!r}, "
                         f"{path / BACKBONE_DIR} holds {backbone.family!r}")
    if backbone.hidden_size != cfg.head.backbone_dim:
        raise ValueError(f"{path}: backbone hidden size {backbone.hidden_size} != head.backbone_dim "
                         f"{cfg.head.backbone_dim} in config.json")
    trunc = TruncatedBackbone(backbone, cfg.head.backbone_layer, cfg.backbone_total_layers)
    head = load_head(cfg.head, path / HEAD_FILE)
    try:
        vla = VLA(cfg, trunc, action_stats, state_stats, action_space, tasks=tasks, head=head, template=template)
    except ValueError as e:
        raise ValueError(f"{path}: inconsistent checkpoint: {e}") from None
    vla.eval()
    return vla
