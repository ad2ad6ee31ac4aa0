"""FAST action tokenizer (Pertsch et al. 2025, as in its public reference): DCT-II over time, scale, round, byte-pair encoding.

Pipeline for a chunk of *normalised* actions ``x`` (T, D) in [-1, 1] (normalise with
:class:`roboalign.spec.normalization.NormStats` first; the tokenizer does not own normalisation, the stats are
their own spec saved beside the checkpoint as ``norm_stats.json``):

1. ``c = dct(x, axis=time, norm="ortho")``                              (T, D) float
2. ``q = round(scale * c)``                                            (T, D) int (round half to even)
3. flatten frequency-major: ``q[0, 0..D-1], q[1, 0..D-1], …``            (T*D,)
4. symbol ``s = q - min_token`` in ``[0, alphabet_size)``, one character ``chr(s)`` each
5. BPE (Hugging Face ``tokenizers``, trained by :meth:`FastTokenizer.fit`) -> FAST ids ``[0, vocab_size)``.

Alphabet. Inputs are checked to lie in [-1, 1] (+1e-6, then clipped), so by Parseval
``|c_k| <= ||x||_2 <= sqrt(T)`` and ``|q| <= ceil(scale * sqrt(T))``. The default alphabet is exactly that
integer range; a preset with an explicit ``min_token``/``max_token`` (FAST+: -354/354) must contain it
(checked in :class:`FastConfig`). Every chunk is therefore encodable, and each single symbol is a BPE
vocabulary entry, so encoding is lossless after rounding (checked on every encode).

Round-trip error. Rounding changes each coefficient by ``e_k``, ``|e_k| <= 0.5 / scale``. The inverse
orthonormal DCT ``M`` (T, T) maps that to ``err_n = sum_k M[n, k] e_k``, so
``|err_n| <= 0.5 / scale * max_n sum_k |M[n, k]|`` (attained when every ``e_k`` is extreme with the sign of
``M[n, k]``). Each row of ``M`` has unit L2 norm, so its L1 norm is at most ``sqrt(T)`` (Cauchy–Schwarz):
``|err| <= 0.5 * sqrt(T) / scale``. :func:`roundtrip_error_bound` returns the exact (tighter) L1 form.

Decoding rule (the reference silently returns zeros; here the caller always learns what happened through
a :class:`DecodeReport` per sequence):

* invalid ids (not integers, < 0 or >= vocab_size) always raise ``ValueError``;
* exactly ``T*D`` coefficients: ``OK``;
* fewer, but at least ``D`` (the complete lowest-frequency row): ``PADDED`` — the missing *highest*
  frequencies are set to 0 (a low-pass reconstruction of what was said, never a new low-frequency value);
* more than ``T*D``: ``TRUNCATED`` — the first ``T*D`` coefficients are kept (extra high frequencies dropped);
* fewer than ``D`` (incl. empty): ``FAILED`` — the chunk cannot be reconstructed; its actions are NaN.

``decode(..., strict=True)`` raises :class:`FastDecodeError` on anything but ``OK`` (use it where actions
go to a robot); ``strict=False`` (default) returns the reports alongside the actions.
"""

from __future__ import annotations

import enum
import itertools
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from scipy.fft import dct, idct
from tokenizers import Tokenizer, decoders, models, trainers

from roboalign.spec.loader import (
    SpecNotFound,
    build,
    check_fields,
    check_format,
    check_mapping,
    read_spec_file,
)

log = logging.getLogger(__name__)

FORMAT = "roboalign.spec.fast/1"
CONFIG_FILE = "fast_config.json"
TOKENIZER_FILE = "tokenizer.json"
META_FIELDS = ("config", "trained_vocab_size", "tokenizer_file", "roundtrip_bound")  # fast_config.json
INPUT_TOLERANCE = 1e-6  # |x| may exceed 1 by this much (float error of the normaliser) before it is an error
_MAX_ALPHABET = 0xD800  # chr() of larger values would hit UTF-16 surrogates

