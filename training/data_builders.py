"""Training samples for alignment (SFT and GRPO) built from simulated episodes, plus extra datasets by path.

Two kinds of samples come from each recorded episode (``EpisodeView``: images per camera, robot state,
actions, instruction, and the privileged sim facts the scripted expert used):

* **robot** samples (the paper's SFT robot data): at step ``t`` the prompt holds the camera images, the instruction
  and the robot state; the target is
  ``<think>{reasoning}</think><answer><ACTION_START>{FAST tokens of actions[t:t+H]}<ACTION_END></answer>``.
  The action chunk is normalised with the dataset's ``NormStats`` and encoded by the FAST tokenizer.
  Only complete chunks are used (``t + H <= T``); there is no padding of the episode tail.
  With ``reward: language`` / ``trajectory2d`` (``SampleConfig.answer``; the RQ2 alternatives) the same
  samples answer ``<answer>{language action}</answer>`` (``language_action``: the motion the scripted expert
  performs from step t, by its phase) or ``<answer>[(x1, y1), ..., (xK, yK)]</answer>`` (``pixel_waypoints``:
  the gripper's pixel position in the first camera's image at steps t+1 … t+K, K = chunk length, the last
  recorded position repeated past the episode's end), and carry the truth in ``target_text`` /
  ``target_points`` for the GRPO reward (``roboalign.spec.rewards``); ``target_fast`` is kept in every mode.
* **vqa** samples: spatial questions about the same frames (where is the object relative to the gripper,
  how far, is the gripper open, which phase) with short answers.

Reasoning text — our stand-in for the paper's Gemini-generated reasoning. The paper asked a large MLLM
to explain each robot sample; no such model runs here, so the reasoning is *derived from privileged
simulator facts* at that step: which object is the target, where it is relative to the gripper (cm along
the table axes), where the basket is relative to the object, whether the gripper is open, and the
expert's phase with what comes next. It is true by construction (a strong teacher), short, and
templated; its value is that the model must verbalise the scene before acting, as in RoboAlign.

Mixture: each source (``robot``, ``vqa``, and every extra dataset) has a weight = how many times each of
its samples is used on average (1.0 = once, 0.5 = a random half, 2.0 = twice). Extra datasets are JSONL
files (one sample per line, images as paths relative to the file):

* VQA row:   ``{"images": ["img/0.png"], "question": "...", "answer": "...", "reasoning": "..."?}``
* robot row: ``{"kind": "robot", "images": [...], "instruction": "...", "state": [...],
  "actions": [[...], ...] (H x D, raw units), "reasoning": "..."}``

A row whose action chunk cannot be encoded, a missing image, or a malformed row raises ``DataError``
naming the file/episode and row/step; nothing is skipped silently.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from roboalign.spec.action_vocab import ActionVocab
from roboalign.spec.fast import FastConfig, FastTokenizer
from roboalign.spec.normalization import NormStats
from roboalign.spec.prompts import PromptTemplate
from roboalign.spec.rewards import REWARDS, TARGET_COLUMNS, format_points


class DataError(ValueError):
    """A training sample cannot be built; the message names the episode/file and step/row."""


# ----------------------------------------------------------------------------------------------------
# The episode as the builders see it
# ----------------------------------------------------------------------------------------------------


@dataclass
class EpisodeView:
    """One episode, arrays indexed by step ``t`` (length T). Privileged fields may be None (no reasoning).

    images: camera -> (T, H, W, 3) uint8, right way up. states: (T, S). actions: (T, D) raw units in the
    chosen action space. phases: (T,) expert phase names. object_pos/target_pos/eef_pos: (T, 3) metres,
    world frame (x forward, y left, z up). gripper_open: (T,) bool. gripper_pixels: camera -> (T, 2) the
    gripper's (x, y) pixel position in that camera's image (x right, y down), where the renderer knows it.
    """

    name: str
    instruction: str
    images: dict[str, np.ndarray]
    states: np.ndarray
    actions: np.ndarray
    object_name: str = "object"
    target_name: str = "basket"
    phases: Sequence[str] | None = None
    object_pos: np.ndarray | None = None
    target_pos: np.ndarray | None = None
    eef_pos: np.ndarray | None = None
    gripper_open: np.ndarray | None = None
    task: str = ""
    gripper_pixels: dict[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        t = len(self.actions)
        if self.actions.ndim != 2 or t == 0:
            raise DataError(f"episode {self.name}: actions must be a non-empty (T, D) array, got {self.actions.shape}")
        if len(self.states) != t:
            raise DataError(f"episode {self.name}: {len(self.states)} states for {t} actions")
        for cam, imgs in self.images.items():
            if imgs is None or len(imgs) != t:
                n = None if imgs is None else len(imgs)
                raise DataError(f"episode {self.name}: camera {cam!r} has {n} images for {t} steps")
        for name in ("object_pos", "target_pos", "eef_pos", "gripper_open", "phases"):
            v = getattr(self, name)
            if v is not None and len(v) != t:
                raise DataError(f"episode {self.name}: {name} has {len(v)} entries for {t} steps")
        for cam, px in (self.gripper_pixels or {}).items():
            if np.shape(px) != (t, 2):
                raise DataError(f"episode {self.name}: gripper_pixels[{cam!r}] has shape {np.shape(px)}, "
                                f"expected ({t}, 2)")

    @property
    def length(self) -> int:
        return len(self.actions)

    def image(self, camera: str, t: int) -> Image.Image:
        if camera not in self.images:
            raise DataError(
                f"episode {self.name}: camera {camera!r} missing at step {t}; cameras: {sorted(self.images)}"
            )
        img = np.asarray(self.images[camera][t])
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise DataError(
                f"episode {self.name}: image {camera!r} at step {t} is not (H, W, 3) uint8: {img.shape} {img.dtype}"
            )
        return Image.fromarray(img)


# ----------------------------------------------------------------------------------------------------
# Reasoning and VQA text from privileged facts
# ----------------------------------------------------------------------------------------------------

# What the expert does after each phase (phase names of the scripted expert; unknown ones are generic).
NEXT_STEP = {
    "approach": "move above the {obj} with the gripper open",
    "descend": "lower the gripper around the {obj}",
    "grasp": "close the gripper on the {obj}",
    "lift": "lift the {obj} off the table",
    "carry": "carry the {obj} over the {tgt}",
    "lower": "lower the {obj} into the {tgt}",
    "release": "open the gripper to release the {obj}",
    "retreat": "move the gripper up and away",
    "done": "hold still, the task is done",
}
_AXES = (("forward", "backward"), ("left", "right"), ("above", "below"))


def direction_words(delta: np.ndarray, dead_zone_cm: float = 2.0) -> str:
    """(3,) metres -> e.g. ``"12 cm forward, 3 cm right, 20 cm below"`` (axes under the dead zone omitted)."""
    parts = []
    for (pos, neg), v in zip(_AXES, np.asarray(delta, dtype=np.float64) * 100.0, strict=True):
        if abs(v) >= dead_zone_cm:
            parts.append(f"{round(abs(v))} cm {pos if v > 0 else neg}")
    return ", ".join(parts) if parts else "right at"


def coarse_direction(delta: np.ndarray, dead_zone_cm: float = 2.0) -> str:
    """(3,) metres -> e.g. ``"forward, right and below"`` (for short VQA answers)."""
    words = [
        (pos if v > 0 else neg)
        for (pos, neg), v in zip(_AXES, np.asarray(delta, dtype=np.float64) * 100.0, strict=True)
        if abs(v) >= dead_zone_cm
    ]
    if not words:
        return "aligned with the gripper"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


REASONING_DETAILS = ("full", "phase", "object")  # all facts / no distances / the target object only


def reasoning_text(ep: EpisodeView, t: int, detail: str = "full") -> str:
    """The reasoning of a robot sample at step ``t``, from privileged facts (see module doc).

    ``detail``: ``full`` (object, offsets in cm, gripper, phase), ``phase`` (no offsets) or ``object``."""
    if detail not in REASONING_DETAILS:
        raise ValueError(f"reasoning detail {detail!r}; valid: {', '.join(REASONING_DETAILS)}")
    obj, tgt = ep.object_name, ep.target_name
    parts = [f"The target is the {obj}."]
    if detail == "object":
        return parts[0]
    if detail == "full" and ep.object_pos is not None and ep.eef_pos is not None:
        parts.append(f"It is {direction_words(ep.object_pos[t] - ep.eef_pos[t])} the gripper.")
    if detail == "full" and ep.target_pos is not None and ep.object_pos is not None:
        parts.append(f"The {tgt} is {direction_words(ep.target_pos[t] - ep.object_pos[t])} it.")
    if ep.gripper_open is not None:
        parts.append("The gripper is open." if bool(ep.gripper_open[t]) else "The gripper is closed.")
    if ep.phases is not None:
        phase = str(ep.phases[t])
        nxt = NEXT_STEP.get(phase, "continue the task").format(obj=obj, tgt=tgt)
        parts.append(f"Phase: {phase}. Next: {nxt}.")
    return " ".join(parts)


def vqa_items(ep: EpisodeView, t: int) -> list[tuple[str, str, str]]:
    """(question, reasoning, answer) triples about the frame at step ``t`` that the privileged facts answer."""
    obj, tgt = ep.object_name, ep.target_name
    items = []
    if ep.object_pos is not None and ep.eef_pos is not None:
        d = ep.object_pos[t] - ep.eef_pos[t]
        items.append((
            f"Where is the {obj} relative to the gripper?",
            f"The {obj} is {direction_words(d)} the gripper.",
            coarse_direction(d),
        ))
        items.append((
            f"How far is the {obj} from the gripper, in cm?",
            f"The offset is {direction_words(d)}.",
            f"{round(float(np.linalg.norm(d)) * 100)} cm",
        ))
    if ep.target_pos is not None and ep.object_pos is not None:
        d = ep.target_pos[t] - ep.object_pos[t]
        items.append((
            f"Where is the {tgt} relative to the {obj}?",
            f"The {tgt} is {direction_words(d)} the {obj}.",
            coarse_direction(d),
        ))
    if ep.gripper_open is not None:
        is_open = bool(ep.gripper_open[t])
        items.append(("Is the gripper open or closed?", "I look at the gripper fingers.", "open" if is_open else "closed"))
    if ep.phases is not None:
        items.append((
            f"Which phase of picking up the {obj} is the robot in?",
            f"The task is to {ep.instruction.strip().rstrip('.').lower()}.",
            str(ep.phases[t]),
        ))
    return items


# ----------------------------------------------------------------------------------------------------
# Sample builders
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleConfig:
    """Which frames become samples and how."""

    cameras: tuple[str, ...] = ("agentview",)
    chunk_len: int = 8
    stride: int = 4
    vqa_per_frame: int = 1
    seed: int = 0
    reasoning: str = "full"  # REASONING_DETAILS
    answer: str = "action"  # what robot samples answer: roboalign.spec.rewards.REWARDS

    def __post_init__(self) -> None:
        if self.answer not in REWARDS:
            raise ValueError(f"SampleConfig.answer={self.answer!r}; valid: {', '.join(REWARDS)}")
        if self.reasoning not in REASONING_DETAILS:
            raise ValueError(f"SampleConfig.reasoning={self.reasoning!r}; valid: {', '.join(REASONING_DETAILS)}")
        if not self.cameras:
            raise ValueError("SampleConfig.cameras must name at least one camera")
        if self.chunk_len < 1 or self.stride < 1 or self.vqa_per_frame < 0:
            raise ValueError(f"SampleConfig: chunk_len/stride must be >= 1 and vqa_per_frame >= 0: {self}")


def chunk_starts(length: int, chunk_len: int, stride: int) -> list[int]:
    """Steps ``t`` with a complete chunk ``actions[t:t+chunk_len]``."""
    return list(range(0, length - chunk_len + 1, stride))


def action_chunks(views: Iterable[EpisodeView], chunk_len: int, stride: int) -> np.ndarray:
    """All complete raw action chunks, (N, chunk_len, D)."""
    chunks = [ep.actions[t : t + chunk_len] for ep in views for t in chunk_starts(ep.length, chunk_len, stride)]
    if not chunks:
        raise DataError(f"no episode is long enough for one chunk of {chunk_len} actions")
    return np.stack(chunks).astype(np.float64)


def fit_norm_and_fast(
    views: Sequence[EpisodeView], chunk_len: int, preset: str = "fast", vocab_size: int | None = None,
    norm: NormStats | None = None, scale: float | None = None,
) -> tuple[NormStats, FastTokenizer]:
    """Action NormStats (unless given) and a FAST tokenizer fitted on the normalised training chunks."""
    if norm is None:
        norm = NormStats.from_data(np.concatenate([ep.actions for ep in views]))
    chunks = action_chunks(views, chunk_len, stride=1)  # (N, T, D)
    normed = norm.normalize(chunks.reshape(-1, chunks.shape[-1])).reshape(chunks.shape)
    overrides: dict[str, Any] = {} if vocab_size is None else {"vocab_size": vocab_size}
    if scale is not None:
        overrides["scale"] = scale
    config = FastConfig.preset(preset, chunk_len=chunk_len, action_dim=chunks.shape[-1], **overrides)
    return norm, FastTokenizer.fit(normed, config)


def encode_chunk(chunk: np.ndarray, norm: NormStats, fast: FastTokenizer, where: str) -> list[int]:
    """Raw (H, D) chunk -> FAST ids; any failure raises DataError naming ``where``."""
    chunk = np.asarray(chunk, dtype=np.float64)
    cfg = fast.config
    if chunk.shape != (cfg.chunk_len, cfg.action_dim):
        raise DataError(f"{where}: action chunk has shape {chunk.shape}, the FAST tokenizer expects "
                        f"({cfg.chunk_len}, {cfg.action_dim})")
    if not np.all(np.isfinite(chunk)):
        raise DataError(f"{where}: action chunk contains non-finite values")
    try:
        return fast.encode_one(norm.normalize(chunk))
    except (ValueError, RuntimeError) as e:
        raise DataError(f"{where}: action chunk cannot be FAST-encoded: {e}") from e


def robot_sample(
    images: list[Image.Image], instruction: str, state: np.ndarray | None, fast_ids: list[int], reasoning: str,
    template: PromptTemplate, vocab: ActionVocab, source: str, answer: str | None = None,
    targets: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One robot sample in TRL's conversational prompt-completion format (+ images, target FAST ids).

    ``answer``: the text inside ``<answer>`` (default: the FAST tokens); ``targets``: extra truth columns."""
    answer = vocab.fast_to_text(fast_ids) if answer is None else answer  # <ACTION_START><FAST_…>…<ACTION_END>
    return {
        "prompt": template.robot_messages(instruction, state, n_images=len(images)),
        "completion": template.assistant(template.completion(reasoning, answer)),
        "images": images,
        "target_fast": list(map(int, fast_ids)),
        "kind": "robot",
        "source": source,
        **(targets or {}),
    }


