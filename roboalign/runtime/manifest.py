"""The export manifest: what an export folder holds, how to feed it, and how well it matches PyTorch.

``manifest.json`` sits beside the ONNX graphs and is the only thing a graph backend reads besides them:

* ``modules``: per graph (``vision``, ``llm``, ``head``) the file, its size and sha256, and every input /
  output tensor (name, dtype, shape with symbolic names for dynamic axes) plus the TensorRT optimisation
  profile (min/opt/max shape per dynamic input);
* ``layout``: the constants that tie the graphs together (patch grid per image, tokens per image, image
  token id, hidden size, how the head's first token is found);
* ``specs``: :class:`roboalign.runtime.checkpoint_specs.RuntimeSpecs` carried over from the checkpoint (action
  space, norm stats, cameras, image size, prompt template, tasks, horizon);
* ``parity``: cosine similarity and max abs difference vs PyTorch per module and for the whole pipeline;
* ``tensorrt_compat``: the static check of opset and operator types against TensorRT's ONNX parser;
* ``versions`` / ``opset`` / ``exporter`` / ``checkpoint``: provenance.

:func:`verify_module_file` refuses a missing, truncated or modified graph before onnxruntime sees it,
and :func:`check_session_io` refuses a graph whose inputs/outputs differ from the manifest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from roboalign.spec.loader import SpecError, check_fields, read_spec_file

FORMAT = "roboalign.export/1"
FILE_NAME = "manifest.json"
MODULES = ("vision", "llm", "head")
PROCESSOR_DIR = "processor"
REQUIRED = ("modules", "layout", "specs", "opset", "parity")
FIELDS = ("format", "created", "checkpoint", "exporter", "opset", "config", "versions", "processor_dir", "modules",
          "layout", "specs", "tensorrt_compat", "parity")


class ManifestError(SpecError):
    """The manifest is missing, malformed or disagrees with the files beside it."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def load_manifest(export_dir: str | Path) -> dict[str, Any]:
    """Read and structurally validate ``manifest.json`` of an export folder."""
    export_dir = Path(export_dir)
    path = export_dir / FILE_NAME
    if not path.is_file():
        raise ManifestError(f"{export_dir}: no {FILE_NAME} (not an export folder; create one with "
                            f"`roboalign export --checkpoint <ckpt> --out {export_dir}`)")
    try:
        data = read_spec_file(path, "export manifest")
    except SpecError as e:
        raise ManifestError(str(e)) from None
    validate_manifest(data, source=str(path))
    return data


def validate_manifest(data: Any, source: str = FILE_NAME) -> None:
    if not isinstance(data, dict):
        raise ManifestError(f"{source}: must be a JSON object")
    if data.get("format") != FORMAT:
        raise ManifestError(f"{source}: format is {data.get('format')!r}, expected {FORMAT!r} "
                            "(re-export with this version of roboalign)")
    try:
        check_fields(data, FIELDS, source, required=REQUIRED)
    except SpecError as e:
        raise ManifestError(str(e)) from None
    modules = data["modules"]
    if not isinstance(modules, dict) or sorted(modules) != sorted(MODULES):
        got = sorted(modules) if isinstance(modules, dict) else modules
        raise ManifestError(f"{source}: 'modules' must hold exactly {list(MODULES)}, got {got}")
    for name, mod in modules.items():
        for key in ("file", "bytes", "sha256", "inputs", "outputs"):
            if key not in mod:
                raise ManifestError(f"{source}: modules.{name} lacks {key!r}")
        for kind in ("inputs", "outputs"):
            for t in mod[kind]:
                if not isinstance(t, dict) or not {"name", "dtype", "shape"} <= set(t):
                    raise ManifestError(f"{source}: modules.{name}.{kind} entry {t!r} needs name, dtype, shape")


def verify_module_file(export_dir: str | Path, name: str, module: dict[str, Any], check_hash: bool = True) -> Path:
    """The graph file of ``module``, after checking it exists, has the recorded size and (optionally) hash."""
    path = Path(export_dir) / module["file"]
    if not path.is_file():
        raise ManifestError(f"{name}: graph file {path} is missing (manifest lists it)")
    size = path.stat().st_size
    if size != int(module["bytes"]):
        raise ManifestError(f"{name}: {path} has {size} bytes but the manifest records {module['bytes']}: the file is "
                            "truncated or was replaced after export; re-run `roboalign export`")
    if check_hash:
        digest = sha256_file(path)
        if digest != module["sha256"]:
            raise ManifestError(f"{name}: {path} sha256 {digest[:12]}… differs from the manifest's "
                                f"{str(module['sha256'])[:12]}…: the file is corrupt or was modified after export")
    return path


def tensor_specs(values: Sequence[Any]) -> list[dict[str, Any]]:
    """onnx ValueInfoProto list -> [{name, dtype, shape}] with symbolic names for dynamic axes."""
    from onnx import helper

    out = []
    for v in values:
        tt = v.type.tensor_type
        shape = [d.dim_param if d.dim_param else (int(d.dim_value) if d.HasField("dim_value") else "?")
                 for d in tt.shape.dim]
        out.append({"name": v.name, "dtype": helper.tensor_dtype_to_np_dtype(tt.elem_type).name, "shape": shape})
    return out


_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64",
              "tensor(int32)": "int32", "tensor(bool)": "bool", "tensor(double)": "float64",
              "tensor(bfloat16)": "bfloat16", "tensor(uint8)": "uint8"}


def check_session_io(name: str, module: dict[str, Any], inputs: Sequence[Any], outputs: Sequence[Any]) -> None:
    """Compare onnxruntime ``get_inputs()/get_outputs()`` with the manifest; raise naming the first difference."""
    for kind, declared, actual in (("input", module["inputs"], inputs), ("output", module["outputs"], outputs)):
        got = {a.name: a for a in actual}
        want_names = [t["name"] for t in declared]
        if sorted(want_names) != sorted(got):
            raise ManifestError(f"{name}: manifest {kind}s {want_names} but {module['file']} has {sorted(got)}")
        for t in declared:
            a = got[t["name"]]
            dtype = _ORT_TYPES.get(a.type, a.type)
            if dtype != t["dtype"]:
                raise ManifestError(f"{name}: {kind} {t['name']!r} is {dtype} in {module['file']} but {t['dtype']} "
                                    "in the manifest")
            shape = [d if isinstance(d, int) else str(d) for d in a.shape]
            want = [d if isinstance(d, int) else str(d) for d in t["shape"]]
            if len(shape) != len(want) or any(isinstance(w, int) and s != w for s, w in zip(shape, want, strict=True)):
                raise ManifestError(f"{name}: {kind} {t['name']!r} has shape {shape} in {module['file']} but {want} "
                                    "in the manifest")


def write_manifest(export_dir: str | Path, data: dict[str, Any]) -> Path:
    validate_manifest(data)
    path = Path(export_dir) / FILE_NAME
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path
