"""TensorRT backend: the exported graphs as TensorRT engines on a CUDA GPU.

Engines come from :func:`roboalign.runtime.tensorrt_engines.build_engines` (built on first use, then
cached per GPU + TensorRT version + ONNX hash + precision + profile). Tensors stay on the GPU between the
three stages (torch CUDA tensors as I/O buffers, TensorRT 10 ``execute_async_v3`` on torch's stream).

``tensorrt`` (and CUDA torch) are imported lazily: on a machine without them, constructing the backend
raises :class:`~roboalign.runtime.tensorrt_engines.TensorRTUnavailable` naming ``--backend onnxruntime``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from roboalign.runtime.backend import resolve_export_dir
from roboalign.runtime.checkpoint_specs import RuntimeSpecs
from roboalign.runtime.manifest import MODULES, load_manifest
from roboalign.runtime.ort_backend import RTC_INPUTS, llm_feed, load_tokenizer, prefix_feed
from roboalign.runtime.preprocess import ImageProcessorSpec, ModelInputs, Preprocessor
from roboalign.runtime.tensorrt_engines import (
    ALTERNATIVE,
    TensorRTUnavailable,
    TRTBuildConfig,
    build_engines,
    require_tensorrt,
)


class _Engine:
    """One deserialized engine + execution context with named, shape-dynamic I/O."""

    def __init__(self, trt: Any, torch: Any, path: Path, device: Any) -> None:
        self.trt, self.torch, self.device = trt, torch, device
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT could not deserialize {path} (built by another TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def _torch_dtype(self, name: str) -> Any:
        trt, torch = self.trt, self.torch
        return {trt.float32: torch.float32, trt.float16: torch.float16, trt.bfloat16: torch.bfloat16,
                trt.int64: torch.int64, trt.int32: torch.int32, trt.bool: torch.bool, trt.uint8: torch.uint8}[self.engine.get_tensor_dtype(name)]

    def __call__(self, feeds: dict[str, Any], stream: Any) -> dict[str, Any]:
        keep = []
        for name in self.inputs:
            t = feeds[name]
            t = t.to(device=self.device, dtype=self._torch_dtype(name)).contiguous()
            keep.append(t)
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
        outs = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            outs[name] = self.torch.empty(shape, dtype=self._torch_dtype(name), device=self.device)
            self.context.set_tensor_address(name, outs[name].data_ptr())
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        return outs


class TensorRTBackend:
    """Vision / LLM / head TensorRT engines on one CUDA device."""

    name = "tensorrt"

    def __init__(self, export_dir: str | Path, build: TRTBuildConfig | None = None, device: int = 0) -> None:
        trt = require_tensorrt()
        try:
            import torch
        except ImportError:
            raise TensorRTUnavailable(f"the TensorRT backend uses CUDA torch tensors, torch is missing; {ALTERNATIVE}") from None
        if not torch.cuda.is_available():
            raise TensorRTUnavailable(f"torch has no CUDA here (CPU build or no GPU); {ALTERNATIVE}")
        self.torch = torch
        self.export_dir = resolve_export_dir(export_dir)
        self.manifest = load_manifest(self.export_dir)
        self.specs = RuntimeSpecs.from_dict(self.manifest["specs"], source=f"{self.export_dir}/manifest.json specs")
        layout = self.manifest["layout"]
        tokenizer = load_tokenizer(self.export_dir / self.manifest.get("processor_dir", "processor"))
        self.preprocessor = Preprocessor.from_specs(self.specs, tokenizer,
                                                    ImageProcessorSpec.from_dict(layout["image_processor"]))
        self.build = build or TRTBuildConfig(device=device)
        self.device = torch.device(f"cuda:{device}")
        self.engine_paths = build_engines(self.export_dir, self.build)
        self.engines = {m: _Engine(trt, torch, self.engine_paths[m], self.device) for m in MODULES}
        self.stream = torch.cuda.Stream(device=self.device)

    @classmethod
    def from_path(cls, path: str | Path, precision: str = "fp16", device: int = 0,
                  build: TRTBuildConfig | None = None, **unused: Any) -> TensorRTBackend:
        if unused:
            raise TypeError(f"tensorrt backend: unexpected options {sorted(unused)}; valid: precision, device, build")
        require_tensorrt()  # fail fast, before reading anything
        return cls(path, build or TRTBuildConfig(precision=precision, device=device), device=device)

    def infer(self, x: ModelInputs, noise: np.ndarray,
              prefix: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, dict[str, float]]:
        torch = self.torch
        has_rtc = set(RTC_INPUTS) <= set(self.engines["head"].inputs)
        rtc = {k: torch.from_numpy(v) for k, v in prefix_feed(has_rtc, x.batch, noise, prefix,
                                                               str(self.export_dir)).items()}
        t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in (
            ("frames", x.frames), ("input_ids", x.input_ids), ("attention_mask", x.attention_mask),
            ("position_ids", x.position_ids), ("state", x.state), ("noise", noise), ("embodiment", x.embodiment))}
        s = x.token_start
        with torch.cuda.stream(self.stream):
            t0 = time.perf_counter()
            vision = self.engines["vision"]({"frames": t["frames"]}, self.stream)  # image_embeds[, deepstack_embeds]
            self.stream.synchronize()
            t1 = time.perf_counter()
            feed = {**{k: t[k] for k in ("input_ids", "attention_mask", "position_ids")},
                    **{k: v for k, v in llm_feed(x, vision).items() if k in vision}}
            hidden = self.engines["llm"](feed, self.stream)["hidden"]
            self.stream.synchronize()
            t2 = time.perf_counter()
            actions = self.engines["head"]({"vl_tokens": hidden[:, s:], "vl_mask": t["attention_mask"][:, s:],
                                            "state": t["state"], "noise": t["noise"], "embodiment": t["embodiment"],
                                            **rtc},
                                           self.stream)["actions"]
            self.stream.synchronize()
            t3 = time.perf_counter()
        return actions.float().cpu().numpy(), {"vision": (t1 - t0) * 1e3, "llm": (t2 - t1) * 1e3,
                                               "head": (t3 - t2) * 1e3}

    def describe(self) -> dict[str, Any]:
        import tensorrt as trt

        return {"backend": self.name, "tensorrt": trt.__version__, "device": str(self.device),
                "gpu": self.torch.cuda.get_device_name(self.device), "precision": self.build.precision,
                "engines": {m: str(p) for m, p in self.engine_paths.items()}}
