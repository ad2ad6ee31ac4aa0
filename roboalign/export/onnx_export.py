"""Export a VLA checkpoint to ONNX, one graph per module, with a manifest, parity and a TensorRT check.

Output folder layout (``roboalign export --checkpoint CKPT --out OUT``)::

    OUT/vision.onnx     frames (num_images, h, w, 3) uint8 -> image_embeds (num_images, P/m², D)
                        [normalise + patchify + vision tower + merger, see roboalign.export.modules]
    OUT/llm.onnx        input_ids, attention_mask (batch, seq), position_ids (3, batch, seq),
                        image_embeds (batch, M, D) -> hidden (batch, seq, D)   [layer-k hidden states]
    OUT/head.onnx       vl_tokens (batch, vl_seq, D), vl_mask (batch, vl_seq), state (batch, S_dim),
                        noise (batch, H, A), embodiment (batch,)[, prefix_actions (batch, H, A),
                        prefix_len (batch,), soft_horizon (batch,)] -> actions (batch, H, A)   [normalised]
    OUT/processor/      tokenizer + chat template + image processor config (for the pre-processing)
    OUT/manifest.json   see :mod:`roboalign.runtime.manifest`

``batch``, ``seq``, ``vl_seq`` and ``num_images`` are dynamic axes; everything else is fixed by the
checkpoint's specs (image size -> patch grid, head horizon and dims). The head graph contains the whole
Euler denoising loop (``num_inference_steps`` steps, unrolled) with the noise as an input, so the graph
is deterministic and comparable with PyTorch. With real-time chunking (``ExportConfig.rtc``, default
``auto``: ``trained`` for heads trained with ``rtc_max_delay > 0``, else ``inpaint``) the head graph also
takes the committed prefix, its length d and the soft-mask horizon s (see :mod:`roboalign.models.rtc`);
d = s = 0 gives the chunk without RTC. ``rtc: off`` exports the graph without these inputs.

Exporter: ``legacy`` (TorchScript tracer, ``torch.onnx.export(dynamo=False)``) is the default: it
exports all three modules with dynamic axes in seconds. ``dynamo`` (``torch.export``, opset >= 18)
exports the vision and LLM graphs, but with torch 2.13 + diffusers 0.42 it fails on the head: diffusers'
``AttnProcessor2_0`` reshapes the cross-attention mask with ``view(batch, heads, -1, S)``, which
torch.export cannot prove for a dynamic batch; the error names the module and cause.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from roboalign.export.parity import DEFAULT_MIN_COSINE, ParityError, module_parity, rtc_example
from roboalign.export.trt_compat import check_file
from roboalign.models.families import FAMILIES, get_family
from roboalign.runtime.manifest import (
    FORMAT,
    MODULES,
    PROCESSOR_DIR,
    sha256_file,
    tensor_specs,
    write_manifest,
)
from roboalign.runtime.preprocess import synthetic_observations

EXPORTERS = ("legacy", "dynamo")
RTC_CHOICES = ("auto", "inpaint", "trained", "off")
RTC_INPUTS = ("prefix_actions", "prefix_len", "soft_horizon")
# opsets each exporter emits (LayerNormalization needs 17; torch.export-based ONNX starts at 18)
OPSETS = {"legacy": (17, 20), "dynamo": (18, 23)}

# input / output names and dynamic axes of each graph
IO: dict[str, dict[str, Any]] = {
    "vision": {"inputs": ["frames"], "outputs": ["image_embeds"],
               "axes": {"frames": {0: "num_images"}, "image_embeds": {0: "num_images"}}},
    "llm": {"inputs": ["input_ids", "attention_mask", "position_ids", "image_embeds"], "outputs": ["hidden"],
            "axes": {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                     "position_ids": {1: "batch", 2: "seq"}, "image_embeds": {0: "batch"},
                     "hidden": {0: "batch", 1: "seq"}}},
    "head": {"inputs": ["vl_tokens", "vl_mask", "state", "noise", "embodiment"], "outputs": ["actions"],
             "axes": {"vl_tokens": {0: "batch", 1: "vl_seq"}, "vl_mask": {0: "batch", 1: "vl_seq"},
                      "state": {0: "batch"}, "noise": {0: "batch"}, "embodiment": {0: "batch"},
                      "actions": {0: "batch"}}},
}
# Qwen3-VL (DeepStack): intermediate ViT features travel from the vision graph to the LLM graph
DEEPSTACK = "deepstack_embeds"


def graph_io(num_deepstack: int, rtc: bool = False) -> dict[str, dict[str, Any]]:
    """The graphs' input / output names and dynamic axes (``IO`` plus the DeepStack tensor and the RTC
    prefix inputs when used)."""
    if not num_deepstack and not rtc:
        return IO
    io = {name: {"inputs": list(v["inputs"]), "outputs": list(v["outputs"]), "axes": dict(v["axes"])}
          for name, v in IO.items()}
    if rtc:
        io["head"]["inputs"] += list(RTC_INPUTS)
        io["head"]["axes"].update({name: {0: "batch"} for name in RTC_INPUTS})
    if not num_deepstack:
        return io
    io["vision"]["outputs"].append(DEEPSTACK)
    io["vision"]["axes"][DEEPSTACK] = {0: "num_images"}  # (N, T, L, D)
    io["llm"]["inputs"].append(DEEPSTACK)
    io["llm"]["axes"][DEEPSTACK] = {0: "batch"}  # (B, M, L, D)
    return io


def num_deepstack_layers(vla: Any) -> int:
    """DeepStack features the truncated LLM reads: one per kept decoder layer, up to the tower's count."""
    indexes = getattr(vla.backbone.model.config.vision_config, "deepstack_visual_indexes", None) or []
    return min(len(indexes), int(vla.cfg.head.backbone_layer))


