"""GRPO rewards of RoboAlign (the paper's r_f and r_a below), as plain functions and as TRL reward functions.

* format reward ``r_f ∈ {0, 1}``: 1 iff the completion matches ``<think>.*?</think>\\s*<answer>.*?</answer>``
  as a whole (``re.fullmatch``; ``.`` also matches newlines, so reasoning may span lines). Our one
  leniency: leading/trailing whitespace of the completion is stripped first (a trailing newline before
  the end-of-turn token is not "text outside the tags"). Anything else outside the tags gives 0.
* accuracy reward ``r_a = L / m``: ``m`` = length of the target FAST sequence, ``L`` = length of the longest
  common prefix of generated and target FAST ids. 0 when nothing parses or the first token differs;
  extra generated tokens after a full match do not lower it (``L <= m``).
* total ``r = (r_f + r_a) / 2``. In TRL we pass both functions with ``reward_weights=[0.5, 0.5]``; TRL sums
  the weighted rewards, which is exactly the mean, and logs each one separately.

Where the generated FAST ids come from: the LLM token ids of the completion, parsed by the action
vocabulary (:meth:`roboalign.spec.action_vocab.ActionVocab.parse_llm_ids`): the ids after the first
``<ACTION_START>`` up to ``<ACTION_END>``, the end of the completion (cut off), or the first id that is
not a FAST token — whichever comes first (the prefix can't extend past it). Working on ids rather than
decoded text makes the reward independent of how the completion was detokenised.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

FORMAT_PATTERN = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)


def completion_text(completion: Any) -> str:
    """Text of a TRL completion: a string, or a conversational ``[{"role": "assistant", "content": …}]``."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        if isinstance(content, list):  # structured blocks
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return str(content or "")
    raise TypeError(f"cannot read a completion of type {type(completion).__name__}: {completion!r:.80}")


def format_reward(text: str) -> float:
    """1.0 if ``text`` is exactly ``<think>…</think> <answer>…</answer>`` (outer whitespace aside), else 0.0."""
    return 1.0 if FORMAT_PATTERN.fullmatch(text.strip()) else 0.0


def prefix_accuracy(predicted: Sequence[int] | None, target: Sequence[int]) -> float:
    """``L / m``: longest common prefix of ``predicted`` and ``target`` over the target length ``m``."""
    m = len(target)
    if m == 0:
        raise ValueError("prefix_accuracy: the target FAST sequence is empty (m = 0); the sample is broken")
    if not predicted:
        return 0.0
    n = 0
    for p, t in zip(predicted, target, strict=False):
        if int(p) != int(t):
            break
        n += 1
    return n / m


def total_reward(r_format: float, r_accuracy: float) -> float:
    """``(r_f + r_a) / 2``."""
    return (r_format + r_accuracy) / 2.0


def _targets(kwargs: dict[str, Any], n: int, column: str) -> list[Sequence[int]]:
    if column not in kwargs:
        raise KeyError(f"the GRPO dataset needs a {column!r} column (target FAST ids) for the accuracy reward")
    targets = kwargs[column]
    if len(targets) != n:
        raise ValueError(f"{column}: {len(targets)} targets for {n} completions")
    return targets


class ActionParser(Protocol):
    """What the rewards need from the action vocabulary (:class:`roboalign.spec.action_vocab.ActionVocab`)."""

    def parse_llm_ids(self, llm_ids: Any) -> Any:  # -> ParsedAction with .fast_ids
        ...


class RoboAlignRewards:
    """The reward functions handed to TRL's ``GRPOTrainer`` (``reward_funcs, weights = r.trl_functions()``).

    TRL calls each as ``f(prompts=…, completions=…, completion_ids=…, **dataset_columns)``; the target
    FAST ids come from the dataset column ``target_column`` (default ``"target_fast"``).
    """

    def __init__(self, action_vocab: ActionParser, target_column: str = "target_fast") -> None:
        self.action_vocab = action_vocab
        self.target_column = target_column

    def generated_fast_ids(self, llm_ids: Sequence[int]) -> list[int]:
        return list(self.action_vocab.parse_llm_ids(list(llm_ids)).fast_ids)

    def format(self, completions: list[Any], **kwargs: Any) -> list[float]:
        return [format_reward(completion_text(c)) for c in completions]

    def accuracy(self, completions: list[Any], completion_ids: list[Sequence[int]] | None = None, **kwargs: Any) -> list[float]:
        if completion_ids is None:
            raise ValueError("accuracy reward needs completion_ids (TRL >= 0.20 passes them)")
        targets = _targets(kwargs, len(completion_ids), self.target_column)
        return [prefix_accuracy(self.generated_fast_ids(ids), tgt) for ids, tgt in zip(completion_ids, targets, strict=True)]

    def total(self, completions: list[Any], completion_ids: list[Sequence[int]] | None = None, **kwargs: Any) -> list[float]:
        rf = self.format(completions)
        ra = self.accuracy(completions, completion_ids=completion_ids, **kwargs)
        return [total_reward(f, a) for f, a in zip(rf, ra, strict=True)]

    def trl_functions(self) -> tuple[list[Callable[..., list[float]]], list[float]]:
        """``(reward_funcs, reward_weights)`` for GRPOConfig/GRPOTrainer: r = 0.5 r_f + 0.5 r_a."""

        def format_reward_fn(completions: list[Any], **kwargs: Any) -> list[float]:
            return self.format(completions, **kwargs)

        def accuracy_reward_fn(completions: list[Any], **kwargs: Any) -> list[float]:
            return self.accuracy(completions, **kwargs)

        format_reward_fn.__name__ = "format"  # TRL logs rewards/<name>/mean
        accuracy_reward_fn.__name__ = "accuracy"
        return [format_reward_fn, accuracy_reward_fn], [0.5, 0.5]
