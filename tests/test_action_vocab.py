"""Action vocabulary: new tokens in a real (locally trained) Qwen2 tokenizer, resized embeddings of tiny real
Qwen2 / Qwen2.5-VL models, text <-> LLM ids <-> FAST ids round trips, robust parsing, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from roboalign.models.backbone import build_tiny_qwen25vl, build_tiny_tokenizer
from roboalign.spec.action_vocab import (
    ActionVocab,
    ActionVocabSpec,
    ParseStatus,
    add_action_vocabulary,
)
from roboalign.spec.fast import FastConfig, FastTokenizer
from roboalign.spec.normalization import NormStats

V = 300  # FAST ids in these tests


@pytest.fixture(scope="module")
def tok_and_vocab():
    tok = build_tiny_tokenizer()
    base_len = len(tok)
    base_vocab = dict(tok.get_vocab())
    vocab = ActionVocab.add_to_tokenizer(tok, ActionVocabSpec(V))
    return tok, vocab, base_len, base_vocab


def tiny_qwen2(vocab_size: int) -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False)
    return Qwen2ForCausalLM(cfg).eval()


def test_tokens_are_new_distinct_and_single(tok_and_vocab):
    tok, vocab, base_len, base_vocab = tok_and_vocab
    assert len(tok) == base_len + V + 2
    ids = vocab.llm_ids
    assert len(set(ids)) == V + 2
    assert min(ids) >= base_len  # appended, not mapped onto existing tokens
    assert not set(ids) & set(base_vocab.values())
    assert tok.get_vocab() | base_vocab == tok.get_vocab()  # old tokens keep their ids
    for t in (vocab.spec.start_token, vocab.spec.end_token, "<FAST_0>", f"<FAST_{V - 1}>"):
        assert len(tok(t, add_special_tokens=False)["input_ids"]) == 1
    # ordinary text tokenises exactly as before
    assert tok("pick up the milk", add_special_tokens=False)["input_ids"] == [
        base_vocab[p] for p in tok.tokenize("pick up the milk")
    ]


def test_text_ids_text_round_trip(tok_and_vocab):
    tok, vocab, _, _ = tok_and_vocab
    fast = [12, 7, 0, V - 1, 12]
    answer = vocab.fast_to_text(fast)
    assert answer == "<ACTION_START><FAST_12><FAST_7><FAST_0><FAST_299><FAST_12><ACTION_END>"
    text = f"<think>lift the milk</think><answer>{answer}</answer>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    start = ids.index(vocab.start_id)
    assert ids[start : start + len(fast) + 2] == vocab.fast_to_llm_ids(fast)
    for skip in (False, True):  # non-special tokens survive skip_special_tokens (TRL decodes that way)
        assert tok.decode(ids, skip_special_tokens=skip) == text
    assert vocab.parse_text(tok.decode(ids)).fast_ids == tuple(fast)
    assert vocab.parse_llm_ids(ids).fast_ids == tuple(fast)
    assert vocab.parse_llm_ids(torch.tensor(ids)).ok
    assert vocab.fast_to_llm_ids(fast, markers=False) == vocab.fast_llm_ids[fast].tolist()
    assert {vocab.llm_to_fast[i] for i in vocab.fast_to_llm_ids(fast, markers=False)} == set(fast)


@pytest.mark.parametrize(
    "text, status, ids",
    [
        ("<answer><ACTION_START><FAST_3><FAST_4><ACTION_END></answer>", ParseStatus.OK, (3, 4)),
        ("<ACTION_START> <FAST_3>\n<FAST_4> <ACTION_END>", ParseStatus.OK, (3, 4)),
        ("the answer is to lift", ParseStatus.NO_ACTION, ()),
        ("<ACTION_START><ACTION_END>", ParseStatus.EMPTY, ()),
        ("<ACTION_START><FAST_3><FAST_4>", ParseStatus.UNTERMINATED, (3, 4)),
        ("<ACTION_START><FAST_3>lift<FAST_4><ACTION_END>", ParseStatus.MALFORMED, (3,)),
        ("<ACTION_START><FAST_3><FAST_300><ACTION_END>", ParseStatus.MALFORMED, (3,)),
        ("<ACTION_START><FAST_03><ACTION_END>", ParseStatus.MALFORMED, ()),
        ("<ACTION_START><FAST_-1><ACTION_END>", ParseStatus.MALFORMED, ()),
        ("<ACTION_START><FAST_5><FAST_", ParseStatus.MALFORMED, (5,)),
        ("x<ACTION_START><FAST_1><ACTION_END><ACTION_START><FAST_2><ACTION_END>", ParseStatus.OK, (1,)),
    ],
)
def test_parse_text(tok_and_vocab, text, status, ids):
    _, vocab, _, _ = tok_and_vocab
    parsed = vocab.parse_text(text)
    assert (parsed.status, parsed.fast_ids) == (status, ids)
    assert parsed.ok == (status is ParseStatus.OK)


def test_parse_llm_ids(tok_and_vocab):
    tok, vocab, _, _ = tok_and_vocab
    s, e, f = vocab.start_id, vocab.end_id, vocab.fast_llm_ids
    word = tok("lift", add_special_tokens=False)["input_ids"][0]
    assert vocab.parse_llm_ids([word, s, f[5], f[9], e, f[1]]).fast_ids == (5, 9)
    assert vocab.parse_llm_ids([word]).status is ParseStatus.NO_ACTION
    assert vocab.parse_llm_ids([s, e]).status is ParseStatus.EMPTY
    assert vocab.parse_llm_ids([s, f[5], f[9]]).status is ParseStatus.UNTERMINATED
    bad = vocab.parse_llm_ids([s, f[5], word, f[9], e])
    assert (bad.status, bad.fast_ids) == (ParseStatus.MALFORMED, (5,))
    assert vocab.parse_llm_ids([]).status is ParseStatus.NO_ACTION
    with pytest.raises(ValueError, match="flat sequence of integers"):
        vocab.parse_llm_ids([[s, e]])


def test_out_of_range_fast_ids_raise(tok_and_vocab):
    _, vocab, _, _ = tok_and_vocab
    with pytest.raises(ValueError, match=r"FAST id 300 at position 1 is out of range 0\.\.299"):
        vocab.fast_to_text([1, 300])
    with pytest.raises(ValueError, match=r"FAST id -2 at position 0"):
        vocab.fast_to_llm_ids([-2])


def test_add_is_idempotent_and_binding_requires_tokens(tok_and_vocab):
    tok, vocab, _, _ = tok_and_vocab
    n = len(tok)
    again = ActionVocab.add_to_tokenizer(tok, ActionVocabSpec(V))
    assert len(tok) == n and again.llm_ids == vocab.llm_ids
    with pytest.raises(ValueError, match=r"tokenizer lacks 6 action token\(s\) \(first: '<ACTION_START>'\)"):
        ActionVocab.from_tokenizer(build_tiny_tokenizer(), ActionVocabSpec(4))
    with pytest.raises(ValueError, match="exactly one"):
        ActionVocabSpec(4, fast_token_format="<FAST>")
    with pytest.raises(ValueError, match="positive integer"):
        ActionVocabSpec(0)


def test_resized_qwen2_embeddings_keep_old_rows_and_add_new(tok_and_vocab):
    tok, vocab, base_len, _ = tok_and_vocab
    model = tiny_qwen2(base_len)
    old_in = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    rows = vocab.resize_embeddings(model)
    assert rows == len(tok) == model.config.vocab_size
    new_in = model.get_input_embeddings().weight.detach()
    assert new_in.shape == (len(tok), 32) and model.get_output_embeddings().weight.shape == (len(tok), 32)
    torch.testing.assert_close(new_in[:base_len], old_in)
    torch.testing.assert_close(model.get_output_embeddings().weight.detach()[:base_len], old_out)
    new_rows = new_in[vocab.llm_ids]
    assert torch.isfinite(new_rows).all() and new_rows.abs().sum(dim=1).min() > 0
    assert torch.unique(new_rows, dim=0).shape[0] == V + 2  # a distinct row per new token
    ids = torch.tensor([tok("go", add_special_tokens=False)["input_ids"] + vocab.fast_to_llm_ids([1, 2, 3])])
    with torch.no_grad():
        logits = model(input_ids=ids).logits  # (1, L, vocab)
    assert logits.shape == (1, ids.shape[1], len(tok)) and torch.isfinite(logits).all()
    assert vocab.resize_embeddings(model) == rows  # already big enough: never shrinks or regrows


def test_tiny_qwen25vl_with_action_vocab_forward_and_generate():
    tok = build_tiny_tokenizer()
    model = build_tiny_qwen25vl(tok).eval()
    before = model.get_input_embeddings().weight.shape[0]
    vocab = add_action_vocabulary(model, tok, ActionVocabSpec(64))
    assert model.get_input_embeddings().weight.shape[0] == len(tok) == before + 66
    assert model.config.get_text_config().vocab_size == len(tok)
    ids = torch.tensor([tok("<answer>", add_special_tokens=False)["input_ids"] + vocab.fast_to_llm_ids([0, 63])])
    with torch.no_grad():
        out = model(input_ids=ids)
        gen = model.generate(input_ids=ids, max_new_tokens=3, do_sample=False)
    assert out.logits.shape[-1] == len(tok)
    assert gen.shape == (1, ids.shape[1] + 3) and int(gen.max()) < len(tok)


def test_save_load_checks_the_tokenizer(tok_and_vocab, tmp_path):
    tok, vocab, _, _ = tok_and_vocab
    path = vocab.save(tmp_path)
    loaded = ActionVocab.load(tmp_path, tok)
    assert loaded.llm_ids == vocab.llm_ids and loaded.spec == vocab.spec
    assert ActionVocab.load(path).parse_text(vocab.fast_to_text([4, 2])).fast_ids == (4, 2)
    other = build_tiny_tokenizer()
    other.add_tokens(["<x>"])  # shifts every action id by one
    ActionVocab.add_to_tokenizer(other, ActionVocabSpec(V))
    with pytest.raises(ValueError, match=r"tokenizer maps '<ACTION_START>' to \d+, the checkpoint expects"):
        ActionVocab.load(path, other)
    data = json.loads(path.read_text())
    data["fast_llm_ids"] = data["fast_llm_ids"][:-1]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"action_vocab.json: expected 300 FAST token ids"):
        ActionVocab.load(path)


def test_actions_through_fast_text_and_llm_ids_back_to_actions(tok_and_vocab):
    """Raw actions -> normalise -> FAST -> <answer> text -> LLM ids -> parse -> FAST decode -> actions."""
    tok, _, _, _ = tok_and_vocab
    rng = np.random.default_rng(0)
    s = np.linspace(0, 1, 8)[None, :, None]
    raw = 0.2 * np.sin(2 * np.pi * (rng.uniform(0.2, 0.6, (300, 1, 2)) * s + rng.uniform(0, 1, (300, 1, 2))))
    stats = NormStats.from_data(raw.reshape(-1, 2))
    fast = FastTokenizer.fit(stats.normalize(raw), FastConfig(chunk_len=8, action_dim=2, vocab_size=128))
    tok2 = build_tiny_tokenizer()
    vocab = ActionVocab.add_to_tokenizer(tok2, ActionVocabSpec.for_fast(fast))
    assert vocab.spec.num_fast_tokens == fast.vocab_size
    chunk = stats.normalize(raw[:3])
    texts = [vocab.fast_to_text(ids) for ids in fast.encode(chunk)]
    parsed = [vocab.parse_llm_ids(tok2(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert all(p.ok for p in parsed)
    actions, reports = fast.decode([p.fast_ids for p in parsed], strict=True)
    back = stats.unnormalize(actions)
    span = stats.q99 - stats.q01
    assert np.all(np.abs(back - np.clip(raw[:3], stats.q01, stats.q99)) <= fast.config.roundtrip_bound * span / 2 + 1e-12)
