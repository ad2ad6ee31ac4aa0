"""DeadlineLoop on a fake clock: deadlines on the grid, computed early by the lead, late steps skip instead of bursting."""

from __future__ import annotations

import pytest

from roboalign.control.deadline_loop import DeadlineLoop


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        assert s > 0
        self.t += s


def run(steps: int, period: float = 0.02, lead: float = 0.003, cost=lambda k: 0.001, fail=()) -> tuple:
    clock, calls, errors = FakeClock(), [], []

    def step(deadline: float) -> None:
        calls.append((clock.t, deadline))
        clock.t += cost(len(calls))
        if len(calls) in fail:
            raise RuntimeError(f"tick {len(calls)}")

    loop = DeadlineLoop(period, step, lambda: len(calls) >= steps, lead, errors.append, clock, clock.sleep)
    loop.run()
    return calls, errors, loop


def test_steps_start_lead_early_on_a_fixed_grid() -> None:
    calls, _, loop = run(50)
    deadlines = [d for _, d in calls]
    assert deadlines == pytest.approx([0.02 * (k + 1) for k in range(50)])
    assert all(d - started == pytest.approx(0.003) for started, d in calls)
    assert loop.skipped == 0


def test_a_late_step_skips_ahead_instead_of_bursting() -> None:
    calls, _, loop = run(20, cost=lambda k: 0.1 if k == 5 else 0.001)  # step 5 takes five periods
    deadlines = [d for _, d in calls]
    assert loop.skipped == 1
    gaps = [b - a for a, b in zip(deadlines, deadlines[1:], strict=False)]
    assert min(gaps) >= 0.02 - 1e-9, "no burst: deadlines never closer than one period"
    assert all(d >= started for started, d in calls), "never a step for a deadline already past"


def test_an_error_goes_to_the_handler_and_the_loop_goes_on() -> None:
    calls, errors, _ = run(10, fail=(3, 4))
    assert len(calls) == 10 and [str(e) for e in errors] == ["tick 3", "tick 4"]
    with pytest.raises(ValueError, match="lead"):
        DeadlineLoop(0.02, lambda d: None, lambda: True, lead=0.05)


def test_wait_for_sleeps_until_the_deadline_only() -> None:
    clock = FakeClock()
    loop = DeadlineLoop(0.02, lambda d: None, lambda: True, clock=clock, sleep=clock.sleep)
    loop.wait_for(0.5)
    assert clock.t == pytest.approx(0.5)
    loop.wait_for(0.1)  # already past: no sleep
    assert clock.t == pytest.approx(0.5)


def test_an_error_while_stopping_ends_the_loop_without_the_handler() -> None:
    clock, errors, state = FakeClock(), [], {"stop": False, "n": 0}

    def step(deadline: float) -> None:
        state["n"] += 1
        if state["n"] == 3:
            state["stop"] = True  # shutdown requested while this step runs
            raise RuntimeError("entity destroyed")

    DeadlineLoop(0.02, step, lambda: state["stop"], 0.003, errors.append, clock, clock.sleep).run()
    assert state["n"] == 3 and errors == []
