"""``roboalign bench sim``: LIBERO step rate with rendering vs physics only, and scripted-expert success.

Protocol, per task (default all four):

1. **Step rate.** For each of the first ``--episodes`` init states the scripted expert runs the episode
   twice in the same env, once rendering both cameras every step and once physics-only (no images),
   alternating which goes first. Only the time inside ``env.step`` (physics + rendering + observation)
   counts. ``steps_per_s`` / ``physics_only_steps_per_s`` come from these paired runs.
2. **Expert success.** The expert runs physics-only (it reads privileged state only, so images would not
   change what it does) from LIBERO init states ``0 .. --success-episodes - 1``; the paired physics-only
   runs of step 1 are reused. ``expert_success`` in the final line is the total over all tasks; the
   per-task table goes to ``sim_success.csv`` / ``sim_success.md`` and every episode, with the phase the expert
   ended in (where failures happen), to ``sim_episodes.csv``.

``--gl-compare egl,osmesa`` instead times only offscreen rendering of the two cameras under each GL
backend, side by side in one run: each variant renders in its own subprocess (``MUJOCO_GL`` is fixed at
import), the variants take turns for ``--gl-rounds`` rounds. A variant may set environment variables:
``egl+LP_NUM_THREADS=1``. Writes ``sim_gl.json`` and prints ``sim_gl: <variant>=<ms>ms ...``.

Writes ``sim.json`` and ``sim.png`` (step rates; time per step split into physics / rendering) to
``--out``, prints the load average, and ends with::

    sim: steps_per_s=<S> physics_only_steps_per_s=<P> expert_success=<x/y>
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from roboalign.evaluation.episode_results import EpisodeResult, markdown_table, success_table
from roboalign.sim.constants import SIM_CAMERA_SIZE
from roboalign.sim.libero_env import LiberoEnv, LiberoEnvConfig
from roboalign.spec.tasks import DEFAULT_TASKS, SCENE_SETS

EPISODE_COLS = ["task", "init_state", "success", "steps", "final_phase", "retries", "seconds"]


def _run(env: Any, expert: Any, init_state: int, render: bool) -> dict[str, Any]:
    """One expert episode; returns success, steps, final phase, seconds in env.step and per-step timings."""
    env.set_render(render)
    obs = env.reset(init_state=init_state)
    expert.reset()
    secs, phys, rend, success = 0.0, [], [], False
    for _ in range(env.config.max_steps):
        action = expert.act(obs).actions[0]
        t0 = time.perf_counter()
        r = env.step(action)
        secs += time.perf_counter() - t0
        phys.append(r.info["physics_ms"])
        rend.append(r.info["render_ms"])
        obs = r.obs
        if r.done:
            success = r.success
            break
    return {"init_state": init_state, "success": bool(success), "steps": len(phys), "final_phase": expert.phase,
            "retries": expert.retries, "seconds": secs, "physics_ms": phys, "render_ms": rend}


def _plot(path: Path, res: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a0, a1) = plt.subplots(1, 2, figsize=(9, 3.5))
    a0.bar(["rendering", "physics only"], [res["steps_per_s"], res["physics_only_steps_per_s"]],
           color=["tab:orange", "tab:blue"])
    a0.set_ylabel("env steps / s")
    a0.set_title(f"LIBERO step rate ({res['camera_size']}², 2 cameras)")
    ms = res["ms_per_step"]
    a1.bar(["rendering", "physics only"], [ms["render_mode_physics"], ms["physics_mode_physics"]], label="physics")
    a1.bar(["rendering", "physics only"], [ms["render_mode_render"], ms["physics_mode_render"]],
           bottom=[ms["render_mode_physics"], ms["physics_mode_physics"]], label="render + obs")
    a1.set_ylabel("ms / step")
    a1.set_title(f"expert success {res['expert_success']}")
    a1.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _write_tables(out: Path, episodes: list[dict[str, Any]]) -> str:
    """episodes.csv (one row per success-sweep episode), success.csv / success.md (per task + mean)."""
    with open(out / "sim_episodes.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=EPISODE_COLS, extrasaction="ignore")
        w.writeheader()
        w.writerows(episodes)
    rows = success_table([EpisodeResult(task=e["task"], init_state=e["init_state"], success=e["success"],
                                        steps=e["steps"], seconds=e["seconds"], policy_calls=e["steps"],
                                        policy_ms_mean=0.0) for e in episodes])
    for r in rows:  # which init states failed and in which phase the expert was left ("mean" row: none)
        r["failures"] = " ".join(f"{e['init_state']}:{e['final_phase']}" for e in episodes
                                 if e["task"] == r["task"] and not e["success"])
    with open(out / "sim_success.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    inits = sorted({e["init_state"] for e in episodes})
    md = markdown_table(rows, title=f"scripted expert, physics only, LIBERO init states {inits[0]}..{inits[-1]}")
    fails = [f"- {r['task']}: failed init states (final phase) {r['failures']}" for r in rows[:-1] if r["failures"]]
    md += ("\n" + "\n".join(fails) + "\n") if fails else ""
    (out / "sim_success.md").write_text(md)
    return md


# ---------------------------------------------------------------------------------------------- GL backends
def _render_probe(task: str, frames: int, camera_size: int, antialias: bool) -> dict[str, Any]:
    """Time ``frames`` renders of both cameras in this process (its MUJOCO_GL); returns ms per frame."""
    env = LiberoEnv(LiberoEnvConfig(task=task, camera_size=camera_size, antialias=antialias, render=False))
    try:
        env.reset(init_state=0)
        env.render()  # warm-up (context, textures)
        ms = []
        for _ in range(frames):
            t0 = time.perf_counter()
            ims = env.render()
            ms.append(1e3 * (time.perf_counter() - t0))
        mean_px = float(np.mean([im.mean() for im in ims.values()]))
    finally:
        env.close()
    return {"mujoco_gl": os.environ.get("MUJOCO_GL"), "ms": ms, "mean_pixel": mean_px}


def _parse_variant(v: str) -> tuple[str, dict[str, str]]:
    backend, *sets = v.split("+")
    if backend not in ("egl", "osmesa", "glfw"):
        raise SystemExit(f"bench sim: unknown GL backend {backend!r} in {v!r}; valid: egl, osmesa, glfw")
    env = {"MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}
    for s in sets:
        if "=" not in s:
            raise SystemExit(f"bench sim: --gl-compare variant {v!r}: expected backend+KEY=VALUE, got {s!r}")
        k, val = s.split("=", 1)
        env[k] = val
    return backend, env


def _gl_compare(args: argparse.Namespace, task: str) -> int:
    variants = [v for v in args.gl_compare.split(",") if v]
    envs = {v: _parse_variant(v)[1] for v in variants}
    ms: dict[str, list[float]] = {v: [] for v in variants}
    pixels: dict[str, float] = {}
    for rnd in range(args.gl_rounds):
        order = variants if rnd % 2 == 0 else variants[::-1]
        for v in order:
            cmd = [sys.executable, "-m", "roboalign.bench.sim", "--render-probe", "--tasks", task,
                   "--gl-frames", str(args.gl_frames), "--camera-size", str(args.camera_size)]
            cmd += ["--no-antialias"] if args.no_antialias else []
            env = {k: val for k, val in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
            p = subprocess.run(cmd, env={**env, **envs[v]}, capture_output=True, text=True)
            if p.returncode != 0:
                print(f"bench sim: GL variant {v} failed:\n{p.stderr[-2000:]}", file=sys.stderr)
                return 1
            r = json.loads(p.stdout.strip().splitlines()[-1])
            ms[v] += r["ms"]
            pixels[v] = r["mean_pixel"]
            print(f"bench sim: round {rnd} {v}: {np.median(r['ms']):.1f} ms per 2-camera frame", flush=True)
    res = {"task": task, "camera_size": args.camera_size, "antialias": not args.no_antialias,
           "frames_per_round": args.gl_frames, "rounds": args.gl_rounds, "loadavg": list(os.getloadavg()),
           "variants": {v: {"median_ms": float(np.median(ms[v])), "mean_ms": float(np.mean(ms[v])),
                            "p90_ms": float(np.percentile(ms[v], 90)), "mean_pixel": pixels[v]} for v in variants}}
    base = res["variants"][variants[0]]["median_ms"]
    for v in variants:
        res["variants"][v]["speedup_vs_first"] = base / res["variants"][v]["median_ms"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sim_gl.json").write_text(json.dumps(res, indent=2))
    print(f"bench sim: load average {res['loadavg'][0]:.2f} {res['loadavg'][1]:.2f} {res['loadavg'][2]:.2f}")
    print("sim_gl: " + " ".join(f"{v}={res['variants'][v]['median_ms']:.1f}ms" for v in variants))
    return 0


# ---------------------------------------------------------------------------------------------- main
def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="roboalign bench sim", description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default=",".join(DEFAULT_TASKS.names))
    ap.add_argument("--episodes", type=int, default=1, help="init states per task timed twice (render / physics)")
    ap.add_argument("--success-episodes", type=int, default=20,
                    help="init states 0..N-1 per task for the physics-only expert success sweep")
    ap.add_argument("--action-space", default="eef_delta", choices=["eef_delta", "joint_position"])
    ap.add_argument("--camera-size", type=int, default=SIM_CAMERA_SIZE)
    ap.add_argument("--scenes", default="targets", choices=list(SCENE_SETS),
                    help="the tasks' real-target scenes (default) or the LIBERO-Object stand-ins")
    ap.add_argument("--no-antialias", action="store_true")
    ap.add_argument("--gl-compare", default="", help="time rendering under GL variants, e.g. egl,osmesa")
    ap.add_argument("--gl-frames", type=int, default=20, help="frames per variant per round (--gl-compare)")
    ap.add_argument("--gl-rounds", type=int, default=2)
    ap.add_argument("--render-probe", action="store_true", help=argparse.SUPPRESS)  # --gl-compare worker
    ap.add_argument("--out", type=Path, default=Path("bench_results"))
    args = ap.parse_args(argv)
    if args.episodes < 1 or args.success_episodes < 0:
        ap.error("--episodes must be >= 1 and --success-episodes >= 0")
    return args


def _run_task(args: argparse.Namespace, task: str, timed: dict[bool, list[dict[str, Any]]],
              sweep: list[dict[str, Any]]) -> None:
    """One task's paired timing runs (the first ``--episodes`` init states) and its physics-only success sweep."""
    from roboalign.sim.expert import ExpertConfig, ScriptedExpert

    env = LiberoEnv(LiberoEnvConfig(task=task, camera_size=args.camera_size, action_space=args.action_space,
                                    antialias=not args.no_antialias, scenes=args.scenes))
    expert = ScriptedExpert(ExpertConfig(action_space=args.action_space))
    try:
        for k in range(max(args.episodes, args.success_episodes)):
            modes = ((True, False) if k % 2 == 0 else (False, True)) if k < args.episodes else (False,)
            for render in modes:
                r = _run(env, expert, k, render)
                r["task"] = task
                if k < args.episodes:
                    timed[render].append(r)
                if not render:
                    sweep.append(r)
    finally:
        env.close()
    done = [r for r in sweep if r["task"] == task]
    print(f"bench sim: {task}: expert success {sum(r['success'] for r in done)}/{len(done)}", flush=True)


