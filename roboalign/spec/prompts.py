"""THE prompt template of RoboAlign: one definition, saved beside every checkpoint as ``prompt_template.json``.

The MLLM is asked to reason inside ``<think>…</think>`` and to answer inside ``<answer>…</answer>``
(the paper's GRPO prompt format). For a robot sample the answer is the next action chunk as FAST tokens:

    <think>{reasoning}</think><answer><ACTION_START><FAST_12><FAST_7>…<ACTION_END></answer>

For a VQA sample (spatial questions about the same scenes) the answer is a short text.

A prompt is a chat: a system message with the instructions above, then a user message holding one image
per camera followed by the task text (instruction + robot state). ``robot_messages`` / ``vqa_messages``
build it in the structured content format that transformers processors and TRL understand
(``{"type": "image"}`` placeholders; TRL fills them from the sample's ``images`` column).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from roboalign.spec.action_vocab import ACTION_END, ACTION_START
from roboalign.spec.loader import build, check_format, read_spec_file

FORMAT = "roboalign.prompt_template/1"
FILE_NAME = "prompt_template.json"

DEFAULT_SYSTEM = (
    "You are a robot control assistant for a Franka arm with a parallel gripper. "
    "First think about the scene and the task inside <think> </think>, then give the answer inside "
    "<answer> </answer>. When asked for an action, the answer holds the next action chunk as FAST action "
    f"tokens between {ACTION_START} and {ACTION_END}."
)
DEFAULT_ROBOT_USER = "Task: {instruction}\nRobot state: {state}\nWhat should the robot do next?"
DEFAULT_VQA_USER = "{question}"


@dataclass(frozen=True)
class PromptTemplate:
    """System and user texts, tags, and how numbers are printed. Frozen; validated on construction."""

    system: str = DEFAULT_SYSTEM
    robot_user: str = DEFAULT_ROBOT_USER
    vqa_user: str = DEFAULT_VQA_USER
    think_open: str = "<think>"
    think_close: str = "</think>"
    answer_open: str = "<answer>"
    answer_close: str = "</answer>"
    action_start: str = ACTION_START  # must be the action vocabulary's markers (check_markers)
    action_end: str = ACTION_END
    state_decimals: int = 2
    include_state: bool = True

    def __post_init__(self) -> None:
        for name, keys in (("robot_user", ("{instruction}", "{state}")), ("vqa_user", ("{question}",))):
            text = getattr(self, name)
            missing = [k for k in keys if k not in text]
            if missing:
                raise ValueError(f"PromptTemplate.{name} must contain {', '.join(missing)}; got {text!r}")
        if not 0 <= self.state_decimals <= 6:
            raise ValueError(f"state_decimals must be in [0, 6], got {self.state_decimals}")

    # ------------------------------------------------------------------ text pieces
    def format_state(self, state: Sequence[float] | np.ndarray) -> str:
        """Robot state as space-separated fixed-point numbers, e.g. ``0.12 -0.50 1.00``."""
        arr = np.asarray(state, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"robot state contains non-finite values: {arr.tolist()}")
        return " ".join(f"{v:.{self.state_decimals}f}" for v in arr)

    def robot_text(self, instruction: str, state: Sequence[float] | np.ndarray | None) -> str:
        if not instruction or not instruction.strip():
            raise ValueError("empty instruction")
        state_text = self.format_state(state) if (self.include_state and state is not None) else "n/a"
        return self.robot_user.format(instruction=instruction.strip(), state=state_text)

    def action_answer(self, action_text: str) -> str:
        """``<ACTION_START>{action_text}<ACTION_END>`` (action_text: the FAST tokens as LLM token text)."""
        return f"{self.action_start}{action_text}{self.action_end}"

    def completion(self, reasoning: str, answer: str) -> str:
        """The full target text: ``<think>reasoning</think><answer>answer</answer>``."""
        return f"{self.think_open}{reasoning}{self.think_close}{self.answer_open}{answer}{self.answer_close}"

    # ------------------------------------------------------------------ chat messages
    @staticmethod
    def _user(n_images: int, text: str) -> dict[str, Any]:
        if n_images < 0:
            raise ValueError(f"n_images must be >= 0, got {n_images}")
        content: list[dict[str, Any]] = [{"type": "image"} for _ in range(n_images)]
        content.append({"type": "text", "text": text})
        return {"role": "user", "content": content}

    def _system(self) -> dict[str, Any]:
        return {"role": "system", "content": [{"type": "text", "text": self.system}]}

    def robot_messages(
        self, instruction: str, state: Sequence[float] | np.ndarray | None, n_images: int
    ) -> list[dict[str, Any]]:
        """The prompt of a robot sample: system + user(images…, task text)."""
        return [self._system(), self._user(n_images, self.robot_text(instruction, state))]

    def vqa_messages(self, question: str, n_images: int) -> list[dict[str, Any]]:
        """The prompt of a VQA sample: system + user(images…, question)."""
        return [self._system(), self._user(n_images, self.vqa_user.format(question=question))]

    @staticmethod
    def assistant(text: str) -> list[dict[str, Any]]:
        """A completion as a one-message assistant turn (TRL's conversational prompt-completion format)."""
        return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "prompt template") -> PromptTemplate:
        return build(cls, check_format(data, FORMAT, source, "prompt template"), source)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / FILE_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> PromptTemplate:
        path = Path(directory)
        path = path if path.suffix == ".json" else path / FILE_NAME
        return cls.from_dict(read_spec_file(path, "prompt template file"), source=str(path))


def check_markers(template: PromptTemplate, vocab_spec: Any, source: str = "checkpoint") -> PromptTemplate:
    """``template`` after checking its action markers are the action vocabulary's tokens (``vocab_spec``:
    an :class:`roboalign.spec.action_vocab.ActionVocabSpec`); a mismatch would train answers the reward can't parse."""
    pairs = (("action_start", "start_token"), ("action_end", "end_token"))
    bad = [f"{a}={getattr(template, a)!r} vs {b}={getattr(vocab_spec, b)!r}" for a, b in pairs
           if getattr(template, a) != getattr(vocab_spec, b)]
    if bad:
        raise ValueError(f"{source}: prompt template and action vocabulary disagree on the markers: {'; '.join(bad)}")
    return template
