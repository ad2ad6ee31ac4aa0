"""The one command-line parser of ``roboalign train sft|grpo|vla``: ``--config`` plus ``--set key=value`` overrides.

``--set`` may be repeated and takes several pairs (``--set steps=30 output_dir=O --set dataset=D``; the last
value of a key wins). Keys are the config's field names, nested with dots (``data.dataset``,
``model.tiny.hidden_size``, ``head_overrides.num_layers``, ``data.mixture.vqa``); an unknown key is refused
with the valid ones listed. Values are typed by the field: ``int`` / ``float`` (``1e-3`` works) / ``bool``
(``true``/``false``) / ``str`` (taken verbatim) / tuples (``a,b`` or YAML ``[a, b]``) / mappings (YAML
``{a: 1}``) / ``null`` for optional fields. Shortcuts: ``--data`` (the dataset), ``--output-dir``, and
``--max-steps`` / ``--init-checkpoint`` / ``--resume`` where the stage has them.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from roboalign.spec.loader import SpecError, field_type
from roboalign.training.config import RUN_CONFIGS, RunConfig, config_from_dict, read_config

# shortcut option -> config key, per stage (only keys the stage's config has)
SHORTCUTS: dict[str, dict[str, str]] = {
    "sft": {"data": "data.dataset", "output_dir": "output_dir", "max_steps": "max_steps"},
    "grpo": {"data": "data.dataset", "output_dir": "output_dir", "max_steps": "max_steps",
             "init_checkpoint": "init_checkpoint"},
    "vla": {"data": "dataset", "output_dir": "output_dir", "max_steps": "steps"},
}


def split_set(item: str) -> tuple[str, str]:
    """``"key=value"`` -> ``("key", "value")``; a missing ``=`` or key is an error naming the item."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise SpecError(f"--set expects key=value, got {item!r} (quote a value with spaces: --set 'k=[a, b]')")
    return key.strip(), value


def apply_sets(cls: type, data: dict[str, Any], sets: Sequence[str]) -> dict[str, Any]:
    """A copy of the raw config mapping ``data`` (for dataclass ``cls``) with every ``key=value`` of ``sets``
    written in, typed by the field it lands on."""
    out = _copy(data)
    for item in sets:
        key, text = split_set(item)
        _set_path(cls, out, key.split("."), text, key)
    return out


def _copy(data: Any) -> Any:
    return {k: _copy(v) for k, v in data.items()} if isinstance(data, dict) else data


def _set_path(cls: Any, data: dict[str, Any], parts: list[str], text: str, key: str) -> None:
    head, rest = parts[0], parts[1:]
    flds = {f.name: f for f in dataclasses.fields(cls)}
    if head not in flds:
        section = key[: len(key) - len(".".join(parts))].rstrip(".")
        where = f" in section {section!r}" if section else ""
        raise SpecError(f"--set {key}: unknown key {head!r}{where}; valid keys: {', '.join(flds)}")
    raw = typing.get_type_hints(cls)[head]
    hint = field_type(raw)
    if dataclasses.is_dataclass(hint):
        if not rest:
            subkeys = ", ".join(f"{head}.{f.name}" for f in dataclasses.fields(hint))
            raise SpecError(f"--set {key}: {head!r} is a section; set its keys: {subkeys}")
        section = data.get(head)
        data[head] = section = section if isinstance(section, dict) else {}
        _set_path(hint, section, rest, text, key)
    elif rest:
        if typing.get_origin(hint) is not dict:
            raise SpecError(f"--set {key}: {head!r} is a {_name(hint)}, it has no keys")
        mapping = data.get(head)
        data[head] = mapping = dict(mapping) if isinstance(mapping, dict) else {}
        value_hint = (typing.get_args(hint) or (str, Any))[1]
        _set_nested(mapping, rest, coerce(value_hint, text, key))
    else:
        data[head] = coerce(raw, text, key)


def _set_nested(mapping: dict[str, Any], parts: list[str], value: Any) -> None:
    for p in parts[:-1]:
        mapping = mapping.setdefault(p, {})
    mapping[parts[-1]] = value