@dataclass(frozen=True)
class ExportConfig:
    """How to export. Shape ranges become the TensorRT optimisation profiles written to the manifest."""

    opset: int = 17
    exporter: str = "legacy"
    max_batch: int = 8  # TensorRT profile max for the batch axis
    opt_batch: int = 1
    min_seq: int = 16  # TensorRT profile range for the prompt length
    max_seq: int = 1024
    min_cosine: float = DEFAULT_MIN_COSINE
    seed: int = 0
    rtc: str = "auto"  # RTC variant in the head graph: auto | inpaint | trained | off

    def __post_init__(self) -> None:
        if self.rtc not in RTC_CHOICES:
            raise ValueError(f"ExportConfig.rtc={self.rtc!r}; valid: {', '.join(RTC_CHOICES)}")
        if self.exporter not in EXPORTERS:
            raise ValueError(f"ExportConfig.exporter={self.exporter!r}; valid: {', '.join(EXPORTERS)}")
        lo, hi = OPSETS[self.exporter]
        if not lo <= self.opset <= hi:
            raise ValueError(f"ExportConfig.opset={self.opset}: the {self.exporter} exporter supports opsets {lo}..{hi}")
        if not 1 <= self.opt_batch <= self.max_batch:
            raise ValueError(f"ExportConfig: need 1 <= opt_batch ({self.opt_batch}) <= max_batch ({self.max_batch})")
        if not 1 <= self.min_seq <= self.max_seq:
            raise ValueError(f"ExportConfig: need 1 <= min_seq ({self.min_seq}) <= max_seq ({self.max_seq})")
        if not 0.0 < self.min_cosine <= 1.0:
            raise ValueError(f"ExportConfig.min_cosine must be in (0, 1], got {self.min_cosine}")


@contextlib.contextmanager
def eager_attention(model: Any) -> Iterator[None]:
    """Trace the LLM with plain matmul/softmax attention (exportable everywhere); restore afterwards."""
    before = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def _export_graph(module: Any, args: tuple, path: Path, name: str, cfg: ExportConfig,
                  graphs_io: dict[str, dict[str, Any]] = IO) -> None:
    import torch

    io = graphs_io[name]
    kwargs: dict[str, Any] = dict(input_names=io["inputs"], output_names=io["outputs"], opset_version=cfg.opset,
                                  do_constant_folding=True)
    if cfg.exporter == "legacy":
        kwargs.update(dynamo=False, dynamic_axes=io["axes"])
    else:
        from torch.export import Dim

        dims: dict[str, Any] = {}
        shapes = {}
        for inp in io["inputs"]:
            axes = io["axes"].get(inp, {})
            shapes[inp] = {ax: dims.setdefault(sym, Dim(sym, min=1, max=1 << 16)) for ax, sym in axes.items()} or None
        kwargs.update(dynamo=True, dynamic_shapes=shapes, external_data=False)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about python values are expected and checked by parity
        try:
            torch.onnx.export(module, args, str(path), **kwargs)
        except Exception as e:
            root = e
            while root.__cause__ is not None:
                root = root.__cause__
            raise RuntimeError(f"exporting the {name} graph with the {cfg.exporter} exporter failed: "
                               f"{type(root).__name__}: {str(root).strip().splitlines()[0] if str(root) else ''}"
                               + ("; use --exporter legacy" if cfg.exporter == "dynamo" else "")) from e


