"""The episode state machine of the bridge: one operator command in, one well-defined phase out.

Phases (numbered like roboalign_msgs/EpisodeStatus): idle, homing, running, and the terminal phases success,
failure, timeout, stopped, fault, plus estop, which only ``release_estop`` leaves. Pure logic, no clock
of its own: the caller passes ``now`` (seconds) so it works on ROS time and sim time alike.

    idle/terminal --start--> homing --homed--> running --success/failure/timeout--> terminal
    homing/running --stop--> stopped        any (but estop) --fault--> fault
    any --estop--> estop --release_estop--> idle     idle/terminal --home--> homing --homed--> idle
    terminal --reset--> idle
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class Phase(IntEnum):
    IDLE = 0
    HOMING = 1
    RUNNING = 2
    SUCCESS = 3
    FAILURE = 4
    TIMEOUT = 5
    STOPPED = 6
    FAULT = 7
    ESTOP = 8

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def moving(self) -> bool:
        """Phases in which commands other than a hold may be sent."""
        return self in (Phase.HOMING, Phase.RUNNING)


TERMINAL = frozenset({Phase.SUCCESS, Phase.FAILURE, Phase.TIMEOUT, Phase.STOPPED, Phase.FAULT})


class TransitionError(RuntimeError):
    """An event that is not allowed in the current phase (the message says why and what is allowed)."""


@dataclass
class Episode:
    """Bookkeeping of the current (or last) episode."""

    index: int = 0
    task: str = ""
    instruction: str = ""
    started_at: float | None = None
    steps: int = 0
    message: str = ""
    go_after_homing: bool = False  # homing as part of ``start`` (then run) or alone (then idle)

    def elapsed(self, now: float) -> float:
        return 0.0 if self.started_at is None else max(0.0, now - self.started_at)


@dataclass
class EpisodeMachine:
    """Phase + episode bookkeeping; every method returns the new phase or raises ``TransitionError``."""

    max_duration: float = 60.0
    home_first: bool = True
    phase: Phase = Phase.IDLE
    episode: Episode = field(default_factory=Episode)
    _episodes_started: int = 0

    def __post_init__(self) -> None:
        if not self.max_duration > 0:
            raise ValueError(f"max_duration must be > 0 s, got {self.max_duration}")

    def _require(self, event: str, allowed: set[Phase]) -> None:
        if self.phase not in allowed:
            names = ", ".join(sorted(p.name.lower() for p in allowed))
            hint = " (release the e-stop first)" if self.phase is Phase.ESTOP else ""
            raise TransitionError(f"cannot {event} while {self.phase.name.lower()}{hint}; allowed in: {names}")

    def _set(self, phase: Phase, message: str) -> Phase:
        self.phase = phase
        self.episode.message = message
        return phase

    def start(self, task: str, instruction: str, now: float) -> Phase:
        self._require("start", {Phase.IDLE} | TERMINAL)
        if not instruction.strip():
            raise TransitionError("cannot start without an instruction")
        self._episodes_started += 1
        self.episode = Episode(index=self._episodes_started, task=task, instruction=instruction,
                               go_after_homing=True)
        if self.home_first:
            return self._set(Phase.HOMING, "moving to the home pose")
        return self._go(now)

    def _go(self, now: float) -> Phase:
        self.episode.started_at = now
        self.episode.steps = 0
        return self._set(Phase.RUNNING, f"running: {self.episode.instruction}")

    def home(self) -> Phase:
        self._require("go home", {Phase.IDLE} | TERMINAL)
        self.episode.go_after_homing = False
        return self._set(Phase.HOMING, "moving to the home pose")

    def homed(self, now: float) -> Phase:
        self._require("finish homing", {Phase.HOMING})
        if self.episode.go_after_homing:
            return self._go(now)
        return self._set(Phase.IDLE, "at the home pose")

    def step(self, now: float) -> Phase:
        """Count one control step of a running episode and apply the time limit."""
        if self.phase is Phase.RUNNING:
            self.episode.steps += 1
            if self.episode.elapsed(now) > self.max_duration:
                return self._set(Phase.TIMEOUT, f"time limit of {self.max_duration:g} s reached")
        return self.phase

    def succeed(self, message: str = "success") -> Phase:
        self._require("report success", {Phase.RUNNING})
        return self._set(Phase.SUCCESS, message)

    def fail(self, message: str) -> Phase:
        self._require("report failure", {Phase.RUNNING})
        return self._set(Phase.FAILURE, message)

    def stop(self, message: str = "stopped by the operator") -> Phase:
        self._require("stop", {Phase.HOMING, Phase.RUNNING, Phase.IDLE} | TERMINAL)
        if self.phase.moving:
            return self._set(Phase.STOPPED, message)
        return self.phase

    def fault(self, reason: str) -> Phase:
        if self.phase is Phase.ESTOP:
            return self.phase
        if self.phase is Phase.FAULT:  # keep the first reason: it is the cause
            return self.phase
        return self._set(Phase.FAULT, reason)

    def estop(self, reason: str = "emergency stop") -> Phase:
        return self._set(Phase.ESTOP, reason)

    def release_estop(self) -> Phase:
        self._require("release the e-stop", {Phase.ESTOP})
        return self._set(Phase.IDLE, "e-stop released")

    def reset(self) -> Phase:
        self._require("reset", {Phase.IDLE} | TERMINAL)
        return self._set(Phase.IDLE, "reset")
