"""Doctor checks of the compute stack: torch build and CUDA, onnxruntime providers (against the config, with
a real session on each requested provider), TensorRT and ``trtexec``."""

from __future__ import annotations

import importlib
import shutil

import numpy as np

from roboalign.doctor.report import Check, DeployConfig

CUDA_TORCH = 'ROBOALIGN_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" make setup'


def check_torch(cfg: DeployConfig | None = None) -> Check:
    try:
        import torch
    except ImportError:
        return Check("torch", "FAIL", "torch is not installed", "make setup")
    build = f"torch {torch.__version__} (CUDA build {torch.version.cuda})" if torch.version.cuda else \
        f"torch {torch.__version__} (CPU-only build)"
    wants_cuda = cfg is not None and cfg.backend == "torch" and cfg.device.startswith("cuda")
    status = "FAIL" if wants_cuda else "WARN"
    asked = f"; {cfg.source} runs the torch backend on {cfg.device}" if wants_cuda else ""
    if not torch.version.cuda:
        return Check("torch", status, f"{build}: training at scale, scripts/gpu_check.sh and torch on CUDA need a "
                     f"CUDA build{asked}", f"on a GPU machine: {CUDA_TORCH}")
    if not torch.cuda.is_available():
        return Check("torch", status, f"{build}, but no CUDA device is usable here{asked}",
                     "check the NVIDIA driver (`nvidia-smi`) and CUDA_VISIBLE_DEVICES")
    gpus = [f"{torch.cuda.get_device_name(i)} (sm_{''.join(map(str, torch.cuda.get_device_capability(i)))}, "
            f"{torch.cuda.get_device_properties(i).total_memory / 1024**3:.0f} GiB)"
            for i in range(torch.cuda.device_count())]
    bf16 = "bf16 yes" if torch.cuda.is_bf16_supported() else "bf16 NO (the paper configs use bf16)"
    return Check("torch", "OK" if "NO" not in bf16 else "WARN", f"{build}: {len(gpus)} GPU(s): {'; '.join(gpus)}; {bf16}")


def _probe_session(provider: str) -> str | None:
    """Run a one-node graph on ``provider``; returns the provider onnxruntime really used (None: it failed)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.log_severity_level = 4
    try:
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=[provider])
        sess.run(None, {"x": np.ones(4, np.float32)})
    except Exception:  # any onnxruntime failure means the provider does not work here
        return None
    return sess.get_providers()[0]


def check_onnxruntime(cfg: DeployConfig) -> list[Check]:
    try:
        import onnxruntime as ort
    except ImportError:
        return [Check("onnxruntime", "FAIL", "onnxruntime is not installed", "make setup")]
    from roboalign.runtime.ort_backend import FALLBACK_HINT, provider_names

    available = ort.get_available_providers()
    out = [Check("onnxruntime", "OK", f"onnxruntime {ort.__version__}: providers {', '.join(available)}")]
    if not cfg.providers:
        return out
    for name in provider_names(list(cfg.providers)):
        used = _probe_session(name) if name in available else None
        if used == name:
            out.append(Check("onnxruntime", "OK", f"{name} (asked by {cfg.source}) runs a graph here"))
            continue
        why = "is not in this onnxruntime build" if name not in available else f"is in the build but a session " \
              f"on it {'fails' if used is None else 'runs on ' + used} (no GPU / driver / CUDA libraries?)"
        status = "WARN" if cfg.allow_cpu_fallback else "FAIL"
        tail = "; allow_cpu_fallback is set: the policy will run on the CPU" if cfg.allow_cpu_fallback else \
            "; the policy node will refuse to load"
        out.append(Check("onnxruntime", status, f"{name} (asked by {cfg.source}) {why}{tail}", FALLBACK_HINT))
    return out


def check_tensorrt(cfg: DeployConfig | None = None) -> list[Check]:
    out = []
    wanted = cfg is not None and cfg.backend == "tensorrt"
    try:
        trt = importlib.import_module("tensorrt")
        out.append(Check("tensorrt", "OK", f"TensorRT {trt.__version__} imports"))
    except ImportError:
        out.append(Check("tensorrt", "FAIL" if wanted else "WARN", "TensorRT is not installed: the tensorrt backend "
                         "is unavailable" + (f", and {cfg.source} asks for it" if wanted else
                                             " (onnxruntime works without it)"),
                         "on a GPU machine: scripts/run pip install -e .[gpu]" + (", or backend: onnxruntime"
                                                                                 if wanted else "")))
    except Exception as e:  # a broken install (missing libnvinfer) raises OSError & co.
        out.append(Check("tensorrt", "FAIL", f"TensorRT is installed but does not import: {e}",
                         "reinstall tensorrt matching the CUDA driver (pip install -e .[gpu])"))
    exe = shutil.which("trtexec")
    out.append(Check("tensorrt", "OK", f"trtexec at {exe}") if exe else Check(
        "tensorrt", "WARN", "trtexec is not on PATH (engines are built with the TensorRT Python API instead; "
        "`roboalign export --print-trtexec` prints the commands)", "add TensorRT's bin/ folder to PATH"))
    return out
