"""``roboalign bench align``: the paper's claim in miniature — base vs SFT vs SFT+GRPO on held-out episodes.

Runs the tiny CPU pipeline end to end on a LIBERO episode dataset (``roboalign collect``):

1. base: the tiny random-initialised Qwen2.5-VL with the action vocabulary (FAST fitted on the train split);
2. SFT (``training/configs/sft_tiny.yaml``) on robot + VQA samples of the train episodes;
3. GRPO (``training/configs/grpo_tiny.yaml``) from the SFT checkpoint on robot prompts of the train episodes;

and scores each on robot prompts of the *held-out* episodes (the dataset's val split: other LIBERO init
states) with the GRPO rewards, greedy decoding: mean prefix accuracy r_a and format reward r_f (plus the
same with temperature-1 sampling, first-token accuracy and parse rate in the table). The same scores on an
equally large sample of *training* prompts (the ones SFT and GRPO optimise) tell apart "GRPO does not raise
the reward" from "GRPO raises it on what it saw, but it does not transfer to new scenes". Writes
``<out>/align_results.{json,md}`` and the curves ``<figures>/align_curves.png`` (+ CSV), and prints the
final line ``align: base_acc=<a> sft_acc=<b> grpo_acc=<c> grpo_format=<f> delta=<c-b> delta_se=<se>``
(``delta``: GRPO − SFT greedy r_a paired over the same held-out prompts, with its standard error).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "training" / "configs"
DEFAULT_DATA = os.environ.get("ROBOALIGN_ALIGN_DATA", "default")  # default: the project cache's set (first use collects)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="roboalign bench align", description=__doc__.split("\n")[0])
    p.add_argument("--data", default=DEFAULT_DATA, help="episode dataset folder (default %(default)s)")
    p.add_argument("--toy", type=int, default=None, metavar="N",
                   help="instead of --data: N scripted 2-D pick-and-place episodes (roboalign.bench.toy_episodes) "
                        "written to <out>/toy_data in seconds; the CPU configuration of docs/alignment.md")
    p.add_argument("--out", default="runs/bench_align", help="run folder (checkpoints, logs)")
    p.add_argument("--figures", default=str(ROOT / "docs" / "figures"), help="where the curves PNG goes")
    p.add_argument("--sft-config", help="default training/configs/sft_tiny.yaml (sft_toy.yaml with --toy)")
    p.add_argument("--grpo-config", help="default training/configs/grpo_tiny.yaml (grpo_toy.yaml with --toy)")
    p.add_argument("--sft-steps", type=int, default=None, help="override the SFT config's max_steps")
    p.add_argument("--grpo-steps", type=int, default=None, help="override the GRPO config's max_steps")
    p.add_argument("--max-train-episodes", type=int, default=None)
    p.add_argument("--eval-stride", type=int, default=4,
                   help="held-out prompt every N steps (4: ~220 prompts, standard error of r_a ~0.012)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for the tiny model)")
    p.add_argument("--reuse-sft", action="store_true",
                   help="load <out>/sft if it holds a finished SFT checkpoint instead of training it again "
                        "(to try GRPO settings on the same SFT model)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def _eval_all(aligned: Any, prompts: list[dict[str, Any]], progress: bool, name: str) -> dict[str, Any]:
    from roboalign.training.evaluate import evaluate

    greedy = evaluate(aligned, prompts, progress=progress, desc=f"eval {name}")
    torch.manual_seed(0)
    sampled = evaluate(aligned, prompts, do_sample=True, progress=progress, desc=f"eval {name} (sampled)")
    return {"greedy": greedy.to_dict(), "sampled": sampled.to_dict()}


def _table(results: dict[str, dict[str, Any]], train: dict[str, dict[str, Any]]) -> str:
    lines = ["| model | r_a (greedy) | r_f (greedy) | first token | parsed | r_a (sampled) | r_f (sampled) "
             "| train r_a (greedy) | train r_a (sampled) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        g, s = r["greedy"], r["sampled"]
        t = train[name]
        tr = f"{t['greedy']['acc']:.3f} | {t['sampled']['acc']:.3f}"
        lines.append(f"| {name} | {g['acc']:.3f} | {g['format']:.3f} | {g['first_token']:.3f} | {g['parsed']:.3f} "
                     f"| {s['acc']:.3f} | {s['format']:.3f} | {tr} |")
    return "\n".join(lines)


def train_prompt_subset(prompts: list[dict[str, Any]], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` training prompts drawn without replacement (all of them if there are fewer), in a fixed order."""
    import random

    if n >= len(prompts):
        return list(prompts)
    return random.Random(seed).sample(prompts, n)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    from roboalign.sim.default_dataset import resolve_dataset
    from roboalign.training.config import load_config
    from roboalign.training.curves import plot_curves, read_log, write_csv
    from roboalign.training.data_builders import robot_samples
    from roboalign.training.episode_views import load_views
    from roboalign.training.grpo import run_grpo
    from roboalign.training.sft import build_backbone, norm_and_fast, prepare_aligned, run_sft, sample_config

    scale = "toy" if args.toy else "tiny"
    args.sft_config = args.sft_config or str(CONFIGS / f"sft_{scale}.yaml")
    args.grpo_config = args.grpo_config or str(CONFIGS / f"grpo_{scale}.yaml")
    if args.toy:
        from roboalign.bench.toy_episodes import ensure_dataset

        args.data = str(ensure_dataset(Path(args.out) / "toy_data", args.toy))
    args.data = str(resolve_dataset(args.data))  # 'default' is collected into the project cache on first use
    if not Path(args.data).is_dir():
        print(f"align: dataset {args.data} not found; collect it first: roboalign collect --out {args.data}")
        return 2
    t_wall, t_cpu = time.time(), time.process_time()
    out = Path(args.out)
    sft_cfg = load_config(args.sft_config, "sft")
    data = replace(sft_cfg.data, dataset=args.data, max_episodes=args.max_train_episodes or sft_cfg.data.max_episodes)
    sft_cfg = replace(sft_cfg, data=data, output_dir=str(out / "sft"),
                      max_steps=args.sft_steps if args.sft_steps is not None else sft_cfg.max_steps)
    grpo_cfg = load_config(args.grpo_config, "grpo")
    grpo_cfg = replace(grpo_cfg, init_checkpoint=str(out / "sft"), output_dir=str(out / "grpo"),
                       data=replace(grpo_cfg.data, dataset=args.data, max_episodes=data.max_episodes),
                       max_steps=args.grpo_steps if args.grpo_steps is not None else grpo_cfg.max_steps)
    progress = not args.no_progress

    train = load_views(data, "train")
    held = load_views(replace(data, max_episodes=None), "val")
    print(f"align: {len(train)} train / {len(held)} held-out episodes from {args.data}", flush=True)

    norm, fast = norm_and_fast(data, train)
    base = prepare_aligned(build_backbone(sft_cfg.model), norm, fast, data, train)
    prompts = robot_samples(held, norm, fast, base.template, base.action_vocab,
                            replace(sample_config(data), stride=args.eval_stride))
    print(f"align: {len(prompts)} held-out prompts, FAST vocab {fast.vocab_size}, mean target "
          f"{sum(len(p['target_fast']) for p in prompts) / len(prompts):.1f} FAST tokens", flush=True)
    train_prompts = train_prompt_subset(
        robot_samples(train, norm, fast, base.template, base.action_vocab, replace(sample_config(data), stride=2)),
        len(prompts))
    results: dict[str, Any] = {"base": _eval_all(base, prompts, progress, "base")}
    on_train: dict[str, Any] = {"base": _eval_all(base, train_prompts, progress, "base, train prompts")}
    timings = {"eval_base_s": time.time() - t_wall}

    t, c = time.time(), time.process_time()
    if args.reuse_sft and (out / "sft" / "config.json").is_file():
        from roboalign.models.aligned import load_aligned

        sft = load_aligned(out / "sft")
        print(f"align: reusing the SFT checkpoint in {out / 'sft'}", flush=True)
    else:
        sft = run_sft(sft_cfg, train=train)
    timings["sft_s"], timings["sft_cpu_s"] = time.time() - t, time.process_time() - c
    results["sft"] = _eval_all(sft, prompts, progress, "sft")
    on_train["sft"] = _eval_all(sft, train_prompts, progress, "sft, train prompts")

    t, c = time.time(), time.process_time()
    grpo = run_grpo(grpo_cfg, train=train)
    timings["grpo_s"], timings["grpo_cpu_s"] = time.time() - t, time.process_time() - c
    results["sft+grpo"] = _eval_all(grpo, prompts, progress, "sft+grpo")
    on_train["sft+grpo"] = _eval_all(grpo, train_prompts, progress, "sft+grpo, train prompts")

    timings.update(total_wall_s=time.time() - t_wall, total_cpu_s=time.process_time() - t_cpu)
    table = _table(results, on_train)
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"results": results, "train_prompt_results": on_train, "timings": timings, "data": args.data,
               "train_episodes": len(train),
               "heldout_episodes": len(held), "heldout_prompts": len(prompts), "fast_vocab": fast.vocab_size,
               "sft_steps": sft_cfg.max_steps, "grpo_steps": grpo_cfg.max_steps}
    from roboalign.training.evaluate import paired_difference

    for mode in ("greedy", "sampled"):  # same held-out prompts for both models: a paired difference
        d, se = paired_difference(results["sft"][mode]["per_sample_acc"], results["sft+grpo"][mode]["per_sample_acc"])
        summary[f"grpo_minus_sft_acc_{mode}"] = {"mean": d, "se": se}
    (out / "align_results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "align_results.md").write_text(table + "\n")
    figures = Path(args.figures)
    sft_log = read_log(out / "sft" / "train_log.jsonl")
    grpo_log = read_log(out / "grpo" / "train_log.jsonl")
    plot_curves({"sft": sft_log, "grpo": grpo_log}, figures / "align_curves.png",
                title="RoboAlign tiny: SFT loss / GRPO rewards")
    write_csv([{"stage": "sft", **r} for r in sft_log] + [{"stage": "grpo", **r} for r in grpo_log],
              figures / "align_curves.csv")
    print(f"align: wall {timings['total_wall_s'] / 60:.1f} min, cpu {timings['total_cpu_s'] / 60:.1f} min; "
          f"curves {figures / 'align_curves.png'}")
    g = {k: v["greedy"] for k, v in results.items()}
    for mode in ("greedy", "sampled"):
        diff = summary[f"grpo_minus_sft_acc_{mode}"]
        print(f"align: grpo - sft r_a ({mode}) = {diff['mean']:+.4f} ± {diff['se']:.4f} "
              f"(paired, {len(prompts)} held-out prompts)")
    delta = summary["grpo_minus_sft_acc_greedy"]
    print(f"align: base_acc={g['base']['acc']:.3f} sft_acc={g['sft']['acc']:.3f} "
          f"grpo_acc={g['sft+grpo']['acc']:.3f} grpo_format={g['sft+grpo']['format']:.3f} "
          f"delta={delta['mean']:+.4f} delta_se={delta['se']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