# name -> config values (chunk_len and action_dim are always given by the caller)
PRESETS: dict[str, dict[str, Any]] = {
    # FAST as in the paper: per-dataset BPE, scale 10, vocabulary 1024, alphabet from the chunk length.
    "fast": {"scale": 10.0, "vocab_size": 1024, "min_token": None, "max_token": None},
    # FAST+-like universal settings: vocabulary 2048, min_token -354 (the public FAST+); the public
    # tokenizer's max_token is not stated, we use the symmetric +354.
    "fast+": {"scale": 10.0, "vocab_size": 2048, "min_token": -354, "max_token": 354},
}


def coefficient_bound(chunk_len: int, scale: float) -> int:
    """Largest |round(scale * c)| for a chunk in [-1, 1]^T: ceil(scale * sqrt(T)) (Parseval)."""
    return int(math.ceil(scale * math.sqrt(chunk_len)))


def roundtrip_error_bound(chunk_len: int, scale: float) -> float:
    """Exact worst-case per-sample error (normalised units) from rounding: 0.5/scale * max row-L1 of IDCT."""
    inv = idct(np.eye(chunk_len), axis=0, norm="ortho")  # (T, T): inv[n, k] = basis k at time n
    return float(0.5 / scale * np.abs(inv).sum(axis=1).max())


@dataclass(frozen=True)
class FastConfig:
    """Everything that defines a FAST tokenizer except the trained BPE merges.

    chunk_len: T, actions per chunk. action_dim: D. scale: DCT coefficient multiplier before rounding.
    vocab_size: BPE vocabulary size (alphabet + merges). min_token/max_token: integer coefficient range of
    the alphabet (None: ±ceil(scale*sqrt(T)), every chunk in [-1, 1] fits). min_frequency: the least count
    of a pair for a BPE merge. max_token_length: longest BPE token in coefficients (None: unlimited).
    """

    chunk_len: int = 16
    action_dim: int = 7
    scale: float = 10.0
    vocab_size: int = 1024
    min_token: int | None = None
    max_token: int | None = None
    min_frequency: int = 2
    max_token_length: int | None = None

    def __post_init__(self) -> None:
        for name in ("chunk_len", "action_dim", "vocab_size", "min_frequency"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"FastConfig.{name} must be a positive integer, got {v!r}")
            object.__setattr__(self, name, int(v))
        if self.max_token_length is not None and (
            not isinstance(self.max_token_length, int) or self.max_token_length < 1
        ):
            raise ValueError(f"FastConfig.max_token_length must be None or >= 1, got {self.max_token_length!r}")
        if not isinstance(self.scale, (int, float)) or not math.isfinite(self.scale) or self.scale <= 0:
            raise ValueError(f"FastConfig.scale must be a finite number > 0, got {self.scale!r}")
        object.__setattr__(self, "scale", float(self.scale))
        bound = coefficient_bound(self.chunk_len, self.scale)
        lo = -bound if self.min_token is None else self.min_token
        hi = bound if self.max_token is None else self.max_token
        for name, v in (("min_token", lo), ("max_token", hi)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"FastConfig.{name} must be an integer or None, got {v!r}")
        if lo > -bound or hi < bound:
            raise ValueError(
                f"FastConfig alphabet [min_token={lo}, max_token={hi}] cannot hold every chunk: DCT coefficients "
                f"of a chunk in [-1, 1] with chunk_len={self.chunk_len}, scale={self.scale} reach ±{bound}; "
                f"use min_token <= {-bound} and max_token >= {bound} (or None for exactly that range)"
            )
        object.__setattr__(self, "min_token", int(lo))
        object.__setattr__(self, "max_token", int(hi))
        if self.alphabet_size > _MAX_ALPHABET:
            raise ValueError(f"FastConfig alphabet of {self.alphabet_size} symbols is too large (max {_MAX_ALPHABET})")
        if self.vocab_size < self.alphabet_size:
            raise ValueError(
                f"FastConfig.vocab_size={self.vocab_size} is smaller than the alphabet "
                f"({self.alphabet_size} symbols for coefficients {lo}..{hi}); use vocab_size >= {self.alphabet_size}"
            )

    @classmethod
    def preset(cls, name: str, chunk_len: int, action_dim: int, **overrides: Any) -> FastConfig:
        """A named preset (``fast`` or ``fast+``) for chunks of shape (chunk_len, action_dim)."""
        if name not in PRESETS:
            raise ValueError(f"unknown FAST preset {name!r}; valid presets: {', '.join(PRESETS)}")
        return cls(chunk_len=chunk_len, action_dim=action_dim, **{**PRESETS[name], **overrides})

    @property
    def num_coefficients(self) -> int:
        """T*D: integer coefficients of one chunk."""
        return self.chunk_len * self.action_dim

    @property
    def alphabet_size(self) -> int:
        return int(self.max_token) - int(self.min_token) + 1  # type: ignore[operator]

    @property
    def roundtrip_bound(self) -> float:
        """Worst-case |x - decode(encode(x))| per sample, normalised units (see module doc)."""
        return roundtrip_error_bound(self.chunk_len, self.scale)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "dict") -> FastConfig:
        check_fields(check_mapping(data, source, "FAST config"), [f.name for f in fields(cls)], source,
                     required=("chunk_len", "action_dim", "scale", "vocab_size", "min_token", "max_token"))
        return build(cls, data, source)


