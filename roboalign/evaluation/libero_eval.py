"""Closed-loop evaluation in real LIBERO scenes: any ``BasePolicy`` -> per-task and per-suite success tables.

Tasks are the four tasks (on the ``scenes`` set) or any LIBERO suite's tasks, named ``<suite>/<problem>``
(:mod:`roboalign.sim.suites`); each episode runs at most ``max_steps`` control steps, by default the suite's
usual limit (:data:`~roboalign.sim.suites.MAX_STEPS`; 300 for the four tasks).
For every task and every official LIBERO init state ``first_init_state .. first_init_state + episodes - 1``
the harness resets :class:`roboalign.sim.libero_env.LiberoEnv` to that state, calls ``policy.reset()``,
then repeats: ``policy.act(obs)`` -> execute the first ``execute_steps`` rows of the chunk (receding
horizon; ``0`` = the whole chunk) -> until LIBERO's BDDL goal holds (success) or ``max_steps`` control
steps pass. Cameras are rendered only on the steps whose observation reaches the policy (the last row of
each executed chunk) and on recorded episodes (``render_policy_steps_only``, default on): the policy never
sees the frames in between, and rendering does not touch the physics, so the rollout is the same as when
every step renders (tested) at about a fifth of the cost on CPU. The policy is anything with ``reset()`` / ``act(Observation) -> ActionChunk`` (the scripted
expert, the torch VLA, the onnxruntime backend), so every backend is scored by the same code. A chunk in
another action space than the env's is an error, not a silent conversion.

Outputs in ``out``: ``episodes_log*.csv`` (one line per episode as it finishes; a rerun with the same ``out``
skips the (task, init state) pairs logged there, ``resume``), ``episodes.csv`` (every episode), ``success.csv``
and ``success.md`` (per task + mean), ``suites.csv`` / ``suites.md`` / ``suites.png`` (the paper-style table:
success per suite + average, :mod:`roboalign.evaluation.suite_table`), ``rollouts.png`` (a strip of agentview
frames of the first ``strip_episodes`` episodes per task), ``videos/<task>_<init>.mp4`` (agentview | wrist of
the first ``video_episodes`` episodes per task) and ``summary.json``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import multiprocessing as mp
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from roboalign.evaluation.episode_results import (
    LOG_COLUMNS,
    EpisodeResult,
    append_episode,
    log_row,
    logged_results,
    markdown_table,
    success_table,
)
from roboalign.evaluation.suite_table import write_suite_table
from roboalign.sim.constants import SIM_CAMERA_SIZE
from roboalign.sim.libero_env import LiberoEnv, LiberoEnvConfig
from roboalign.sim.suites import MAX_STEPS
from roboalign.spec.policy_io import BasePolicy, Observation
from roboalign.spec.tasks import DEFAULT_TASKS, SimTask

OUR_MAX_STEPS = 300  # the four tasks: the expert needs 70-200 steps (docs/results.md), demos stay under 300


@dataclass(frozen=True)
class LiberoEvalConfig:
    tasks: tuple[str, ...] = tuple(DEFAULT_TASKS.names)  # the four tasks' names or <suite>/<problem>
    episodes: int = 20  # per task, one per official init state
    first_init_state: int = 0
    action_space: str = "eef_delta"
    max_steps: int | None = None  # None: the suite's usual limit (roboalign.sim.suites.MAX_STEPS), 300 for ours
    execute_steps: int = 8  # chunk rows executed before asking the policy again; 0 = whole chunk
    camera_size: int = SIM_CAMERA_SIZE
    antialias: bool = True
    strip_episodes: int = 2  # episodes per task shown in rollouts.png
    strip_frames: int = 8  # frames per episode in the strip
    video_episodes: int = 0  # episodes per task written to videos/ (they render every step)
    seed: int = 0
    render_policy_steps_only: bool = True  # skip rendering frames the policy never sees (same rollout)
    render: bool = True  # False: the policy reads no images (the scripted expert); physics-only steps
    scenes: str = "targets"  # scene set of the four tasks (roboalign.spec.tasks.SCENE_SETS)
    resume: bool = True  # skip the (task, init state) pairs already in out/episodes_log*.csv

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        if not self.tasks:
            raise ValueError("LiberoEvalConfig.tasks is empty")
        if self.episodes < 1 or (self.max_steps is not None and self.max_steps < 1) or self.execute_steps < 0 \
                or self.first_init_state < 0 or self.video_episodes < 0:
            raise ValueError("LiberoEvalConfig: episodes/max_steps must be >= 1, execute_steps/first_init_state/"
                             "video_episodes >= 0")

    def steps_for(self, task: str) -> int:
        """Step limit of one task: ``max_steps``, else its suite's usual limit."""
        if self.max_steps is not None:
            return self.max_steps
        return MAX_STEPS.get(task.split("/", 1)[0], OUR_MAX_STEPS) if "/" in task else OUR_MAX_STEPS