def language_action(ep: EpisodeView, t: int) -> str:
    """The high-level language action at step ``t``: the motion of the expert's phase (``NEXT_STEP``)."""
    if ep.phases is None:
        raise DataError(f"episode {ep.name}: no expert phases; reward=language needs them for its language actions "
                        "(record episodes with the scripted expert)")
    phase = str(ep.phases[t])
    if phase not in NEXT_STEP:
        raise DataError(f"episode {ep.name} step {t}: phase {phase!r} has no language action; "
                        f"known phases: {', '.join(NEXT_STEP)}")
    return NEXT_STEP[phase].format(obj=ep.object_name, tgt=ep.target_name)


def pixel_waypoints(ep: EpisodeView, camera: str, t: int, k: int) -> list[list[int]]:
    """The gripper's (x, y) pixel position in ``camera``'s image at steps t+1 … t+k (last one repeated at the end)."""
    pixels = (ep.gripper_pixels or {}).get(camera)
    if pixels is None:
        raise DataError(f"episode {ep.name}: no image-space gripper positions (gripper_pixels) for camera "
                        f"{camera!r}; reward=trajectory2d needs them, and only the toy world's episodes "
                        "(roboalign.bench.toy_episodes) carry them")
    steps = [min(t + i, ep.length - 1) for i in range(1, k + 1)]
    return [[round(float(pixels[s][0])), round(float(pixels[s][1]))] for s in steps]