# ---------------------------------------------------------------------- DCT + quantisation (no BPE)
def _check_chunks(chunks: np.ndarray, config: FastConfig) -> np.ndarray:
    """Validate (N, T, D) normalised chunks; returns float64, clipped to [-1, 1]."""
    x = np.asarray(chunks)
    t, d = config.chunk_len, config.action_dim
    if x.ndim != 3 or x.shape[1:] != (t, d):
        raise ValueError(f"FAST expects chunks of shape (N, {t}, {d}) (N, chunk_len, action_dim), got {x.shape}")
    if x.dtype.kind not in "fiu":
        raise ValueError(f"FAST expects numeric chunks, got dtype {x.dtype}")
    x = x.astype(np.float64, copy=False)
    bad = ~np.isfinite(x) | (np.abs(x) > 1.0 + INPUT_TOLERANCE)
    if bad.any():
        n, k, j = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"FAST input chunk {n}, step {k}, dimension {j} is {x[n, k, j]}: chunks must be normalised to "
            f"[-1, 1] (NormStats.normalize) and finite ({int(bad.sum())} bad value(s) in total)"
        )
    return np.clip(x, -1.0, 1.0)


def quantize(chunks: np.ndarray, config: FastConfig) -> np.ndarray:
    """(N, T, D) normalised chunks -> (N, T*D) int64 rounded scaled DCT coefficients, frequency-major."""
    x = _check_chunks(chunks, config)
    coeff = dct(x, axis=1, norm="ortho")  # (N, T, D), DCT-II along time
    q = np.rint(coeff * config.scale).astype(np.int64)  # (N, T, D); rint = round half to even
    return q.reshape(q.shape[0], config.num_coefficients)  # row-major (T, D) -> frequency-major


def dequantize(coefficients: np.ndarray, config: FastConfig) -> np.ndarray:
    """(N, T*D) integer coefficients (frequency-major) -> (N, T, D) normalised actions (inverse DCT)."""
    q = np.asarray(coefficients, dtype=np.float64)
    q = q.reshape(q.shape[0], config.chunk_len, config.action_dim)  # (N, T, D)
    return idct(q / config.scale, axis=1, norm="ortho")


def _to_strings(q: np.ndarray, config: FastConfig) -> list[str]:
    """(N, T*D) int coefficients -> one string per chunk, character ``chr(q - min_token)``."""
    sym = (q - config.min_token).astype("<u4")  # (N, L), little-endian UTF-32 code points
    text = sym.tobytes().decode("utf-32-le")
    n = config.num_coefficients
    return [text[i * n : (i + 1) * n] for i in range(q.shape[0])]


# ---------------------------------------------------------------------- decode reports
class DecodeStatus(str, enum.Enum):
    OK = "ok"  # exactly T*D coefficients
    PADDED = "padded"  # fewer: missing high frequencies set to 0
    TRUNCATED = "truncated"  # more: coefficients after the first T*D dropped
    FAILED = "failed"  # fewer than D (no full lowest-frequency row): actions are NaN


class FastDecodeError(ValueError):
    """A FAST sequence that does not decode exactly (strict mode) or cannot be decoded at all."""


