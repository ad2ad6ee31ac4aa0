"""``roboalign collect``: record scripted-expert demonstrations of the four tasks in LIBERO.

    roboalign collect --tasks bottle_to_basket,can_to_bowl --episodes 20 --out /work/data/targets_4tasks
    roboalign collect --scenes libero_object --episodes 20 --out /work/data/libero_object_4tasks   # LIBERO-Object stand-ins

Episode ``k`` of a task starts from LIBERO init state ``(k + init_offset) % 50`` with seed ``seed + k``
and is written to ``<out>/episodes/<task>_<k:05d>.hdf5`` atomically (see ``roboalign.data.episodes``).
Resumable: finished episode files are skipped, the episode in flight when a run stopped (its
``.tmp`` file) is redone; a finished file that fails validation is reported and redone. Failed expert
attempts are kept with ``success=False`` (readers keep only successes by default). At the end the
normalisation stats of the successful episodes are written to ``<out>/norm_stats/`` and a per-task
summary is printed.

Per step the episode stores: both cameras, the state, robot fields (EEF pose, gripper fingers, joint
velocities), actions in both spaces (``eef_delta`` = the expert's OSC command; ``joint_position`` = the
joint positions reached after the step + the gripper command), the expert phase and privileged data
(object / basket poses and boxes, the expert's EEF target, per-step success).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from roboalign.data.dataset import EpisodeDataset, write_meta
from roboalign.data.episodes import CorruptEpisodeError, Episode, read_header, write_episode
from roboalign.sim.constants import SIM_CAMERA_SIZE
from roboalign.sim.libero_env import LiberoEnv, LiberoEnvConfig
from roboalign.spec.action_space import STATE_NAMES, get_action_space
from roboalign.spec.tasks import DEFAULT_TASKS, SCENE_SETS, sim_task_set

PRIVILEGED_KEYS = ("object_pos", "object_quat", "target_pos", "target_quat", "object_aabb", "target_aabb")
ROBOT_KEYS = ("eef_pos", "eef_quat", "gripper_qpos", "joint_vel")


@dataclass
class _Trace:
    """What one expert episode records, step by step."""

    images: dict[str, list[np.ndarray]]
    states: list[np.ndarray] = field(default_factory=list)
    robot: dict[str, list[Any]] = field(default_factory=lambda: {k: [] for k in ROBOT_KEYS})
    priv: dict[str, list[Any]] = field(default_factory=lambda: {k: [] for k in PRIVILEGED_KEYS})
    eef_cmd: list[np.ndarray] = field(default_factory=list)
    joint_cmd: list[np.ndarray] = field(default_factory=list)
    grip: list[float] = field(default_factory=list)
    next_q: list[np.ndarray] = field(default_factory=list)
    targets: list[np.ndarray] = field(default_factory=list)
    succ: list[bool] = field(default_factory=list)

    def observe(self, obs: Any, info: dict[str, Any]) -> None:
        """The observation the expert acted on and what it commanded."""
        for c, im in obs.images.items():
            self.images[c].append(im)
        self.states.append(obs.state)
        for k in ROBOT_KEYS:
            self.robot[k].append(obs.extras[k])
        for k in PRIVILEGED_KEYS:
            self.priv[k].append(obs.extras[k])
        self.targets.append(info["target_pos"])
        self.eef_cmd.append(info["commands"]["eef_delta"])
        if "joint_position" in info["commands"]:
            self.joint_cmd.append(info["commands"]["joint_position"])
        self.grip.append(info["gripper"])

    def stepped(self, result: Any) -> None:
        """The joints reached by the step and whether the task succeeded."""
        self.next_q.append(result.obs.state[:7])
        self.succ.append(result.success)

    def privileged(self) -> dict[str, np.ndarray]:
        out = {k: np.asarray(v) for k, v in self.priv.items()}
        out["expert_target"] = np.asarray(self.targets)
        out["success"] = np.asarray(self.succ, dtype=np.float32)
        if self.joint_cmd:
            out["joint_position_command"] = np.asarray(self.joint_cmd)
        return out

    def actions(self) -> dict[str, np.ndarray]:
        """``eef_delta``: the expert's OSC commands; ``joint_position``: the joints reached + the gripper command."""
        joint_targets = np.concatenate([np.asarray(self.next_q), np.asarray(self.grip)[:, None]], axis=1)  # (T, 8)
        return {"eef_delta": np.asarray(self.eef_cmd, np.float32), "joint_position": joint_targets.astype(np.float32)}


