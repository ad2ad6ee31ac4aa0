"""The action vocabulary of the MLLM: ``<ACTION_START>``, ``<ACTION_END>`` and one new token per FAST id.

RoboAlign (the paper's vocabulary step) *adds* these tokens to the Hugging Face tokenizer (they are not mapped onto rare
existing tokens) and resizes the model's embeddings. This module does that and converts both ways between

* FAST ids (``roboalign.spec.fast``; 0..V-1),
* LLM token ids (what the model reads and generates),
* the ``<answer>`` text ``<ACTION_START><FAST_12><FAST_7>…<ACTION_END>``.

The tokens are added as *non-special* added tokens (``AddedToken(normalized=False, special=False)``):
they are matched as whole tokens in any text, and they survive ``decode(skip_special_tokens=True)``,
which TRL uses to turn completions into text for the reward functions.

Parsing generated output (text or ids) never raises on model output; it returns a :class:`ParsedAction`
whose ``status`` says what was found:

* ``OK``           — ``<ACTION_START>`` FAST tokens… ``<ACTION_END>`` (at least one FAST token);
* ``NO_ACTION``    — no ``<ACTION_START>`` at all (``fast_ids`` empty);
* ``EMPTY``        — ``<ACTION_START><ACTION_END>`` with nothing between;
* ``UNTERMINATED`` — FAST tokens run to the end of the input without ``<ACTION_END>``;
* ``MALFORMED``    — something other than a FAST token (or an out-of-range ``<FAST_n>``) came before
  ``<ACTION_END>``.
``fast_ids`` always holds the FAST ids read after the first ``<ACTION_START>`` up to where reading stopped
(a prefix, as the GRPO prefix-accuracy reward needs). Whitespace between tokens in text is ignored.

The mapping (token strings and their LLM ids) is saved beside a checkpoint as ``action_vocab.json``;
loading it against a tokenizer checks that the tokenizer still maps every token to the same id.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import AddedToken

from roboalign.spec.loader import SpecError, build, check_fields, load_spec

FORMAT = "roboalign.spec.action_vocab/1"
FILE_NAME = "action_vocab.json"
# The action markers and the FAST token spelling, defined here only (prompts.py takes its defaults from these;
# prompts.check_markers refuses a checkpoint whose template and vocabulary disagree).
ACTION_START = "<ACTION_START>"
ACTION_END = "<ACTION_END>"
FAST_TOKEN_FORMAT = "<FAST_{}>"


@dataclass(frozen=True)
class ActionVocabSpec:
    """Which tokens make up the action vocabulary (independent of any tokenizer)."""

    num_fast_tokens: int
    start_token: str = ACTION_START
    end_token: str = ACTION_END
    fast_token_format: str = FAST_TOKEN_FORMAT

    def __post_init__(self) -> None:
        n = self.num_fast_tokens
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"ActionVocabSpec.num_fast_tokens must be a positive integer, got {n!r}")
        object.__setattr__(self, "num_fast_tokens", int(n))
        if self.fast_token_format.count("{}") != 1:
            raise ValueError(f"fast_token_format must contain exactly one '{{}}', got {self.fast_token_format!r}")
        prefix, suffix = self.fast_token_format.split("{}")
        if not prefix or not suffix:
            raise ValueError(f"fast_token_format needs text before and after '{{}}', got {self.fast_token_format!r}")
        for name in ("start_token", "end_token"):
            tok = getattr(self, name)
            if not tok or tok.strip() != tok:
                raise ValueError(f"ActionVocabSpec.{name} must be non-empty without surrounding spaces, got {tok!r}")
            if tok.startswith(prefix) and tok.endswith(suffix):
                raise ValueError(f"ActionVocabSpec.{name}={tok!r} looks like a FAST token ({self.fast_token_format})")
        if self.start_token == self.end_token:
            raise ValueError("ActionVocabSpec start_token and end_token must differ")

    @classmethod
    def for_fast(cls, fast_tokenizer: Any, **kwargs: Any) -> ActionVocabSpec:
        """One token per id of a fitted :class:`roboalign.spec.fast.FastTokenizer` (its trained vocabulary)."""
        return cls(num_fast_tokens=fast_tokenizer.vocab_size, **kwargs)

    def fast_token(self, fast_id: int) -> str:
        return self.fast_token_format.format(int(fast_id))

    def tokens(self) -> list[str]:
        """All new tokens in the order they are added: start, end, FAST_0 … FAST_{V-1}."""
        return [self.start_token, self.end_token] + [self.fast_token(i) for i in range(self.num_fast_tokens)]


class ParseStatus(str, enum.Enum):
    OK = "ok"
    NO_ACTION = "no_action"
    EMPTY = "empty"
    UNTERMINATED = "unterminated"
    MALFORMED = "malformed"


@dataclass(frozen=True)
class ParsedAction:
    """The FAST ids found in a generated answer and how parsing went (see the module doc)."""

    fast_ids: tuple[int, ...]
    status: ParseStatus
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status is ParseStatus.OK


def _unwrap_tokenizer(tokenizer: Any) -> Any:
    """Accept a tokenizer or a processor holding one (``processor.tokenizer``)."""
    if not hasattr(tokenizer, "add_tokens") and hasattr(tokenizer, "tokenizer"):
        return tokenizer.tokenizer
    return tokenizer


def _as_int_list(ids: Any) -> list[int]:
    """A list/array/tensor of token ids -> list of Python ints (1-D)."""
    if hasattr(ids, "detach"):  # torch tensor, without importing torch here
        ids = ids.detach().cpu().numpy()
    arr = np.asarray(ids)
    if arr.size == 0:
        return []
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise ValueError(f"token ids must be a flat sequence of integers, got dtype {arr.dtype} shape {arr.shape}")
    return arr.astype(np.int64).tolist()


class ActionVocab:
    """An :class:`ActionVocabSpec` bound to the LLM ids one tokenizer gives its tokens."""

    def __init__(self, spec: ActionVocabSpec, start_id: int, end_id: int, fast_llm_ids: Sequence[int]) -> None:
        ids = np.asarray(fast_llm_ids, dtype=np.int64)  # (V,) LLM id of FAST id i
        if ids.shape != (spec.num_fast_tokens,):
            raise ValueError(f"expected {spec.num_fast_tokens} FAST token ids, got shape {ids.shape}")
        every = [int(start_id), int(end_id), *ids.tolist()]
        if len(set(every)) != len(every):
            raise ValueError("action vocabulary tokens do not have distinct LLM ids")
        if min(every) < 0:
            raise ValueError(f"negative LLM token id in the action vocabulary: {min(every)}")
        self.spec = spec
        self.start_id = int(start_id)
        self.end_id = int(end_id)
        self.fast_llm_ids = ids
        self.fast_llm_ids.setflags(write=False)
        self._llm_to_fast = {int(t): i for i, t in enumerate(ids.tolist())}
        prefix, suffix = spec.fast_token_format.split("{}")
        self._item = re.compile(
            r"\s*(?:" + re.escape(prefix) + r"(0|[1-9][0-9]*)" + re.escape(suffix) + "|(" + re.escape(spec.end_token) + "))"
        )

    # -------------------------------------------------------------- binding to a tokenizer
    @classmethod
    def add_to_tokenizer(cls, tokenizer: Any, spec: ActionVocabSpec) -> ActionVocab:
        """Add the action tokens to ``tokenizer`` (in place) and return the bound vocabulary.

        Idempotent: tokens the tokenizer already has as *added* tokens are kept. A token that exists in
        the base vocabulary (it would be an existing token re-used) is an error.
        """
        tok = _unwrap_tokenizer(tokenizer)
        wanted = spec.tokens()
        vocab = tok.get_vocab()
        added = set(tok.get_added_vocab())
        clash = [t for t in wanted if t in vocab and t not in added]
        if clash:
            raise ValueError(
                f"tokenizer already has {len(clash)} action token(s) as ordinary vocabulary entries "
                f"(first: {clash[0]!r}); action tokens must be new added tokens"
            )
        new = [AddedToken(t, normalized=False, special=False, single_word=False, lstrip=False, rstrip=False)
               for t in wanted if t not in added]
        if new:
            tok.add_tokens(new, special_tokens=False)
        return cls.from_tokenizer(tok, spec)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, spec: ActionVocabSpec) -> ActionVocab:
        """Bind ``spec`` to a tokenizer that already has every action token as an added token."""
        tok = _unwrap_tokenizer(tokenizer)
        added = tok.get_added_vocab()  # token -> id
        missing = [t for t in spec.tokens() if t not in added]
        if missing:
            raise ValueError(
                f"tokenizer lacks {len(missing)} action token(s) (first: {missing[0]!r}); "
                "call ActionVocab.add_to_tokenizer first"
            )
        fast = [added[spec.fast_token(i)] for i in range(spec.num_fast_tokens)]
        vocab = cls(spec, added[spec.start_token], added[spec.end_token], fast)
        vocab.check_tokenizer(tok)
        return vocab

    def check_tokenizer(self, tokenizer: Any) -> None:
        """Raise unless ``tokenizer`` encodes the action text to exactly our ids (one id per token)."""
        tok = _unwrap_tokenizer(tokenizer)
        probe = [0, self.spec.num_fast_tokens - 1]
        got = tok(self.fast_to_text(probe), add_special_tokens=False)["input_ids"]
        want = self.fast_to_llm_ids(probe)
        if list(got) != want:
            raise ValueError(f"tokenizer encodes {self.fast_to_text(probe)!r} to {list(got)}, expected {want}")

    def resize_embeddings(self, model: Any, pad_to_multiple_of: int | None = None) -> int:
        """Grow the model's input (and output) embeddings so every action token id has a row.

        New rows are initialised by transformers' ``mean_resizing`` (mean and covariance of the old rows).
        Never shrinks: a model that already has enough rows (e.g. Qwen's padded embedding matrix) keeps them.
        Returns the number of embedding rows afterwards.
        """
        needed = max(self.start_id, self.end_id, int(self.fast_llm_ids.max())) + 1
        rows = int(model.get_input_embeddings().weight.shape[0])
        if needed > rows:
            model.resize_token_embeddings(needed, pad_to_multiple_of=pad_to_multiple_of)
            rows = int(model.get_input_embeddings().weight.shape[0])
        return rows

    @property
    def llm_to_fast(self) -> dict[int, int]:
        """LLM token id -> FAST id (a copy; the rewards parse completions with :meth:`parse_llm_ids` instead)."""
        return dict(self._llm_to_fast)

    @property
    def llm_ids(self) -> list[int]:
        """All action token ids: start, end, FAST_0 … FAST_{V-1}."""
        return [self.start_id, self.end_id, *self.fast_llm_ids.tolist()]

    # -------------------------------------------------------------- FAST ids <-> text / LLM ids
    def _check_fast(self, fast_ids: Iterable[int]) -> list[int]:
        ids = np.asarray(_as_int_list(fast_ids if hasattr(fast_ids, "__array__") else list(fast_ids)), dtype=np.int64)
        bad = (ids < 0) | (ids >= self.spec.num_fast_tokens)
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise ValueError(f"FAST id {ids[pos]} at position {pos} is out of range 0..{self.spec.num_fast_tokens - 1}")
        return ids.tolist()

    def fast_to_text(self, fast_ids: Iterable[int]) -> str:
        """FAST ids -> ``<ACTION_START><FAST_a><FAST_b>…<ACTION_END>``."""
        ids = self._check_fast(fast_ids)
        return self.spec.start_token + "".join(self.spec.fast_token(i) for i in ids) + self.spec.end_token

    def fast_to_llm_ids(self, fast_ids: Iterable[int], markers: bool = True) -> list[int]:
        """FAST ids -> LLM token ids (with start/end markers unless ``markers=False``)."""
        ids = self.fast_llm_ids[np.asarray(self._check_fast(fast_ids), dtype=np.int64)].tolist()
        return [self.start_id, *ids, self.end_id] if markers else ids

    def parse_text(self, text: str) -> ParsedAction:
        """Generated text -> the FAST ids after the first ``<ACTION_START>`` (see module doc)."""
        if not isinstance(text, str):
            raise TypeError(f"parse_text expects a str, got {type(text).__name__}")
        start = text.find(self.spec.start_token)
        if start < 0:
            return ParsedAction((), ParseStatus.NO_ACTION, f"no {self.spec.start_token} in the text")
        pos = start + len(self.spec.start_token)
        ids: list[int] = []
        v = self.spec.num_fast_tokens
        while True:
            m = self._item.match(text, pos)
            if m is None:
                rest = text[pos:]
                if not rest.strip():
                    return ParsedAction(tuple(ids), ParseStatus.UNTERMINATED, f"no {self.spec.end_token}")
                return ParsedAction(tuple(ids), ParseStatus.MALFORMED, f"unexpected text {rest.strip()[:40]!r}")
            if m.group(2) is not None:  # end marker
                if not ids:
                    return ParsedAction((), ParseStatus.EMPTY, "no FAST tokens between the markers")
                return ParsedAction(tuple(ids), ParseStatus.OK)
            i = int(m.group(1))
            if i >= v:
                return ParsedAction(tuple(ids), ParseStatus.MALFORMED, f"FAST id {i} out of range 0..{v - 1}")
            ids.append(i)
            pos = m.end()

    def parse_llm_ids(self, llm_ids: Any) -> ParsedAction:
        """Generated LLM token ids -> the FAST ids after the first ``<ACTION_START>`` (see module doc)."""
        ids = _as_int_list(llm_ids)
        try:
            start = ids.index(self.start_id)
        except ValueError:
            return ParsedAction((), ParseStatus.NO_ACTION, f"no {self.spec.start_token} id {self.start_id}")
        fast: list[int] = []
        for tid in ids[start + 1 :]:
            if tid == self.end_id:
                if not fast:
                    return ParsedAction((), ParseStatus.EMPTY, "no FAST tokens between the markers")
                return ParsedAction(tuple(fast), ParseStatus.OK)
            f = self._llm_to_fast.get(tid)
            if f is None:
                return ParsedAction(tuple(fast), ParseStatus.MALFORMED, f"non-FAST token id {tid} before the end")
            fast.append(f)
        return ParsedAction(tuple(fast), ParseStatus.UNTERMINATED, f"no {self.spec.end_token}")

    # -------------------------------------------------------------- save / load
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "spec": asdict(self.spec),
            "start_id": self.start_id,
            "end_id": self.end_id,
            "fast_llm_ids": self.fast_llm_ids.tolist(),
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``action_vocab.json`` into ``directory`` (created if needed); returns the file path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / FILE_NAME
        path.write_text(json.dumps(self.to_dict()) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path, tokenizer: Any | None = None) -> ActionVocab:
        """Read ``action_vocab.json`` (or a directory holding it). With ``tokenizer``, check it maps every
        action token to the saved id (raises ``ValueError`` naming the first mismatch)."""
        data, source = load_spec(path, FORMAT, FILE_NAME, "action vocabulary")
        keys = ("spec", "start_id", "end_id", "fast_llm_ids")
        check_fields(data, keys, source, required=keys)
        spec = build(ActionVocabSpec, data["spec"], f"{source}.spec")
        try:
            vocab = cls(spec, data["start_id"], data["end_id"], data["fast_llm_ids"])
        except (TypeError, ValueError) as e:
            raise SpecError(f"{source}: {e}") from None
        if tokenizer is not None:
            added = _unwrap_tokenizer(tokenizer).get_added_vocab()
            for token, want in zip(vocab.spec.tokens(), vocab.llm_ids, strict=True):
                if added.get(token) != want:
                    raise ValueError(
                        f"{source}: tokenizer maps {token!r} to {added.get(token)}, the checkpoint expects {want}"
                    )
        return vocab


def add_action_vocabulary(model: Any, tokenizer: Any, spec: ActionVocabSpec) -> ActionVocab:
    """Add the action tokens to ``tokenizer`` and grow ``model``'s embeddings to match (both in place)."""
    vocab = ActionVocab.add_to_tokenizer(tokenizer, spec)
    vocab.resize_embeddings(model)
    return vocab
