"""Fast, vectorised pre/post-processing shared by every runtime backend (torch, onnxruntime, tensorrt).

It computes exactly what :func:`roboalign.models.vla_inputs.preprocess` (the training-time definition,
built on the stock Qwen-VL processor) computes, but in a form cheap enough to run on every control step:

* images: OpenCV ``INTER_AREA`` to the checkpoint's ``image_size`` (as in training), then the Qwen-VL
  image processor's own steps — ``smart_resize`` target, PIL bicubic resize (only when the target differs),
  rescale, normalise, patchify — done with numpy on all cameras of all observations at once. The stock
  processor patchifies image by image in Python and re-derives its configuration on every call.
* text: the chat template is rendered once with a sentinel where the task text goes; each step only
  formats the task text (instruction + state, from the one :class:`~roboalign.spec.prompts.PromptTemplate`)
  and tokenizes the full prompt with the Rust tokenizer. Image placeholders are expanded once.
* the 3-D multimodal RoPE position ids (Qwen2.5-VL ``get_rope_index``) in numpy, so graph backends get
  them as an input instead of recomputing them with Python loops inside the model.
* state normalisation and action un-normalisation with the checkpoint's :class:`NormStats`.

Equality with the stock path is a test (tests/test_runtime.py), not an assumption.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np
from PIL import Image

from roboalign.models.vla_inputs import VLAInputSpec, vl_token_start
from roboalign.runtime.checkpoint_specs import RuntimeSpecs
from roboalign.spec.loader import build
from roboalign.spec.normalization import NormStats
from roboalign.spec.policy_io import Observation
from roboalign.spec.prompts import PromptTemplate

IMAGE_PAD = "<|image_pad|>"
VISION_START = "<|vision_start|>"
_SENTINEL = "\x00ROBOALIGN_TASK_TEXT\x00"


def draw_noise(rng: np.random.Generator, batch: int, horizon: int, action_dim: int) -> np.ndarray:
    """Standard-normal flow-matching start point (B, H, A) float32 — the same draw for every backend."""
    return rng.standard_normal((batch, horizon, action_dim)).astype(np.float32)


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen-VL's target size: both sides multiples of ``factor``, area within [min_pixels, max_pixels]."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"image aspect ratio {max(height, width) / min(height, width):.1f} exceeds 200")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class ImageProcessorSpec:
    """The parameters of a Qwen-VL image processor (what ``preprocessor_config.json`` holds)."""

    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    image_mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    image_std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    rescale_factor: float = 1 / 255
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280
    resample: int = 3  # PIL bicubic
    do_resize: bool = True
    do_rescale: bool = True
    do_normalize: bool = True

    @classmethod
    def from_image_processor(cls, ip: Any) -> ImageProcessorSpec:
        size = dict(ip.size) if ip.size is not None else {}
        return cls(patch_size=int(ip.patch_size), temporal_patch_size=int(ip.temporal_patch_size),
                   merge_size=int(ip.merge_size), image_mean=tuple(float(v) for v in ip.image_mean),
                   image_std=tuple(float(v) for v in ip.image_std), rescale_factor=float(ip.rescale_factor),
                   min_pixels=int(size.get("shortest_edge", cls.min_pixels)),
                   max_pixels=int(size.get("longest_edge", cls.max_pixels)),
                   resample=int(ip.resample), do_resize=bool(ip.do_resize), do_rescale=bool(ip.do_rescale),
                   do_normalize=bool(ip.do_normalize))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageProcessorSpec:
        spec = build(cls, data, "ImageProcessorSpec")
        return replace(spec, image_mean=tuple(map(float, spec.image_mean)), image_std=tuple(map(float, spec.image_std)))

    def target_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        h, w = image_size
        if not self.do_resize:
            return h, w
        return smart_resize(h, w, self.patch_size * self.merge_size, self.min_pixels, self.max_pixels)

    def grid(self, image_size: tuple[int, int]) -> tuple[int, int, int]:
        """(t, h, w) patch grid of one still image of ``image_size`` after resizing."""
        h, w = self.target_size(image_size)
        return 1, h // self.patch_size, w // self.patch_size

    def tokens_per_image(self, image_size: tuple[int, int]) -> int:
        t, h, w = self.grid(image_size)
        return t * h * w // self.merge_size**2

    @property
    def patch_dim(self) -> int:
        return 3 * self.temporal_patch_size * self.patch_size**2

    def lut(self) -> np.ndarray:
        """(3, 256) float32: uint8 value -> rescaled + normalised value per channel, computed with the
        processor's own arithmetic (float64 rescale, float32 cast, float32 (x - mean) / std)."""
        v = np.arange(256, dtype=np.float64)
        v = (v * self.rescale_factor).astype(np.float32) if self.do_rescale else v.astype(np.float32)
        if not self.do_normalize:
            return np.tile(v, (3, 1))
        mean = np.asarray(self.image_mean, dtype=np.float32)[:, None]
        std = np.asarray(self.image_std, dtype=np.float32)[:, None]
        return ((v[None, :] - mean) / std).astype(np.float32)