def _rate(rs: list[dict[str, Any]]) -> float:
    return sum(r["steps"] for r in rs) / sum(r["seconds"] for r in rs)


def _mean_ms(rs: list[dict[str, Any]], key: str) -> float:
    return float(np.mean([x for r in rs for x in r[key]]))


def _results(args: argparse.Namespace, tasks: list[str], timed: dict[bool, list[dict[str, Any]]],
             sweep: list[dict[str, Any]]) -> dict[str, Any]:
    """The content of sim.json: step rates, expert success per task, time per step by mode and part."""
    ok = sum(r["success"] for r in sweep)
    return {
        "steps_per_s": _rate(timed[True]),
        "physics_only_steps_per_s": _rate(timed[False]),
        "expert_success": f"{ok}/{len(sweep)}",
        "per_task": {t: f"{sum(r['success'] for r in sweep if r['task'] == t)}/"
                        f"{sum(r['task'] == t for r in sweep)}" for t in tasks},
        "render_vs_physics_success_agree": all(
            a["success"] == b["success"] for a, b in zip(timed[True], timed[False], strict=True)),
        "action_space": args.action_space,
        "scenes": args.scenes,
        "camera_size": args.camera_size,
        "antialias": not args.no_antialias,
        "mujoco_gl": os.environ.get("MUJOCO_GL"),
        "loadavg": list(os.getloadavg()),
        "steps": {"rendering": sum(r["steps"] for r in timed[True]),
                  "physics_only": sum(r["steps"] for r in timed[False])},
        "ms_per_step": {
            "render_mode_physics": _mean_ms(timed[True], "physics_ms"),
            "render_mode_render": _mean_ms(timed[True], "render_ms"),
            "physics_mode_physics": _mean_ms(timed[False], "physics_ms"),
            "physics_mode_render": _mean_ms(timed[False], "render_ms"),
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    if args.render_probe:
        print(json.dumps(_render_probe(tasks[0], args.gl_frames, args.camera_size, not args.no_antialias)))
        return 0
    if args.gl_compare:
        return _gl_compare(args, tasks[0])
    timed: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    sweep: list[dict[str, Any]] = []
    for task in tasks:
        _run_task(args, task, timed, sweep)
    res = _results(args, tasks, timed, sweep)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sim.json").write_text(json.dumps(res, indent=2))
    _plot(args.out / "sim.png", res)
    print(_write_tables(args.out, sweep))
    la = res["loadavg"]
    print(f"bench sim: MUJOCO_GL={res['mujoco_gl']} antialias={res['antialias']} "
          f"load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}")
    print(f"sim: steps_per_s={res['steps_per_s']:.2f} physics_only_steps_per_s={res['physics_only_steps_per_s']:.2f} "
          f"expert_success={res['expert_success']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