def run_episode(env: Any, policy: BasePolicy, init_state: int, cfg: LiberoEvalConfig, record: bool,
                task: str) -> EpisodeResult:
    """One closed-loop episode from an official init state."""
    t0 = time.perf_counter()
    env.set_render(cfg.render or record)  # the first observation reaches the policy (the last episode may end unrendered)
    obs: Observation = env.reset(init_state=init_state, seed=cfg.seed)
    policy.reset()
    frames: dict[str, list[np.ndarray]] = {"agentview": [], "wrist": []}
    _keep(frames, obs, record)
    max_steps = cfg.steps_for(task)
    success, steps, calls, policy_ms = bool(obs.extras.get("success", False)), 0, 0, []
    while not success and steps < max_steps:
        tp = time.perf_counter()
        chunk = policy.act(obs)
        policy_ms.append((time.perf_counter() - tp) * 1e3)
        calls += 1
        if chunk.action_space != env.action_space.name:
            raise ValueError(f"policy returned {chunk.action_space!r} actions but the env runs "
                             f"{env.action_space.name!r}")
        rows = chunk.actions if cfg.execute_steps == 0 else chunk.actions[: cfg.execute_steps]
        if len(rows) == 0:
            raise ValueError("policy returned an empty action chunk")
        for i, row in enumerate(rows):
            if not cfg.render:  # a policy without cameras (the scripted expert): images only for strips/videos
                env.set_render(record)
            elif cfg.render_policy_steps_only:  # images only where the policy will look (or for the strip)
                env.set_render(record or i == len(rows) - 1)
            res = env.step(row)
            obs, steps = res.obs, steps + 1
            _keep(frames, obs, record)
            if res.success:
                success = True
                break
            if steps >= max_steps:
                break
    return EpisodeResult(task=task, init_state=init_state, success=success, steps=steps,
                         seconds=time.perf_counter() - t0, policy_calls=calls,
                         policy_ms_mean=float(np.mean(policy_ms)) if policy_ms else 0.0,
                         frames=frames["agentview"], wrist=frames["wrist"])


def _keep(frames: dict[str, list[np.ndarray]], obs: Observation, record: bool) -> None:
    for cam, kept in frames.items():
        if record and cam in obs.images:
            kept.append(obs.images[cam])


def _env_for(task: str, cfg: LiberoEvalConfig, scene: SimTask | str | None) -> Any:
    """The LiberoEnv of one task; ``scene`` (a SimTask or a task string) overrides the task's own scene."""
    name = scene if isinstance(scene, str) else task
    env_cfg = LiberoEnvConfig(task=name, camera_size=cfg.camera_size, action_space=cfg.action_space,
                              max_steps=cfg.steps_for(task), antialias=cfg.antialias, seed=cfg.seed,
                              scenes=cfg.scenes)
    return LiberoEnv(env_cfg, sim_task=scene if isinstance(scene, SimTask) else None)


def evaluate_policy(make_policy: Callable[[str], BasePolicy], cfg: LiberoEvalConfig, out: str | Path | None = None,
                    progress: bool = True, env_tasks: dict[str, SimTask | str] | None = None,
                    log_path: str | Path | None = None,
                    done: dict[tuple[str, int], EpisodeResult] | None = None) -> list[EpisodeResult]:
    """Evaluate a policy on every task of ``cfg``. ``make_policy(task)`` returns the policy for that task
    (the same object for a multi-task VLA; a fresh expert per task). ``env_tasks`` maps a task name to the
    scene to load (e.g. the SimTask a checkpoint's ``tasks.json`` names for it); default: the task name
    itself. Writes the reports when ``out`` is set; ``log_path`` (default ``out/episodes_log.csv``) gets one
    line per finished episode as it happens, so a stopped run keeps what it measured; ``done`` (default: what
    ``out``'s logs hold, with ``cfg.resume``) are episodes not run again.
    """
    if done is None:
        done = logged_results(out) if cfg.resume else {}
    log_path = log_path or (Path(out) / "episodes_log.csv" if out is not None else None)
    results: list[EpisodeResult] = []
    bar = tqdm(total=len(cfg.tasks) * cfg.episodes, desc="libero eval", disable=not progress)
    for task in cfg.tasks:
        inits = range(cfg.first_init_state, cfg.first_init_state + cfg.episodes)
        results += [done[task, i] for i in inits if (task, i) in done]
        todo = [i for i in inits if (task, i) not in done]
        bar.update(cfg.episodes - len(todo))
        if todo:
            _run_task(task, todo, make_policy, cfg, (env_tasks or {}).get(task), log_path, results, bar)
    bar.close()
    if out is not None:
        write_reports(results, cfg, out)
    return results


