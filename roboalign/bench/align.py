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
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from roboalign.sim.default_dataset import resolve_dataset

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
    if n >= len(prompts):
        return list(prompts)
    return random.Random(seed).sample(prompts, n)


@dataclass
class _Prompts:
    """The episodes of a run and the prompts every model is scored on (held-out, and as many training ones)."""

    train: list[Any]
    held: list[Any]
    base: Any  # the base model with the action vocabulary
    fast_vocab: int
    heldout: list[dict[str, Any]]
    on_train: list[dict[str, Any]]


def _dataset(args: argparse.Namespace) -> str:
    """The episode folder: the toy set written under ``--out`` with ``--toy``, else ``--data`` ('default' is
    collected into the project cache on first use)."""
    data = args.data
    if args.toy:
        from roboalign.bench.toy_episodes import ensure_dataset

        data = str(ensure_dataset(Path(args.out) / "toy_data", args.toy))
    return str(resolve_dataset(data))


def _configs(args: argparse.Namespace) -> tuple[Any, Any]:
    """The SFT and GRPO configs on the bench's dataset, run folders under ``--out`` and step overrides."""
    from roboalign.training.config import load_config

    out = Path(args.out)
    sft_cfg = load_config(args.sft_config, "sft")
    data = replace(sft_cfg.data, dataset=args.data, max_episodes=args.max_train_episodes or sft_cfg.data.max_episodes)
    sft_cfg = replace(sft_cfg, data=data, output_dir=str(out / "sft"),
                      max_steps=args.sft_steps if args.sft_steps is not None else sft_cfg.max_steps)
    grpo_cfg = load_config(args.grpo_config, "grpo")
    grpo_cfg = replace(grpo_cfg, init_checkpoint=str(out / "sft"), output_dir=str(out / "grpo"),
                       data=replace(grpo_cfg.data, dataset=args.data, max_episodes=data.max_episodes),
                       max_steps=args.grpo_steps if args.grpo_steps is not None else grpo_cfg.max_steps)
    return sft_cfg, grpo_cfg


def _prompts(args: argparse.Namespace, sft_cfg: Any) -> _Prompts:
    """Train / held-out episodes, the base model, and the held-out + training prompts they are scored on."""
    from roboalign.training.data_builders import robot_samples
    from roboalign.training.episode_views import load_views
    from roboalign.training.sft import build_backbone, norm_and_fast, prepare_aligned, sample_config

    data = sft_cfg.data
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
    return _Prompts(train, held, base, fast.vocab_size, prompts, train_prompts)


def _timed(timings: dict[str, float], key: str, run: Any) -> Any:
    """``run()``, its wall and CPU seconds stored as ``<key>_s`` / ``<key>_cpu_s``."""
    t, c = time.time(), time.process_time()
    result = run()
    timings[f"{key}_s"], timings[f"{key}_cpu_s"] = time.time() - t, time.process_time() - c
    return result


def _sft_model(args: argparse.Namespace, sft_cfg: Any, train: list[Any]) -> Any:
    """The SFT model: ``<out>/sft`` reloaded with ``--reuse-sft`` when it holds a finished checkpoint, else trained."""
    from roboalign.training.sft import run_sft

    sft_dir = Path(args.out) / "sft"
    if args.reuse_sft and (sft_dir / "config.json").is_file():
        from roboalign.models.aligned import load_aligned

        sft = load_aligned(sft_dir)
        print(f"align: reusing the SFT checkpoint in {sft_dir}", flush=True)
        return sft
    return run_sft(sft_cfg, train=train)