def patchify(frames: np.ndarray, spec: ImageProcessorSpec, lut: np.ndarray | None = None) -> np.ndarray:
    """(N, H, W, 3) uint8 frames (already at the processor's target size) -> (N, P, C*T*p*p) float32
    pixel patches in the Qwen-VL layout (merge blocks; per patch (C, T, p, p), the still frame repeated T
    times), bit-identical to the stock image processor's ``pixel_values``."""
    lut = spec.lut() if lut is None else lut
    n, hh, ww, c = frames.shape
    p, m, tp = spec.patch_size, spec.merge_size, spec.temporal_patch_size
    gh, gw = hh // p, ww // p
    x = lut.reshape(-1)[frames.astype(np.intp) + np.arange(c, dtype=np.intp) * 256]  # (N, H, W, C) float32
    x = x.reshape(n, gh // m, m, p, gw // m, m, p, c).transpose(0, 1, 4, 2, 5, 7, 3, 6)  # (N, A, B, m, m, C, p, p)
    x = np.broadcast_to(x[:, :, :, :, :, :, None], (*x.shape[:6], tp, p, p))  # repeat the still frame in time
    return np.ascontiguousarray(x).reshape(n, gh * gw, c * tp * p * p)


@dataclass
class ModelInputs:
    """Everything every backend needs for one batch (numpy, shapes in comments)."""

    input_ids: np.ndarray  # (B, S) int64, right-padded
    attention_mask: np.ndarray  # (B, S) int64
    position_ids: np.ndarray  # (3, B, S) int64, multimodal RoPE positions (0 at padding)
    mm_token_type_ids: np.ndarray  # (B, S) int64, 1 at image tokens
    frames: np.ndarray  # (N, h, w, 3) uint8 at the processor's target size, N = B * n_cameras (spec order)
    image_grid_thw: np.ndarray  # (N, 3) int64
    state: np.ndarray  # (B, S_dim) float32, normalised
    embodiment: np.ndarray  # (B,) int64
    token_start: int  # first token handed to the head (0 or the first <|vision_start|>)
    image_spec: ImageProcessorSpec
    lut: np.ndarray | None = None  # (3, 256) normalisation table of image_spec (cached by the Preprocessor)

    @property
    def batch(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def pixel_values(self) -> np.ndarray:
        """(N, P, C*T*p*p) float32 Qwen-VL patches of :attr:`frames` (computed on demand: graph backends
        take the uint8 frames and do this inside the vision graph)."""
        return patchify(self.frames, self.image_spec, self.lut)

    def as_reference_dict(self) -> dict[str, np.ndarray]:
        """The layout of :func:`roboalign.models.vla_inputs.preprocess` (pixel patches flattened)."""
        pv = self.pixel_values
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask,
                "pixel_values": pv.reshape(-1, pv.shape[-1]),
                "image_grid_thw": self.image_grid_thw, "mm_token_type_ids": self.mm_token_type_ids,
                "state": self.state, "embodiment": self.embodiment}


def mrope_position_ids(input_ids: np.ndarray, attention_mask: np.ndarray, image_token_id: int,
                       grid_thw: tuple[int, int, int], merge_size: int) -> np.ndarray:
    """Qwen2.5-VL multimodal RoPE positions (3, B, S) for still images that all share one patch grid.

    Text tokens advance all three axes together; an image block of (t, h/m, w/m) tokens gets
    (start, start + row, start + col) and the next text starts at ``start + max(h, w) / m`` (as in
    transformers' ``Qwen2_5_VLModel.get_rope_index`` with ``time_interval = 1`` for images).
    """
    b, s = input_ids.shape
    t, gh, gw = grid_thw
    lh, lw = gh // merge_size, gw // merge_size
    per_image = t * lh * lw
    rows = np.repeat(np.arange(lh), lw)  # (lh*lw,)
    cols = np.tile(np.arange(lw), lh)  # (lh*lw,)
    tpos = np.repeat(np.arange(t), lh * lw)  # (per_image,)
    out = np.zeros((3, b, s), dtype=np.int64)
    for i in range(b):
        valid = np.flatnonzero(attention_mask[i])  # right padding: 0..L-1, but be general
        ids = input_ids[i, valid]
        is_img = ids == image_token_id
        edges = np.flatnonzero(np.diff(is_img.astype(np.int8))) + 1
        bounds = np.concatenate([[0], edges, [len(ids)]])
        pos = np.empty((3, len(ids)), dtype=np.int64)
        cur = 0
        for a, z in zip(bounds[:-1], bounds[1:], strict=True):
            if not is_img[a]:
                pos[:, a:z] = cur + np.arange(z - a)
                cur += z - a
                continue
            n = z - a
            if n % per_image:
                raise ValueError(f"row {i}: an image block holds {n} image tokens, not a multiple of "
                                 f"{per_image} (grid {grid_thw}, merge {merge_size})")
            for k in range(n // per_image):
                sl = slice(a + k * per_image, a + (k + 1) * per_image)
                pos[0, sl] = cur + tpos
                pos[1, sl] = cur + np.tile(rows, t)
                pos[2, sl] = cur + np.tile(cols, t)
                cur += max(gh, gw) // merge_size
        out[:, i, valid] = pos
    return out


class Preprocessor:
    """Observations -> :class:`ModelInputs`, and normalised actions -> raw actions (see module docstring)."""

    @classmethod
    def from_specs(cls, specs: RuntimeSpecs, tokenizer: Any, image_spec: ImageProcessorSpec) -> Preprocessor:
        return cls(specs.inputs, specs.template, tokenizer, image_spec, specs.state_stats, specs.action_stats)

    def __init__(self, inputs: VLAInputSpec, template: PromptTemplate, tokenizer: Any, image_spec: ImageProcessorSpec,
                 state_stats: NormStats, action_stats: NormStats) -> None:
        self.spec = inputs
        self.template = template
        self.tokenizer = tokenizer
        self.image_spec = image_spec
        self.state_stats = state_stats
        self.action_stats = action_stats
        self.grid = image_spec.grid(inputs.image_size)
        self.target_size = image_spec.target_size(inputs.image_size)
        self.tokens_per_image = image_spec.tokens_per_image(inputs.image_size)
        self.num_patches = int(np.prod(self.grid))
        self.image_token_id = self._token_id(IMAGE_PAD)
        self.vision_start_id = self._token_id(VISION_START)
        self.pad_token_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self._prefix, self._suffix = self._render_template()
        self._encoder = getattr(tokenizer, "backend_tokenizer", None)
        self._lut = image_spec.lut()
        # The task text sits between two added tokens (<|vision_end|> ... <|im_end|>), which the tokenizer
        # splits on before BPE, so prefix/suffix ids can be cached and only the task text encoded per step.
        self._prefix_ids = self.encode(self._prefix)
        self._suffix_ids = self.encode(self._suffix)
        self._split_ok = self._boundaries_are_added_tokens() and self._split_encoding_matches()

    def _token_id(self, token: str) -> int:
        tid = self.tokenizer.convert_tokens_to_ids(token)
        if tid is None or tid == self.tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {token} token; it is not a Qwen-VL tokenizer")
        return int(tid)

    def _render_template(self) -> tuple[str, str]:
        messages = self.template.robot_messages("x", None, n_images=len(self.spec.cameras))
        text_items = [c for c in messages[-1]["content"] if c.get("type") == "text"]
        if len(text_items) != 1:
            raise ValueError("the prompt template's robot message must hold exactly one text item")
        text_items[0]["text"] = _SENTINEL
        rendered = self.tokenizer.apply_chat_template(messages, add_generation_prompt=False, tokenize=False)
        if rendered.count(_SENTINEL) != 1:
            raise ValueError("the chat template did not place the task text exactly once")
        rendered = rendered.replace(IMAGE_PAD, IMAGE_PAD * self.tokens_per_image)
        prefix, suffix = rendered.split(_SENTINEL)
        return prefix, suffix

    # ------------------------------------------------------------------ pieces
    def prompt(self, instruction: str, state: np.ndarray) -> str:
        """The full prompt text (image placeholders expanded) for one instruction and raw state."""
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError(f"instruction must be a non-empty string, got {instruction!r}")
        shown = state if self.spec.prompt_state == "raw" else None
        return self._prefix + self.template.robot_text(instruction, shown) + self._suffix

    def _boundaries_are_added_tokens(self) -> bool:
        added = list(self.tokenizer.get_added_vocab())
        return any(self._prefix.endswith(t) for t in added) and any(self._suffix.startswith(t) for t in added)

    def _split_encoding_matches(self) -> bool:
        sample = self.template.robot_text("pick up the milk, then: place it!", np.linspace(-1.5, 2.25, 8))
        return self.encode(self._prefix + sample + self._suffix) == self._prefix_ids + self.encode(sample) + self._suffix_ids

    def prompt_ids(self, instruction: str, state: np.ndarray) -> list[int]:
        """Token ids of :meth:`prompt` (only the task text is tokenized per call when that is exact)."""
        if not self._split_ok:
            return self.encode(self.prompt(instruction, state))
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError(f"instruction must be a non-empty string, got {instruction!r}")
        shown = state if self.spec.prompt_state == "raw" else None
        return self._prefix_ids + self.encode(self.template.robot_text(instruction, shown)) + self._suffix_ids

    def encode(self, text: str) -> list[int]:
        if self._encoder is not None:
            return self._encoder.encode(text).ids
        return list(self.tokenizer(text)["input_ids"])

    def frames(self, observations: Sequence[Observation]) -> np.ndarray:
        """(N, h, w, 3) uint8: every camera of every observation (cameras in spec order), resized like training
        (OpenCV INTER_AREA to ``image_size``) and then like the Qwen-VL processor (PIL resample to its target)."""
        h, w = self.spec.image_size
        th, tw = self.target_size
        out = np.empty((len(observations) * len(self.spec.cameras), th, tw, 3), dtype=np.uint8)
        k = 0
        for o in observations:
            for cam in self.spec.cameras:
                if cam not in o.images:
                    raise KeyError(f"observation has no image for camera {cam!r}; it has {sorted(o.images)}")
                img = o.images[cam]
                if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                    got = (img.shape, img.dtype) if isinstance(img, np.ndarray) else type(img).__name__
                    raise ValueError(f"camera {cam!r}: expected an (H, W, 3) uint8 RGB array, got {got}")
                if img.shape[:2] != (h, w):
                    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
                if (th, tw) != (h, w):
                    img = self._pil_resize(np.ascontiguousarray(img), th, tw)
                out[k] = img
                k += 1
        return out

    def _pil_resize(self, img: np.ndarray, th: int, tw: int) -> np.ndarray:
        return np.asarray(Image.fromarray(img).resize((tw, th), resample=self.image_spec.resample))

    def state(self, observations: Sequence[Observation]) -> np.ndarray:
        rows = []
        for o in observations:
            s = np.asarray(o.state, dtype=np.float64).reshape(-1)
            if s.shape[0] != self.state_stats.dim:
                raise ValueError(f"observation state has {s.shape[0]} values, the checkpoint expects "
                                 f"{self.state_stats.dim} {self.state_stats.names}")
            rows.append(s)
        return self.state_stats.normalize(np.stack(rows)).astype(np.float32)  # (B, S_dim)

    # ------------------------------------------------------------------ the whole step
    def __call__(self, observations: Sequence[Observation]) -> ModelInputs:
        if not observations:
            raise ValueError("preprocess needs at least one observation")
        state = self.state(observations)
        ids = [self.prompt_ids(o.instruction, np.asarray(o.state, dtype=np.float64)) for o in observations]
        s = max(len(r) for r in ids)
        input_ids = np.full((len(ids), s), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(ids), s), dtype=np.int64)
        for i, r in enumerate(ids):
            input_ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        frames = self.frames(observations)
        grid = np.tile(np.asarray(self.grid, dtype=np.int64), (frames.shape[0], 1))  # (N, 3)
        mm = (input_ids == self.image_token_id).astype(np.int64)
        pos = mrope_position_ids(input_ids, mask, self.image_token_id, self.grid, self.image_spec.merge_size)
        start = vl_token_start(input_ids, self.vision_start_id) if self.spec.drop_system_tokens else 0
        embodiment = np.full((len(ids),), self.spec.embodiment_id, dtype=np.int64)
        return ModelInputs(input_ids=input_ids, attention_mask=mask, position_ids=pos, mm_token_type_ids=mm,
                           frames=frames, image_grid_thw=grid, state=state, embodiment=embodiment,
                           token_start=start, image_spec=self.image_spec, lut=self._lut)

    def unnormalize(self, actions: np.ndarray) -> np.ndarray:
        """(..., A) normalised actions -> raw units of the action space (float32)."""
        return self.action_stats.unnormalize(actions).astype(np.float32)


_DEFAULT_INSTRUCTIONS = ("pick up the alphabet soup and place it in the basket", "pick up the ketchup")


def _scene(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A table-top-like RGB frame: shaded background, a table plane and a few coloured objects."""
    y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    base = rng.uniform(40, 200, size=3).astype(np.float32)
    img = (base * (0.6 + 0.4 * y) + rng.normal(0, 4, size=(h, w, 3))).clip(0, 255).astype(np.uint8)
    cv2.rectangle(img, (0, h // 2), (w - 1, h - 1), tuple(int(v) for v in rng.integers(60, 220, 3)), thickness=-1)
    for _ in range(int(rng.integers(2, 5))):
        c = tuple(int(v) for v in rng.integers(0, 255, 3))
        x0, y0 = int(rng.integers(0, w - 8)), int(rng.integers(h // 3, h - 8))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x0, y0), (x0 + int(rng.integers(6, w // 4)), y0 + int(rng.integers(6, h // 4))), c, -1)
        else:
            cv2.circle(img, (x0, y0), int(rng.integers(3, max(4, w // 10))), c, -1)
    return img


def synthetic_observations(specs: RuntimeSpecs, batch: int, seed: int = 0) -> list[Observation]:
    """``batch`` observations in the checkpoint's format: every camera, a state within the training
    range (between the state stats' 1st and 99th percentiles), instructions from the task set."""
    rng = np.random.default_rng(seed)
    instructions = [t.instruction(domain="sim") for t in specs.tasks] or list(_DEFAULT_INSTRUCTIONS)
    instructions = sorted(set(instructions), key=len)  # shortest and longest first -> padding in a batch
    order = [instructions[0], instructions[-1]] + instructions[1:-1]
    h, w = specs.inputs.image_size
    out = []
    for i in range(batch):
        state = rng.uniform(specs.state_stats.q01, specs.state_stats.q99).astype(np.float32)
        images = {cam: _scene(rng, h, w) for cam in specs.cameras}
        out.append(Observation(images=images, state=state, instruction=order[i % len(order)], stamp=float(i)))
    return out