def answer_and_targets(ep: EpisodeView, t: int, cfg: SampleConfig) -> tuple[str | None, dict[str, Any]]:
    """The robot sample's ``<answer>`` text (None: FAST tokens) and truth columns for ``cfg.answer``."""
    if cfg.answer == "language":
        phrase = language_action(ep, t)
        return phrase, {TARGET_COLUMNS["language"]: phrase}
    if cfg.answer == "trajectory2d":
        points = pixel_waypoints(ep, cfg.cameras[0], t, cfg.chunk_len)
        return format_points(points), {TARGET_COLUMNS["trajectory2d"]: points}
    return None, {}


def robot_samples(
    views: Sequence[EpisodeView], norm: NormStats, fast: FastTokenizer, template: PromptTemplate,
    vocab: ActionVocab, cfg: SampleConfig,
) -> list[dict[str, Any]]:
    """Robot samples at every ``stride``-th step with a complete chunk, over all episodes."""
    if fast.config.chunk_len != cfg.chunk_len:
        raise DataError(f"FAST tokenizer chunk_len={fast.config.chunk_len} != SampleConfig.chunk_len={cfg.chunk_len}")
    out = []
    for ep in views:
        for t in chunk_starts(ep.length, cfg.chunk_len, cfg.stride):
            where = f"episode {ep.name} step {t}"
            ids = encode_chunk(ep.actions[t : t + cfg.chunk_len], norm, fast, where)
            imgs = [ep.image(cam, t) for cam in cfg.cameras]
            answer, targets = answer_and_targets(ep, t, cfg)
            out.append(robot_sample(imgs, ep.instruction, ep.states[t], ids, reasoning_text(ep, t, cfg.reasoning), template, vocab,
                                    source=where, answer=answer, targets=targets))
    return out


