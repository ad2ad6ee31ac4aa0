"""``roboalign bench runtime``: torch eager vs onnxruntime on the same VLA, per module, in one run.

    roboalign bench runtime [--checkpoint CKPT] [--export DIR] [--iters 100] [--threads 1]

Without ``--checkpoint`` a tiny VLA (the CPU test configuration: tiny Qwen2.5-VL, 2 layers, read at
layer 1, tiny flow-matching head, 2 cameras with synthetic frames at the model's input size (112²), horizon 16,
4 Euler steps) is built with random
weights (latency does not depend on weight values) and exported to a temporary folder. Both policies
get the same observation and the same noise; iterations alternate between the two backends so machine
load affects both alike. Prints a per-module latency table (batch 1, ms, median and p99), the chunk
difference between the backends, and the final line

    runtime: torch_ms=<t> ort_ms=<o> speedup=<t/o> preprocess_ms=<p>

(full pipeline medians: pre-processing + vision + LLM + head + un-normalisation). Writes
``runtime.json``, ``runtime.csv`` and the bar plot ``runtime.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from roboalign.sim.constants import DEFAULT_CAMERAS
from roboalign.spec.action_space import get_action_space
from roboalign.spec.normalization import NormStats

STAGES = ("preprocess", "vision", "llm", "head", "postprocess", "total")


def make_tiny_vla_checkpoint(path: str | Path, seed: int = 0, action_space: str = "eef_delta",
                             cameras: tuple[str, ...] = DEFAULT_CAMERAS, family: str = "qwen2_5_vl") -> Path:
    """A random-weight tiny VLA checkpoint folder (tests, benchmarks, ROS bring-up; no data or downloads).

    ``action_space``: ``eef_delta`` (7-D LIBERO deltas) or ``joint_position`` (7 FR3 joints + gripper);
    the normalisation stats span the space's bounds, the state is 7 joints + gripper.
    """
    from roboalign.models.action_head import ActionHeadConfig
    from roboalign.models.backbone import build_tiny_backbone
    from roboalign.models.vla import build_vla, save_vla
    from roboalign.models.vla_inputs import VLAInputSpec

    rng = np.random.default_rng(seed)
    backbone = build_tiny_backbone(family)
    space = get_action_space(action_space)
    lo, hi = np.asarray(space.low), np.asarray(space.high)
    actions = NormStats.from_data(lo + (hi - lo) * rng.uniform(0.1, 0.9, size=(512, space.dim)), names=space.names)
    state = NormStats.from_data(rng.normal(0, 0.5, size=(512, 8)), names=[f"q{i}" for i in range(7)] + ["gripper"])
    head = ActionHeadConfig.tiny(action_dim=space.dim, state_dim=8, backbone_dim=backbone.hidden_size,
                                 backbone_layer=max(backbone.num_layers - 1, 0))
    inputs = VLAInputSpec(cameras=tuple(cameras), embodiment_id=0 if action_space == "eef_delta" else 1)
    vla = build_vla(backbone, head, actions, state, space, inputs=inputs, backbone_source="tiny (random init)",
                    seed=seed)
    return save_vla(vla, path)


def _stats(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(np.median(a)), float(np.percentile(a, 99))


def run(checkpoint: Path, export_dir: Path, iters: int, warmup: int, threads: int) -> dict[str, Any]:
    """Time both backends on the same observation and noise; returns medians / p99 per stage."""
    from roboalign.runtime.policy import Policy
    from roboalign.runtime.preprocess import draw_noise, synthetic_observations

    policies = {"torch": Policy.from_checkpoint(checkpoint, "torch", num_threads=threads, warmup=warmup),
                "onnxruntime": Policy.from_checkpoint(export_dir, "onnxruntime", providers=["cpu"],
                                                      num_threads=threads, warmup=warmup)}
    specs = policies["torch"].specs
    obs = synthetic_observations(specs, 1, seed=7)[0]
    noise = draw_noise(np.random.default_rng(0), 1, specs.horizon, specs.action_dim)
    chunks = {name: p.act(obs, noise).actions for name, p in policies.items()}
    diff = float(np.abs(chunks["torch"] - chunks["onnxruntime"]).max())
    timings: dict[str, dict[str, list[float]]] = {n: {s: [] for s in STAGES} for n in policies}
    for _ in tqdm(range(iters), desc="bench runtime", leave=False):
        for name, p in policies.items():  # alternate: same load on both
            t = p.act(obs, noise).timings
            for s in STAGES:
                timings[name][s].append(t[s])
    result: dict[str, Any] = {"iters": iters, "threads": threads, "chunk_max_abs_diff": diff,
                              "describe": {n: p.describe() for n, p in policies.items()}, "stages": {}}
    for name in policies:
        result["stages"][name] = {s: dict(zip(("median", "p99"), _stats(v), strict=True))
                                  for s, v in timings[name].items()}
    return result


def table(result: dict[str, Any]) -> str:
    st = result["stages"]
    lines = [f"{'module':<12}{'torch med':>10}{'torch p99':>10}{'ort med':>10}{'ort p99':>10}{'speedup':>9}   (ms, batch 1)"]
    for s in STAGES:
        t, o = st["torch"][s], st["onnxruntime"][s]
        sp = t["median"] / o["median"] if o["median"] > 0 else float("nan")
        lines.append(f"{s:<12}{t['median']:>10.3f}{t['p99']:>10.3f}{o['median']:>10.3f}{o['p99']:>10.3f}{sp:>9.2f}")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    st = result["stages"]
    x = np.arange(len(STAGES))
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, (name, color) in enumerate((("torch", "#d95f02"), ("onnxruntime", "#1b9e77"))):
        med = [st[name][s]["median"] for s in STAGES]
        p99 = [st[name][s]["p99"] - st[name][s]["median"] for s in STAGES]
        ax.bar(x + (i - 0.5) * 0.38, med, 0.38, yerr=[np.zeros(len(STAGES)), p99], capsize=3, label=name, color=color)
    ax.set_xticks(x, STAGES)
    ax.set_ylabel("latency [ms] (median, whisker = p99)")
    ax.set_title(f"VLA runtime, batch 1, {result['threads']} CPU thread(s), {result['iters']} iterations")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="roboalign bench runtime", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, help="VLA checkpoint (default: a tiny random VLA)")
    ap.add_argument("--export", type=Path, help="its ONNX export (default: <checkpoint>/onnx, else exported by this run)")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for both backends")
    ap.add_argument("--out", type=Path, default=Path("bench_results/runtime"))
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="roboalign-bench-runtime-") as tmp:
        checkpoint = args.checkpoint or make_tiny_vla_checkpoint(Path(tmp) / "tiny_vla")
        export_dir = args.export
        if export_dir is None:
            export_dir = checkpoint / "onnx" if (checkpoint / "onnx" / "manifest.json").is_file() else Path(tmp) / "onnx"
        if not (export_dir / "manifest.json").is_file():
            from roboalign.export.onnx_export import export_checkpoint

            print(f"exporting {checkpoint} -> {export_dir}", file=sys.stderr)
            export_checkpoint(checkpoint, export_dir)
        result = run(checkpoint, export_dir, args.iters, args.warmup, args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    st = result["stages"]
    t, o = st["torch"]["total"]["median"], st["onnxruntime"]["total"]["median"]
    p = st["onnxruntime"]["preprocess"]["median"]
    result.update(torch_ms=t, ort_ms=o, speedup=t / o, preprocess_ms=p, preprocess_share_of_ort=p / o)
    (args.out / "runtime.json").write_text(json.dumps(result, indent=2))
    with open(args.out / "runtime.csv", "w") as f:
        f.write("backend,stage,median_ms,p99_ms\n")
        for name, stages in st.items():
            for s, v in stages.items():
                f.write(f"{name},{s},{v['median']:.4f},{v['p99']:.4f}\n")
    plot(result, args.out / "runtime.png")
    print(table(result))
    print(f"chunk max |torch - onnxruntime| = {result['chunk_max_abs_diff']:.2e} (same observation and noise)")
    print(f"preprocess = {100 * p / o:.1f} % of the onnxruntime total; results in {args.out}")
    print(f"runtime: torch_ms={t:.2f} ort_ms={o:.2f} speedup={t / o:.2f} preprocess_ms={p:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
