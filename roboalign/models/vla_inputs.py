"""VLA pre-processing shared by every backend: camera images + instruction + state -> model inputs.

One function (:func:`preprocess`) turns :class:`~roboalign.spec.policy_io.Observation` objects into the
numpy arrays the backbone and head take (token ids, attention mask, Qwen-VL pixel patches and grid,
normalised state, embodiment id). The torch policy, the training feature cache and the onnxruntime
backend all call it, so they cannot disagree on resizing, prompt text or state normalisation.

Images: each configured camera's (H, W, 3) uint8 RGB frame is resized to ``image_size`` with OpenCV
(INTER_AREA), then the backbone's own Qwen-VL image processor patchifies and normalises it.
Prompt: the project's one prompt template (:class:`roboalign.spec.prompts.PromptTemplate`, the same the
aligned MLLM was trained with): system message, then a user message with one image per camera (in
``cameras`` order) and the task text (instruction + robot state as text when ``prompt_state`` says so).
No generation prompt: the VLA reads the hidden states of the prompt, it does not generate.
With ``drop_system_tokens`` the head sees the hidden states from the first ``<|vision_start|>`` on
(:func:`vl_token_start`); the backbone still runs on the whole prompt.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from roboalign.spec.loader import build
from roboalign.spec.normalization import NormStats
from roboalign.spec.policy_io import Observation
from roboalign.spec.prompts import PromptTemplate

PROMPT_STATE_MODES = ("raw", "none")


@dataclass(frozen=True)
class VLAInputSpec:
    """What the VLA sees and how it is presented: cameras, image size, prompt, embodiment."""

    cameras: tuple[str, ...] = ("agentview", "wrist")
    image_size: tuple[int, int] = (112, 112)  # (H, W) every camera image is resized to (a multiple of 28)
    prompt_state: str = "raw"  # "raw": the robot state is printed in the prompt as in alignment; "none": not
    embodiment_id: int = 0
    # Hand the head only the tokens from the first image on. The system message precedes every image in a
    # causal LM, so its hidden states are identical for every frame and carry no observation information;
    # dropping them halves the head's cross-attention length with the tiny tokenizer (235 -> 107 tokens).
    drop_system_tokens: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "cameras", tuple(self.cameras))
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        if not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"VLAInputSpec.cameras must be non-empty and distinct, got {self.cameras}")
        if len(self.image_size) != 2 or min(self.image_size) < 28:
            raise ValueError(f"VLAInputSpec.image_size must be (H, W) with both >= 28, got {self.image_size}")
        if self.prompt_state not in PROMPT_STATE_MODES:
            raise ValueError(f"VLAInputSpec.prompt_state={self.prompt_state!r}; valid: {', '.join(PROMPT_STATE_MODES)}")
        if self.embodiment_id < 0:
            raise ValueError(f"VLAInputSpec.embodiment_id must be >= 0, got {self.embodiment_id}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cameras"], d["image_size"] = list(self.cameras), list(self.image_size)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "VLAInputSpec") -> VLAInputSpec:
        return build(cls, data, source)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def prompt_text(spec: VLAInputSpec, template: PromptTemplate, instruction: str, state: np.ndarray | None,
                processor: Any) -> str:
    """The chat-formatted prompt (one image placeholder per camera) for one instruction and raw state."""
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError(f"instruction must be a non-empty string, got {instruction!r}")
    shown = state if spec.prompt_state == "raw" else None
    messages = template.robot_messages(instruction, shown, n_images=len(spec.cameras))
    return processor.apply_chat_template(messages, add_generation_prompt=False, tokenize=False)


def resize_images(obs: Observation, spec: VLAInputSpec) -> list[np.ndarray]:
    """The camera images of ``obs`` in ``spec.cameras`` order, resized to ``spec.image_size`` (H, W, 3) uint8."""
    out = []
    h, w = spec.image_size
    for cam in spec.cameras:
        if cam not in obs.images:
            raise KeyError(f"observation has no image for camera {cam!r}; it has {sorted(obs.images)}")
        img = np.asarray(obs.images[cam])
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"camera {cam!r}: expected (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
        if img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        out.append(np.ascontiguousarray(img))
    return out


def normalize_state(obs: Observation, state_stats: NormStats) -> np.ndarray:
    """(S,) raw state -> (S,) float32 in [-1, 1] with the checkpoint's state stats."""
    state = np.asarray(obs.state, dtype=np.float64).reshape(-1)
    if state.shape[0] != state_stats.dim:
        raise ValueError(f"observation state has {state.shape[0]} values, the checkpoint expects "
                         f"{state_stats.dim} {state_stats.names}")
    return state_stats.normalize(state).astype(np.float32)


def preprocess(observations: Sequence[Observation], spec: VLAInputSpec, template: PromptTemplate, processor: Any,
               state_stats: NormStats) -> dict[str, np.ndarray]:
    """A batch of observations -> numpy model inputs.

    Returns input_ids (B, S) int64, attention_mask (B, S) int64 (right padding), pixel_values
    (P, C*T*p*p) float32, image_grid_thw (B*n_cam, 3) int64, mm_token_type_ids (B, S) when the processor
    gives it, state (B, S_dim) float32 normalised, embodiment (B,) int64.
    """
    if not observations:
        raise ValueError("preprocess needs at least one observation")
    texts = [prompt_text(spec, template, o.instruction, np.asarray(o.state, dtype=np.float64), processor)
             for o in observations]
    images = [img for o in observations for img in resize_images(o, spec)]
    enc = processor(text=texts, images=images, return_tensors="np", padding=True)
    out: dict[str, np.ndarray] = {
        "input_ids": np.asarray(enc["input_ids"], dtype=np.int64),
        "attention_mask": np.asarray(enc["attention_mask"], dtype=np.int64),
        "pixel_values": np.asarray(enc["pixel_values"], dtype=np.float32),
        "image_grid_thw": np.asarray(enc["image_grid_thw"], dtype=np.int64),
    }
    if "mm_token_type_ids" in enc:
        out["mm_token_type_ids"] = np.asarray(enc["mm_token_type_ids"], dtype=np.int64)
    out["state"] = np.stack([normalize_state(o, state_stats) for o in observations])  # (B, S_dim)
    out["embodiment"] = np.full((len(observations),), spec.embodiment_id, dtype=np.int64)
    return out


def vl_token_start(input_ids: np.ndarray, vision_start_id: int) -> int:
    """Index of the first ``<|vision_start|>`` token, the same in every row (the system prefix is shared)."""
    ids = np.asarray(input_ids)
    hits = ids == vision_start_id  # (B, S)
    if not hits.any(axis=1).all():
        raise ValueError("a prompt has no <|vision_start|> token: every VLA prompt holds the camera images")
    first = hits.argmax(axis=1)  # (B,)
    if (first != first[0]).any():
        raise ValueError(f"prompts start their images at different token positions {first.tolist()}; the system "
                         "prefix must be identical for every sample to drop it")
    return int(first[0])