def vqa_samples(views: Sequence[EpisodeView], template: PromptTemplate, cfg: SampleConfig) -> list[dict[str, Any]]:
    """``vqa_per_frame`` spatial questions per sampled frame (questions drawn with ``cfg.seed``)."""
    rng = random.Random(cfg.seed)
    out = []
    for ep in views:
        for t in chunk_starts(ep.length, cfg.chunk_len, cfg.stride):
            items = vqa_items(ep, t)
            for q, why, ans in rng.sample(items, min(cfg.vqa_per_frame, len(items))):
                imgs = [ep.image(cam, t) for cam in cfg.cameras]
                out.append({
                    "prompt": template.vqa_messages(q, n_images=len(imgs)),
                    "completion": template.assistant(template.completion(why, ans)),
                    "images": imgs,
                    "target_fast": [],
                    "kind": "vqa",
                    "source": f"episode {ep.name} step {t}",
                })
    return out


# ----------------------------------------------------------------------------------------------------
# Extra datasets by path
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtraDataset:
    """A JSONL file of extra samples (format in the module doc) and its mixture weight."""

    path: str
    weight: float = 1.0
    name: str = ""

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"ExtraDataset {self.path}: weight must be >= 0, got {self.weight}")


def _load_image(base: Path, rel: Any, where: str) -> Image.Image:
    if not isinstance(rel, str) or not rel:
        raise DataError(f"{where}: image entry must be a path string, got {rel!r}")
    path = base / rel
    if not path.is_file():
        raise DataError(f"{where}: image file {path} does not exist")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except OSError as e:
        raise DataError(f"{where}: cannot read image {path}: {e}") from e


