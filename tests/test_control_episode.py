"""Episode state machine and watchdog (pure logic, caller's clock)."""

from __future__ import annotations

import pytest

from roboalign.control.episode import EpisodeMachine, Phase, TransitionError
from roboalign.control.watchdog import Watchdog


def test_a_full_episode_with_homing_and_success() -> None:
    m = EpisodeMachine(max_duration=10.0)
    assert m.start("alphabet_soup", "put the alphabet soup in the basket", now=0.0) is Phase.HOMING
    assert m.homed(now=2.0) is Phase.RUNNING
    for k in range(5):
        m.step(now=2.0 + k)
    assert m.episode.steps == 5 and m.episode.elapsed(7.0) == 5.0
    assert m.succeed() is Phase.SUCCESS and m.phase.terminal
    # the next start is a new episode
    assert m.start("ketchup", "put the ketchup in the basket", now=20.0) is Phase.HOMING
    assert m.episode.index == 2 and m.episode.steps == 0


def test_timeout_stop_fault_and_estop() -> None:
    m = EpisodeMachine(max_duration=3.0, home_first=False)
    m.start("t", "do it", now=0.0)
    assert m.step(now=2.9) is Phase.RUNNING
    assert m.step(now=3.1) is Phase.TIMEOUT and "3 s" in m.episode.message
    m.start("t", "do it", now=5.0)
    assert m.stop() is Phase.STOPPED
    assert m.stop() is Phase.STOPPED  # stopping when nothing moves is harmless
    m.start("t", "do it", now=6.0)
    assert m.fault("stale camera") is Phase.FAULT
    assert m.fault("stale state") is Phase.FAULT and m.episode.message == "stale camera"  # first cause kept
    assert m.estop("operator e-stop") is Phase.ESTOP
    assert m.fault("anything") is Phase.ESTOP  # a fault does not leave the e-stop
    with pytest.raises(TransitionError, match="release the e-stop first"):
        m.start("t", "do it", now=7.0)
    with pytest.raises(TransitionError, match="cannot go home while estop"):
        m.home()
    assert m.release_estop() is Phase.IDLE


def test_invalid_transitions_list_what_is_allowed() -> None:
    m = EpisodeMachine()
    with pytest.raises(TransitionError, match="cannot report success while idle; allowed in: running"):
        m.succeed()
    with pytest.raises(TransitionError, match="without an instruction"):
        m.start("t", "  ", now=0.0)
    m.start("t", "go", now=0.0)
    with pytest.raises(TransitionError, match="cannot start while homing"):
        m.start("t", "go", now=0.1)
    with pytest.raises(TransitionError, match="cannot release the e-stop while homing"):
        m.release_estop()
    with pytest.raises(ValueError, match="max_duration"):
        EpisodeMachine(max_duration=0)


def test_home_alone_returns_to_idle() -> None:
    m = EpisodeMachine()
    assert m.home() is Phase.HOMING
    assert m.homed(now=1.0) is Phase.IDLE and m.episode.message == "at the home pose"


def test_watchdog_flags_stale_and_silent_streams_only_when_armed() -> None:
    w = Watchdog({"image": 0.1, "state": 0.05, "chunk": 0.5})
    w.feed("image", 0.0)
    assert w.check(10.0) == []  # nothing armed
    w.arm("image", 0.0)
    w.arm("state", 0.0)
    w.feed("state", 0.02)
    assert w.check(0.06) == []
    problems = w.check(0.15)
    assert len(problems) == 2
    assert "stale image: last message 0.150 s ago" in problems[0] and "stale state" in problems[1]
    w.feed("image", 0.2)
    w.feed("state", 0.2)
    w.arm("chunk", 0.2, forget=True)
    assert w.check(0.25) == []
    assert "no chunk message for 0.600 s since armed" in w.check(0.8)[-1]
    w.disarm("chunk")
    assert w.age("chunk", 1.0) is None and w.age("image", 1.0) == pytest.approx(0.8)
    with pytest.raises(KeyError, match="known: \\['image', 'state', 'chunk'\\]"):
        w.feed("camera", 0.0)
    with pytest.raises(ValueError, match="'image' must be > 0"):
        Watchdog({"image": 0.0})
