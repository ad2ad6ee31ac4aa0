"""FAST tokenizer: hand-computed DCT cases, the rounding bound (hypothesis), BPE losslessness, decode rules,
save/load identity and the benchmark's compression claim."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from roboalign.bench.fast import synthetic_episodes, windows
from roboalign.spec.fast import (
    DecodeStatus,
    FastConfig,
    FastDecodeError,
    FastTokenizer,
    dequantize,
    quantize,
    roundtrip_error_bound,
)
from roboalign.spec.normalization import NormStats

T, D = 8, 3  # small chunks for the property tests


def smooth_chunks(n: int, t: int, d: int, seed: int) -> np.ndarray:
    """(n, t, d) random low-frequency curves in [-1, 1] plus a little noise."""
    rng = np.random.default_rng(seed)
    s = np.linspace(0.0, 1.0, t)[None, :, None]
    x = rng.uniform(-0.6, 0.6, (n, 1, d)) + rng.uniform(-0.3, 0.3, (n, 1, d)) * np.sin(
        2 * np.pi * rng.uniform(0.1, 0.8, (n, 1, d)) * s + rng.uniform(0, 2 * np.pi, (n, 1, d))
    )
    return np.clip(x + rng.normal(0, 0.01, x.shape), -1, 1)


@pytest.fixture(scope="module")
def small() -> FastTokenizer:
    return FastTokenizer.fit(smooth_chunks(600, T, D, seed=0), FastConfig(chunk_len=T, action_dim=D, vocab_size=256))


@pytest.fixture(scope="module")
def demo() -> tuple[FastTokenizer, np.ndarray]:
    """FAST fitted on synthetic pick-and-place demos (16 x 7), and held-out normalised chunks."""
    eps = synthetic_episodes(60, seed=3)
    stats = NormStats.from_data(np.concatenate(eps[:48]))
    train = stats.normalize(windows(eps[:48], 16, 2))
    test = stats.normalize(windows(eps[48:], 16, 4))
    return FastTokenizer.fit(train, FastConfig.preset("fast", 16, 7)), test


# ---------------------------------------------------------------------- hand-computed DCT cases
def test_constant_chunk_has_only_the_dc_coefficient():
    cfg = FastConfig(chunk_len=4, action_dim=2, vocab_size=128)
    x = np.empty((1, 4, 2))
    x[:, :, 0], x[:, :, 1] = 0.5, -0.25
    # orthonormal DCT-II: c_0 = sum(x) / sqrt(T) = 4 * 0.5 / 2 = 1.0 and -0.5; scale 10 -> 10 and -5.
    # frequency-major: [c0(d0), c0(d1), c1(d0), c1(d1), ...]
    assert quantize(x, cfg).tolist() == [[10, -5, 0, 0, 0, 0, 0, 0]]


def test_first_harmonic_lands_at_frequency_one_of_its_dimension():
    cfg = FastConfig(chunk_len=4, action_dim=2, vocab_size=128)
    n = np.arange(4)
    x = np.zeros((1, 4, 2))
    x[0, :, 1] = 0.5 * np.cos(np.pi * (2 * n + 1) / 8)  # basis vector k=1 (norm sqrt(T/2)) times 0.5
    # c_1 = 0.5 * sqrt(2/T) * sum cos^2 = 0.5 * sqrt(2/4) * 2 = 0.7071 -> round(7.071) = 7 at index 1*D + 1 = 3
    assert quantize(x, cfg).tolist() == [[0, 0, 0, 7, 0, 0, 0, 0]]


def test_quantize_matches_the_textbook_dct_formula():
    cfg = FastConfig(chunk_len=6, action_dim=2, scale=7.0, vocab_size=128)
    x = np.random.default_rng(1).uniform(-1, 1, (5, 6, 2))
    t = 6
    k, n = np.meshgrid(np.arange(t), np.arange(t), indexing="ij")
    basis = np.sqrt(2 / t) * np.cos(np.pi * k * (2 * n + 1) / (2 * t))  # (K, N)
    basis[0] /= np.sqrt(2)
    coeff = np.einsum("kn,bnd->bkd", basis, x)  # (B, K, D)
    np.testing.assert_array_equal(quantize(x, cfg), np.rint(coeff * 7.0).reshape(5, -1))


def test_roundtrip_bound_formula_and_tightness():
    # exact: 0.5/scale * max_n sum_k |M[n, k]|, M the inverse orthonormal DCT; <= 0.5 sqrt(T)/scale.
    t, scale = 4, 10.0
    m = np.array([[np.sqrt((1 if k == 0 else 2) / t) * np.cos(np.pi * k * (2 * n + 1) / (2 * t)) for k in range(t)]
                  for n in range(t)])
    want = 0.5 / scale * np.abs(m).sum(axis=1).max()
    assert roundtrip_error_bound(t, scale) == pytest.approx(want, rel=1e-12)
    assert want <= 0.5 * math.sqrt(t) / scale
    # Tight: coefficients just under 0.5/scale with the signs of row n* all round to 0, so decode gives 0
    # and the error at step n* is 0.49999/0.5 of the bound.
    cfg = FastConfig(chunk_len=t, action_dim=1, scale=scale, vocab_size=64)
    nstar = int(np.abs(m).sum(axis=1).argmax())
    c = 0.49999 / scale * np.sign(m[nstar])  # (T,)
    x = (m @ c)[None, :, None]  # (1, T, 1)
    assert quantize(x, cfg).tolist() == [[0, 0, 0, 0]]
    err = np.abs(dequantize(quantize(x, cfg), cfg) - x).max()
    assert err == pytest.approx(0.49999 / 0.5 * roundtrip_error_bound(t, scale), rel=1e-9)


# ---------------------------------------------------------------------- property tests: rounding bound
_CHUNKS = arrays(np.float64, (3, T, D), elements=st.floats(-1.0, 1.0, allow_nan=False))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=_CHUNKS)
def test_noisy_chunks_roundtrip_within_rounding_bound_and_bpe_is_lossless(small, x):
    ids = small.encode(x)
    y, reports = small.decode(ids, strict=True)
    assert all(r.status is DecodeStatus.OK for r in reports)
    # BPE adds no error of its own: decode(encode(x)) equals the pure DCT round trip bit for bit
    np.testing.assert_array_equal(y, dequantize(quantize(x, small.config), small.config))
    assert np.abs(y - x).max() <= small.config.roundtrip_bound + 1e-12


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    offset=arrays(np.float64, (1, 1, D), elements=st.floats(-0.5, 0.5)),
    amp=arrays(np.float64, (1, 1, D), elements=st.floats(0.0, 0.45)),
    freq=arrays(np.float64, (1, 1, D), elements=st.floats(0.0, 1.5)),
    phase=st.floats(0.0, 6.3),
)
def test_smooth_chunks_roundtrip_within_rounding_bound(small, offset, amp, freq, phase):
    s = np.linspace(0.0, 1.0, T)[None, :, None]
    x = offset + amp * np.cos(2 * np.pi * freq * s + phase)  # (1, T, D), |x| <= 0.95
    y, report = small.decode_one(small.encode_one(x[0]), strict=True)
    assert report.ok
    assert np.abs(y - x[0]).max() <= small.config.roundtrip_bound + 1e-12
    assert small.config.roundtrip_bound <= 0.5 * math.sqrt(T) / small.config.scale


# ---------------------------------------------------------------------- BPE, compression, input checks
def test_fit_builds_full_vocab_and_compresses_demonstrations(demo):
    fast, test = demo
    assert fast.vocab_size == 1024
    ids = fast.encode(test)
    tokens = np.mean([len(r) for r in ids])
    assert tokens < 16 * 7 / 3  # DCT+BPE must beat per-step binning by far on smooth demos
    y, reports = fast.decode(ids, strict=True)
    assert np.abs(y - test).max() <= fast.config.roundtrip_bound


def test_every_fast_id_decodes(small):
    # each BPE token expands to >= 1 coefficient inside the alphabet
    per_token = small.coefficients([[i] for i in range(small.vocab_size)])
    assert all(c.size >= 1 for c in per_token)
    flat = np.concatenate(per_token)
    assert flat.min() >= small.config.min_token and flat.max() <= small.config.max_token


def test_fast_plus_preset_fits_and_roundtrips():
    cfg = FastConfig.preset("fast+", T, D)
    assert (cfg.min_token, cfg.vocab_size, cfg.alphabet_size) == (-354, 2048, 709)
    x = smooth_chunks(200, T, D, seed=4)
    fast = FastTokenizer.fit(x, cfg)
    y, _ = fast.decode(fast.encode(x), strict=True)
    assert np.abs(y - x).max() <= cfg.roundtrip_bound


def test_encode_rejects_unnormalised_nan_and_wrong_shapes(small):
    x = np.zeros((2, T, D))
    x[1, 3, 2] = 1.5
    with pytest.raises(ValueError, match=r"chunk 1, step 3, dimension 2 is 1.5.*normalised"):
        small.encode(x)
    x[1, 3, 2] = np.nan
    with pytest.raises(ValueError, match="chunk 1, step 3, dimension 2"):
        small.encode(x)
    with pytest.raises(ValueError, match=r"shape \(N, 8, 3\)"):
        small.encode(np.zeros((2, T, D + 1)))
    assert small.encode(np.zeros((0, T, D))) == []
    # a float-error overshoot within 1e-6 is clipped, not rejected
    assert small.encode(np.full((1, T, D), 1.0 + 1e-7)) == small.encode(np.ones((1, T, D)))


def test_config_validation_names_the_problem():
    with pytest.raises(ValueError, match=r"reach ±40.*min_token <= -40"):
        FastConfig(chunk_len=16, action_dim=7, min_token=-30)
    with pytest.raises(ValueError, match="valid presets: fast, fast\\+"):
        FastConfig.preset("fast++", 16, 7)
    with pytest.raises(ValueError, match="vocab_size=50 is smaller than the alphabet"):
        FastConfig(chunk_len=16, action_dim=7, vocab_size=50)
    with pytest.raises(ValueError, match="chunk_len must be a positive integer"):
        FastConfig(chunk_len=0)
    with pytest.raises(ValueError, match="scale"):
        FastConfig(scale=float("nan"))


# ---------------------------------------------------------------------- decode rules
def test_decode_rules_pad_truncate_fail_and_strict(small):
    x = smooth_chunks(2, T, D, seed=9)
    ids = small.encode(x)
    coeffs = small.coefficients(ids)
    # a prefix of tokens with >= D coefficients: the missing high frequencies are zero
    k = next(j for j in range(1, len(ids[0]) + 1) if D <= sum(c.size for c in small.coefficients([ids[0][:j]])) < T * D)
    prefix = ids[0][:k]
    n_coef = small.coefficients([prefix])[0].size
    padded = np.zeros((1, T * D), dtype=np.int64)
    padded[0, :n_coef] = coeffs[0][:n_coef]
    too_long = ids[0] + ids[1]
    acts, reps = small.decode([prefix, too_long, [], ids[1]])
    assert [r.status for r in reps] == [DecodeStatus.PADDED, DecodeStatus.TRUNCATED, DecodeStatus.FAILED,
                                        DecodeStatus.OK]
    assert reps[0].num_coefficients == n_coef and reps[0].num_tokens == k
    np.testing.assert_array_equal(acts[0], dequantize(padded, small.config)[0])
    np.testing.assert_array_equal(acts[1], small.decode([ids[0]])[0][0])  # the first T*D coefficients
    assert np.isnan(acts[2]).all()  # FAILED is NaN, never a made-up action
    assert np.isfinite(acts[[0, 1, 3]]).all()
    assert "padded" in reps[0].message and "cannot decode" in reps[2].message
    with pytest.raises(FastDecodeError, match=r"sequence 0 does not decode exactly: padded.*\(2 more"):
        small.decode([prefix, too_long, [], ids[1]], strict=True)
    with pytest.raises(FastDecodeError, match="sequence 0.*lowest-frequency row incomplete"):
        small.decode_one([], strict=True)


def test_decode_fails_below_one_full_frequency_row(small):
    single = [i for i in range(small.vocab_size) if small.coefficients([[i]])[0].size == 1][0]
    _, rep = small.decode_one([single] * (D - 1))
    assert rep.status is DecodeStatus.FAILED
    _, rep = small.decode_one([single] * D)
    assert rep.status is DecodeStatus.PADDED


@pytest.mark.parametrize(
    "bad, match",
    [
        ([[1, 2], [3, -1]], r"invalid FAST id -1 in sequence 1 at position 1"),
        ([[1, 10**6]], r"invalid FAST id 1000000 in sequence 0 at position 1: valid ids are 0\.\.255"),
        ([[0], [1.5]], r"sequence 1 must be a flat sequence of integers"),
        ([["a"]], r"sequence 0 must be a flat sequence of integers"),
        ([[[1, 2]]], r"sequence 0 must be a flat sequence of integers"),
    ],
)
def test_decode_rejects_invalid_ids(small, bad, match):
    with pytest.raises(ValueError, match=match):
        small.decode(bad)


# ---------------------------------------------------------------------- save / load
def test_save_load_identity(small, tmp_path):
    x = smooth_chunks(50, T, D, seed=5)
    small.save(tmp_path / "a")
    loaded = FastTokenizer.load(tmp_path / "a")
    assert loaded.config == small.config and loaded.vocab_size == small.vocab_size
    assert loaded.encode(x) == small.encode(x)
    np.testing.assert_array_equal(loaded.decode(small.encode(x))[0], small.decode(small.encode(x))[0])
    loaded.save(tmp_path / "b")
    for name in ("fast_config.json", "tokenizer.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_load_reports_broken_files(small, tmp_path):
    d = tmp_path / "tok"
    small.save(d)
    meta = json.loads((d / "fast_config.json").read_text())

    def write(m: dict) -> None:
        (d / "fast_config.json").write_text(json.dumps(m))

    write({**meta, "config": {**meta["config"], "chunk_len": 64}})
    with pytest.raises(ValueError, match=r"fast_config.json: FastConfig alphabet \[min_token=-29, max_token=29\]"):
        FastTokenizer.load(d)
    write({**meta, "config": {**meta["config"], "min_token": -35}})  # alphabet grows beyond the BPE's
    with pytest.raises(ValueError, match=r"tokenizer.json: FAST tokenizer lacks \d+ alphabet symbol"):
        FastTokenizer.load(d)
    write({**meta, "config": {**meta["config"], "colour": 1}})
    with pytest.raises(ValueError, match=r"fast_config.json: unknown fields \['colour'\]; valid fields: chunk_len,"):
        FastTokenizer.load(d)
    write({**meta, "trained_vocab_size": 999})
    with pytest.raises(ValueError, match="trained_vocab_size=999"):
        FastTokenizer.load(d)
    write({k: v for k, v in meta.items() if k != "format"})
    with pytest.raises(ValueError, match="not a FAST tokenizer config"):
        FastTokenizer.load(d)
    write(meta)
    (d / "tokenizer.json").write_text("{ not json")
    with pytest.raises(ValueError, match="tokenizer.json: cannot read tokenizer"):
        FastTokenizer.load(d)
    shutil.rmtree(d)
    with pytest.raises(FileNotFoundError, match="fast_config.json"):
        FastTokenizer.load(d)
