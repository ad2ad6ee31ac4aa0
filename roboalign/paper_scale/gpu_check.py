"""The Python part of ``scripts/gpu_check.sh``: what only a GPU can tell, in two short steps.

* ``export``: the tiny VLA exported to ONNX, run on onnxruntime's CPU provider and, where installed, on
  its CUDA and TensorRT providers, the TensorRT backend and torch on CUDA; each compared with the CPU
  chunk (max abs difference of the normalised actions, same observations and noise). Prints one line
  ``gpu_export: ...``.
* ``vla``: the paper-scale VLA with random weights — Qwen2.5-VL-7B's architecture (published config.json,
  :mod:`.architectures`) cut after layer 18 + the GR00T-N1.5-sized head with 4 Euler steps — at batch 1
  with two 224² cameras, through the deployed module boundaries (the export wrappers: uint8 frames ->
  vision, truncated LLM, head), eager and under ``torch.compile`` (and ``mode="reduce-overhead"``, i.e.
  CUDA graphs, when that works). Prints ``gpu: device=.. backbone_ms=.. head_ms=.. total_ms=..
  compiled_total_ms=..`` (medians).

``--tiny --device cpu`` runs both on the tiny architecture on the CPU (the test suite does, so the script
is known to run before anyone spends GPU time on it). Nothing is installed or downloaded.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from roboalign.bench.runtime import make_tiny_vla_checkpoint
from roboalign.paper_scale.architectures import QWEN25_VL_7B
from roboalign.paper_scale.resolve import resolve_tiny
from roboalign.runtime import Policy

PAPER_LAYER = 18
CAMERAS = 2
IMAGE = 224
TEXT_TOKENS = 150  # system prompt + task text around the image tokens (the real template is ~200 with images)


# ---------------------------------------------------------------------------------------------- timing
def median_ms(fn: Callable[[], Any], device: torch.device, iters: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    times = []
    for _ in range(iters):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


# ---------------------------------------------------------------------------------------------- the model
def _rebuild_rotary(model: nn.Module, device: torch.device) -> None:
    """Rotary tables are config-only buffers that ``to_empty`` leaves uninitialised: build them again."""
    for name, module in list(model.named_modules()):
        if hasattr(module, "inv_freq") and hasattr(module, "config"):
            parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            with torch.device("cpu"):
                fresh = type(module)(module.config)
            # on the meta device (a shape dry run) the tables stay on the CPU: the export wrappers read them
            setattr(parent, name.rsplit(".", 1)[-1], fresh if device.type == "meta" else fresh.to(device))


def _random_init(model: nn.Module, seed: int) -> None:
    gens: dict[torch.device, torch.Generator] = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:  # norms at 1, biases at 0: random weights that keep activations in range
                p.fill_(1.0 if ("norm" in name or name.endswith("ln_q.weight")) else 0.0)
            elif p.is_meta:  # a shape dry run: nothing to draw
                continue
            else:  # drawn on the parameter's device (7 B numbers on the CPU would take a minute)
                g = gens.setdefault(p.device, torch.Generator(device=p.device).manual_seed(seed))
                p.normal_(0.0, 0.02, generator=g)


def build_backbone(tiny: bool, device: torch.device, dtype: torch.dtype, seed: int = 0) -> tuple[nn.Module, str, int]:
    """(model cut after layer k with random weights on ``device``, family, k)."""
    from roboalign.models.backbone import language_layers
    from roboalign.paper_scale.meta_models import build_meta_model

    if tiny:
        res = resolve_tiny("tiny")
        family, config, layer = res.family, res.config, 1
    else:
        family, config, layer = QWEN25_VL_7B.family, QWEN25_VL_7B.config_dict(), PAPER_LAYER
    model = build_meta_model(family, config)
    del language_layers(model)[layer:]
    model.model.language_model.norm = nn.Identity()  # hidden_states[k] for k < N: the raw residual stream
    model.lm_head = nn.Identity()  # the head reads hidden states; the 150 K-row LM head is never used
    model.to_empty(device=device)
    _random_init(model, seed)
    _rebuild_rotary(model, device)
    return model.to(dtype).eval(), family, layer


class VLAStep(nn.Module):
    """frames (N, h, w, 3) uint8 + prompt -> actions (B, H, A): vision, LLM at layer k, head (the deployed graphs)."""

    def __init__(self, vision: nn.Module, llm: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.vision, self.llm, self.head = vision, llm, head

    def backbone(self, frames: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        feats = self.vision(frames)  # (N, T, D)
        return self.llm(ids, mask, pos, feats.reshape(ids.shape[0], -1, feats.shape[-1]))  # (B, S, D)

    def forward(self, frames: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor,
                state: torch.Tensor, noise: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(frames, ids, mask, pos), mask, state, noise, emb)


def build_step(tiny: bool, device: torch.device, dtype: torch.dtype) -> tuple[VLAStep, dict[str, torch.Tensor]]:
    """The step module and one batch-1 input (two cameras) on ``device``."""
    from roboalign.export.modules import TruncatedLLMExport, VisionEncoderExport
    from roboalign.models.action_head import ActionHeadConfig, FlowMatchingActionHead
    from roboalign.models.backbone import text_config
    from roboalign.paper_scale.meta_models import image_spec

    model, family, layer = build_backbone(tiny, device, dtype)
    size = 112 if tiny else IMAGE
    spec = image_spec(family, 56 * 56, 28 * 28 * 1280)
    grid = spec.grid((size, size))
    image_token = int(model.config.image_token_id)
    vision = VisionEncoderExport(model.model.visual, grid, spec.lut()).to(device=device, dtype=dtype)
    llm = TruncatedLLMExport(model, image_token)
    hidden = int(text_config(model).hidden_size)
    hc = ActionHeadConfig.tiny(backbone_dim=hidden, backbone_layer=layer) if tiny else \
        ActionHeadConfig.paper()  # 16 DiT layers, 32 x 48, horizon 16, 4 Euler steps, width 3584
    with torch.device(device):
        head = FlowMatchingActionHead(hc)
    step = VLAStep(vision, llm, head.to(dtype)).eval()
    vocab = int(model.get_input_embeddings().weight.shape[0])
    return step, step_inputs(spec, grid, image_token, hc, size, vocab, device, dtype)


def step_inputs(spec: Any, grid: tuple[int, int, int], image_token: int, hc: Any, size: int, vocab: int,
                device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    from roboalign.runtime.preprocess import mrope_position_ids

    rng = np.random.default_rng(0)
    per_image = spec.tokens_per_image((size, size))
    ids = rng.integers(0, min(vocab, image_token), TEXT_TOKENS).tolist()  # text ids below the special tokens
    ids[20:20] = [image_token] * (per_image * CAMERAS)
    ids = np.asarray([ids], dtype=np.int64)
    mask = np.ones_like(ids)
    pos = mrope_position_ids(ids, mask, image_token, grid, spec.merge_size)
    t = {"frames": torch.from_numpy(rng.integers(0, 256, (CAMERAS, *spec.target_size((size, size)), 3), dtype=np.uint8)),
         "ids": torch.from_numpy(ids), "mask": torch.from_numpy(mask), "pos": torch.from_numpy(pos),
         "state": torch.randn(1, hc.state_dim), "noise": torch.randn(1, hc.horizon, hc.action_dim),
         "emb": torch.zeros(1, dtype=torch.long)}
    return {k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype) for k, v in t.items()}


def run_vla(tiny: bool, device: torch.device, iters: int, warmup: int, compile_backend: str,
            cudagraphs: bool) -> dict[str, Any]:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    step, x = build_step(tiny, device, dtype)
    args = (x["frames"], x["ids"], x["mask"], x["pos"])
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type}
    with torch.inference_mode():
        hidden = step.backbone(*args)
        out["backbone_ms"] = median_ms(lambda: step.backbone(*args), device, iters, warmup)
        out["head_ms"] = median_ms(lambda: step.head(hidden, x["mask"], x["state"], x["noise"], x["emb"]), device,
                                   iters, warmup)
        eager = step(*args, x["state"], x["noise"], x["emb"])
        out["total_ms"] = median_ms(lambda: step(*args, x["state"], x["noise"], x["emb"]), device, iters, warmup)
        modes = [("compiled", {"backend": compile_backend})] if compile_backend != "none" else []
        if cudagraphs and device.type == "cuda":
            modes.append(("cudagraph", {"mode": "reduce-overhead"}))
        for name, kwargs in modes:
            out.update(_compiled(name, kwargs, step, args, x, eager, device, iters, warmup))
    out["actions_shape"] = list(eager.shape)
    return out


def _compiled(name: str, kwargs: dict[str, Any], step: nn.Module, args: tuple, x: dict[str, torch.Tensor],
              eager: torch.Tensor, device: torch.device, iters: int, warmup: int) -> dict[str, Any]:
    try:
        fn = torch.compile(step, **kwargs)
        got = fn(*args, x["state"], x["noise"], x["emb"]).clone()
        ms = median_ms(lambda: fn(*args, x["state"], x["noise"], x["emb"]), device, iters, max(warmup, 2))
    except Exception as e:  # report, keep the eager figures
        return {f"{name}_total_ms": f"n/a ({type(e).__name__}: {str(e).splitlines()[0][:120]})"}
    diff = "n/a" if got.is_meta else float((got.float() - eager.float()).abs().max())
    return {f"{name}_total_ms": ms, f"{name}_max_abs_diff": diff}


# ---------------------------------------------------------------------------------------------- export
def run_export(device: torch.device, work: Path, existing: tuple[Path, Path] | None = None) -> dict[str, Any]:
    """Tiny export on every available execution path vs onnxruntime CPU (normalised chunks, same noise).
    ``existing``: (checkpoint, export folder) to use instead of building and exporting one in ``work``."""
    import onnxruntime as ort

    from roboalign.export.onnx_export import export_checkpoint
    from roboalign.runtime.preprocess import draw_noise, synthetic_observations

    if existing is None:
        ckpt, onnx = make_tiny_vla_checkpoint(work / "vla"), work / "vla" / "onnx"
        export_checkpoint(ckpt, onnx)
    else:
        ckpt, onnx = existing
    cpu = Policy.from_checkpoint(onnx, "onnxruntime", providers=["cpu"], warmup=0)
    obs = synthetic_observations(cpu.specs, 2, seed=0)
    noise = draw_noise(np.random.default_rng(0), 2, cpu.horizon, cpu.specs.action_dim)

    def chunk(p: Policy) -> np.ndarray:
        x = p.preprocessor(obs)
        return p.backend.infer(x, noise)[0]

    ref = chunk(cpu)
    available = ort.get_available_providers()
    paths: dict[str, Callable[[], Policy]] = {
        "torch_" + device.type: lambda: Policy.from_checkpoint(ckpt, "torch", device=str(device), warmup=0)}
    if "CUDAExecutionProvider" in available:
        paths["ort_cuda"] = lambda: Policy.from_checkpoint(onnx, "onnxruntime", providers=["cuda"], warmup=0)
    if "TensorrtExecutionProvider" in available:
        paths["ort_tensorrt"] = lambda: Policy.from_checkpoint(onnx, "onnxruntime", providers=["tensorrt", "cuda"],
                                                               warmup=0)
    if importlib.util.find_spec("tensorrt") is not None and device.type == "cuda":
        paths["tensorrt_fp32"] = lambda: Policy.from_checkpoint(onnx, "tensorrt", precision="fp32", warmup=0)
    out: dict[str, Any] = {"providers": ",".join(p.replace("ExecutionProvider", "") for p in available)}
    for name, make in paths.items():
        try:
            out[f"cpu_vs_{name}"] = float(np.abs(chunk(make()) - ref).max())
        except Exception as e:  # one path failing must not hide the others
            out[f"cpu_vs_{name}"] = f"failed ({type(e).__name__}: {str(e).splitlines()[0][:160]})"
    return out


def _line(prefix: str, values: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) and abs(v) < 1e-2 else (f"{v:.2f}" if isinstance(v, float) else
                                                                          str(v).replace(" ", "_"))
    return f"{prefix}: " + " ".join(f"{k}={fmt(v)}" for k, v in values.items())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m roboalign.paper_scale.gpu_check", description=__doc__.split("\n")[0])
    ap.add_argument("step", choices=("export", "vla", "all"))
    ap.add_argument("--device", default="cuda", help="cuda (default) | cuda:N | cpu (with --tiny, to test the script) "
                    "| meta (vla: a shape-only dry run of the paper-scale path, no memory, no timing)")
    ap.add_argument("--tiny", action="store_true", help="the tiny architecture instead of the 7B one")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--compile-backend", default="inductor", help="torch.compile backend (inductor; eager to test; none: skip)")
    ap.add_argument("--no-cudagraphs", action="store_true", help="skip torch.compile(mode='reduce-overhead')")
    ap.add_argument("--checkpoint", type=Path, help="export step: an existing tiny checkpoint (with --export)")
    ap.add_argument("--export", type=Path, help="export step: its existing export folder (default: make both)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: torch {torch.__version__} sees no CUDA device (CPU-only build or no GPU); run it on a GPU "
              "machine with a CUDA torch, or test it here with --tiny --device cpu", file=sys.stderr)
        return 2
    if args.step in ("export", "all"):
        with tempfile.TemporaryDirectory(prefix="roboalign-gpu-check-") as tmp:
            existing = (args.checkpoint, args.export) if args.checkpoint and args.export else None
            print(_line("gpu_export", run_export(device, Path(tmp), existing)), flush=True)
    if args.step in ("vla", "all"):
        res = run_vla(args.tiny, device, args.iters, args.warmup, args.compile_backend, not args.no_cudagraphs)
        print(_line("gpu", {"device": res.pop("device"), **res}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
