"""onnxruntime backend: the exported vision / LLM / head graphs, on CPU, CUDA or TensorRT execution providers.

Execution providers are chosen by config, in priority order (``cpu``, ``cuda``, ``tensorrt`` or full
onnxruntime names). A requested provider that cannot run here (``cuda`` with the CPU package, or a CUDA
build on a machine without a usable GPU) follows :data:`roboalign.spec.policy_io.ALLOW_CPU_FALLBACK`.
TensorRT EP options (FP16, engine cache, shape profiles from the manifest) are filled in automatically.

Before a graph is loaded its size and sha256 are checked against the manifest (a truncated or corrupt
file is refused with a message naming it), and after loading its inputs/outputs must match the
manifest; an export whose parity check failed is refused unless ``allow_parity_failure=True``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from roboalign.runtime.backend import resolve_export_dir
from roboalign.runtime.checkpoint_specs import RuntimeSpecs
from roboalign.runtime.manifest import (
    MODULES,
    ManifestError,
    check_session_io,
    load_manifest,
    verify_module_file,
)
from roboalign.runtime.preprocess import ImageProcessorSpec, ModelInputs, Preprocessor
from roboalign.spec.policy_io import ALLOW_CPU_FALLBACK

log = logging.getLogger(__name__)

RTC_INPUTS = ("prefix_actions", "prefix_len", "soft_horizon")  # the head graph's real-time chunking inputs


def prefix_feed(has_rtc: bool, batch: int, noise: np.ndarray, prefix: dict[str, np.ndarray] | None,
                source: str) -> dict[str, np.ndarray]:
    """The head's RTC feed: ``prefix`` (keys :data:`RTC_INPUTS`), zeros (d = s = 0) when None, nothing for a
    graph without the inputs (a warning when a prefix is dropped)."""
    if not has_rtc:
        if prefix is not None:
            log.warning("%s: the head graph takes no prefix_actions input; sampling without real-time chunking "
                        "(re-export to enable it)", source)
        return {}
    if prefix is None:
        zeros = np.zeros(batch, np.int64)
        return {"prefix_actions": np.zeros_like(noise, dtype=np.float32), "prefix_len": zeros, "soft_horizon": zeros}
    return {"prefix_actions": np.ascontiguousarray(prefix["prefix_actions"], dtype=np.float32),
            "prefix_len": np.asarray(prefix["prefix_len"], np.int64).reshape(batch),
            "soft_horizon": np.asarray(prefix["soft_horizon"], np.int64).reshape(batch)}

PROVIDER_ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                    "tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider"}


class ProviderUnavailable(RuntimeError):
    """A configured onnxruntime execution provider cannot be used and CPU fallback was not allowed."""


FALLBACK_HINT = ("install an onnxruntime build with it (`pip install -e .[gpu]` for onnxruntime-gpu; check with "
                 "`roboalign doctor`), or set allow_cpu_fallback=True (policy_node: allow_cpu_fallback:=true) to "
                 "run on the CPU")


def provider_names(requested: Sequence[str] | str | None) -> list[str]:
    """Full onnxruntime names of the requested providers, in order (``cuda`` -> ``CUDAExecutionProvider``)."""
    if requested is None:
        requested = ["cpu"]
    if isinstance(requested, str):
        requested = [p.strip() for p in requested.split(",") if p.strip()]
    out = []
    for p in requested:
        full = PROVIDER_ALIASES.get(str(p).lower(), str(p))
        if full not in PROVIDER_ALIASES.values() and not full.endswith("ExecutionProvider"):
            raise ValueError(f"unknown execution provider {p!r}; valid: {', '.join(PROVIDER_ALIASES)} or a full "
                             "onnxruntime name (e.g. CUDAExecutionProvider)")
        if full not in out:
            out.append(full)
    return out


def refuse_or_fall_back(where: str, unusable: Sequence[str], why: str, asked: Sequence[str],
                        available: Sequence[str], allow_cpu_fallback: bool) -> None:
    """Providers that cannot run, under :data:`~roboalign.spec.policy_io.ALLOW_CPU_FALLBACK`'s rule: raise
    :class:`ProviderUnavailable`, or log a warning when ``allow_cpu_fallback``."""
    facts = (f"{where}: execution provider(s) {', '.join(unusable)} {why} (asked for: {', '.join(asked)}; "
             f"available: {', '.join(available)}; allow_cpu_fallback={allow_cpu_fallback})")
    if not allow_cpu_fallback:
        raise ProviderUnavailable(f"{facts}; {FALLBACK_HINT}")
    log.warning("%s; falling back to the next provider, the CPU last", facts)


def resolve_providers(requested: Sequence[str] | str | None,
                      allow_cpu_fallback: bool = ALLOW_CPU_FALLBACK) -> list[str]:
    """Full provider names in priority order, keeping only those this onnxruntime has; CPU always last."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = provider_names(requested)
    missing = [p for p in wanted if p not in available]
    if missing:
        refuse_or_fall_back(f"onnxruntime {ort.__version__}", missing, "not in this build", wanted, available,
                            allow_cpu_fallback)
    out = [p for p in wanted if p in available]
    if "CPUExecutionProvider" not in out:
        out.append("CPUExecutionProvider")
    return out


