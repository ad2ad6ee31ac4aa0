"""GRPO rewards: hand-computed format / prefix-accuracy / total values, edge cases, the TRL adapters."""

from __future__ import annotations

import pytest

from roboalign.models.backbone import build_tiny_tokenizer
from roboalign.spec.action_vocab import ActionVocab, ActionVocabSpec
from roboalign.spec.rewards import (
    RoboAlignRewards,
    completion_text,
    format_reward,
    prefix_accuracy,
    total_reward,
)

GOOD = "<think>the milk is left of the gripper</think><answer><ACTION_START><FAST_3><FAST_1><ACTION_END></answer>"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD, 1.0),
        ("<think>a</think>\n  <answer>b</answer>", 1.0),  # whitespace between the blocks is allowed
        ("<think>line 1\nline 2</think><answer>x\ny</answer>", 1.0),  # newlines inside the tags
        ("  <think>a</think><answer>b</answer>\n", 1.0),  # outer whitespace stripped (documented leniency)
        ("<think></think><answer></answer>", 1.0),  # empty contents still have the format
        ("", 0.0),  # empty
        ("<answer>b</answer>", 0.0),  # missing think
        ("<think>a</think>", 0.0),  # missing answer
        ("<think>a</think> so <answer>b</answer>", 0.0),  # text between the blocks
        ("Sure! <think>a</think><answer>b</answer>", 0.0),  # text before
        ("<think>a</think><answer>b</answer> done", 0.0),  # text after
        ("<answer>b</answer><think>a</think>", 0.0),  # wrong order
        ("<think>a<answer>b</answer>", 0.0),  # unclosed think
        ("<think>a</think><answer>b", 0.0),  # unclosed answer (truncated generation)
        ("<think>a</think><answer>b</answer><answer>c</answer>", 1.0),  # .*? may still span: whole match
    ],
)
def test_format_reward(text, expected):
    assert format_reward(text) == expected


@pytest.mark.parametrize(
    ("pred", "target", "expected"),
    [
        ([5, 6, 7, 8], [5, 6, 7, 8], 1.0),  # exact match
        ([5, 6, 7, 8, 9, 9], [5, 6, 7, 8], 1.0),  # longer than target: extra tokens don't lower it
        ([5, 6, 0, 8], [5, 6, 7, 8], 0.5),  # L = 2, m = 4
        ([5, 6, 7], [5, 6, 7, 8], 0.75),  # shorter: L = 3
        ([4, 6, 7, 8], [5, 6, 7, 8], 0.0),  # first token wrong: later matches don't count
        ([], [5, 6, 7, 8], 0.0),  # empty / nothing parsed
        (None, [5, 6, 7], 0.0),  # unparsable
        ([5], [5, 6, 7], 1 / 3),
    ],
)
def test_prefix_accuracy(pred, target, expected):
    assert prefix_accuracy(pred, target) == pytest.approx(expected)


def test_prefix_accuracy_rejects_empty_target():
    with pytest.raises(ValueError, match="m = 0"):
        prefix_accuracy([1], [])


def test_total_is_mean():
    assert total_reward(1.0, 0.5) == 0.75
    assert total_reward(0.0, 0.0) == 0.0
    assert total_reward(1.0, 1.0) == 1.0


@pytest.fixture(scope="module")
def vocab() -> ActionVocab:
    """The real action vocabulary (64 FAST tokens) added to the real tiny Qwen tokenizer."""
    return ActionVocab.add_to_tokenizer(build_tiny_tokenizer(), ActionVocabSpec(num_fast_tokens=64))


def _ids(vocab: ActionVocab, *parts) -> list[int]:
    """LLM ids: 'S' = ACTION_START, 'E' = ACTION_END, int = FAST id, str = ordinary text."""
    out: list[int] = []
    for p in parts:
        if p == "S":
            out.append(vocab.start_id)
        elif p == "E":
            out.append(vocab.end_id)
        elif isinstance(p, int):
            out += vocab.fast_to_llm_ids([p], markers=False)
        else:
            out.append(7)  # some ordinary (non-action) token id
    return out