def _run_task(task: str, inits: list[int], make_policy: Callable[[str], BasePolicy], cfg: LiberoEvalConfig,
              scene: SimTask | str | None, log_path: Path | None, results: list[EpisodeResult], bar: Any) -> None:
    env = _env_for(task, cfg, scene)
    try:
        if cfg.first_init_state + cfg.episodes > env.num_init_states:
            raise ValueError(f"task {task}: {cfg.episodes} episodes from init state {cfg.first_init_state} "
                             f"exceed the {env.num_init_states} official init states")
        policy = make_policy(task)
        for init in inits:
            k = init - cfg.first_init_state
            r = run_episode(env, policy, init, cfg, record=k < max(cfg.strip_episodes, cfg.video_episodes), task=task)
            results.append(r)
            append_episode(r, log_path)
            if log_path is not None and k < cfg.video_episodes:
                write_video(r, log_path.parent / "videos" / f"{task.replace('/', '__')}_{init:03d}.mp4")
            ok = [x for x in results if x.task == task]
            bar.set_postfix(task=task[-40:], success=f"{sum(x.success for x in ok)}/{len(ok)}")
            bar.update(1)
    finally:
        env.close()


def _worker(args: tuple[Callable[[str], BasePolicy], LiberoEvalConfig, dict[str, SimTask | str] | None, Path | None,
                        dict[tuple[str, int], EpisodeResult]]) -> list[EpisodeResult]:
    make_policy, cfg, env_tasks, log_path, done = args
    import torch

    torch.set_num_threads(1)
    return evaluate_policy(make_policy, cfg, progress=False, env_tasks=env_tasks, log_path=log_path, done=done)


def evaluate_parallel(make_policy: Callable[[str], BasePolicy], cfg: LiberoEvalConfig, workers: int,
                      out: str | Path | None = None, env_tasks: dict[str, SimTask | str] | None = None
                      ) -> list[EpisodeResult]:
    """:func:`evaluate_policy` with the tasks spread over ``workers`` processes (``make_policy`` must pickle).

    Each worker builds its own env and policy and logs to its own ``episodes_log_<i>.csv``; results come back
    in task order, reports as usual.
    """
    workers = max(1, min(workers, len(cfg.tasks)))
    if workers == 1:
        return evaluate_policy(make_policy, cfg, out=out, env_tasks=env_tasks)
    done = logged_results(out) if cfg.resume else {}
    groups = [cfg.tasks[i::workers] for i in range(workers)]
    logs = [Path(out) / f"episodes_log_{i}.csv" if out is not None else None for i in range(workers)]
    jobs = [(make_policy, dataclasses.replace(cfg, tasks=g), env_tasks, log, done)
            for g, log in zip(groups, logs, strict=True)]
    with mp.get_context("spawn").Pool(workers) as pool:
        parts = pool.map(_worker, jobs)
    by_task: dict[str, list[EpisodeResult]] = {}
    for part in parts:
        for r in part:
            by_task.setdefault(r.task, []).append(r)
    results = [r for t in cfg.tasks for r in by_task.get(t, [])]
    if out is not None:
        write_reports(results, cfg, out)
    return results


# ---------------------------------------------------------------------------------------------- reports
def write_strip(results: Sequence[EpisodeResult], path: str | Path, frames_per_episode: int = 8) -> Path | None:
    """A PNG grid: one row per recorded episode, ``frames_per_episode`` evenly spaced agentview frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rec = [r for r in results if r.frames]
    if not rec:
        return None
    n = frames_per_episode
    fig, axes = plt.subplots(len(rec), n, figsize=(1.3 * n, 1.45 * len(rec)), squeeze=False)
    for row, r in zip(axes, rec, strict=True):
        idx = np.linspace(0, len(r.frames) - 1, n).round().astype(int)
        for j, (ax, k) in enumerate(zip(row, idx, strict=True)):
            ax.imshow(r.frames[k])
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(f"{r.task}\ninit {r.init_state}", fontsize=6)
            ax.set_title(f"t={k}" + (("  OK" if r.success else "  fail") if j == n - 1 else ""), fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def write_video(r: EpisodeResult, path: Path, fps: int = 20) -> Path | None:
    """An MP4 (H.264 via PyAV) of one recorded episode: agentview | wrist side by side, one frame per step."""
    import av

    if not r.frames:
        return None
    frames = [np.concatenate([a, w], axis=1) if r.wrist else a
              for a, w in zip(r.frames, r.wrist or r.frames, strict=True)]
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as box:
        stream = box.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        for f in frames:
            box.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f[: h - h % 2, : w - w % 2]))))
        box.mux(stream.encode(None))
    return path


def write_reports(results: Sequence[EpisodeResult], cfg: LiberoEvalConfig, out: str | Path,
                  title: str = "") -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "episodes.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LOG_COLUMNS)
        w.writeheader()
        w.writerows(log_row(r) for r in results)
    rows = success_table(results)
    with open(out / "success.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "success.md").write_text(markdown_table(rows, title))
    write_strip(results, out / "rollouts.png", cfg.strip_frames)
    suites = write_suite_table(results, out, title or "policy")
    summary = {"config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
               "table": rows, "suites": suites}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