def _pin_output_dims(path: Path, dims: dict[str, dict[int, int]]) -> None:
    """Write static sizes the tracer could not infer (e.g. the head's horizon) into the graph's outputs."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for out in model.graph.output:
        for ax, size in dims.get(out.name, {}).items():
            dim = out.type.tensor_type.shape.dim[ax]
            dim.ClearField("dim_param")
            dim.dim_value = int(size)
    onnx.save(model, str(path))


def _profiles(name: str, shapes: dict[str, tuple[int, ...]], cfg: ExportConfig, n_cam: int,
              graphs_io: dict[str, dict[str, Any]] = IO) -> dict[str, Any]:
    """min/opt/max per input for TensorRT, from the example shapes and the config's ranges."""
    out = {}
    for inp, shape in shapes.items():
        axes = graphs_io[name]["axes"].get(inp, {})
        lo, opt, hi = list(shape), list(shape), list(shape)
        for ax, sym in axes.items():
            if sym == "batch":
                lo[ax], opt[ax], hi[ax] = 1, cfg.opt_batch, cfg.max_batch
            elif sym == "num_images":
                lo[ax], opt[ax], hi[ax] = n_cam, n_cam * cfg.opt_batch, n_cam * cfg.max_batch
            elif sym in ("seq", "vl_seq"):
                lo[ax], opt[ax], hi[ax] = min(cfg.min_seq, shape[ax]), shape[ax], max(cfg.max_seq, shape[ax])
        out[inp] = {"min": lo, "opt": opt, "max": hi}
    return out


def _save_processor(vla: Any, out: Path) -> None:
    proc_dir = out / PROCESSOR_DIR
    if proc_dir.exists():
        shutil.rmtree(proc_dir)
    proc_dir.mkdir(parents=True)
    proc = vla.processor
    proc.tokenizer.save_pretrained(proc_dir)
    proc.image_processor.save_pretrained(proc_dir)
    template = getattr(proc, "chat_template", None) or getattr(proc.tokenizer, "chat_template", None)
    if template:
        (proc_dir / "chat_template.jinja").write_text(template)


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch
    import transformers

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "transformers": transformers.__version__}


def rtc_variant(vla: Any, cfg: ExportConfig) -> str | None:
    """The RTC variant the head graph carries (None: no prefix inputs)."""
    if cfg.rtc == "off":
        return None
    return vla.cfg.head.rtc_variant if cfg.rtc == "auto" else cfg.rtc


def export_modules(vla: Any, pre: Any, num_deepstack: int, rtc: str | None = None) -> dict[str, Any]:
    """The three export wrappers of a loaded VLA (vision by family, truncated LLM, head), in eval mode."""
    from roboalign.export.modules import (
        ActionHeadExport,
        Qwen3VisionEncoderExport,
        TruncatedLLMExport,
        VisionEncoderExport,
    )

    model = vla.backbone.model
    visual = model.model.visual
    if get_family(vla.cfg.backbone_family).deepstack:
        vision = Qwen3VisionEncoderExport(visual, pre.grid, pre.image_spec.lut(), num_deepstack)
    else:
        vision = VisionEncoderExport(visual, pre.grid, pre.image_spec.lut())
    return {"vision": vision.eval(), "llm": TruncatedLLMExport(model, pre.image_token_id, num_deepstack).eval(),
            "head": ActionHeadExport(vla.head, rtc).eval()}


def _check_exportable(vla: Any) -> Any:
    family = get_family(vla.cfg.backbone_family)
    if not family.exportable:
        raise NotImplementedError(f"ONNX export has no graph wrappers for backbone family {family.name!r}; "
                                  f"exportable: {', '.join(f.name for f in FAMILIES.values() if f.exportable)}")
    return family


@dataclass
class _Traced:
    """Example inputs of each graph and the tensors the shapes are pinned from."""

    args: dict[str, tuple]
    hidden: Any  # (B, S', D) layer-k hidden states
    image_embeds: Any  # (B, M, D)


