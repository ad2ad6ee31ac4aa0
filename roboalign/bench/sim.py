"""``roboalign bench sim``: LIBERO step rate with rendering vs physics only, and scripted-expert success.

Protocol: for each task (default all four) and each of ``--episodes`` LIBERO init states, the scripted
expert runs the episode twice in the same env, once rendering both cameras every step and once in
physics-only mode (no images), alternating which goes first. Only the time inside ``env.step`` (plus
rendering) counts. Both runs are scored for expert success. Writes ``sim.json`` and ``sim.png``
(step rates and time per step split into physics / rendering) to ``--out``. Final line:

    sim: steps_per_s=<S> physics_only_steps_per_s=<P> expert_success=<x/y>
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from roboalign.tasks import DEFAULT_TASKS


def _run(env, expert, init_state: int, render: bool) -> tuple[int, float, bool, list[float], list[float]]:
    """One expert episode; returns (steps, seconds in env.step, success, physics ms, render ms)."""
    env.set_render(render)
    obs = env.reset(init_state=init_state)
    expert.reset()
    steps, secs, phys, rend = 0, 0.0, [], []
    for _ in range(env.config.max_steps):
        action = expert.act(obs).actions[0]
        t0 = time.perf_counter()
        r = env.step(action)
        secs += time.perf_counter() - t0
        steps += 1
        phys.append(r.info["physics_ms"])
        rend.append(r.info["render_ms"])
        obs = r.obs
        if r.done:
            return steps, secs, r.success, phys, rend
    return steps, secs, False, phys, rend


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="roboalign bench sim", description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default=",".join(DEFAULT_TASKS.names))
    ap.add_argument("--episodes", type=int, default=1, help="init states per task (each run twice)")
    ap.add_argument("--camera-size", type=int, default=128)
    ap.add_argument("--no-antialias", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("bench_results"))
    args = ap.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]

    from roboalign.sim.expert import ScriptedExpert
    from roboalign.sim.libero_env import LiberoEnv, LiberoEnvConfig

    tot = {True: [0, 0.0, [], []], False: [0, 0.0, [], []]}
    ok, runs = 0, 0
    per_task = {}
    for task in tasks:
        env = LiberoEnv(LiberoEnvConfig(task=task, camera_size=args.camera_size, antialias=not args.no_antialias))
        expert = ScriptedExpert()
        t_ok = 0
        try:
            for k in range(args.episodes):
                order = (True, False) if k % 2 == 0 else (False, True)
                for render in order:
                    steps, secs, success, phys, rend = _run(env, expert, k, render)
                    acc = tot[render]
                    acc[0] += steps
                    acc[1] += secs
                    acc[2] += phys
                    acc[3] += rend
                    t_ok += int(success)
                    runs += 1
        finally:
            env.close()
        ok += t_ok
        per_task[task] = f"{t_ok}/{2 * args.episodes}"
        print(f"bench sim: {task}: expert success {per_task[task]}", flush=True)

    res = {
        "steps_per_s": tot[True][0] / tot[True][1],
        "physics_only_steps_per_s": tot[False][0] / tot[False][1],
        "expert_success": f"{ok}/{runs}",
        "per_task": per_task,
        "camera_size": args.camera_size,
        "antialias": not args.no_antialias,
        "steps": {"rendering": tot[True][0], "physics_only": tot[False][0]},
        "ms_per_step": {
            "render_mode_physics": float(np.mean(tot[True][2])),
            "render_mode_render": float(np.mean(tot[True][3])),
            "physics_mode_physics": float(np.mean(tot[False][2])),
            "physics_mode_render": float(np.mean(tot[False][3])),
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sim.json").write_text(json.dumps(res, indent=2))
    _plot(args.out / "sim.png", res)
    print(f"sim: steps_per_s={res['steps_per_s']:.2f} physics_only_steps_per_s={res['physics_only_steps_per_s']:.2f} "
          f"expert_success={res['expert_success']}")
    return 0
