"""Build TensorRT engines from an export folder (TensorRT Python API), with an engine cache.

An engine belongs to one GPU and one TensorRT version, so it is built where the policy runs: by the runtime's
TensorRT backend on first use, or ahead of time by ``roboalign export --tensorrt`` on that machine.

* precision: ``fp32``, ``fp16`` or ``bf16`` (builder flags; inputs/outputs stay float32 / int64);
* one optimisation profile per graph, min/opt/max per dynamic input: the manifest's profiles (from
  :class:`roboalign.export.onnx_export.ExportConfig`) unless :class:`TRTBuildConfig` overrides them
  (YAML: ``profiles: {llm: {input_ids: {min: [1, 16], opt: [1, 240], max: [8, 1024]}}}``);
* engine cache: ``<cache_dir>/<module>-<key>.engine`` where the key hashes the GPU name, the TensorRT
  version, the ONNX file's sha256, the precision and the profile — a new GPU, TensorRT upgrade or
  re-export gets a new engine, an unchanged one is reused.

``tensorrt`` is imported lazily. Without TensorRT or without a CUDA GPU every entry point raises
:class:`TensorRTUnavailable` with a message naming the alternative (``--backend onnxruntime``).
:func:`trtexec_commands` prints the equivalent ``trtexec`` command lines (docs/export.md).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from roboalign.runtime.manifest import MODULES, load_manifest, verify_module_file
from roboalign.spec.loader import build, read_spec_file

PRECISIONS = ("fp32", "fp16", "bf16")
ALTERNATIVE = ("use `--backend onnxruntime` (CPU, or its CUDA / TensorRT execution providers via "
               "`--providers cuda,cpu`) instead; see docs/export.md for installing TensorRT (`pip install -e .[gpu]`)")


class TensorRTUnavailable(RuntimeError):
    """TensorRT or a CUDA GPU is not available on this machine."""


def require_tensorrt() -> Any:
    """Import ``tensorrt`` or raise :class:`TensorRTUnavailable` explaining what is missing and what to use."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise TensorRTUnavailable(f"TensorRT is not installed here ({e}); {ALTERNATIVE}") from None
    if gpu_name() is None:
        raise TensorRTUnavailable(f"TensorRT {trt.__version__} is installed but no CUDA GPU is visible; {ALTERNATIVE}")
    return trt


def gpu_name(device: int = 0) -> str | None:
    """Name of CUDA device ``device`` (via torch, else nvidia-smi), or None when there is none."""
    try:
        import torch

        if torch.cuda.is_available():
            return str(torch.cuda.get_device_name(device))
    except ImportError:
        pass
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=10, check=True).stdout.strip().splitlines()
            return out[device].strip() if len(out) > device else None
        except (subprocess.SubprocessError, OSError):
            return None
    return None


@dataclass(frozen=True)
class TRTBuildConfig:
    """How to build engines. ``profiles`` overrides the manifest's per module / input."""

    precision: str = "fp16"
    workspace_gb: float = 4.0
    optimization_level: int = 3
    cache_dir: str | None = None  # default: <export_dir>/engines
    profiles: dict[str, dict[str, dict[str, list[int]]]] = field(default_factory=dict)
    device: int = 0

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"TRTBuildConfig.precision={self.precision!r}; valid: {', '.join(PRECISIONS)}")
        if self.workspace_gb <= 0:
            raise ValueError(f"TRTBuildConfig.workspace_gb must be > 0, got {self.workspace_gb}")
        if not 0 <= self.optimization_level <= 5:
            raise ValueError(f"TRTBuildConfig.optimization_level must be in 0..5, got {self.optimization_level}")
        bad = sorted(set(self.profiles) - set(MODULES))
        if bad:
            raise ValueError(f"TRTBuildConfig.profiles: unknown modules {bad}; valid: {', '.join(MODULES)}")
        for mod, inputs in self.profiles.items():
            for name, p in inputs.items():
                if sorted(p) != ["max", "min", "opt"]:
                    raise ValueError(f"TRTBuildConfig.profiles.{mod}.{name} needs exactly min, opt, max; got {sorted(p)}")
                if not len(p["min"]) == len(p["opt"]) == len(p["max"]) or any(
                        not lo <= o <= hi for lo, o, hi in zip(p["min"], p["opt"], p["max"], strict=True)):
                    raise ValueError(f"TRTBuildConfig.profiles.{mod}.{name}: need min <= opt <= max per axis, got {p}")

    @classmethod
    def from_yaml(cls, path: str | Path) -> TRTBuildConfig:
        return build(cls, read_spec_file(path, "TensorRT build config") or {}, str(path))

    def profile(self, manifest: dict[str, Any], module: str) -> dict[str, dict[str, list[int]]]:
        prof = {k: dict(v) for k, v in (manifest["modules"][module].get("profile") or {}).items()}
        prof.update(self.profiles.get(module, {}))
        return prof