def _trace_inputs(vla: Any, pre: Any, graphs: dict[str, Any], specs: Any, cfg: ExportConfig,
                  rtc: str | None) -> _Traced:
    """Run the wrappers on synthetic observations (batch 2, prompts of different lengths) for tracing."""
    import torch

    x = pre(synthetic_observations(specs, 2, seed=cfg.seed))
    hc = vla.cfg.head
    t = {k: torch.from_numpy(v) for k, v in (("frames", x.frames), ("input_ids", x.input_ids),
                                             ("attention_mask", x.attention_mask), ("position_ids", x.position_ids),
                                             ("state", x.state), ("embodiment", x.embodiment))}
    with torch.no_grad(), eager_attention(vla.backbone.model):
        vis = graphs["vision"](t["frames"])  # (N, T, D)[, (N, T, L, D)]
        vis = vis if isinstance(vis, tuple) else (vis,)
        feats = tuple(v.reshape(x.batch, -1, *v.shape[2:]) for v in vis)  # (B, M, D)[, (B, M, L, D)]
        hidden = graphs["llm"](t["input_ids"], t["attention_mask"], t["position_ids"], *feats)[:, x.token_start:]
    vl_mask = t["attention_mask"][:, x.token_start:].contiguous()
    rng = np.random.default_rng(cfg.seed)
    noise = torch.from_numpy(rng.standard_normal((x.batch, hc.horizon, hc.action_dim)).astype(np.float32))
    head = (hidden.contiguous(), vl_mask, t["state"], noise, t["embodiment"])
    if rtc:
        head += tuple(torch.from_numpy(v) for v in rtc_example(x.batch, hc.horizon, hc.action_dim, cfg.seed).values())
    args = {"vision": (t["frames"],), "llm": (t["input_ids"], t["attention_mask"], t["position_ids"], *feats),
            "head": head}
    return _Traced(args, hidden, feats[0])


def _export_all(vla: Any, graphs: dict[str, Any], traced: _Traced, out: Path, cfg: ExportConfig,
                graphs_io: dict[str, dict[str, Any]], pre: Any, n_deep: int) -> None:
    """Write the three graphs and pin the output sizes the tracer leaves symbolic."""
    import torch

    with torch.no_grad(), eager_attention(vla.backbone.model):
        for name in MODULES:
            _export_graph(graphs[name], traced.args[name], out / f"{name}.onnx", name, cfg, graphs_io)
    emb, hc = traced.image_embeds, vla.cfg.head
    pinned = {"image_embeds": {1: pre.tokens_per_image, 2: int(emb.shape[-1])}}
    if n_deep:
        pinned[DEEPSTACK] = {1: pre.tokens_per_image, 2: n_deep, 3: int(emb.shape[-1])}
    _pin_output_dims(out / "vision.onnx", pinned)
    _pin_output_dims(out / "llm.onnx", {"hidden": {2: int(traced.hidden.shape[-1])}})
    _pin_output_dims(out / "head.onnx", {"actions": {1: hc.horizon, 2: hc.action_dim}})