@dataclass(frozen=True)
class DecodeReport:
    """What happened when one FAST id sequence was decoded."""

    status: DecodeStatus
    num_tokens: int
    num_coefficients: int  # coefficients the tokens expand to
    expected: int  # T*D

    @property
    def ok(self) -> bool:
        return self.status is DecodeStatus.OK

    @property
    def message(self) -> str:
        got = f"{self.num_tokens} tokens -> {self.num_coefficients} coefficients, expected {self.expected}"
        return {
            DecodeStatus.OK: f"ok ({got})",
            DecodeStatus.PADDED: f"padded {self.expected - self.num_coefficients} missing high frequencies with 0 ({got})",
            DecodeStatus.TRUNCATED: f"dropped {self.num_coefficients - self.expected} extra coefficients ({got})",
            DecodeStatus.FAILED: f"cannot decode: lowest-frequency row incomplete ({got}); actions are NaN",
        }[self.status]


def _as_id_array(seq: Any, row: int) -> np.ndarray:
    arr = np.asarray(seq)
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise ValueError(
            f"FAST ids of sequence {row} must be a flat sequence of integers, got dtype {arr.dtype} shape {arr.shape}"
        )
    return arr.astype(np.int64, copy=False)


# ---------------------------------------------------------------------- the tokenizer
class FastTokenizer:
    """A fitted FAST tokenizer: :class:`FastConfig` + trained BPE (``tokenizers.Tokenizer``)."""

    def __init__(self, config: FastConfig, bpe: Tokenizer) -> None:
        self.config = config
        self.bpe = bpe
        self._build_tables()

    def _build_tables(self) -> None:
        """Check the BPE is a plain lossless code over our alphabet; build id -> coefficients tables."""
        spec = json.loads(self.bpe.to_str())
        if spec.get("model", {}).get("type") != "BPE":
            raise ValueError(f"FAST tokenizer model must be BPE, got {spec.get('model', {}).get('type')!r}")
        for part in ("normalizer", "pre_tokenizer", "post_processor"):
            if spec.get(part) is not None:
                raise ValueError(f"FAST tokenizer must have no {part} (it would alter coefficient strings)")
        if spec.get("added_tokens"):
            raise ValueError("FAST tokenizer must have no added tokens")
        vocab = self.bpe.get_vocab(with_added_tokens=False)
        v = len(vocab)
        if v > self.config.vocab_size:
            raise ValueError(f"FAST tokenizer has {v} tokens, more than vocab_size={self.config.vocab_size}")
        if sorted(vocab.values()) != list(range(v)):
            raise ValueError("FAST tokenizer ids are not contiguous 0..V-1")
        pieces: list[str] = [""] * v
        for piece, i in vocab.items():
            pieces[i] = piece
        lens = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=v)  # (V,)
        flat = np.frombuffer("".join(pieces).encode("utf-32-le"), dtype="<u4").astype(np.int64)
        a = self.config.alphabet_size
        if (lens == 0).any() or (flat >= a).any():
            raise ValueError(f"FAST tokenizer holds tokens outside the alphabet of {a} symbols")
        singles = {ord(p) for p in pieces if len(p) == 1}
        missing = [s for s in range(a) if s not in singles]
        if missing:
            raise ValueError(
                f"FAST tokenizer lacks {len(missing)} alphabet symbol(s) (first: coefficient "
                f"{missing[0] + self.config.min_token}); encoding would drop them"
            )
        self._sym_len = lens  # (V,) coefficients per id
        self._sym_start = np.cumsum(lens) - lens  # (V,) offset into _sym_flat
        self._sym_flat = flat + self.config.min_token  # (sum lens,) integer coefficients

    # -------------------------------------------------------------- fit / properties
    @classmethod
    def fit(cls, chunks: np.ndarray, config: FastConfig, show_progress: bool = False) -> FastTokenizer:
        """Train the BPE on normalised chunks (N, T, D); returns the fitted tokenizer."""
        q = quantize(chunks, config)  # (N, L)
        if q.shape[0] == 0:
            raise ValueError("FastTokenizer.fit needs at least one chunk")
        bpe = Tokenizer(models.BPE())  # no normalizer / pre-tokenizer: one chunk = one BPE word
        bpe.decoder = decoders.Fuse()  # bpe.decode(ids) = the symbol string (for external users)
        trainer = trainers.BpeTrainer(
            vocab_size=config.vocab_size,
            min_frequency=config.min_frequency,
            show_progress=show_progress,
            special_tokens=[],
            initial_alphabet=[chr(i) for i in range(config.alphabet_size)],
            max_token_length=config.max_token_length,
        )
        bpe.train_from_iterator(_to_strings(q, config), trainer=trainer, length=q.shape[0])
        tok = cls(config, bpe)
        if tok.vocab_size < config.vocab_size:
            log.info("FAST BPE stopped at %d of %d tokens (no pair seen >= %d times)",
                     tok.vocab_size, config.vocab_size, config.min_frequency)
        return tok

    def __repr__(self) -> str:
        c = self.config
        return (f"FastTokenizer(T={c.chunk_len}, D={c.action_dim}, scale={c.scale:g}, vocab={self.vocab_size}/"
                f"{c.vocab_size}, coefficients {c.min_token}..{c.max_token})")

    @property
    def vocab_size(self) -> int:
        """Trained vocabulary size (<= config.vocab_size; smaller when the data ran out of frequent pairs)."""
        return int(self._sym_len.shape[0])

    # -------------------------------------------------------------- encode
    def encode(self, chunks: np.ndarray) -> list[list[int]]:
        """(N, T, D) normalised chunks -> N lists of FAST ids (ragged)."""
        q = quantize(chunks, self.config)  # (N, L)
        if q.shape[0] == 0:
            return []
        if q.min() < self.config.min_token or q.max() > self.config.max_token:  # impossible by construction
            raise RuntimeError("FAST coefficient outside the alphabet despite the input check")
        ids = [e.ids for e in self.bpe.encode_batch_fast(_to_strings(q, self.config), add_special_tokens=False)]
        counts = np.fromiter((len(r) for r in ids), dtype=np.int64, count=len(ids))  # (N,)
        flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(counts.sum()))
        per_row = np.bincount(np.repeat(np.arange(len(ids)), counts), weights=self._sym_len[flat])  # (N,)
        bad = np.flatnonzero(per_row != self.config.num_coefficients)
        if bad.size:  # guard against a lossy BPE (e.g. a hand-edited tokenizer.json)
            raise RuntimeError(f"FAST encode of chunk {int(bad[0])} is lossy: {per_row[bad[0]]} coefficients")
        return ids

    def encode_one(self, chunk: np.ndarray) -> list[int]:
        """(T, D) normalised chunk -> FAST ids."""
        return self.encode(np.asarray(chunk)[None])[0]

    # -------------------------------------------------------------- decode
    def _expand(self, ids: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """FAST ids -> (flat coefficients (C,), coefficients per sequence (N,), tokens per sequence (N,))."""
        rows = [_as_id_array(r, i) for i, r in enumerate(ids)]
        n = len(rows)
        counts = np.fromiter((r.size for r in rows), dtype=np.int64, count=n)  # (N,)
        flat = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)  # (K,) all ids
        bad = (flat < 0) | (flat >= self.vocab_size)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            ends = np.cumsum(counts)
            row = int(np.searchsorted(ends, k, side="right"))
            raise ValueError(
                f"invalid FAST id {int(flat[k])} in sequence {row} at position {k - int(ends[row] - counts[row])}: "
                f"valid ids are 0..{self.vocab_size - 1}"
            )
        lens = self._sym_len[flat]  # (K,) coefficients per token
        total = int(lens.sum())
        gather = np.repeat(self._sym_start[flat] - (np.cumsum(lens) - lens), lens) + np.arange(total)  # (C,)
        row_of_token = np.repeat(np.arange(n), counts)  # (K,)
        row_sym = np.bincount(row_of_token, weights=lens, minlength=n).astype(np.int64)  # (N,)
        return self._sym_flat[gather], row_sym, counts

    def coefficients(self, ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """FAST ids -> one int64 array of integer DCT coefficients per sequence (unpadded, frequency-major).

        Raises ``ValueError`` naming the sequence and position of an invalid id.
        """
        coeff, row_sym, _ = self._expand(ids)
        return np.split(coeff, np.cumsum(row_sym)[:-1]) if len(row_sym) else []

    def decode(
        self, ids: Sequence[Sequence[int]], strict: bool = False
    ) -> tuple[np.ndarray, list[DecodeReport]]:
        """N FAST id sequences -> ((N, T, D) normalised actions, N reports). See the module doc for the rule.

        Invalid ids raise ``ValueError``. strict=True raises :class:`FastDecodeError` unless every sequence is
        exactly ``OK``; otherwise PADDED/TRUNCATED sequences decode by the documented rule and FAILED ones
        are NaN.
        """
        cfg = self.config
        length = cfg.num_coefficients
        coeff, row_sym, counts = self._expand(ids)  # (C,), (N,), (N,)
        n = row_sym.shape[0]
        status = np.where(row_sym < cfg.action_dim, 3, np.where(row_sym < length, 1, np.where(row_sym > length, 2, 0)))
        kinds = (DecodeStatus.OK, DecodeStatus.PADDED, DecodeStatus.TRUNCATED, DecodeStatus.FAILED)
        reports = [DecodeReport(kinds[s], int(k), int(m), length) for s, k, m in zip(status, counts, row_sym, strict=True)]
        if strict and (status != 0).any():
            bad = np.flatnonzero(status != 0)
            raise FastDecodeError(
                f"FAST sequence {int(bad[0])} does not decode exactly: {reports[bad[0]].message}"
                + (f" ({bad.size - 1} more sequence(s) not ok)" if bad.size > 1 else "")
            )
        row_of_sym = np.repeat(np.arange(n), row_sym)  # (C,)
        pos = np.arange(coeff.shape[0]) - np.repeat(np.cumsum(row_sym) - row_sym, row_sym)  # (C,) index in row
        keep = pos < length  # TRUNCATED: drop coefficients past T*D
        q = np.zeros((n, length), dtype=np.int64)  # (N, T*D); PADDED: missing high frequencies stay 0
        q[row_of_sym[keep], pos[keep]] = coeff[keep]
        actions = dequantize(q, cfg)  # (N, T, D)
        actions[status == 3] = np.nan  # FAILED
        return actions, reports

    def decode_one(self, ids: Sequence[int], strict: bool = False) -> tuple[np.ndarray, DecodeReport]:
        """One FAST id sequence -> ((T, D) normalised actions, report)."""
        actions, reports = self.decode([ids], strict=strict)
        return actions[0], reports[0]

    # -------------------------------------------------------------- save / load
    def save(self, directory: str | Path) -> Path:
        """Write ``fast_config.json`` and ``tokenizer.json`` into ``directory`` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "config": self.config.to_dict(), "trained_vocab_size": self.vocab_size,
                "tokenizer_file": TOKENIZER_FILE, "roundtrip_bound": self.config.roundtrip_bound}
        (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        self.bpe.save(str(directory / TOKENIZER_FILE))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> FastTokenizer:
        """Read a tokenizer written by :meth:`save`; any inconsistency raises ``ValueError`` naming the file."""
        directory = Path(directory)
        cfg_path, tok_path = directory / CONFIG_FILE, directory / TOKENIZER_FILE
        meta = check_format(read_spec_file(cfg_path, "FAST tokenizer file"), FORMAT, str(cfg_path), "FAST tokenizer config")
        if not tok_path.is_file():
            raise SpecNotFound(f"FAST tokenizer file not found: {tok_path}")
        check_fields(meta, META_FIELDS, str(cfg_path), required=("config",))
        config = FastConfig.from_dict(meta["config"], source=str(cfg_path))
        try:
            bpe = Tokenizer.from_file(str(tok_path))
        except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
            raise ValueError(f"{tok_path}: cannot read tokenizer: {e}") from None
        try:
            tok = cls(config, bpe)
        except ValueError as e:
            raise ValueError(f"{tok_path}: {e}") from None
        trained = meta.get("trained_vocab_size")
        if trained is not None and trained != tok.vocab_size:
            raise ValueError(f"{cfg_path}: trained_vocab_size={trained} but {tok_path} holds {tok.vocab_size} tokens")
        return tok