def test_generated_ids_are_read_between_markers(vocab):
    r = RoboAlignRewards(vocab)
    assert r.generated_fast_ids(_ids(vocab, "x", "S", 3, 1, "E", 5)) == [3, 1]
    assert r.generated_fast_ids(_ids(vocab, "S", 3, 1)) == [3, 1]  # truncated generation keeps its prefix
    assert r.generated_fast_ids(_ids(vocab, "S", 3, "x", 1, "E")) == [3]  # non-FAST token ends the sequence
    assert r.generated_fast_ids(_ids(vocab, 3, 1, "E")) == []  # no ACTION_START: nothing parses
    assert r.generated_fast_ids([]) == []


def test_trl_reward_functions_hand_computed(vocab):
    rewards = RoboAlignRewards(vocab)
    funcs, weights = rewards.trl_functions()
    assert [f.__name__ for f in funcs] == ["format", "accuracy"]
    assert weights == [0.5, 0.5]
    completions = [
        [{"role": "assistant", "content": GOOD}],  # format ok, ids exact
        [{"role": "assistant", "content": "<think>x</think><answer>"}],  # format broken, half right
        [{"role": "assistant", "content": ""}],  # empty
        [{"role": "assistant", "content": "junk " + GOOD}],  # extra text before, first token wrong
    ]
    ids = [_ids(vocab, "S", 3, 1, "E"), _ids(vocab, "S", 3, 9), [], _ids(vocab, "x", "S", 2, 1, "E")]
    target = [[3, 1], [3, 1], [3, 1], [3, 1]]
    rf = funcs[0](prompts=[None] * 4, completions=completions, completion_ids=ids, target_fast=target)
    ra = funcs[1](prompts=[None] * 4, completions=completions, completion_ids=ids, target_fast=target)
    assert rf == [1.0, 0.0, 0.0, 0.0]
    assert ra == [1.0, 0.5, 0.0, 0.0]
    total = rewards.total(completions, completion_ids=ids, target_fast=target)
    assert total == [1.0, 0.25, 0.0, 0.0]
    assert total == [w0 * f + w1 * a for f, a, (w0, w1) in zip(rf, ra, [weights] * 4, strict=True)]


def test_trl_reward_errors_are_clear(vocab):
    rewards = RoboAlignRewards(vocab)
    with pytest.raises(KeyError, match="target_fast"):
        rewards.accuracy(["x"], completion_ids=[[1]])
    with pytest.raises(ValueError, match="1 targets for 2 completions"):
        rewards.accuracy(["x", "y"], completion_ids=[[1], [1]], target_fast=[[1]])


def test_text_completion_through_real_tokenizer(vocab):
    """Decoded text of the real tokenizer -> ids -> reward: the full path TRL takes."""
    tok = build_tiny_tokenizer()
    ActionVocab.add_to_tokenizer(tok, vocab.spec)
    text = "<think>the milk is left</think><answer>" + vocab.fast_to_text([3, 1, 4]) + "</answer>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    decoded = tok.decode(ids, skip_special_tokens=True)
    assert decoded == text
    rewards = RoboAlignRewards(vocab)
    assert rewards.total([decoded], completion_ids=[ids], target_fast=[[3, 1, 5, 9]]) == [(1.0 + 0.5) / 2]


def test_completion_text_forms():
    assert completion_text("abc") == "abc"
    assert completion_text([{"role": "assistant", "content": "abc"}]) == "abc"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]) == "ab"
    with pytest.raises(TypeError):
        completion_text(42)


def test_paired_difference_of_two_models_on_the_same_prompts() -> None:
    from roboalign.training.evaluate import paired_difference

    a = [0.0, 0.5, 0.25, 1.0]
    b = [0.25, 0.5, 0.5, 1.0]  # differences 0.25, 0, 0.25, 0: mean 0.125, sd 0.1443 -> se 0.0722
    d, se = paired_difference(a, b)
    assert d == pytest.approx(0.125) and se == pytest.approx(0.144338 / 2, rel=1e-4)
    assert paired_difference(b, a)[0] == pytest.approx(-0.125)
    with pytest.raises(ValueError, match="equally long"):
        paired_difference(a, b[:3])