def _module_entries(out: Path, traced: _Traced, cfg: ExportConfig, n_cam: int,
                    graphs_io: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per graph: file facts, I/O specs and TensorRT profiles; and the TensorRT compatibility check."""
    import onnx

    modules: dict[str, Any] = {}
    compat: dict[str, Any] = {}
    for name in MODULES:
        path = out / f"{name}.onnx"
        graph = onnx.load(str(path), load_external_data=False)
        shapes = {n: tuple(a.shape) for n, a in zip(graphs_io[name]["inputs"], traced.args[name], strict=True)}
        modules[name] = {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path),
                         "inputs": tensor_specs(graph.graph.input), "outputs": tensor_specs(graph.graph.output),
                         "profile": _profiles(name, shapes, cfg, n_cam, graphs_io)}
        compat[name] = check_file(path, name).to_dict()
    compat["ok"] = all(compat[m]["ok"] for m in MODULES)
    return modules, compat


def _layout(vla: Any, pre: Any, specs: Any, traced: _Traced, n_deep: int, rtc: str | None) -> dict[str, Any]:
    hc = vla.cfg.head
    return {"family": get_family(vla.cfg.backbone_family).name, "deepstack_layers": n_deep,
            "image_grid_thw": list(pre.grid), "tokens_per_image": pre.tokens_per_image,
            "num_cameras": len(specs.cameras), "image_token_id": pre.image_token_id,
            "vision_start_id": pre.vision_start_id, "pad_token_id": pre.pad_token_id,
            "hidden_size": int(traced.hidden.shape[-1]), "backbone_layer": int(hc.backbone_layer),
            "drop_system_tokens": bool(specs.inputs.drop_system_tokens),
            "num_inference_steps": int(hc.num_inference_steps), "image_processor": asdict(pre.image_spec),
            "rtc": rtc or "off", "rtc_max_delay": int(hc.rtc_max_delay)}


def export_vla(vla: Any, out: str | Path, cfg: ExportConfig | None = None, checkpoint: str | Path | None = None,
               check_parity: bool = True) -> dict[str, Any]:
    """Export a loaded VLA to ``out`` and write the manifest; returns the manifest dict.

    Raises :class:`ParityError` (after writing the manifest, so it can be inspected) when a module's cosine
    similarity with PyTorch is below ``cfg.min_cosine``.
    """
    from roboalign.runtime.checkpoint_specs import RuntimeSpecs
    from roboalign.runtime.torch_backend import preprocessor_for_vla

    cfg = cfg or ExportConfig()
    _check_exportable(vla)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    specs, pre, rtc = RuntimeSpecs.from_vla(vla), preprocessor_for_vla(vla), rtc_variant(vla, cfg)
    n_deep = num_deepstack_layers(vla)
    graphs_io = graph_io(n_deep, rtc=rtc is not None)
    graphs = export_modules(vla, pre, n_deep, rtc)
    traced = _trace_inputs(vla, pre, graphs, specs, cfg, rtc)
    _export_all(vla, graphs, traced, out, cfg, graphs_io, pre, n_deep)
    _save_processor(vla, out)
    modules, compat = _module_entries(out, traced, cfg, len(specs.cameras), graphs_io)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": str(Path(checkpoint).resolve()) if checkpoint else "",
        "exporter": cfg.exporter, "opset": cfg.opset, "config": asdict(cfg), "versions": _versions(),
        "processor_dir": PROCESSOR_DIR, "layout": _layout(vla, pre, specs, traced, n_deep, rtc), "modules": modules,
        "specs": specs.to_dict(), "tensorrt_compat": compat,
        "parity": {"ok": None, "note": "not checked (export_vla(check_parity=False))"},
    }
    if check_parity:
        manifest["parity"] = run_parity(vla, out, manifest, cfg)
    write_manifest(out, manifest)
    if check_parity and not manifest["parity"]["ok"]:
        checked = [m for m in ("vision", "llm", "head", "head_rtc", "pipeline") if m in manifest["parity"]]
        bad = [m for m in checked if not manifest["parity"][m]["ok"]]
        raise ParityError(f"exported graphs differ from PyTorch beyond cosine {cfg.min_cosine}: {bad} "
                          f"({json.dumps({m: manifest['parity'][m] for m in bad})}); manifest written to {out}")
    return manifest


def run_parity(vla: Any, out: str | Path, manifest: dict[str, Any], cfg: ExportConfig) -> dict[str, Any]:
    """Parity of the graphs in ``out`` with ``vla`` (batch 2 with padding, and batch 1)."""
    from roboalign.runtime.checkpoint_specs import RuntimeSpecs
    from roboalign.runtime.ort_backend import make_session
    from roboalign.runtime.torch_backend import preprocessor_for_vla

    specs = RuntimeSpecs.from_vla(vla)
    pre = preprocessor_for_vla(vla)
    sessions = {m: make_session(Path(out) / manifest["modules"][m]["file"]) for m in MODULES}
    sets = [synthetic_observations(specs, 2, seed=cfg.seed + 1), synthetic_observations(specs, 1, seed=cfg.seed + 2)]
    rtc = manifest["layout"].get("rtc", "off")
    return module_parity(vla, pre, sessions, sets, min_cosine=cfg.min_cosine, seed=cfg.seed,
                         rtc=None if rtc == "off" else rtc)


def export_checkpoint(checkpoint: str | Path, out: str | Path, cfg: ExportConfig | None = None) -> dict[str, Any]:
    """Load a VLA checkpoint folder and export it (see :func:`export_vla`)."""
    from roboalign.models.vla import load_vla

    vla = load_vla(checkpoint)
    return export_vla(vla, out, cfg, checkpoint=checkpoint)