def coerce(hint: Any, text: str, key: str) -> Any:
    """The value of ``text`` for a field of type ``hint``; an error names the key, the type and the text."""
    value = _yaml(text)
    if value is None and _optional(hint):
        return None
    hint = field_type(hint)
    try:
        return _typed(hint, text, value)
    except (KeyError, TypeError, ValueError):
        raise SpecError(f"--set {key}={text}: expected {_name(hint)}") from None


def _typed(hint: Any, text: str, value: Any) -> Any:
    """``value`` (``text`` parsed as YAML) as a ``hint``; ValueError / KeyError when it is not one."""
    origin = typing.get_origin(hint)
    if hint is Any or hint is object:
        return value
    if origin is typing.Union or isinstance(hint, types.UnionType):
        args = typing.get_args(hint)
        return value if bool in args and isinstance(value, bool) else text if str in args else value
    if origin is tuple:
        return _sequence(hint, text, value)
    if origin is dict or hint is dict or dataclasses.is_dataclass(hint):
        return _check(value, dict)
    return _SCALARS[hint](text, value)


def _sequence(hint: Any, text: str, value: Any) -> list[Any]:
    inner = (typing.get_args(hint) or (Any,))[0]
    if isinstance(value, list):
        return [_typed(inner, str(v), v) for v in value]
    return [_typed(inner, p, _yaml(p)) for p in (p.strip() for p in text.split(",")) if p]


def _check(value: Any, kind: type) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValueError
    return value


_SCALARS = {
    bool: lambda text, value: _check(value, bool),
    int: lambda text, value: _check(value, int),
    float: lambda text, value: float(text) if isinstance(value, str) else float(_check(value, int | float)),
    str: lambda text, value: text,
}


def _yaml(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def _optional(hint: Any) -> bool:
    return type(None) in typing.get_args(hint)


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def stage_parser(kind: str, description: str) -> argparse.ArgumentParser:
    """The argument parser of ``roboalign train <kind>``: ``--config``, ``--set`` and the stage's shortcuts."""
    p = argparse.ArgumentParser(prog=f"roboalign train {kind}", description=description,
                                epilog="--set KEY=VALUE: nested keys with dots (data.dataset), repeatable, several "
                                       "pairs per --set; unknown keys are refused with the valid ones listed")
    p.add_argument("--config", required=True, help=f"YAML run config (training/configs/{kind}_*.yaml)")
    p.add_argument("--set", action="append", nargs="+", default=[], metavar="KEY=VALUE", help="override config keys")
    short = SHORTCUTS[kind]
    p.add_argument("--data", help=f"the episode dataset folder, or 'default' (= --set {short['data']}=...)")
    p.add_argument("--output-dir", help="= --set output_dir=...")
    p.add_argument("--max-steps", help=f"= --set {short['max_steps']}=...")
    if "init_checkpoint" in short:
        p.add_argument("--init-checkpoint", help="the SFT checkpoint to start from (= --set init_checkpoint=...)")
    if kind == "vla":
        p.add_argument("--no-progress", action="store_true", help="no progress bars")
    else:
        p.add_argument("--resume", nargs="?", const="true", default=None,
                       help="resume from the last checkpoint in output_dir (or the given one)")
    return p


def sets_from_args(kind: str, args: argparse.Namespace) -> list[str]:
    """The ``key=value`` overrides of parsed arguments: shortcuts first, then every ``--set`` in order."""
    sets = [f"{key}={getattr(args, opt)}" for opt, key in SHORTCUTS[kind].items() if getattr(args, opt, None) is not None]
    if getattr(args, "resume", None) is not None:
        sets.append(f"resume_from_checkpoint={args.resume}")
    return sets + [item for group in args.set for item in group]


def load_with_sets(path: str | Path, kind: str | None, sets: Sequence[str]) -> RunConfig:
    """The YAML run config at ``path`` with the ``key=value`` texts of ``sets`` applied to its raw mapping first."""
    kind, data = read_config(path, kind)
    return config_from_dict(kind, apply_sets(RUN_CONFIGS[kind], data, sets), where=str(path))


def parse_run_config(kind: str, description: str, argv: Sequence[str] | None) -> tuple[Any, argparse.Namespace]:
    """Parse ``roboalign train <kind>`` arguments and load the run config they name, overrides applied."""
    args = stage_parser(kind, description).parse_args(argv)
    return load_with_sets(args.config, kind, sets_from_args(kind, args)), args
