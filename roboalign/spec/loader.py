"""One strict reader for every JSON/YAML spec: format check, unknown fields refused, errors naming file and field.

Every spec saved beside a checkpoint or export (action space, norm stats, FAST config, action vocabulary,
prompt template, task set, VLA config, runtime specs, export manifest) and every run config (YAML) is read
through these functions, so a bad file always fails the same way: one ``SpecError`` (a ``ValueError``) whose
message starts with the file (and the dotted field inside it) and says what is valid.

* :func:`read_spec_file` parses a ``.json`` / ``.yaml`` file (missing -> :class:`SpecNotFound`, which is also a
  ``FileNotFoundError``; bad syntax -> the line and column);
* :func:`check_format` checks the ``format`` tag (``"roboalign.<kind>/<version>"``) and returns the rest;
* :func:`check_fields` refuses unknown fields (listing the valid ones) and names missing ones;
* :func:`build` makes a dataclass from a mapping with those checks, lists -> tuples and nested dataclasses
  where the field's type says so (also inside a mapping's values), and the constructor's own errors prefixed with the source;
* :func:`load_spec` = resolve the file in a folder + read + format check.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")
MISSING = dataclasses.MISSING


class SpecError(ValueError):
    """A spec that is malformed, of another format, or has unknown / missing / mistyped fields."""


class SpecNotFound(SpecError, FileNotFoundError):
    """A spec file that does not exist (a ``FileNotFoundError`` too)."""


def spec_path(path: str | Path, file_name: str | None = None) -> Path:
    """``path`` itself, or ``path / file_name`` when ``path`` is a folder."""
    p = Path(path)
    return p / file_name if file_name and p.is_dir() else p


def read_spec_file(path: str | Path, what: str = "spec file") -> Any:
    """The parsed content of a JSON file (YAML for ``.yaml`` / ``.yml``), or a :class:`SpecError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise SpecNotFound(f"{what} not found: {path}")
    text = path.read_text()
    try:
        return yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except json.JSONDecodeError as e:
        raise SpecError(f"{path}: not valid JSON: {e}") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None


def check_mapping(data: Any, source: str, what: str = "spec") -> dict[str, Any]:
    if not isinstance(data, dict):
        raise SpecError(f"{source}: {what} must be a mapping (JSON object), got {type(data).__name__}")
    return data


def check_format(data: Any, fmt: str, source: str, what: str = "spec", required: bool = True) -> dict[str, Any]:
    """``data`` without its ``format`` field, after checking that field is ``fmt`` (may be absent if not required)."""
    check_mapping(data, source, what)
    got = data.get("format", None if required else fmt)
    if got != fmt:
        raise SpecError(f"{source}: not a {what} of this version (format is {got!r}, expected {fmt!r})")
    return {k: v for k, v in data.items() if k != "format"}


def check_fields(data: dict[str, Any], valid: Iterable[str], source: str, required: Iterable[str] = ()) -> None:
    """Refuse fields outside ``valid`` (listing the valid ones) and name the ``required`` ones that are absent."""
    valid = list(valid)
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise SpecError(f"{source}: unknown fields {unknown}; valid fields: {', '.join(valid)}")
    missing = [k for k in required if k not in data]
    if missing:
        raise SpecError(f"{source}: missing field(s) {missing}")


def build(cls: type[T], data: Any, source: str) -> T:
    """A dataclass ``cls`` from a mapping: unknown / missing fields refused, sequences made tuples and mappings
    made nested dataclasses where the field's type says so, constructor errors prefixed with ``source``."""
    check_mapping(data, source, cls.__name__)
    flds = dataclasses.fields(cls)
    required = [f.name for f in flds if f.default is MISSING and f.default_factory is MISSING]
    check_fields(data, [f.name for f in flds], source, required)
    hints = typing.get_type_hints(cls)
    defaults = {f.name: _default(f) for f in flds}
    kwargs = {k: _convert(hints[k], v, f"{source}.{k}", defaults[k]) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except SpecError:
        raise
    except (TypeError, ValueError) as e:
        raise SpecError(f"{source}: {e}") from None


def load_spec(path: str | Path, fmt: str, file_name: str | None = None, what: str = "spec"
              ) -> tuple[dict[str, Any], str]:
    """Read the spec at ``path`` (or ``path/file_name``), check its format; returns (fields, source name)."""
    p = spec_path(path, file_name)
    return check_format(read_spec_file(p, f"{what} file"), fmt, str(p), what), str(p)


def field_type(hint: Any) -> Any:
    """``X`` for ``X | None`` / ``Optional[X]``; the hint itself otherwise."""
    if _is_union(hint):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None if f.default is MISSING else f.default


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) is typing.Union or isinstance(hint, types.UnionType)


def _convert(hint: Any, value: Any, source: str, default: Any = None) -> Any:
    """Lists -> tuples for tuple fields (also as mapping values); mappings -> (nested) dataclasses, on top of the
    field's default."""
    hint = field_type(hint)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        base = default if isinstance(default, hint) else None
        merged = {f.name: getattr(base, f.name) for f in dataclasses.fields(hint)} if base is not None else {}
        check_fields(value, [f.name for f in dataclasses.fields(hint)], source)
        return build(hint, {**merged, **value}, source)
    if typing.get_origin(hint) is tuple and isinstance(value, list):
        args = typing.get_args(hint)
        inner = args[0] if args else Any
        return tuple(_convert(inner, v, f"{source}[{i}]") for i, v in enumerate(value))
    if typing.get_origin(hint) is dict and isinstance(value, dict):
        inner = (typing.get_args(hint) or (str, Any))[1]
        return {k: _convert(inner, v, f"{source}.{k}") for k, v in value.items()}
    return value
