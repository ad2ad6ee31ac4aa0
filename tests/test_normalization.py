"""NormStats: hand-computed quantile scaling, the constant-dimension rule, round trips and file errors."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from roboalign.spec.normalization import NormStats


@pytest.fixture
def stats() -> NormStats:
    # dim 0: 0..100 -> q01 = 1, q99 = 99 (linear interpolation at 1 % of 100 steps); dim 1: constant 3
    x = np.stack([np.arange(101.0), np.full(101, 3.0)], axis=1)  # (101, 2)
    return NormStats.from_data(x, names=("x", "grip"))


def test_hand_computed_quantiles_and_scaling(stats):
    np.testing.assert_allclose(stats.q01, [1.0, 3.0])
    np.testing.assert_allclose(stats.q99, [99.0, 3.0])
    np.testing.assert_allclose(stats.mean, [50.0, 3.0])
    np.testing.assert_allclose(stats.std[0], np.arange(101.0).std())
    x = np.array([[1.0, 3.0], [99.0, 3.0], [50.0, 3.0], [25.0, 3.0], [-7.0, 3.0], [200.0, 3.0]])
    y = stats.normalize(x)
    # 2 * (25 - 1) / 98 - 1 = -0.510204...; beyond the quantiles -> clipped to -1 / 1
    np.testing.assert_allclose(y[:, 0], [-1.0, 1.0, 0.0, 2 * 24 / 98 - 1, -1.0, 1.0])
    np.testing.assert_allclose(stats.unnormalize(y[:4])[:, 0], [1.0, 99.0, 50.0, 25.0])


def test_constant_dimension_maps_to_zero_and_back_to_its_value(stats):
    assert stats.constant.tolist() == [False, True]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero RuntimeWarning
        y = stats.normalize(np.array([[10.0, 3.0], [10.0, 5.0], [10.0, -100.0]]))
        assert y[:, 1].tolist() == [0.0, 0.0, 0.0]
        assert stats.unnormalize(np.array([[0.0, 0.7], [0.0, -1.0]]))[:, 1].tolist() == [3.0, 3.0]


def test_unnormalize_clips_by_default(stats):
    y = np.array([[1.2, 0.0], [-1.5, 0.0]])
    np.testing.assert_allclose(stats.unnormalize(y)[:, 0], [99.0, 1.0])
    np.testing.assert_allclose(stats.unnormalize(y, clip=False)[:, 0], [1 + 2.2 / 2 * 98, 1 - 0.5 / 2 * 98])


def test_dtypes_and_batch_shapes(stats):
    x32 = np.full((4, 5, 2), 10.0, dtype=np.float32)  # (B, T, D)
    y = stats.normalize(x32)
    assert y.dtype == np.float32 and y.shape == (4, 5, 2)
    assert stats.unnormalize(y).dtype == np.float32
    assert stats.normalize(np.array([[10, 3]])).dtype == np.float64  # ints -> float64


@settings(max_examples=60, deadline=None)
@given(data=arrays(np.float64, st.tuples(st.integers(2, 40), st.integers(1, 4)),
                   elements=st.floats(-1e3, 1e3, allow_nan=False)))
def test_roundtrip_is_the_clip_to_the_quantile_range(data):
    s = NormStats.from_data(data)
    y = s.normalize(data)
    assert np.all(np.abs(y) <= 1.0)
    back = s.unnormalize(y)
    want = np.where(s.constant, 0.5 * (s.q01 + s.q99), np.clip(data, s.q01, s.q99))
    np.testing.assert_allclose(back, want, rtol=1e-9, atol=1e-9 * (1 + np.abs(data).max()))


def test_bad_inputs_name_the_problem(stats):
    with pytest.raises(ValueError, match=r"last axis must have 2 dimensions \('x', 'grip'\)"):
        stats.normalize(np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"non-finite value at index \(1, 0\) \(dimension 'x'\)"):
        stats.normalize(np.array([[0.0, 3.0], [np.nan, 3.0]]))
    with pytest.raises(ValueError, match=r"non-finite value inf at row 2, dimension 1"):
        NormStats.from_data(np.array([[0.0, 1.0], [0.0, 1.0], [0.0, np.inf]]))
    with pytest.raises(ValueError, match=r"non-empty \(N, D\) array"):
        NormStats.from_data(np.zeros(5))
    with pytest.raises(ValueError, match="3 names for 2 dimensions"):
        NormStats.from_data(np.zeros((4, 2)), names=("a", "b", "c"))
    with pytest.raises(ValueError, match=r"q99=0.0 < q01=1.0"):
        NormStats(names=("a",), q01=np.array([1.0]), q99=np.array([0.0]), mean=np.zeros(1), std=np.zeros(1))


def test_save_load_identity(stats, tmp_path):
    path = stats.save(tmp_path / "stats.json")
    loaded = NormStats.load(path)
    assert loaded == stats
    assert NormStats.from_dict(stats.to_dict()) == stats
    stats.save(tmp_path)  # a directory gets norm_stats.json
    assert NormStats.load(tmp_path) == stats
    x = np.random.default_rng(0).uniform(-10, 110, (20, 2))
    np.testing.assert_array_equal(loaded.normalize(x), stats.normalize(x))


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d.update(q01=[1.0]), r"field 'q01' has 1 values but there are 2 names"),
        (lambda d: d.update(std=[1.0, float("nan")]), r"field 'std' holds a non-finite value"),
        (lambda d: d.pop("q99"), r"missing field\(s\) \['q99'\]"),
        (lambda d: d.update(mean="abc"), r"field 'mean' must be a list of numbers"),
        (lambda d: d.update(names="xy"), r"field 'names' must be a list of strings"),
        (lambda d: d.update(format="other/1"), r"not a norm stats of this version \(format is 'other/1'"),
        (lambda d: d.update(q01=[100.0, 3.0]), r"dimension 0 \('x'\): q99=99.0 < q01=100.0"),
    ],
)
def test_load_rejects_malformed_files(stats, tmp_path, edit, match):
    data = stats.to_dict()
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))  # json.dumps writes NaN as the literal NaN
    with pytest.raises(ValueError, match=match) as info:
        NormStats.load(path)
    assert "bad.json" in str(info.value)


def test_load_missing_and_invalid_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="norm stats file not found"):
        NormStats.load(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(ValueError, match="x.json: not valid JSON"):
        NormStats.load(tmp_path / "x.json")
