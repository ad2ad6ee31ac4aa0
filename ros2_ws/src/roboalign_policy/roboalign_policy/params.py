"""Declare a node's parameters once, with descriptions, ranges and choices, and validate every change.

In the spirit of ros2_controllers' generate_parameter_library, without code generation: a node lists
``ParamSpec``s; ``declare_params`` registers an on-set callback that checks ranges, choices and the node's
own cross-parameter rules (so a bad value in a YAML file fails at start-up with the parameter's name, and a
bad ``ros2 param set`` is refused with the reason), declares every parameter with a ``ParameterDescriptor``,
and refuses parameters in the YAML that the node does not declare (a typo would otherwise be ignored).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

_TYPES = {bool: Parameter.Type.BOOL, int: Parameter.Type.INTEGER, float: Parameter.Type.DOUBLE,
          str: Parameter.Type.STRING}
_ARRAY_TYPES = {"str": Parameter.Type.STRING_ARRAY, "float": Parameter.Type.DOUBLE_ARRAY,
                "int": Parameter.Type.INTEGER_ARRAY, "bool": Parameter.Type.BOOL_ARRAY}
ALWAYS_ALLOWED = {"use_sim_time", "start_type_description_service"}


@dataclass(frozen=True)
class ParamSpec:
    """One parameter. For arrays give ``array`` = element type name ("str" | "float" | "int" | "bool")."""

    name: str
    default: Any
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    read_only: bool = False
    array: str | None = None
    length: int | None = None  # required array length

    @property
    def type(self) -> Parameter.Type:
        if self.array:
            return _ARRAY_TYPES[self.array]
        return _TYPES[type(self.default)]

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor(name=self.name, type=self.type.value, description=self.description,
                                read_only=self.read_only)
        notes = []
        if self.min is not None and self.max is not None and not self.array:
            if isinstance(self.default, int) and not isinstance(self.default, bool):
                d.integer_range = [IntegerRange(from_value=int(self.min), to_value=int(self.max), step=1)]
            else:
                d.floating_point_range = [FloatingPointRange(from_value=float(self.min), to_value=float(self.max))]
        if self.choices:
            notes.append(f"one of: {', '.join(self.choices)}")
        if self.length is not None:
            notes.append(f"exactly {self.length} values")
        if self.read_only:
            notes.append("read-only after start-up")
        d.additional_constraints = "; ".join(notes)
        return d

    def check(self, value: Any) -> str | None:
        """Why ``value`` is invalid for this parameter, or None."""
        values = list(value) if self.array else [value]
        if self.array and self.length is not None and len(values) != self.length:
            return f"{self.name} needs exactly {self.length} values, got {len(values)}"
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                return f"{self.name} must be finite, got {v}"
            if self.min is not None and v < self.min or self.max is not None and v > self.max:
                return f"{self.name} = {v} is outside [{self.min}, {self.max}]"
            if self.choices and v not in self.choices:
                return f"{self.name} = {v!r} is not valid; valid: {', '.join(self.choices)}"
        return None


def _uninitialized(node: Node, name: str) -> bool:
    try:
        return node.get_parameter(name).value is None
    except Exception:  # ParameterUninitializedException
        return True


Rule = Callable[[dict[str, Any]], str | None]


def declare_params(node: Node, specs: Sequence[ParamSpec], rules: Sequence[Rule] = ()) -> dict[str, Any]:
    """Declare ``specs`` on ``node`` with validation; returns the values. Raises ValueError on bad values
    or on parameters given to the node that it does not declare."""
    by_name = {s.name: s for s in specs}

    def on_set(params: list[Parameter]) -> SetParametersResult:
        merged = {n: node.get_parameter(n).value for n in by_name
                  if node.has_parameter(n) and not _uninitialized(node, n)}
        for p in params:
            spec = by_name.get(p.name)
            if spec is None or p.type_ == Parameter.Type.NOT_SET:  # not ours, or a typed declaration
                continue
            if p.type_ != spec.type:
                return SetParametersResult(successful=False,
                                           reason=f"{p.name} must be of type {spec.type.name}, got {p.type_.name}")
            why = spec.check(p.value)
            if why:
                return SetParametersResult(successful=False, reason=why)
            merged[p.name] = p.value
        if len(merged) == len(by_name):  # cross-parameter rules once everything is declared
            for rule in rules:
                why = rule(merged)
                if why:
                    return SetParametersResult(successful=False, reason=why)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    overrides = getattr(node, "_parameter_overrides", {}) or {}
    unknown = sorted(set(overrides) - set(by_name) - ALWAYS_ALLOWED - set(node._parameters))
    if unknown:
        raise ValueError(f"{node.get_name()}: unknown parameters {unknown} (typo in the YAML?); "
                         f"valid: {', '.join(sorted(by_name))}")
    values = {}
    for s in specs:
        try:
            if s.array and not s.default:  # an empty list has no type of its own: declare typed, then set
                node.declare_parameter(s.name, s.type, s.descriptor())
                if not node.has_parameter(s.name) or _uninitialized(node, s.name):
                    res = node.set_parameters([Parameter(s.name, s.type, [])])[0]
                    if not res.successful:  # e.g. a cross-parameter rule refusing another parameter
                        raise ValueError(f"{node.get_name()}: {res.reason}")
                values[s.name] = list(node.get_parameter(s.name).value)
            else:
                values[s.name] = node.declare_parameter(s.name, s.default, s.descriptor()).value
        except ValueError:
            raise
        except Exception as e:  # rclpy raises InvalidParameterValueException / InvalidParameterTypeException
            raise ValueError(f"{node.get_name()}: parameter {s.name}: {e}") from e
    # the cross-parameter rules have run on the last declaration; run them once more for a clear error
    for rule in rules:
        why = rule(values)
        if why:
            raise ValueError(f"{node.get_name()}: {why}")
    return values


def specs_from_config(config_cls: type) -> list[ParamSpec]:
    """One ParamSpec per documented field of a core config dataclass (``roboalign.control.bridge.setting``):
    default, description, range and choices come from the core, read-only unless the field is runtime."""
    specs = []
    for f in dataclasses.fields(config_cls):
        m = f.metadata
        if "doc" not in m:
            continue
        default, array, length = f.default, None, None
        if isinstance(default, tuple):
            array, length, default = type(default[0]).__name__, len(default), list(default)
        specs.append(ParamSpec(f.name, default, m["doc"], min=m["min"], max=m["max"], choices=m["choices"],
                               read_only=not m["runtime"], array=array, length=length))
    return specs


# Declared by every node (as ros2_control's controller_manager has it); applied by node_runner.run_node at
# start-up and again when it is set.
CPU_AFFINITY = ParamSpec("cpu_affinity", [], "CPUs this node's process runs on, e.g. [2, 3] to keep inference off "
                         "the control path's cores; empty: any CPU", min=0, max=1023, array="int")
# Declared by the managed (lifecycle) nodes: true brings the node to active by itself once it spins (configure,
# then activate); false leaves it unconfigured for `ros2 lifecycle set` or a lifecycle manager.
AUTOSTART = ParamSpec("autostart", True, "configure and activate this managed node by itself at start-up; false: it "
                      "stays unconfigured until `ros2 lifecycle set <node> configure` / `activate`", read_only=True)