def _shape_str(profile: dict[str, Any], which: str) -> str:
    return ",".join(f"{name}:{'x'.join(str(d) for d in p[which])}" for name, p in profile.items())


def provider_options(providers: Sequence[str], module: dict[str, Any] | None, fp16: bool,
                     cache_dir: str | Path | None) -> list[dict[str, Any]]:
    opts: list[dict[str, Any]] = []
    for p in providers:
        if p == "TensorrtExecutionProvider":
            o: dict[str, Any] = {"trt_fp16_enable": bool(fp16), "trt_engine_cache_enable": cache_dir is not None}
            if cache_dir is not None:
                o["trt_engine_cache_path"] = str(cache_dir)
            prof = (module or {}).get("profile") or {}
            if prof:
                o.update(trt_profile_min_shapes=_shape_str(prof, "min"), trt_profile_opt_shapes=_shape_str(prof, "opt"),
                         trt_profile_max_shapes=_shape_str(prof, "max"))
            opts.append(o)
        else:
            opts.append({})
    return opts


def make_session(path: str | Path, providers: Sequence[str] | str | None = None, num_threads: int | None = None,
                 module: dict[str, Any] | None = None, fp16: bool = False, cache_dir: str | Path | None = None,
                 allow_cpu_fallback: bool = ALLOW_CPU_FALLBACK) -> Any:
    """An onnxruntime session for one graph, with a clear error when the file is not a loadable model; a
    session that onnxruntime moved off the first requested provider follows :func:`refuse_or_fall_back`."""
    import onnxruntime as ort

    path = Path(path)
    provs = resolve_providers(providers, allow_cpu_fallback)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.inter_op_num_threads = 1
    if num_threads is not None:
        so.intra_op_num_threads = int(num_threads)
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), so, providers=provs,
                                    provider_options=provider_options(provs, module, fp16, cache_dir))
    except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf/InvalidGraph types
        raise ManifestError(f"onnxruntime cannot load {path}: {type(e).__name__}: {str(e).strip()[:300]} — the file "
                            "is corrupt, truncated or not an ONNX model; re-run `roboalign export`") from None
    active = sess.get_providers()
    if provs and active and active[0] != provs[0]:
        refuse_or_fall_back(path.name, provs[:1], f"is in this build but could not start (no GPU / driver / CUDA "
                            f"libraries?), onnxruntime runs the graph on {active[0]}", provs, active, allow_cpu_fallback)
    return sess


def llm_feed(x: ModelInputs, vision: dict[str, Any]) -> dict[str, Any]:
    """The LLM graph's inputs: the prompt tensors plus every vision output regrouped per observation
    (``(N = B * cameras, T, ...) -> (B, cameras * T, ...)``: image_embeds and, for Qwen3-VL, deepstack_embeds)."""
    feed: dict[str, Any] = {"input_ids": x.input_ids, "attention_mask": x.attention_mask,
                            "position_ids": x.position_ids}
    for name, v in vision.items():
        feed[name] = v.reshape(x.batch, -1, *v.shape[2:])
    return feed


