"""Run configurations of alignment training (SFT, GRPO) as frozen dataclasses, loadable from YAML.

A YAML file has the sections ``model:``, ``data:`` and the run's own keys at top level (see
``training/configs/*.yaml``: tiny CPU configs beside the Qwen2.5-VL-7B / Qwen3-VL-8B 8-GPU ones; the same
code runs both, only values differ). Unknown keys are errors that list the valid ones. Options of
TRL's ``SFTConfig``/``GRPOConfig`` we don't model go in ``trainer_overrides`` and are passed through.

The VLA head's run (``VLATrainConfig``, ``kind: vla``) is a flat set of keys. Every file is read through
``roboalign.spec.loader`` (unknown keys refused listing the valid ones, nested sections on top of their defaults);
command-line ``--set key=value`` overrides (``training/overrides.py``) apply to the same raw mapping first.

Defaults are the paper's (arXiv 2603.21341): SFT cosine LR 2e-5, warmup 3 %, 1 epoch, vision frozen; GRPO LR
1e-6 constant, 5 generations, KL (low-variance k3 estimator) coef 1e-2, temperature 1.0, top_p 1.0, max
response 2048 tokens, weight decay 1e-2, grad-norm clip 1.0 (EasyR1 defaults where the paper is silent).
``dataset: default`` is the demonstration set in the project's cache, collected on first use
(``roboalign.sim.default_dataset``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from roboalign.models.action_head import ActionHeadConfig
from roboalign.sim.default_dataset import DEFAULT as DEFAULT_DATASET
from roboalign.spec.loader import SpecError, build, read_spec_file
from roboalign.spec.rewards import REWARDS
from roboalign.training.data_builders import REASONING_DETAILS, ExtraDataset, SampleConfig

DTYPES = ("float32", "bfloat16", "float16")
ACTION_SPACES = ("eef_delta", "joint_position")
FAST_PRESETS = ("fast", "fast+")
MIXTURE_SOURCES = ("robot", "vqa")
HEAD_PRESETS = ("tiny", "paper")
EMBODIMENT = {"eef_delta": 0, "joint_position": 1}  # LIBERO sim Panda / real Franka FR3


def _check_choice(owner: str, name: str, value: Any, valid: tuple[Any, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{owner}.{name}={value!r}; valid: {', '.join(map(str, valid))}")


@dataclass(frozen=True)
class ModelConfig:
    """Which backbone: ``tiny`` / ``tiny-qwen3`` (built locally) or a local folder (HF layout, safetensors)."""

    name_or_path: str = "tiny"
    tiny: dict[str, Any] = field(default_factory=dict)  # TinyBackboneConfig overrides
    dtype: str = "float32"
    attn_implementation: str | None = None
    freeze_vision: bool = True
    min_pixels: int = 56 * 56
    max_pixels: int = 112 * 112  # tiny default; Qwen uses up to 1280*28*28

    def __post_init__(self) -> None:
        _check_choice("ModelConfig", "dtype", self.dtype, DTYPES)
        if not self.name_or_path.startswith("tiny") and self.tiny:
            raise ValueError("ModelConfig.tiny overrides only apply to name_or_path: tiny | tiny-qwen3")
        if self.name_or_path.startswith("tiny"):
            _check_choice("ModelConfig", "name_or_path", self.name_or_path, ("tiny", "tiny-qwen3", "<local folder>"))

    @property
    def is_tiny(self) -> bool:
        return self.name_or_path in ("tiny", "tiny-qwen3")


@dataclass(frozen=True)
class DataConfig:
    """Where episodes come from and how samples are made (see training/data_builders.py)."""

    dataset: str = DEFAULT_DATASET  # a folder, or ``default`` (the project cache's set, collected on first use)
    split: str = "train"
    val_fraction: float = 0.1  # episodes held out per task (EpisodeDataset.split)
    action_space: str = "eef_delta"
    cameras: tuple[str, ...] = ("agentview",)
    chunk_len: int = 8
    stride: int = 4
    max_episodes: int | None = None
    fast_tokenizer: str | None = None  # a fitted FAST folder; None: fit on the training chunks
    fast_preset: str = "fast"
    fast_vocab_size: int | None = None  # None: the preset's (1024 / 2048)
    fast_scale: float | None = None  # None: the preset's (10)
    mixture: dict[str, float] = field(default_factory=lambda: {"robot": 1.0, "vqa": 0.5})
    vqa_per_frame: int = 1
    reasoning: str = "full"  # robot samples' reasoning: full | phase (no offsets) | object (target only)
    extra_datasets: tuple[ExtraDataset, ...] = ()
    include_state: bool = True
    max_samples: int | None = None  # cap after mixing (GRPO: 12.8 K in the paper)
    seed: int = 0

    def __post_init__(self) -> None:
        _check_choice("DataConfig", "action_space", self.action_space, ACTION_SPACES)
        _check_choice("DataConfig", "fast_preset", self.fast_preset, FAST_PRESETS)
        _check_choice("DataConfig", "reasoning", self.reasoning, REASONING_DETAILS)
        object.__setattr__(self, "cameras", tuple(self.cameras))
        extras = tuple(e if isinstance(e, ExtraDataset) else ExtraDataset(**e) for e in self.extra_datasets)
        object.__setattr__(self, "extra_datasets", extras)
        for name in self.mixture:
            _check_choice("DataConfig", f"mixture[{name!r}]", name, MIXTURE_SOURCES)
        if self.chunk_len < 1 or self.stride < 1:
            raise ValueError("DataConfig.chunk_len and stride must be >= 1")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"DataConfig.val_fraction must be in [0, 1), got {self.val_fraction}")


def sample_config(data: DataConfig, reward: str = "action") -> SampleConfig:
    """How SFT / GRPO make samples from the episodes of ``data`` (cameras, chunk length, stride, reasoning) for
    the run's ``reward`` (the robot samples' answer: FAST tokens, language action or pixel waypoints)."""
    return SampleConfig(cameras=data.cameras, chunk_len=data.chunk_len, stride=data.stride,
                        vqa_per_frame=data.vqa_per_frame, seed=data.seed, reasoning=data.reasoning, answer=reward)


@dataclass(frozen=True)
class SFTRunConfig:
    """Stage 1: SFT to reasoning + answers (TRL SFTTrainer): FAST tokens, or the RQ2 alternatives by ``reward``."""

    output_dir: str = "runs/sft_tiny"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    reward: str = "action"  # the answer the robot samples teach: action | language | trajectory2d
    learning_rate: float = 2e-5
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.03
    num_train_epochs: float = 1.0
    max_steps: int = -1
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int | None = 2
    dataloader_num_workers: int = 0
    max_length: int | None = None
    seed: int = 0
    resume_from_checkpoint: str | bool | None = None
    trainer_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_choice("SFTRunConfig", "reward", self.reward, REWARDS)
        _check_choice("SFTRunConfig", "lr_scheduler_type", self.lr_scheduler_type,
                      ("cosine", "linear", "constant", "constant_with_warmup"))
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")


@dataclass(frozen=True)
class GRPORunConfig:
    """Stage 3: GRPO on the format + accuracy reward (TRL GRPOTrainer), from an SFT checkpoint.

    ``reward`` picks the accuracy term (``roboalign.spec.rewards``): FAST prefix accuracy (``action``, the
    paper's), the language action (``language``) or the image-space gripper waypoints (``trajectory2d``)."""

    init_checkpoint: str = "runs/sft_tiny"
    output_dir: str = "runs/grpo_tiny"
    data: DataConfig = field(default_factory=lambda: DataConfig(mixture={"robot": 1.0}))
    reward: str = "action"  # action | language | trajectory2d (the SFT checkpoint's answer format)
    learning_rate: float = 1e-6
    lr_scheduler_type: str = "constant"
    num_train_epochs: float = 1.0
    max_steps: int = -1
    num_generations: int = 5
    per_device_train_batch_size: int = 10  # completions per device per step (multiple of num_generations)
    gradient_accumulation_steps: int = 1
    steps_per_generation: int | None = None
    beta: float = 1e-2  # KL coefficient (TRL's k3 = EasyR1's low_var_kl)
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_completion_length: int = 2048
    epsilon: float = 0.2
    epsilon_high: float = 0.3  # EasyR1 clip_ratio_high
    loss_type: str = "dapo"  # token-mean over the batch, as EasyR1's default loss_avg_mode
    scale_rewards: str = "group"
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False
    freeze_vision: bool = False  # the paper's GRPO trains all parameters
    use_vllm: bool = False
    vllm_mode: str = "colocate"
    logging_steps: int = 5
    save_steps: int = 200
    save_total_limit: int | None = 2
    seed: int = 0
    resume_from_checkpoint: str | bool | None = None
    trainer_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_choice("GRPORunConfig", "reward", self.reward, REWARDS)
        _check_choice("GRPORunConfig", "loss_type", self.loss_type, ("grpo", "dapo", "dr_grpo", "bnpo"))
        _check_choice("GRPORunConfig", "scale_rewards", self.scale_rewards, ("group", "batch", "none"))
        _check_choice("GRPORunConfig", "vllm_mode", self.vllm_mode, ("colocate", "server"))
        if self.num_generations < 2:
            raise ValueError(f"num_generations must be >= 2 (GRPO needs a group), got {self.num_generations}")
        if self.per_device_train_batch_size % self.num_generations and self.steps_per_generation is None:
            raise ValueError(
                f"per_device_train_batch_size={self.per_device_train_batch_size} must be a multiple of "
                f"num_generations={self.num_generations} (or set steps_per_generation)"
            )
        if not 0 < self.top_p <= 1 or self.temperature <= 0:
            raise ValueError("top_p must be in (0, 1] and temperature > 0")
        if self.beta < 0:
            raise ValueError(f"beta (KL coefficient) must be >= 0, got {self.beta}")


@dataclass(frozen=True)
class VLATrainConfig:
    """One VLA training run (YAML keys = field names; unknown keys are errors listing the valid ones)."""

    dataset: str = DEFAULT_DATASET
    output_dir: str = "runs/vla_tiny"
    backbone: str = "tiny"  # tiny | tiny-qwen3 | a local backbone folder (base, SFT or GRPO checkpoint)
    backbone_layer: int | None = None  # None: 1 for the tiny 2-layer backbone, 18 for paper scale
    head: str = "tiny"  # tiny | paper (GR00T-N1.5 sizes)
    head_overrides: dict[str, Any] = field(default_factory=dict)  # any ActionHeadConfig field
    action_space: str = "eef_delta"
    tasks: tuple[str, ...] | None = None  # None: every task in the dataset
    val_fraction: float = 0.1
    max_episodes_per_task: int | None = None
    frame_stride: int = 1
    cameras: tuple[str, ...] = ("agentview", "wrist")
    image_size: tuple[int, int] = (112, 112)
    prompt_state: str = "raw"
    drop_system_tokens: bool = True
    cache_features: bool = True
    cache_dir: str | None = None  # None: <output_dir>/feature_cache
    feature_batch: int = 32
    steps: int = 3000
    batch_size: int = 64
    learning_rate: float = 3e-4
    weight_decay: float = 1e-4
    warmup_ratio: float = 0.05
    max_grad_norm: float = 1.0
    eval_every: int = 250
    val_frames: int = 512
    seed: int = 0
    num_threads: int = 1

    def __post_init__(self) -> None:
        for name in ("cameras", "image_size"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.tasks is not None:
            object.__setattr__(self, "tasks", tuple(self.tasks))
        if self.head not in HEAD_PRESETS:
            raise ValueError(f"VLATrainConfig.head={self.head!r}; valid: {', '.join(HEAD_PRESETS)}")
        if self.action_space not in EMBODIMENT:
            raise ValueError(f"VLATrainConfig.action_space={self.action_space!r}; valid: {', '.join(EMBODIMENT)}")
        valid_head = {f.name for f in fields(ActionHeadConfig)}
        bad = sorted(set(self.head_overrides) - valid_head)
        if bad:
            raise ValueError(f"VLATrainConfig.head_overrides: unknown fields {bad}; valid: {sorted(valid_head)}")
        for name in ("frame_stride", "feature_batch", "steps", "batch_size", "eval_every", "val_frames",
                     "num_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"VLATrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"VLATrainConfig.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.learning_rate <= 0 or not 0 <= self.warmup_ratio < 1:
            raise ValueError("VLATrainConfig: learning_rate must be > 0 and warmup_ratio in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


RunConfig = SFTRunConfig | GRPORunConfig | VLATrainConfig
RUN_CONFIGS: dict[str, type] = {"sft": SFTRunConfig, "grpo": GRPORunConfig, "vla": VLATrainConfig}


def config_from_dict(kind: str, data: dict[str, Any], where: str = "config") -> RunConfig:
    _check_choice("config", "kind", kind, tuple(RUN_CONFIGS))
    return build(RUN_CONFIGS[kind], {k: v for k, v in data.items() if k != "kind"}, where)


def read_config(path: str | Path, kind: str | None = None) -> tuple[str, dict[str, Any]]:
    """The kind and raw mapping of a YAML run config; ``kind`` (sft|grpo|vla) defaults to the file's ``kind:`` key."""
    data = read_spec_file(path, "config file") or {}
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    kind = kind or data.get("kind")
    if kind is None:
        raise SpecError(f"{path}: no 'kind:' key; valid kinds: {', '.join(RUN_CONFIGS)}")
    if data.get("kind", kind) != kind:
        raise SpecError(f"{path}: kind {data['kind']!r} but {kind!r} was requested")
    _check_choice("config", "kind", kind, tuple(RUN_CONFIGS))
    return kind, data


def load_config(path: str | Path, kind: str | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML run config. ``kind`` (sft|grpo|vla) defaults to the file's ``kind:`` key; ``overrides`` are
    typed values of top-level fields (``--set key=value`` texts: ``roboalign.training.overrides.load_with_sets``)."""
    kind, data = read_config(path, kind)
    cfg = config_from_dict(kind, data, where=str(path))
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON/YAML-safe dict of a run config (saved beside the checkpoint as ``run_config.json``)."""
    out = dataclasses.asdict(cfg)
    out["data"]["cameras"] = list(out["data"]["cameras"])
    out["data"]["extra_datasets"] = [dict(e) for e in out["data"]["extra_datasets"]]
    return out
