"""``roboalign bench rtc``: chunk execution under inference delay in LIBERO — switch, ensemble, RTC, trained RTC.

Closed loop in real LIBERO scenes (joint-position control) with an injected inference delay in *sim time*:
the policy is asked for a chunk every ``execute_steps`` control steps; the chunk becomes available
``delay`` later, and meanwhile the robot keeps executing what it had (the executor of
:mod:`roboalign.control.chunk_executor`, the same code the bridge runs). Arms:

- ``switch``: the new chunk is followed from its arrival on (naive switching);
- ``ensemble``: overlapping chunks blended in time (ACT-style, the bridge's default);
- ``rtc``: inference-time RTC (gradient-free inpainting of the committed prefix, the exported variant),
  executed in ``rtc`` mode: the new chunk takes over at its first free row ``d``;
- ``rtc_trained``: the head's ``trained`` RTC variant (clean prefix rows), meaningful for heads trained with
  ``rtc_max_delay > 0`` (the line says ``trained_head=no`` otherwise).

``d`` comes from :class:`~roboalign.control.chunk_executor.DelayEstimator` fed the measured (injected)
delays, the prefix from :func:`~roboalign.control.chunk_executor.committed_prefix`. Every arm sees the same
init states and the same noise sequence. Figures per (arm, delay): success with a 95 % Wilson interval, the
largest joint / end-effector jump at chunk switches (the commanded joint target's change at the step a new
chunk takes over minus the old chunk's target for that time; the end effector's measured displacement
in that step), RMS jerk of the commanded joint
targets, mean time to success. Writes ``<out>/rtc_results.{json,md}`` and ``<figures>/rtc_bench.png``; the last
line is ``rtc: ... jump_ratio_200ms=<RTC's largest switch jump / naive switching's at 200 ms> ...``.

The policy is a joint-position VLA checkpoint (``--checkpoint``); without one the bench builds the tiny
random-weight joint VLA of the ROS demo (:mod:`roboalign.control.tiny_model`): its chunks do not solve
tasks (success 0), but they disagree from one inference to the next like a real model's, so the jump and
jerk figures compare the execution modes on them.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from roboalign.control.chunk_executor import ChunkExecutor, DelayEstimator, ExecutorConfig, committed_prefix
from roboalign.control.tiny_model import make_tiny_joint_checkpoint
from roboalign.sim.libero_env import LiberoEnv, LiberoEnvConfig
from roboalign.spec.action_space import GRIPPER_OPEN
from roboalign.spec.tasks import DEFAULT_TASKS

ROOT = Path(__file__).resolve().parents[2]
ARMS = ("switch", "ensemble", "rtc", "rtc_trained")
DELAYS_MS = (0, 100, 200, 300)
EXECUTION = {"switch": "switch", "ensemble": "ensemble", "rtc": "rtc", "rtc_trained": "rtc"}


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


@dataclass
class Trace:
    """What one episode commanded and measured."""

    targets: list[np.ndarray] = field(default_factory=list)  # commanded (D,) per step
    eef: list[np.ndarray] = field(default_factory=list)  # measured end-effector position per step
    switch_steps: list[int] = field(default_factory=list)  # steps at which a new chunk took over from another
    switch_gaps: list[float] = field(default_factory=list)  # largest joint-target change a switch causes
    chunks: int = 0  # chunks accepted (the first one starts from the hold: not a switch)
    success_step: int | None = None


@dataclass
class _Pending:
    actions: np.ndarray  # (H, D) raw units
    stamp: float
    ready_step: int
    prefix_len: int | None


def _request(policy: Any, obs: Any, arm: str, ex: ChunkExecutor, est: DelayEstimator, dt: float,
             soft_horizon: int) -> tuple[np.ndarray, int | None]:
    """Ask the policy for a chunk from ``obs``: with the committed prefix in the RTC arms."""
    h = policy.specs.horizon
    if arm not in ("rtc", "rtc_trained"):
        return policy.act(obs).actions, None
    d = est.steps(dt, h)
    prefix = committed_prefix(ex, float(obs.stamp), dt, h)
    if prefix is None:  # nothing committed yet (the first chunk)
        return policy.act(obs).actions, 0
    if hasattr(policy.backend, "rtc_variant"):  # torch: choose the variant; an export carries its own
        policy.backend.rtc_variant = "trained" if arm == "rtc_trained" else "inpaint"
    s = h - d if soft_horizon <= 0 else min(max(soft_horizon, d), h - d)
    return policy.act(obs, prefix=prefix, prefix_len=d, soft_horizon=s).actions, d


def _switch_step(k: int, pending: _Pending, dt: float) -> int:
    """The step whose command first follows a chunk accepted at step ``k`` (rtc: its first free row)."""
    if pending.prefix_len is None:
        return k
    start = pending.stamp + (1 + pending.prefix_len) * dt  # row offset 1: row d is the pose at stamp + (d+1) dt
    return max(k, int(round(start / dt)) - 1)


def _deliver(pending: _Pending | None, k: int, dt: float, ex: ChunkExecutor, est: DelayEstimator,
             trace: Trace) -> _Pending | None:
    """Hand a computed chunk to the executor once its (injected) delay has passed."""
    if pending is None or k < pending.ready_step:
        return pending
    step = _switch_step(k, pending, dt)
    before = ex.sample((step + 1) * dt)  # what the robot would have been sent at the switch
    if ex.add(pending.actions, pending.stamp, dt, now=k * dt, prefix_len=pending.prefix_len) is None:
        after = ex.sample((step + 1) * dt)
        if trace.chunks and before is not None and after is not None:
            trace.switch_steps.append(step)
            trace.switch_gaps.append(float(np.max(np.abs(after[:7] - before[:7]))))
        trace.chunks += 1
    est.record(k * dt - pending.stamp)
    return None


def run_episode(env: Any, policy: Any, arm: str, delay_ms: float, init_state: int, cfg: BenchConfig) -> Trace:
    """One closed-loop episode: a chunk asked for every ``execute_steps`` steps, each available ``delay_ms``
    of sim time later, the robot executing what it has meanwhile (holding before the first chunk)."""
    dt = env.dt
    delay_steps = int(round(delay_ms / 1e3 / dt))
    ex = ChunkExecutor(policy.specs.action_dim, ExecutorConfig(
        execution=EXECUTION[arm], row_offset=1.0, max_chunk_age=10.0, blend_time=0.1))
    est = DelayEstimator(window=5)
    env.set_render(True)
    obs = env.reset(init_state=init_state, seed=cfg.seed)
    policy.reset()
    trace, pending = Trace(), None
    last = np.concatenate([np.asarray(obs.state[:7], np.float64), [GRIPPER_OPEN]])
    for k in range(cfg.max_steps):
        if pending is None and k % cfg.execute_steps == 0:
            actions, d = _request(policy, obs, arm, ex, est, dt, cfg.soft_horizon)
            pending = _Pending(actions, float(obs.stamp), k + delay_steps, d)
        pending = _deliver(pending, k, dt, ex, est, trace)
        target = ex.sample((k + 1) * dt)
        last = last if target is None else target
        env.set_render((k + 1) % cfg.execute_steps == 0)  # frames only where the policy looks
        res = env.step(last.astype(np.float32))
        obs = res.obs
        trace.targets.append(np.asarray(last, np.float64))
        trace.eef.append(np.asarray(obs.extras["eef_pos"], np.float64))
        if res.success:
            trace.success_step = k + 1
            break
    return trace


def switch_jumps(trace: Trace) -> tuple[float, float]:
    """Largest joint jump a switch causes (the new chunk's target minus the old one's at the switch time) and
    largest end-effector displacement measured in a switch step."""
    x = np.array(trace.eef)
    steps = [k for k in trace.switch_steps if 1 <= k < len(x)]
    joint = max(trace.switch_gaps, default=0.0)
    eef = max((float(np.linalg.norm(x[k] - x[k - 1])) for k in steps), default=0.0)
    return joint, eef


def rms_jerk(trace: Trace, dt: float) -> float:
    """RMS of the third difference of the commanded joint targets, rad/s^3."""
    q = np.array(trace.targets)[:, :7]
    if len(q) < 4:
        return 0.0
    jerk = np.diff(q, n=3, axis=0) / dt ** 3
    return float(np.sqrt(np.mean(jerk ** 2)))


@dataclass(frozen=True)
class BenchConfig:
    tasks: tuple[str, ...] = ("bottle_to_basket",)
    episodes: int = 2  # per task, arm and delay
    max_steps: int = 150
    execute_steps: int = 8
    soft_horizon: int = 0  # s of RTC; 0: H - d (the widest soft mask d <= s <= H - d allows)
    delays_ms: tuple[float, ...] = DELAYS_MS
    arms: tuple[str, ...] = ARMS
    seed: int = 0


def _summarise(traces: list[Trace], dt: float) -> dict[str, Any]:
    n = len(traces)
    ok = [t for t in traces if t.success_step is not None]
    lo, hi = wilson(len(ok), n)
    jumps = [switch_jumps(t) for t in traces]
    return {"episodes": n, "success": len(ok) / n if n else 0.0, "wilson_lo": lo, "wilson_hi": hi,
            "max_joint_jump": max((j for j, _ in jumps), default=0.0),
            "max_eef_jump": max((e for _, e in jumps), default=0.0),
            "rms_jerk": float(np.mean([rms_jerk(t, dt) for t in traces])) if traces else 0.0,
            "time_to_success_s": float(np.mean([t.success_step * dt for t in ok])) if ok else None}


def run_bench(policy: Any, cfg: BenchConfig, progress: bool = True) -> dict[str, dict[str, dict[str, Any]]]:
    """results[arm][delay_ms] -> figures over every task and episode."""
    traces: dict[str, dict[float, list[Trace]]] = {a: {d: [] for d in cfg.delays_ms} for a in cfg.arms}
    dt = 0.05
    for task in cfg.tasks:
        with LiberoEnv(LiberoEnvConfig(task=task, action_space="joint_position", max_steps=cfg.max_steps,
                                       seed=cfg.seed)) as env:
            dt = env.dt
            for arm in cfg.arms:
                for delay in cfg.delays_ms:
                    for ep in range(cfg.episodes):
                        t0 = time.perf_counter()
                        traces[arm][delay].append(run_episode(env, policy, arm, delay, ep, cfg))
                        if progress:
                            print(f"rtc bench: {task} {arm} {delay:g} ms episode {ep}: "
                                  f"{time.perf_counter() - t0:.1f} s", flush=True)
    return {a: {str(int(d)): _summarise(traces[a][d], dt) for d in cfg.delays_ms} for a in cfg.arms}


def summary_line(results: dict[str, dict[str, dict[str, Any]]], trained_head: bool) -> str:
    """The final ``rtc: ...`` line."""
    def fig(arm: str, delay: str, key: str) -> float:
        return float(results.get(arm, {}).get(delay, {}).get(key, float("nan")))

    naive = fig("switch", "200", "max_joint_jump")
    ratio = fig("rtc", "200", "max_joint_jump") / naive if naive > 0 else float("nan")
    parts = [f"jump_ratio_200ms={ratio:.3f}"]
    for arm in results:
        parts.append(f"{arm}_jump_200ms={fig(arm, '200', 'max_joint_jump'):.4f}")
    for arm in results:
        parts.append(f"{arm}_success_300ms={fig(arm, '300', 'success'):.2f}")
    parts.append(f"rtc_success_0ms={fig('rtc', '0', 'success'):.2f}")
    parts.append(f"trained_head={'yes' if trained_head else 'no'}")
    return "rtc: " + " ".join(parts)


def _markdown(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    rows = ["| arm | delay ms | episodes | success [95% CI] | max joint jump (rad) | max EEF jump (m) | RMS jerk | "
            "time to success (s) |", "|---|---|---|---|---|---|---|---|"]
    for arm, by_delay in results.items():
        for delay, r in by_delay.items():
            tts = "-" if r["time_to_success_s"] is None else f"{r['time_to_success_s']:.1f}"
            rows.append(f"| {arm} | {delay} | {r['episodes']} | {r['success']:.2f} [{r['wilson_lo']:.2f}, "
                        f"{r['wilson_hi']:.2f}] | {r['max_joint_jump']:.4f} | {r['max_eef_jump']:.4f} | "
                        f"{r['rms_jerk']:.1f} | {tts} |")
    return "\n".join(rows) + "\n"


def _plot(results: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for arm, by_delay in results.items():
        delays = [int(d) for d in by_delay]
        for ax, key in zip(axes, ("max_joint_jump", "rms_jerk", "success"), strict=True):
            ax.plot(delays, [by_delay[str(d)][key] for d in delays], marker="o", label=arm)
    for ax, title in zip(axes, ("largest joint jump at a switch (rad)", "RMS jerk (rad/s³)", "success"),
                         strict=True):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("injected inference delay (ms)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="roboalign bench rtc", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", help="joint-position VLA checkpoint (default: the tiny random joint VLA)")
    p.add_argument("--quick", action="store_true",
                   help="1 task, 1 episode per cell, 80 steps (~9 chunk switches each; <= 10 min on 2 cores)")
    p.add_argument("--tasks", nargs="+", default=None, help="tasks (default: the four; --quick: bottle_to_basket)")
    p.add_argument("--episodes", type=int, default=None, help="per task, arm and delay (default 10; --quick 1)")
    p.add_argument("--max-steps", type=int, default=None, help="per episode (default 300; --quick 80)")
    p.add_argument("--out", default="runs/bench_rtc")
    p.add_argument("--figures", default=str(ROOT / "docs" / "figures"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def _config(args: argparse.Namespace) -> BenchConfig:
    tasks = tuple(args.tasks or (("bottle_to_basket",) if args.quick else DEFAULT_TASKS.names))
    return BenchConfig(tasks=tasks, episodes=args.episodes or (1 if args.quick else 10),
                       max_steps=args.max_steps or (80 if args.quick else 300))


def _policy(args: argparse.Namespace, out: Path) -> Any:
    from roboalign.runtime.policy import Policy

    ckpt = args.checkpoint or make_tiny_joint_checkpoint(Path(tempfile.mkdtemp(prefix="rtc-bench-", dir=out)) / "vla")
    return Policy.from_checkpoint(ckpt, backend="torch", action_space="joint_position", num_threads=args.threads)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = _config(args)
    policy = _policy(args, out)
    t0 = time.perf_counter()
    results = run_bench(policy, cfg, progress=not args.no_progress)
    trained = policy.backend.vla.cfg.head.rtc_max_delay > 0
    (out / "rtc_results.json").write_text(json.dumps({"config": cfg.__dict__, "results": results,
                                                      "trained_head": trained,
                                                      "seconds": time.perf_counter() - t0}, indent=2, default=list))
    (out / "rtc_results.md").write_text(_markdown(results))
    _plot(results, Path(args.figures) / "rtc_bench.png")
    print(_markdown(results))
    print(summary_line(results, trained))
    return 0