def _score_all(args: argparse.Namespace, sft_cfg: Any, grpo_cfg: Any, p: _Prompts, timings: dict[str, float],
               t_wall: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Held-out and training-prompt scores of base, SFT and SFT+GRPO, trained in turn (timed from ``t_wall``)."""
    from roboalign.training.grpo import run_grpo

    progress = not args.no_progress
    results: dict[str, Any] = {}
    on_train: dict[str, Any] = {}

    def score(name: str, model: Any) -> None:
        results[name] = _eval_all(model, p.heldout, progress, name)
        on_train[name] = _eval_all(model, p.on_train, progress, f"{name}, train prompts")

    score("base", p.base)
    timings["eval_base_s"] = time.time() - t_wall
    score("sft", _timed(timings, "sft", lambda: _sft_model(args, sft_cfg, p.train)))
    score("sft+grpo", _timed(timings, "grpo", lambda: run_grpo(grpo_cfg, train=p.train)))
    return results, on_train


def _summary(args: argparse.Namespace, results: dict[str, Any], on_train: dict[str, Any], timings: dict[str, float],
             p: _Prompts, steps: tuple[int, int]) -> dict[str, Any]:
    """The align_results.json content, with the paired GRPO - SFT difference per decoding mode."""
    from roboalign.training.evaluate import paired_difference

    summary = {"results": results, "train_prompt_results": on_train, "timings": timings, "data": args.data,
               "train_episodes": len(p.train),
               "heldout_episodes": len(p.held), "heldout_prompts": len(p.heldout), "fast_vocab": p.fast_vocab,
               "sft_steps": steps[0], "grpo_steps": steps[1]}
    for mode in ("greedy", "sampled"):  # same held-out prompts for both models: a paired difference
        d, se = paired_difference(results["sft"][mode]["per_sample_acc"], results["sft+grpo"][mode]["per_sample_acc"])
        summary[f"grpo_minus_sft_acc_{mode}"] = {"mean": d, "se": se}
    return summary


def _write_curves(out: Path, figures: Path) -> None:
    """The SFT loss / GRPO reward curves of the run as ``align_curves.png`` and ``.csv`` in ``figures``."""
    from roboalign.training.curves import plot_curves, read_log, write_csv

    sft_log = read_log(out / "sft" / "train_log.jsonl")
    grpo_log = read_log(out / "grpo" / "train_log.jsonl")
    plot_curves({"sft": sft_log, "grpo": grpo_log}, figures / "align_curves.png",
                title="RoboAlign tiny: SFT loss / GRPO rewards")
    write_csv([{"stage": "sft", **r} for r in sft_log] + [{"stage": "grpo", **r} for r in grpo_log],
              figures / "align_curves.csv")


def _print_result(summary: dict[str, Any], timings: dict[str, float], figures: Path) -> None:
    """The timing line, the paired differences and the final ``align: ...`` line."""
    print(f"align: wall {timings['total_wall_s'] / 60:.1f} min, cpu {timings['total_cpu_s'] / 60:.1f} min; "
          f"curves {figures / 'align_curves.png'}")
    g = {k: v["greedy"] for k, v in summary["results"].items()}
    for mode in ("greedy", "sampled"):
        diff = summary[f"grpo_minus_sft_acc_{mode}"]
        print(f"align: grpo - sft r_a ({mode}) = {diff['mean']:+.4f} ± {diff['se']:.4f} "
              f"(paired, {summary['heldout_prompts']} held-out prompts)")
    delta = summary["grpo_minus_sft_acc_greedy"]
    print(f"align: base_acc={g['base']['acc']:.3f} sft_acc={g['sft']['acc']:.3f} "
          f"grpo_acc={g['sft+grpo']['acc']:.3f} grpo_format={g['sft+grpo']['format']:.3f} "
          f"delta={delta['mean']:+.4f} delta_se={delta['se']:.4f}")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    scale = "toy" if args.toy else "tiny"
    args.sft_config = args.sft_config or str(CONFIGS / f"sft_{scale}.yaml")
    args.grpo_config = args.grpo_config or str(CONFIGS / f"grpo_{scale}.yaml")
    args.data = _dataset(args)
    if not Path(args.data).is_dir():
        print(f"align: dataset {args.data} not found; collect it first: roboalign collect --out {args.data}")
        return 2
    t_wall, t_cpu = time.time(), time.process_time()
    sft_cfg, grpo_cfg = _configs(args)
    p = _prompts(args, sft_cfg)
    timings: dict[str, float] = {}
    results, on_train = _score_all(args, sft_cfg, grpo_cfg, p, timings, t_wall)
    timings.update(total_wall_s=time.time() - t_wall, total_cpu_s=time.process_time() - t_cpu)
    table = _table(results, on_train)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = _summary(args, results, on_train, timings, p, (sft_cfg.max_steps, grpo_cfg.max_steps))
    (out / "align_results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "align_results.md").write_text(table + "\n")
    figures = Path(args.figures)
    _write_curves(out, figures)
    _print_result(summary, timings, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
