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

The RQ2 alternatives (``reward: language | trajectory2d`` in the run configs) keep ``r = (r_f + r_a) / 2`` with
the same format reward and replace ``r_a`` by a score of the *answer text*: the text after the first
``<answer>`` up to ``</answer>`` or the end of the completion (cut off); no ``<answer>`` tag scores 0.

* ``language`` (:func:`language_accuracy`): the answer names the high-level language action (the motion the
  scripted expert performs from this step, e.g. ``lower the gripper around the milk``). Both texts are
  normalised (lower case, punctuation to spaces, runs of whitespace to one space). The exact phrase scores 1;
  anything else scores half of the token F1 (multiset overlap of words, ``2 P R / (P + R)``), so a near miss
  stays below 0.5 and a reordering of the right words does not count as right.
* ``trajectory2d`` (:func:`trajectory_accuracy`): the answer lists the next K image-space gripper
  waypoints in Qwen2.5-VL's point format, pixel coordinates ``(x, y)`` (x right, y down, origin top-left
  of the camera image in the prompt): ``[(x1, y1), (x2, y2), ...]``. With ``p̂_k`` the k-th parsed point
  and ``p_k`` the true one, ``r_a = (1/K) Σ_k max(0, 1 − ||p̂_k − p_k||₂ / τ)``, τ = :data:`TRAJECTORY_TOL_PX`
  pixels; missing waypoints score 0, points after the K-th are ignored, 0 when nothing parses.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

FORMAT_PATTERN = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
REWARDS = ("action", "language", "trajectory2d")  # the run configs' ``reward:`` choices
TARGET_COLUMNS = {"action": "target_fast", "language": "target_text", "trajectory2d": "target_points"}
TRAJECTORY_TOL_PX = 8.0  # τ: a waypoint this many pixels off scores 0
_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|\Z)", re.DOTALL)
_POINT = re.compile(r"\(\s*([-+]?\d+(?:\.\d+)?)\s*,\s*([-+]?\d+(?:\.\d+)?)\s*\)")
_PUNCT = re.compile(r"[^\w\s]")


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


def answer_text(text: str) -> str | None:
    """The text after the first ``<answer>`` up to ``</answer>`` or the end; None without an ``<answer>``."""
    m = _ANSWER.search(text)
    return m.group(1) if m else None


def normalize_phrase(text: str) -> str:
    """Lower case, punctuation to spaces, runs of whitespace to one space, stripped."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def token_f1(predicted: str, target: str) -> float:
    """F1 of the word multisets of the normalised ``predicted`` and ``target`` (0 when either is empty)."""
    p, t = normalize_phrase(predicted).split(), normalize_phrase(target).split()
    common = sum((Counter(p) & Counter(t)).values())
    if not p or not t or common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(t)
    return 2 * precision * recall / (precision + recall)


def language_accuracy(answer: str | None, target: str) -> float:
    """1 for the exact phrase (normalised), else half the token F1; 0 for no answer (see module doc)."""
    if not normalize_phrase(target):
        raise ValueError("language_accuracy: the target phrase is empty; the sample is broken")
    if answer is None:
        return 0.0
    if normalize_phrase(answer) == normalize_phrase(target):
        return 1.0
    return 0.5 * token_f1(answer, target)


def parse_points(answer: str | None) -> list[tuple[float, float]]:
    """Every ``(x, y)`` point in ``answer``, in order (numbers may be integers or decimals)."""
    return [(float(x), float(y)) for x, y in _POINT.findall(answer or "")]


def format_points(points: Sequence[Sequence[float]]) -> str:
    """``[(x1, y1), (x2, y2), ...]`` with integer pixel coordinates (the SFT answer of ``trajectory2d``)."""
    return "[" + ", ".join(f"({round(float(x))}, {round(float(y))})" for x, y in points) + "]"


def trajectory_accuracy(answer: str | None, target: Sequence[Sequence[float]], tol_px: float = TRAJECTORY_TOL_PX
                        ) -> float:
    """``mean_k max(0, 1 - ||p̂_k - p_k|| / τ)`` over the K true waypoints (see module doc)."""
    if len(target) == 0:
        raise ValueError("trajectory_accuracy: the target has no waypoints; the sample is broken")
    if tol_px <= 0:
        raise ValueError(f"trajectory_accuracy: tol_px must be > 0, got {tol_px}")
    points = parse_points(answer)
    score = sum(max(0.0, 1.0 - math.dist(p, t) / tol_px) for p, t in zip(points, target, strict=False))
    return score / len(target)


def total_reward(r_format: float, r_accuracy: float) -> float:
    """``(r_f + r_a) / 2``."""
    return (r_format + r_accuracy) / 2.0


def _targets(kwargs: dict[str, Any], n: int, column: str, reward: str = "action") -> list[Any]:
    if column not in kwargs:
        what = {"action": "target FAST ids", "language": "the true language action",
                "trajectory2d": "the true pixel waypoints"}[reward]
        raise KeyError(f"the GRPO dataset needs a {column!r} column ({what}) for the {reward} accuracy reward")
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

    TRL calls each as ``f(prompts=…, completions=…, completion_ids=…, **dataset_columns)``; the targets
    come from a dataset column: for ``reward="action"`` the FAST ids in ``target_column`` (default
    ``"target_fast"``), for ``language`` / ``trajectory2d`` the phrase / waypoints in ``TARGET_COLUMNS[reward]``.
    """

    def __init__(self, action_vocab: ActionParser | None, target_column: str = "target_fast",
                 reward: str = "action") -> None:
        if reward not in REWARDS:
            raise ValueError(f"reward={reward!r}; valid: {', '.join(REWARDS)}")
        if reward == "action" and action_vocab is None:
            raise ValueError("reward=action needs the action vocabulary to parse FAST ids")
        self.action_vocab = action_vocab
        self.reward = reward
        self.target_column = target_column if reward == "action" else TARGET_COLUMNS[reward]

    def generated_fast_ids(self, llm_ids: Sequence[int]) -> list[int]:
        return list(self.action_vocab.parse_llm_ids(list(llm_ids)).fast_ids)

    def format(self, completions: list[Any], **kwargs: Any) -> list[float]:
        return [format_reward(completion_text(c)) for c in completions]

    def accuracy(self, completions: list[Any], completion_ids: list[Sequence[int]] | None = None, **kwargs: Any) -> list[float]:
        if self.reward != "action":
            return self.answer_accuracy(completions, **kwargs)
        if completion_ids is None:
            raise ValueError("accuracy reward needs completion_ids (TRL >= 0.20 passes them)")
        targets = _targets(kwargs, len(completion_ids), self.target_column)
        return [prefix_accuracy(self.generated_fast_ids(ids), tgt) for ids, tgt in zip(completion_ids, targets, strict=True)]

    def answer_accuracy(self, completions: list[Any], **kwargs: Any) -> list[float]:
        """``r_a`` of ``language`` / ``trajectory2d``: the answer text against the target column."""
        targets = _targets(kwargs, len(completions), self.target_column, self.reward)
        score = language_accuracy if self.reward == "language" else trajectory_accuracy
        return [score(answer_text(completion_text(c)), tgt) for c, tgt in zip(completions, targets, strict=True)]

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
