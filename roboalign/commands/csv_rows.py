"""Append-only CSV tables of dataclass rows (trials.csv, record.csv): one row flushed per call, read back typed."""

from __future__ import annotations

import csv
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
_PARSE = {"int": int, "float": float, "bool": lambda v: v == "True", "str": str}


def read_rows(path: Path, cls: type[T]) -> list[T]:
    """Rows of ``path`` as ``cls`` instances; a column missing from an older file takes the field's default; a
    malformed row is an error naming the file and the row."""
    if not path.is_file():
        return []
    out = []
    with path.open(newline="") as f:
        for i, row in enumerate(csv.DictReader(f), start=2):
            try:
                out.append(cls(**{fl.name: _value(fl, row) for fl in fields(cls)}))
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path}: row {i} is malformed ({e!r}); fix or remove it") from e
    return out


def _value(fl: Any, row: dict[str, str]) -> Any:
    raw = row.get(fl.name)
    if raw in (None, "") and fl.default is not MISSING:
        return fl.default
    if raw is None:
        raise KeyError(fl.name)
    return _PARSE[fl.type if isinstance(fl.type, str) else fl.type.__name__](raw)


def append_row(path: Path, row: Any) -> None:
    """Append ``row`` (a dataclass) to ``path``, writing the header first for a new file; flushed at once."""
    new = not path.is_file()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[fl.name for fl in fields(row)])
        if new:
            w.writeheader()
        w.writerow(asdict(row))