def load_tokenizer(processor_dir: str | Path) -> Any:
    """The tokenizer saved in an export's processor folder (local files only, no remote code).

    Loaded as a plain ``PreTrainedTokenizerFast`` (the same tokenizer.json, special tokens and chat
    template as the checkpoint's Qwen tokenizer) so that the graph backends never import torch.
    """
    from transformers import PreTrainedTokenizerFast

    processor_dir = Path(processor_dir)
    if not (processor_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{processor_dir}: missing tokenizer.json (export folder incomplete)")
    tok = PreTrainedTokenizerFast.from_pretrained(processor_dir, local_files_only=True)
    chat = processor_dir / "chat_template.jinja"
    if chat.is_file():
        tok.chat_template = chat.read_text()
    if not getattr(tok, "chat_template", None):
        raise FileNotFoundError(f"{processor_dir}: no chat template (chat_template.jinja) for the prompt")
    return tok


class OnnxRuntimeBackend:
    """The three exported graphs in onnxruntime sessions."""

    name = "onnxruntime"

    def __init__(self, export_dir: str | Path, providers: Sequence[str] | str | None = None,
                 num_threads: int | None = None, check_hash: bool = True, allow_parity_failure: bool = False,
                 fp16: bool = False, trt_cache_dir: str | Path | None = None,
                 allow_cpu_fallback: bool = ALLOW_CPU_FALLBACK) -> None:
        self.export_dir = resolve_export_dir(export_dir)
        self.manifest = load_manifest(self.export_dir)
        parity = self.manifest["parity"]
        if parity.get("ok") is not True and not allow_parity_failure:
            raise ManifestError(f"{self.export_dir}: the export did not pass its parity check against PyTorch "
                                f"(parity: {parity}); re-export, or pass allow_parity_failure=True to run it anyway")
        self.specs = RuntimeSpecs.from_dict(self.manifest["specs"], source=f"{self.export_dir}/manifest.json specs")
        layout = self.manifest["layout"]
        tokenizer = load_tokenizer(self.export_dir / self.manifest.get("processor_dir", "processor"))
        self.preprocessor = Preprocessor.from_specs(self.specs, tokenizer,
                                                    ImageProcessorSpec.from_dict(layout["image_processor"]))
        self._check_layout(layout)
        self.providers = resolve_providers(providers, allow_cpu_fallback)
        self.num_threads = num_threads
        cache = Path(trt_cache_dir) if trt_cache_dir else self.export_dir / "trt_ep_cache"
        if "TensorrtExecutionProvider" in self.providers:
            os.makedirs(cache, exist_ok=True)
        self.sessions: dict[str, Any] = {}
        for name in MODULES:
            module = self.manifest["modules"][name]
            path = verify_module_file(self.export_dir, name, module, check_hash=check_hash)
            sess = make_session(path, self.providers, num_threads, module=module, fp16=fp16, cache_dir=cache,
                                allow_cpu_fallback=allow_cpu_fallback)
            check_session_io(name, module, sess.get_inputs(), sess.get_outputs())
            self.sessions[name] = sess
        self._out = {name: [o["name"] for o in self.manifest["modules"][name]["outputs"]] for name in MODULES}
        self.has_rtc = set(RTC_INPUTS) <= {i.name for i in self.sessions["head"].get_inputs()}

    @classmethod
    def from_path(cls, path: str | Path, **options: Any) -> OnnxRuntimeBackend:
        return cls(path, **options)

    def _check_layout(self, layout: dict[str, Any]) -> None:
        pre = self.preprocessor
        src = f"{self.export_dir}/manifest.json layout"
        checks = {"image_grid_thw": list(pre.grid), "tokens_per_image": pre.tokens_per_image,
                  "image_token_id": pre.image_token_id, "vision_start_id": pre.vision_start_id,
                  "num_cameras": len(self.specs.cameras)}
        for key, have in checks.items():
            if layout.get(key) != have:
                raise ManifestError(f"{src}: {key}={layout.get(key)!r} but the export's specs/processor give {have!r}")

    def infer(self, x: ModelInputs, noise: np.ndarray,
              prefix: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, dict[str, float]]:
        t0 = time.perf_counter()
        outs = self.sessions["vision"].run(self._out["vision"], {"frames": x.frames})  # (N, T, D)[, (N, T, L, D)]
        t1 = time.perf_counter()
        vision = dict(zip(self._out["vision"], outs, strict=True))
        hidden = self.sessions["llm"].run(self._out["llm"], llm_feed(x, vision))[0]  # (B, S, D)
        s = x.token_start
        t2 = time.perf_counter()
        actions = self.sessions["head"].run(self._out["head"], {
            "vl_tokens": np.ascontiguousarray(hidden[:, s:]), "vl_mask": np.ascontiguousarray(x.attention_mask[:, s:]),
            "state": x.state, "noise": np.ascontiguousarray(noise, dtype=np.float32), "embodiment": x.embodiment,
            **prefix_feed(self.has_rtc, x.batch, noise, prefix, str(self.export_dir))})[0]  # (B, H, A)
        t3 = time.perf_counter()
        return actions, {"vision": (t1 - t0) * 1e3, "llm": (t2 - t1) * 1e3, "head": (t3 - t2) * 1e3}

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"backend": self.name, "export_dir": str(self.export_dir), "onnxruntime": ort.__version__,
                "providers": self.sessions["head"].get_providers(), "threads": self.num_threads}
