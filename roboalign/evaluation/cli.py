"""``roboalign eval libero|offline|probe|compare``: LIBERO success, offline action MSE, KNN probe, run comparison.

Examples::

    roboalign eval libero --checkpoint runs/vla_tiny_base/checkpoint --episodes 20 --out runs/vla_eval_base
    roboalign eval libero --checkpoint CKPT --suite libero_spatial libero_object libero_goal libero_10 --workers 2
    roboalign eval libero --checkpoint CKPT --suite libero_90 --tasks 0 KITCHEN_SCENE3_turn_on_the_stove --videos 1
    roboalign eval libero --checkpoint CKPT --backend onnxruntime --episodes 20   # CKPT/onnx/ holds the export
    roboalign eval libero --policy expert --episodes 20 --out runs/expert_eval
    roboalign eval offline --checkpoint CKPT --dataset default
    roboalign eval probe --dataset default --task bottle_to_basket \\
        --backbone base=tiny --backbone sft=runs/.../sft --backbone grpo=runs/.../grpo
    roboalign eval compare --run base=runs/vla_eval_base --run grpo=DIR_A,DIR_B --out runs/vla_compare
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from roboalign.data import EpisodeDataset
from roboalign.evaluation.episode_results import markdown_table, success_table
from roboalign.evaluation.libero_eval import LiberoEvalConfig, evaluate_parallel
from roboalign.evaluation.libero_tasks import (
    EvalSetupError,
    check_checkpoint,
    check_expert,
    checkpoint_scenes,
    resolve_tasks,
)
from roboalign.evaluation.probe import ProbeSetting, run_probe
from roboalign.evaluation.suite_table import suite_markdown, suite_rows
from roboalign.sim.constants import SIM_CAMERA_SIZE
from roboalign.sim.default_dataset import resolve_dataset
from roboalign.sim.suites import MAX_STEPS, SUITES
from roboalign.spec.policy_io import RUNTIME_BACKENDS, BasePolicy
from roboalign.spec.tasks import DEFAULT_TASKS, SCENE_SETS


class PolicyFactory:
    """Picklable ``task -> BasePolicy`` (so evaluation workers in other processes can build the policy).

    ``kind="vla"`` loads the checkpoint through the runtime :class:`~roboalign.runtime.policy.Policy` with the
    given ``backend`` (torch, onnxruntime, tensorrt): the harness scores exactly what the ROS node runs.
    """

    def __init__(self, kind: str, checkpoint: str | None = None, seed: int = 0, action_space: str = "eef_delta",
                 threads: int = 1, backend: str = "torch") -> None:
        self.kind, self.checkpoint, self.seed, self.action_space, self.threads = kind, checkpoint, seed, action_space, threads
        self.backend = backend
        self._policy = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_policy": None}

    def __call__(self, task: str) -> BasePolicy:
        if self.kind == "expert":
            from roboalign.sim.expert import ExpertConfig, ScriptedExpert

            return ScriptedExpert(ExpertConfig(action_space=self.action_space))
        if self._policy is None:  # one multi-task VLA shared by every task
            from roboalign.runtime.policy import Policy

            self._policy = Policy.from_checkpoint(self.checkpoint, self.backend, action_space=self.action_space,
                                                  seed=self.seed, num_threads=self.threads)
        return self._policy


def _libero(args: argparse.Namespace) -> int:
    try:
        scenes, space = _libero_setup(args)
    except (EvalSetupError, FileNotFoundError, ValueError) as e:
        print(f"roboalign eval libero: {e}", file=sys.stderr)
        return 2
    factory = PolicyFactory(args.policy, args.checkpoint, args.seed, space, args.threads, args.backend)
    cfg = LiberoEvalConfig(tasks=tuple(scenes), episodes=args.episodes, first_init_state=args.first_init_state,
                           action_space=space, max_steps=args.max_steps, execute_steps=args.execute_steps,
                           camera_size=args.camera_size, antialias=not args.no_antialias,
                           strip_episodes=args.strip_episodes, video_episodes=args.videos, seed=args.seed,
                           render_policy_steps_only=not args.render_every_step, scenes=args.scenes or "targets",
                           render=args.policy != "expert",  # the expert reads privileged poses, not images
                           resume=not args.no_resume)
    results = evaluate_parallel(factory, cfg, args.workers, out=args.out, env_tasks=scenes)
    label = args.label or f"{args.policy} {args.checkpoint or ''}".strip()
    rows = success_table(results)
    print(markdown_table(rows, title=label))
    print(suite_markdown(suite_rows(results), label))
    mean = rows[-1]
    print(f"libero: success_rate={mean['success_rate']:.3f} successes={mean['successes']}/{mean['episodes']}")
    return 0


def _libero_setup(args: argparse.Namespace) -> tuple[dict, str]:
    """(task -> scene, action space) of an ``eval libero`` run; raises EvalSetupError naming what is valid."""
    if (args.checkpoint is None) == (args.policy == "vla"):
        raise EvalSetupError("give --checkpoint for --policy vla (the default), none for --policy expert")
    scenes = resolve_tasks(args.suite, args.tasks, args.scenes or "targets")
    if args.policy == "expert":
        check_expert(scenes)
        return scenes, args.action_space
    from roboalign.models.vla import load_vla_config

    vla_cfg = load_vla_config(args.checkpoint)
    check_checkpoint(vla_cfg, args.suite, args.camera_size, args.checkpoint)
    ours = [t for t in scenes if "/" not in t]
    if ours and args.scenes is None:  # the scenes the checkpoint was trained on (robust to later task edits)
        scenes.update(checkpoint_scenes(args.checkpoint, ours))
    return scenes, vla_cfg.action_space


def _offline(args: argparse.Namespace) -> int:
    import torch

    from roboalign.evaluation.offline import offline_mse
    from roboalign.models.vla import load_vla

    torch.set_num_threads(args.threads)
    vla = load_vla(args.checkpoint)
    ds = EpisodeDataset(resolve_dataset(args.dataset), tasks=args.tasks)
    train, val = ds.split(args.val_fraction, seed=args.split_seed)
    episodes = {"val": val, "train": train, "all": ds}[args.split]
    res = offline_mse(vla, episodes, frame_stride=args.frame_stride, seed=args.seed)
    text = json.dumps(res, indent=2)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "offline.json").write_text(text)
    print(text)
    a = res["all"]
    print(f"offline: mse_normalized={a['mse_normalized']:.4f} mse_raw={a['mse_raw']:.5f} frames={a['frames']}")
    return 0


def _probe(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    backbones = {}
    for item in args.backbone or ["base=tiny"]:
        if "=" not in item:
            print(f"--backbone expects name=path_or_tiny, got {item!r}", file=sys.stderr)
            return 2
        name, src = item.split("=", 1)
        backbones[name] = src
    setting = ProbeSetting(cameras=tuple(args.cameras), prompt_state=args.prompt_state, feature_dim=args.feature_dim,
                           projections=args.projections, split=args.split, k=args.k)
    tasks = list(DEFAULT_TASKS.names) if args.task == "all" else args.task.split(",")
    res = run_probe(args.dataset, tasks, backbones, layer=args.layer, episodes=args.episodes, setting=setting,
                    out=args.out)
    for name, r in res["backbones"].items():
        d = res["paired_deltas"].get(name)
        paired = f" delta_vs_{d['vs']}={d['delta']:+.3f} delta_se={d['se']:.3f}" if d else ""
        print(f"probe: {name} layer={r['layer']} knn_acc={r['accuracy']:.3f} chance={r['chance']:.3f}{paired} "
              f"split={args.split} features={args.feature_dim or 'all'} cameras={','.join(args.cameras)}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from roboalign.evaluation.compare import markdown, write_comparison

    runs = {}
    for item in args.run:
        if "=" not in item:
            print(f"--run expects name=folder[,folder...], got {item!r}", file=sys.stderr)
            return 2
        name, folders = item.split("=", 1)
        runs[name] = folders.split(",")
    rows = write_comparison(runs, args.out, tasks=args.tasks, title=args.title)
    print(markdown(rows))
    return 0


def _add_libero_parser(sub: Any) -> None:
    """``eval libero``: closed-loop rollouts of a VLA checkpoint or the scripted expert."""
    p = sub.add_parser("libero", help="closed-loop rollouts in LIBERO with the official init states")
    p.add_argument("--checkpoint", help="VLA checkpoint folder (for --policy vla)")
    p.add_argument("--policy", choices=("vla", "expert"), default="vla")
    p.add_argument("--backend", choices=RUNTIME_BACKENDS, default="torch",
                   help="runtime Policy backend for --policy vla (onnxruntime/tensorrt: the export in CHECKPOINT/onnx)")
    p.add_argument("--suite", nargs="+", default=["tasks"], metavar="SUITE",
                   help=f"one or more of: {', '.join(('tasks', *SUITES))} (tasks = our four tasks)")
    p.add_argument("--tasks", nargs="+", default=None,
                   help="tasks of the one --suite: our task names, or LIBERO task indices / problem names "
                        "(default: all of the suite)")
    p.add_argument("--scenes", choices=tuple(SCENE_SETS), default=None,
                   help="scene set of our four tasks (default: the checkpoint's tasks.json, else targets)")
    p.add_argument("--episodes", type=int, default=20, help="episodes per task (one per official init state)")
    p.add_argument("--first-init-state", type=int, default=0)
    p.add_argument("--action-space", default="eef_delta", help="for --policy expert")
    p.add_argument("--max-steps", type=int, default=None,
                   help=f"steps per episode (default: the suite's usual limit {MAX_STEPS}; 300 for our tasks)")
    p.add_argument("--execute-steps", type=int, default=8, help="chunk rows executed per policy call (0 = all)")
    p.add_argument("--camera-size", type=int, default=SIM_CAMERA_SIZE)
    p.add_argument("--no-antialias", action="store_true", help="render without multisampling (match the data)")
    p.add_argument("--strip-episodes", type=int, default=2)
    p.add_argument("--videos", type=int, default=0, help="episodes per task saved as MP4 in OUT/videos")
    p.add_argument("--no-resume", action="store_true", help="rerun episodes already logged in --out")
    p.add_argument("--label", default="", help="row label of the suite table (default: policy + checkpoint)")
    p.add_argument("--render-every-step", action="store_true",
                   help="render the cameras after every step, not only where the policy looks (same rollout, slower)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=1, help="processes (tasks are split over them)")
    p.add_argument("--out", default=None)
    p.set_defaults(fn=_libero)


def _add_offline_parser(sub: Any) -> None:
    """``eval offline``: action MSE of a checkpoint on held-out episodes."""
    p = sub.add_parser("offline", help="action MSE on held-out episodes")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--tasks", nargs="+", default=None)
    p.add_argument("--split", choices=("val", "train", "all"), default="val")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--split-seed", type=int, default=0, help="must match the training run's seed")
    p.add_argument("--frame-stride", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    p.set_defaults(fn=_offline)


def _add_probe_parser(sub: Any) -> None:
    """``eval probe``: the KNN phase probe on backbone features."""
    p = sub.add_parser("probe", help="KNN phase probe on backbone features (DTW phase labels)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--task", required=True, help="a task, comma-separated tasks, or all")
    p.add_argument("--backbone", action="append", help="name=tiny|folder (repeat: base, sft, grpo)")
    p.add_argument("--layer", type=int, default=None, help="hidden-state index k (default: N-1)")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--prompt-state", choices=("none", "raw"), default="none")
    p.add_argument("--cameras", nargs="+", default=["agentview", "wrist"], help="cameras in the prompt")
    p.add_argument("--feature-dim", type=int, default=0,
                   help="project the pooled features to this many dimensions (one seeded random projection; 0: all)")
    p.add_argument("--projections", type=int, default=5, help="--feature-dim: average over this many projections")
    p.add_argument("--split", choices=("episodes", "tasks"), default="episodes",
                   help="episodes: hold out each task's last half; tasks: leave one task out (needs 2+ tasks)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    p.set_defaults(fn=_probe)


def _add_compare_parser(sub: Any) -> None:
    """``eval compare``: several ``eval libero`` runs side by side."""
    p = sub.add_parser("compare", help="per-task success of several eval runs side by side + bar plot")
    p.add_argument("--run", action="append", required=True,
                   help="name=folder[,folder...] of `eval libero --out` folders (repeat per run)")
    p.add_argument("--tasks", nargs="+", default=None)
    p.add_argument("--title", default="")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=_compare)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="roboalign eval", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    for add in (_add_libero_parser, _add_offline_parser, _add_probe_parser, _add_compare_parser):
        add(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    raise SystemExit(main())
