"""Static TensorRT-compatibility check of ONNX graphs (no TensorRT needed).

Checks, per graph: the default-domain opset is within the range TensorRT's ONNX parser accepts; every
node (including nodes inside If/Loop/Scan subgraphs) uses an operator the parser supports; no node needs
a non-ONNX domain (that needs a TensorRT plugin); operators whose documented restriction is "axes /
axis must be a constant" get their constant-ness checked; DOUBLE tensors (limited support) are flagged.

The operator list is data shipped with the package (``tensorrt_onnx_ops.json``), transcribed from
onnx-tensorrt's ``docs/operators.md`` — its ``source``/``tensorrt_version`` fields say which one; update it
from a newer ``operators.md`` when targeting a newer TensorRT. Passing this check does not prove that
TensorRT will build an engine (shape and type rules remain); it catches the common blockers early.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

OPS_FILE = Path(__file__).with_name("tensorrt_onnx_ops.json")
_DEFAULT_DOMAINS = ("", "ai.onnx")
# operator -> index of the input that must be a constant (initializer / Constant node)
_CONST_INPUTS = {"CumSum": 1, "Squeeze": 1, "Unsqueeze": 1, "OneHot": 1, "TopK": 1, **{
    op: 1 for op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSumSquare",
                     "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp")}}


@lru_cache(maxsize=1)
def tensorrt_ops() -> dict[str, Any]:
    """The shipped operator table (see module docstring)."""
    return json.loads(OPS_FILE.read_text())


@dataclass
class CompatReport:
    """Result for one graph: ``ok`` is False when any error was found."""

    graph: str
    opset: int
    tensorrt_version: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    op_types: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _iter_nodes(graph: Any):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g is not None and attr.g.node:
                yield from _iter_nodes(attr.g)
            for g in attr.graphs:
                yield from _iter_nodes(g)


def check_model(model: Any, name: str = "model") -> CompatReport:
    """Check a loaded ``onnx.ModelProto`` against the TensorRT operator table."""
    table = tensorrt_ops()
    supported, unsupported = set(table["supported"]), set(table["unsupported"])
    opset = next((int(o.version) for o in model.opset_import if o.domain in _DEFAULT_DOMAINS), 0)
    rep = CompatReport(graph=name, opset=opset, tensorrt_version=str(table["tensorrt_version"]))
    if not table["opset_min"] <= opset <= table["opset_max"]:
        rep.errors.append(f"opset {opset} is outside TensorRT {table['tensorrt_version']}'s range "
                          f"{table['opset_min']}..{table['opset_max']}")
    constants = {init.name for init in model.graph.initializer}
    constants |= {o for n in _iter_nodes(model.graph) if n.op_type == "Constant" for o in n.output}
    seen: set[str] = set()
    for node in _iter_nodes(model.graph):
        op = node.op_type
        where = f"node {node.name or '?'} ({op})"
        if node.domain not in _DEFAULT_DOMAINS:
            rep.errors.append(f"{where}: domain {node.domain!r} is not ONNX; TensorRT needs a plugin for it")
        elif op in unsupported:
            rep.errors.append(f"{where}: {op} is not supported by TensorRT's ONNX parser")
        elif op not in supported:
            rep.errors.append(f"{where}: {op} is not in TensorRT {table['tensorrt_version']}'s operator table")
        idx = _CONST_INPUTS.get(op)
        if idx is not None and len(node.input) > idx and node.input[idx] and node.input[idx] not in constants:
            rep.errors.append(f"{where}: input {idx} ({node.input[idx]}) must be a constant for TensorRT "
                              f"({table['restrictions'].get(op, 'constant required')})")
        if op in table["restrictions"] and op not in seen and idx is None:
            rep.warnings.append(f"{op}: {table['restrictions'][op]}")
        seen.add(op)
    for v in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        if v.type.tensor_type.elem_type == 11:  # DOUBLE
            rep.warnings.append(f"tensor {v.name} is DOUBLE: TensorRT casts it down to FLOAT")
    rep.op_types = sorted(seen)
    return rep


def check_file(path: str | Path, name: str | None = None) -> CompatReport:
    """Check an ``.onnx`` file (graph structure only; external weights are not loaded)."""
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError / google.protobuf errors on corrupt files
        raise ValueError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    return check_model(model, name or path.stem)