def engine_cache_key(gpu: str, trt_version: str, onnx_sha256: str, precision: str, profile: dict[str, Any]) -> str:
    blob = json.dumps({"gpu": gpu, "tensorrt": trt_version, "onnx": onnx_sha256, "precision": precision,
                       "profile": profile}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_engine(onnx_path: str | Path, engine_path: str | Path, profile: dict[str, dict[str, list[int]]],
                 cfg: TRTBuildConfig) -> Path:
    """Parse ``onnx_path`` and write a serialized engine to ``engine_path``."""
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(cfg.workspace_gb * (1 << 30)))
    config.builder_optimization_level = cfg.optimization_level
    if cfg.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif cfg.precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    opt_profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        if name not in profile:
            shape = tuple(network.get_input(i).shape)
            if any(d < 0 for d in shape):
                raise ValueError(f"{onnx_path}: input {name!r} has dynamic shape {shape} but no profile")
            continue
        p = profile[name]
        opt_profile.set_shape(name, tuple(p["min"]), tuple(p["opt"]), tuple(p["max"]))
    config.add_optimization_profile(opt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    return engine_path


def build_engines(export_dir: str | Path, cfg: TRTBuildConfig | None = None) -> dict[str, Path]:
    """Engines for every graph of an export folder, reusing cached ones. Returns module -> engine path."""
    trt = require_tensorrt()
    cfg = cfg or TRTBuildConfig()
    export_dir = Path(export_dir)
    manifest = load_manifest(export_dir)
    cache = Path(cfg.cache_dir) if cfg.cache_dir else export_dir / "engines"
    gpu = gpu_name(cfg.device) or "unknown-gpu"
    out: dict[str, Path] = {}
    for name in MODULES:
        module = manifest["modules"][name]
        onnx_path = verify_module_file(export_dir, name, module)
        profile = cfg.profile(manifest, name)
        key = engine_cache_key(gpu, trt.__version__, module["sha256"], cfg.precision, profile)
        engine = cache / f"{name}-{cfg.precision}-{key}.engine"
        if not engine.is_file():
            build_engine(onnx_path, engine, profile, cfg)
            (cache / f"{engine.name}.json").write_text(json.dumps(
                {"gpu": gpu, "tensorrt": trt.__version__, "onnx_sha256": module["sha256"], "profile": profile,
                 "config": asdict(cfg)}, indent=2))
        out[name] = engine
    return out


def trtexec_commands(export_dir: str | Path, cfg: TRTBuildConfig | None = None) -> list[str]:
    """The ``trtexec`` command line equivalent to :func:`build_engines` for each graph (works anywhere)."""
    cfg = cfg or TRTBuildConfig()
    export_dir = Path(export_dir)
    manifest = load_manifest(export_dir)
    cmds = []
    for name in MODULES:
        module = manifest["modules"][name]
        prof = cfg.profile(manifest, name)
        shapes = {w: ",".join(f"{k}:{'x'.join(map(str, v[w]))}" for k, v in prof.items()) for w in ("min", "opt", "max")}
        flag = {"fp32": "", "fp16": " --fp16", "bf16": " --bf16"}[cfg.precision]
        cmds.append(f"trtexec --onnx={export_dir / module['file']} --saveEngine={export_dir}/engines/{name}-"
                    f"{cfg.precision}.engine{flag} --memPoolSize=workspace:{int(cfg.workspace_gb * 1024)}M "
                    f"--builderOptimizationLevel={cfg.optimization_level} --minShapes={shapes['min']} "
                    f"--optShapes={shapes['opt']} --maxShapes={shapes['max']}")
    return cmds