def load_extra_dataset(
    extra: ExtraDataset, template: PromptTemplate, vocab: ActionVocab | None = None,
    norm: NormStats | None = None, fast: FastTokenizer | None = None,
) -> list[dict[str, Any]]:
    """Read an extra JSONL dataset into samples; every problem raises DataError naming file and line."""
    path = Path(extra.path)
    if not path.is_file():
        raise DataError(f"extra dataset {path} does not exist")
    out = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not valid JSON: {e}") from e
        if not isinstance(row, dict):
            raise DataError(f"{where}: a row must be a JSON object")
        images = [_load_image(path.parent, rel, where) for rel in row.get("images", [])]
        kind = row.get("kind", "vqa")
        if kind == "robot":
            if vocab is None or norm is None or fast is None:
                raise DataError(f"{where}: robot rows need the action vocabulary, norm stats and FAST tokenizer")
            missing = [k for k in ("instruction", "actions") if k not in row]
            if missing:
                raise DataError(f"{where}: robot row lacks {missing}")
            ids = encode_chunk(np.asarray(row["actions"], dtype=np.float64), norm, fast, where)
            state = np.asarray(row["state"], dtype=np.float64) if row.get("state") is not None else None
            out.append(robot_sample(images, row["instruction"], state, ids, str(row.get("reasoning", "")), template,
                                    vocab, source=where))
        elif kind == "vqa":
            missing = [k for k in ("question", "answer") if k not in row]
            if missing:
                raise DataError(f"{where}: VQA row lacks {missing}")
            out.append({
                "prompt": template.vqa_messages(str(row["question"]), n_images=len(images)),
                "completion": template.assistant(template.completion(str(row.get("reasoning", "")), str(row["answer"]))),
                "images": images,
                "target_fast": [],
                "kind": "vqa",
                "source": where,
            })
        else:
            raise DataError(f"{where}: unknown kind {kind!r}; valid: robot, vqa")
    if not out:
        raise DataError(f"extra dataset {path} has no rows")
    return out


