"""The Python part of scripts/gpu_check.sh runs here: the tiny VLA on the CPU (eager and torch.compile,
output equal), the export step on this machine's execution paths (torch vs onnxruntime CPU), the
paper-scale 7B path as a shape-only dry run on the meta device, and the script's fast failure without CUDA."""

from __future__ import annotations

import subprocess
from pathlib import Path

import torch

from roboalign.paper_scale.gpu_check import build_step, main, run_export

ROOT = Path(__file__).resolve().parents[1]


def test_tiny_vla_on_cpu_prints_the_gpu_line(capsys):
    # torch.compile is left out here (dynamo tracing the DiT costs ~20 s of CPU); a failing compile on the GPU
    # is reported as compiled_total_ms=n/a(...) beside the eager figures
    assert main(["vla", "--tiny", "--device", "cpu", "--iters", "1", "--warmup", "0", "--compile-backend", "none"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    fields = dict(kv.split("=", 1) for kv in line.removeprefix("gpu: ").split())
    assert fields["device"] == "cpu" and fields["actions_shape"] == "[1,_16,_7]"
    assert all(float(fields[k]) > 0 for k in ("backbone_ms", "head_ms", "total_ms")) and "cudagraph_total_ms" not in fields


def test_export_step_compares_every_path_here_with_onnxruntime_cpu(tmp_path, tiny_vla_export):
    res = run_export(torch.device("cpu"), tmp_path, existing=tiny_vla_export)
    assert "CPU" in res["providers"] and res["cpu_vs_torch_cpu"] < 1e-4


def test_paper_scale_path_on_the_meta_device():
    step, x = build_step(False, torch.device("meta"), torch.float32)
    assert x["frames"].shape == (2, 224, 224, 3) and x["ids"].shape == (1, 150 + 2 * 64)
    assert len(step.llm.lm.layers) == 18 and step.head.cfg.num_layers == 16 and step.head.cfg.width == 1536
    with torch.inference_mode():
        hidden = step.backbone(x["frames"], x["ids"], x["mask"], x["pos"])
        actions = step.head(hidden, x["mask"], x["state"], x["noise"], x["emb"])
    assert hidden.shape == (1, 278, 3584) and actions.shape == (1, 16, 7)


def test_script_fails_fast_without_cuda(capsys):
    if torch.cuda.is_available():
        return
    assert main(["vla"]) == 2 and "--tiny --device cpu" in capsys.readouterr().err
    out = subprocess.run([str(ROOT / "scripts/gpu_check.sh")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "no CUDA here" in out.stderr and "cu128" in out.stderr


def test_the_bf16_path_runs():
    """The GPU run is in bf16: every module (vision LUT, LLM, the head's time embeddings) must keep that dtype."""
    step, x = build_step(True, torch.device("cpu"), torch.bfloat16)
    with torch.inference_mode():
        out = step(x["frames"], x["ids"], x["mask"], x["pos"], x["state"], x["noise"], x["emb"])
    assert out.dtype == torch.bfloat16 and out.shape == (1, 16, 7) and torch.isfinite(out.float()).all()