def run_expert_episode(env: Any, expert: Any, init_state: int | None, seed: int,
                       max_steps: int | None = None) -> Episode:
    """Run the scripted expert for one episode in ``env`` (a LiberoEnv) and return the Episode.

    In physics-only mode (``env.set_render(False)``) the episode simply has no images.
    """
    obs = env.reset(init_state=init_state, seed=seed)
    expert.reset()
    max_steps = max_steps or env.config.max_steps
    trace = _Trace(images={c: [] for c in obs.images})
    success = False
    for _ in range(max_steps):
        action = expert.act(obs).actions[0]  # (D,)
        trace.observe(obs, expert.last_info)
        result = env.step(action)
        obs = result.obs
        trace.stepped(result)
        if result.success:
            success = True
            break
    return _episode(env, expert, trace, obs, success, {"init_state": init_state, "seed": seed})


def _episode(env: Any, expert: Any, trace: _Trace, last_obs: Any, success: bool, start: dict[str, Any]) -> Episode:
    """The Episode of a finished expert run; ``start`` holds its init state and seed."""
    meta = {
        **start,
        "executed_action_space": env.action_space.name,
        "env_config": env.config.to_dict(),
        "state_names": list(env.state_names),
        "problem": env.sim_task.problem,
        "dt": env.dt,
        "expert_retries": expert.retries,
        "phase_counts": dict(Counter(expert.phases)),
        "expert_plan": expert.plan_facts(),
    }
    return Episode(
        task=env.task_name,
        instruction=env.instruction,
        success=success,
        images={c: np.stack(v) for c, v in trace.images.items()},
        state=np.asarray(trace.states, dtype=np.float32),
        actions=trace.actions(),
        phases=list(expert.phases),
        robot={k: np.asarray(v) for k, v in trace.robot.items()},
        privileged=trace.privileged(),
        final_state=last_obs.state,
        meta=meta,
    )


def episode_path(out: Path, task: str, k: int) -> Path:
    return out / "episodes" / f"{task}_{k:05d}.hdf5"


def _is_finished(p: Path) -> bool:
    if not p.is_file():
        return False
    try:
        read_header(p)
        return True
    except CorruptEpisodeError as e:
        print(f"collect: redoing damaged episode file: {e}", file=sys.stderr)
        return False


def _dataset_meta(args: argparse.Namespace, env_cfg: dict[str, Any], expert_cfg: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": "roboalign.dataset/1",
        "tasks": sim_task_set(args.scenes).to_dict(),
        "collected_tasks": args.tasks,
        "action_spaces": {n: get_action_space(n).to_dict() for n in ("eef_delta", "joint_position")},
        "executed_action_space": args.action_space,
        "env_config": {k: v for k, v in env_cfg.items() if k != "task"},
        "expert_config": expert_cfg,
        "state_names": list(STATE_NAMES),
        "cameras": list(env_cfg["cameras"]),
        "camera_size": args.camera_size,
        "seed": args.seed,
        "init_offset": args.init_offset,
    }


def _check_resume_meta(out: Path, meta: dict[str, Any]) -> None:
    p = out / "meta.json"
    if not p.is_file():
        return
    old = json.loads(p.read_text())
    for key in ("env_config", "executed_action_space", "camera_size", "seed", "init_offset"):
        if old.get(key) != meta.get(key):
            raise SystemExit(f"collect: {out} was collected with {key}={old.get(key)!r}, this run asks for "
                             f"{meta.get(key)!r}; use another --out or the same settings")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="roboalign collect", description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default=",".join(DEFAULT_TASKS.names),
                    help=f"comma-separated tasks (default all: {','.join(DEFAULT_TASKS.names)})")
    ap.add_argument("--episodes", type=int, default=20, help="episodes per task (default 20)")
    ap.add_argument("--out", required=True, type=Path, help="dataset folder (created; resumed if it exists)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init-offset", type=int, default=0, help="first LIBERO init state index")
    ap.add_argument("--scenes", default="targets", choices=list(SCENE_SETS),
                    help="scene set: the tasks' real targets (default) or the LIBERO-Object stand-ins")
    ap.add_argument("--camera-size", type=int, default=SIM_CAMERA_SIZE)
    ap.add_argument("--action-space", default="eef_delta", choices=["eef_delta", "joint_position"],
                    help="space the expert's commands are executed in (both are recorded)")
    ap.add_argument("--max-steps", type=int, default=300)
    ap.add_argument("--no-antialias", action="store_true", help="render without 4x multisampling (~2x faster)")
    ap.add_argument("--no-stats", action="store_true", help="skip writing norm_stats/ at the end")
    args = ap.parse_args(argv)
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    for t in args.tasks:
        if t not in DEFAULT_TASKS.names:
            ap.error(f"unknown task {t!r}; valid tasks: {', '.join(DEFAULT_TASKS.names)}")
    if args.episodes <= 0:
        ap.error("--episodes must be > 0")
    return args


