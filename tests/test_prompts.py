"""The prompt template: texts, chat messages through the real tiny processor, save/load, validation."""

from __future__ import annotations

import numpy as np
import pytest

from roboalign.models.backbone import build_processor, build_tiny_tokenizer
from roboalign.spec.prompts import FILE_NAME, PromptTemplate
from roboalign.spec.rewards import format_reward


def test_completion_has_the_rewarded_format():
    t = PromptTemplate()
    answer = t.action_answer("<FAST_1><FAST_2>")
    assert answer == "<ACTION_START><FAST_1><FAST_2><ACTION_END>"
    text = t.completion("the milk is ahead", answer)
    assert text == "<think>the milk is ahead</think><answer><ACTION_START><FAST_1><FAST_2><ACTION_END></answer>"
    assert format_reward(text) == 1.0


def test_state_formatting_and_errors():
    t = PromptTemplate(state_decimals=2)
    assert t.format_state(np.array([0.123, -1.0, 2])) == "0.12 -1.00 2.00"
    with pytest.raises(ValueError, match="non-finite"):
        t.format_state([0.0, float("nan")])
    with pytest.raises(ValueError, match="empty instruction"):
        t.robot_text("  ", [0.0])
    assert "n/a" in PromptTemplate(include_state=False).robot_text("go", [1.0])


def test_messages_render_through_the_real_processor():
    t = PromptTemplate()
    processor = build_processor(build_tiny_tokenizer(), max_pixels=112 * 112)
    msgs = t.robot_messages("pick up the milk", [0.5, -0.25], n_images=2)
    text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == 2
    assert text.startswith("<|im_start|>system\n" + t.system + "<|im_end|>")
    assert "Task: pick up the milk\nRobot state: 0.50 -0.25\n" in text
    assert text.endswith("<|im_start|>assistant\n")
    vqa = processor.apply_chat_template(t.vqa_messages("Where is the milk?", 1), tokenize=False)
    assert vqa.count("<|image_pad|>") == 1 and "Where is the milk?" in vqa


def test_save_load_and_validation(tmp_path):
    t = PromptTemplate(system="Be brief.", state_decimals=3)
    path = t.save(tmp_path)
    assert path.name == FILE_NAME
    assert PromptTemplate.load(tmp_path) == t
    with pytest.raises(ValueError, match=r"must contain \{state\}"):
        PromptTemplate(robot_user="Task: {instruction}")
    with pytest.raises(ValueError, match=r"prompt template: unknown fields \['sytem'\]; valid fields: system,"):
        PromptTemplate.from_dict({"format": "roboalign.prompt_template/1", "sytem": "x"})
    with pytest.raises(ValueError, match=r"x.json: not a prompt template of this version \(format is None"):
        PromptTemplate.from_dict({"system": "x"}, source="x.json")
    with pytest.raises(FileNotFoundError, match=FILE_NAME):
        PromptTemplate.load(tmp_path / "nowhere")


def test_markers_have_one_definition_and_a_checkpoint_must_agree():
    from roboalign.spec.action_vocab import ACTION_END, ACTION_START, ActionVocabSpec
    from roboalign.spec.prompts import check_markers

    t, spec = PromptTemplate(), ActionVocabSpec(num_fast_tokens=4)
    assert (t.action_start, t.action_end) == (spec.start_token, spec.end_token) == (ACTION_START, ACTION_END)
    assert ACTION_START in t.system and ACTION_END in t.system
    assert check_markers(t, spec) is t
    with pytest.raises(ValueError, match=r"ckpt: prompt template and action vocabulary disagree on the markers: "
                                         r"action_end='<END>' vs end_token='<ACTION_END>'"):
        check_markers(PromptTemplate(action_end="<END>"), spec, "ckpt")
