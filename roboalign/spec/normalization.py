"""The one normalisation spec of the project: per-dimension quantile scaling of actions/states to [-1, 1].

Rule (as in the FAST reference): with ``q01``/``q99`` the 1st/99th percentiles of the training
data of one dimension,

    normalize(x)   = clip(2 * (x - q01) / (q99 - q01) - 1, -1, 1)
    unnormalize(y) = q01 + (clip(y, -1, 1) + 1) / 2 * (q99 - q01)

Values beyond the quantiles are clipped to the boundary (the training data lives there, the model never
learns to go beyond it). ``unnormalize`` clips to [-1, 1] by default too: a true value always lies in
[-1, 1], so clipping a slightly overshooting prediction (e.g. FAST rounding) can only bring it closer.

Constant dimensions: a dimension whose spread ``q99 - q01`` is below ``CONSTANT_SPAN`` (1e-8) carries no
information in the training data. It normalises to exactly 0 (never a division by ~0) and unnormalises to
its constant value ``(q01 + q99) / 2``, whatever the model predicts for it.

The dataset writer computes the stats with :meth:`NormStats.from_data`; the VLA and the runtime
(un)normalise with the stats saved as JSON beside each checkpoint (``norm_stats.json``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from roboalign.spec.loader import check_fields, check_format, read_spec_file, spec_path

FORMAT = "roboalign.norm_stats/1"
CONSTANT_SPAN = 1e-8  # q99 - q01 below this: the dimension is treated as constant
FILE_NAME = "norm_stats.json"
_FIELDS = ("q01", "q99", "mean", "std")


def _first_bad(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _float_dtype(x: np.ndarray) -> np.dtype:
    """float32 stays float32, everything else becomes float64."""
    return x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)


@dataclass(frozen=True, eq=False)
class NormStats:
    """Per-dimension statistics of a (N, D) data set, and the [-1, 1] normalisation they define.

    names: one name per dimension (e.g. ``("dx", "dy", ..., "gripper")``).
    q01, q99, mean, std: (D,) float64.
    """

    names: tuple[str, ...]
    q01: np.ndarray
    q99: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.names)
        object.__setattr__(self, "names", names)
        d = len(names)
        if d == 0:
            raise ValueError("NormStats needs at least one dimension (names is empty)")
        if len(set(names)) != d:
            raise ValueError(f"NormStats names must be distinct, got {names}")
        for field_name in _FIELDS:
            try:
                arr = np.asarray(getattr(self, field_name), dtype=np.float64)
            except (TypeError, ValueError) as e:
                raise ValueError(f"NormStats.{field_name} is not a numeric array: {e}") from None
            if arr.shape != (d,):
                raise ValueError(
                    f"NormStats.{field_name} has shape {arr.shape}, expected ({d},) (one value per name in {names})"
                )
            if not np.all(np.isfinite(arr)):
                (i,) = _first_bad(~np.isfinite(arr))
                raise ValueError(f"NormStats.{field_name}[{i}] ({names[i]!r}) is {arr[i]}, must be finite")
            arr = arr.copy()
            arr.setflags(write=False)
            object.__setattr__(self, field_name, arr)
        bad = self.q99 < self.q01
        if bad.any():
            (i,) = _first_bad(bad)
            raise ValueError(f"NormStats dimension {i} ({names[i]!r}): q99={self.q99[i]} < q01={self.q01[i]}")
        if (self.std < 0).any():
            (i,) = _first_bad(self.std < 0)
            raise ValueError(f"NormStats.std[{i}] ({names[i]!r}) is negative: {self.std[i]}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_data(cls, x: np.ndarray, names: tuple[str, ...] | list[str] | None = None) -> NormStats:
        """Statistics of ``x`` (N, D); ``names`` defaults to ``dim_0 … dim_{D-1}``."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"NormStats.from_data expects a non-empty (N, D) array, got shape {x.shape}")
        x = x.astype(np.float64, copy=False)
        if not np.all(np.isfinite(x)):
            row, col = _first_bad(~np.isfinite(x))
            raise ValueError(f"NormStats.from_data: non-finite value {x[row, col]} at row {row}, dimension {col}")
        d = x.shape[1]
        names = tuple(names) if names is not None else tuple(f"dim_{i}" for i in range(d))
        if len(names) != d:
            raise ValueError(f"NormStats.from_data: {len(names)} names for {d} dimensions: {names}")
        q01, q99 = np.quantile(x, [0.01, 0.99], axis=0)  # (2, D) -> two (D,)
        return cls(names=names, q01=q01, q99=q99, mean=x.mean(axis=0), std=x.std(axis=0))

    # ------------------------------------------------------------------ the transform
    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    def constant(self) -> np.ndarray:
        """(D,) bool: dimensions treated as constant (``q99 - q01 < CONSTANT_SPAN``)."""
        return (self.q99 - self.q01) < CONSTANT_SPAN

    def _check(self, x: np.ndarray, what: str) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise ValueError(
                f"{what}: last axis must have {self.dim} dimensions {self.names}, got shape {x.shape}"
            )
        if not np.all(np.isfinite(x)):
            idx = _first_bad(~np.isfinite(x))
            raise ValueError(f"{what}: non-finite value at index {idx} (dimension {self.names[idx[-1]]!r})")
        return x

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """(..., D) raw values -> (..., D) in [-1, 1] (clipped; constant dimensions -> 0)."""
        x = self._check(x, "NormStats.normalize")
        dtype = _float_dtype(x)
        const = self.constant
        span = np.where(const, 1.0, self.q99 - self.q01)  # (D,), never 0
        y = 2.0 * (x.astype(np.float64) - self.q01) / span - 1.0
        y = np.where(const, 0.0, np.clip(y, -1.0, 1.0))
        return y.astype(dtype, copy=False)

    def unnormalize(self, y: np.ndarray, clip: bool = True) -> np.ndarray:
        """(..., D) normalised values -> raw units. ``clip`` first clips ``y`` to [-1, 1] (see module doc)."""
        y = self._check(y, "NormStats.unnormalize")
        dtype = _float_dtype(y)
        y = y.astype(np.float64)
        if clip:
            y = np.clip(y, -1.0, 1.0)
        x = self.q01 + (y + 1.0) * 0.5 * (self.q99 - self.q01)
        x = np.where(self.constant, 0.5 * (self.q01 + self.q99), x)
        return x.astype(dtype, copy=False)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": FORMAT, "names": list(self.names)}
        out.update({f: [float(v) for v in getattr(self, f)] for f in _FIELDS})
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "dict") -> NormStats:
        """Inverse of :meth:`to_dict`; ``source`` names the origin in error messages."""
        data = check_format(data, FORMAT, source, "norm stats", required=False)
        check_fields(data, ("names", *_FIELDS), source, required=("names", *_FIELDS))
        names = data["names"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{source}: field 'names' must be a list of strings, got {names!r}")
        arrays = {}
        for f in _FIELDS:
            vals = data[f]
            if not isinstance(vals, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals
            ):
                raise ValueError(f"{source}: field {f!r} must be a list of numbers, got {vals!r}")
            if any(not math.isfinite(v) for v in vals):
                raise ValueError(f"{source}: field {f!r} holds a non-finite value: {vals}")
            if len(vals) != len(names):
                raise ValueError(
                    f"{source}: field {f!r} has {len(vals)} values but there are {len(names)} names {names}"
                )
            arrays[f] = np.asarray(vals, dtype=np.float64)
        try:
            return cls(names=tuple(names), **arrays)
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None

    def save(self, path: str | Path) -> Path:
        """Write JSON to ``path`` (a directory gets ``norm_stats.json`` inside it). Returns the file path."""
        path = Path(path)
        if path.is_dir():
            path = path / FILE_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> NormStats:
        """Read a file written by :meth:`save` (or a directory holding ``norm_stats.json``)."""
        path = spec_path(path, FILE_NAME)
        # Python's json accepts NaN/Infinity literals; from_dict rejects them explicitly.
        return cls.from_dict(read_spec_file(path, "norm stats file"), source=str(path))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NormStats):
            return NotImplemented
        return self.names == other.names and all(
            np.array_equal(getattr(self, f), getattr(other, f)) for f in _FIELDS
        )

    __hash__ = None  # type: ignore[assignment]