def _prepare_out(out: Path, meta: dict[str, Any]) -> None:
    """Check a resumed folder's settings, write meta.json, and drop the file of an episode left in flight."""
    _check_resume_meta(out, meta)
    (out / "episodes").mkdir(parents=True, exist_ok=True)
    write_meta(out, meta)
    for leftover in (out / "episodes").glob("*.tmp"):
        print(f"collect: removing in-flight file of an interrupted run: {leftover.name}", file=sys.stderr)
        leftover.unlink()


def _run_plan(args: argparse.Namespace, todo: list[tuple[str, int]], env_cfgs: dict[str, LiberoEnvConfig],
              expert: Any, bar: Any) -> None:
    """Run and write the episodes of ``todo`` in order, one LIBERO env at a time (rebuilt when the task changes)."""
    stats: dict[str, Counter] = {t: Counter() for t in args.tasks}
    env = None
    try:
        for task, k in todo:
            if env is None or env.task_name != task:
                if env is not None:
                    env.close()
                env = LiberoEnv(env_cfgs[task])
            init_state = (k + args.init_offset) % env.num_init_states
            ep = run_expert_episode(env, expert, init_state=init_state, seed=args.seed + k)
            write_episode(episode_path(args.out, task, k), ep)
            stats[task]["done"] += 1
            stats[task]["success"] += int(ep.success)
            bar.update(1)
            bar.set_postfix({t: f"{c['success']}/{c['done']}" for t, c in stats.items() if c["done"]})
    finally:
        if env is not None:
            env.close()


def _summarize(args: argparse.Namespace, elapsed: float) -> None:
    """Per-task expert success of the whole folder, its normalisation stats (unless ``--no-stats``) and size."""
    out: Path = args.out
    ds = EpisodeDataset(out, success_only=False)
    per_task = Counter(e.task for e in ds.episodes)
    ok = Counter(e.task for e in ds.episodes if e.success)
    for t in args.tasks:
        print(f"collect: {t}: expert success {ok[t]}/{per_task[t]}")
    if not args.no_stats and ok:
        EpisodeDataset(out, success_only=True).save_norm_stats()
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"collect: {sum(ok.values())}/{len(ds)} successful episodes, {ds.num_steps} steps, "
          f"{size / 1e6:.1f} MB in {out} ({elapsed:.0f} s this run)")


def main(argv: list[str] | None = None) -> int:
    from roboalign.sim.expert import ExpertConfig, ScriptedExpert

    args = parse_args(argv)
    out: Path = args.out
    env_cfgs = {t: LiberoEnvConfig(task=t, camera_size=args.camera_size, action_space=args.action_space,
                                   antialias=not args.no_antialias, max_steps=args.max_steps, scenes=args.scenes)
                for t in args.tasks}
    expert_cfg = ExpertConfig(action_space=args.action_space)
    _prepare_out(out, _dataset_meta(args, env_cfgs[args.tasks[0]].to_dict(), vars(expert_cfg)))
    plan = [(t, k) for t in args.tasks for k in range(args.episodes)]
    todo = [(t, k) for t, k in plan if not _is_finished(episode_path(out, t, k))]
    print(f"collect: {len(plan)} episodes planned, {len(plan) - len(todo)} already on disk, {len(todo)} to run")
    t_start = time.perf_counter()
    bar = tqdm(total=len(plan), initial=len(plan) - len(todo), desc="collect", unit="ep")
    try:
        _run_plan(args, todo, env_cfgs, ScriptedExpert(expert_cfg), bar)
    except KeyboardInterrupt:
        bar.close()
        print("\ncollect: interrupted; finished episodes are on disk, rerun the same command to resume",
              file=sys.stderr)
        return 130
    bar.close()
    _summarize(args, time.perf_counter() - t_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