# ----------------------------------------------------------------------------------------------------
# Mixture
# ----------------------------------------------------------------------------------------------------


@dataclass
class Mixture:
    """Named sample sources with weights (expected uses per sample); ``build`` draws the mixed list."""

    sources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, samples: list[dict[str, Any]], weight: float) -> None:
        if name in self.sources:
            raise ValueError(f"mixture source {name!r} added twice")
        if weight < 0 or not math.isfinite(weight):
            raise ValueError(f"mixture weight of {name!r} must be finite and >= 0, got {weight}")
        self.sources[name] = samples
        self.weights[name] = float(weight)

    def counts(self) -> dict[str, int]:
        return {n: round(self.weights[n] * len(s)) for n, s in self.sources.items()}

    def build(self, seed: int = 0) -> list[dict[str, Any]]:
        """Each source contributes ``round(weight * len)`` samples: whole copies + a random remainder."""
        rng = random.Random(seed)
        out: list[dict[str, Any]] = []
        for name, samples in self.sources.items():
            n = self.counts()[name]
            if not samples or n == 0:
                continue
            whole, rest = divmod(n, len(samples))
            out += samples * whole + rng.sample(samples, rest)
        rng.shuffle(out)
        return out


def to_hf_dataset(samples: list[dict[str, Any]], columns: Sequence[str] | None = None) -> Any:
    """A ``datasets.Dataset`` of the samples (images as PIL, kept for TRL's on-the-fly processing)."""
    from datasets import Dataset

    if not samples:
        raise DataError("no training samples were built")
    rows = samples if columns is None else [{k: s[k] for k in columns} for s in samples]
    return Dataset.from_list(rows)
