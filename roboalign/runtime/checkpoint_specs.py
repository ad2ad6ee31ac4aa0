"""The specs a runtime policy needs, in one object, and the check that refuses a mismatching model.

:class:`RuntimeSpecs` gathers the one definitions saved beside a VLA checkpoint (input spec: cameras,
image size, prompt mode; prompt template; action space; state/action normalisation stats; tasks; head
horizon and dims). It is built from a loaded VLA (torch backend) or from an export manifest (graph
backends, no torch needed), and serialises to the manifest's ``specs`` section.

:func:`check_specs` compares them with what the caller asks for (action space, cameras) and raises
:class:`SpecMismatchError` naming both sides, so a policy trained for end-effector deltas never drives a
joint-position controller and a model trained on two cameras is never fed one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from roboalign.models.vla_inputs import VLAInputSpec
from roboalign.spec.action_space import ActionSpace
from roboalign.spec.loader import SpecError, check_fields, check_format
from roboalign.spec.normalization import NormStats
from roboalign.spec.prompts import PromptTemplate
from roboalign.spec.tasks import TaskSet

SPECS_FORMAT = "roboalign.runtime_specs/1"


class SpecMismatchError(ValueError):
    """The checkpoint/export was made for another action space or other cameras than requested."""


@dataclass(frozen=True)
class RuntimeSpecs:
    """Everything besides weights that decides how observations become inputs and outputs become actions."""

    inputs: VLAInputSpec
    template: PromptTemplate
    action_space: ActionSpace
    action_stats: NormStats
    state_stats: NormStats
    tasks: TaskSet
    horizon: int
    action_dim: int
    state_dim: int

    def __post_init__(self) -> None:
        if self.action_stats.dim != self.action_dim or self.action_space.dim != self.action_dim:
            raise ValueError(f"specs disagree on the action dimension: head {self.action_dim}, action space "
                             f"{self.action_space.name!r} {self.action_space.dim}, norm stats {self.action_stats.dim}")
        if self.state_stats.dim != self.state_dim:
            raise ValueError(f"specs disagree on the state dimension: head {self.state_dim}, "
                             f"norm stats {self.state_stats.dim}")

    @property
    def cameras(self) -> tuple[str, ...]:
        return self.inputs.cameras

    @property
    def action_names(self) -> tuple[str, ...]:
        return tuple(self.action_space.names)

    @property
    def dt(self) -> float:
        return float(self.action_space.dt)

    @classmethod
    def from_vla(cls, vla: Any) -> RuntimeSpecs:
        """From a loaded :class:`roboalign.models.vla.VLA`."""
        hc = vla.cfg.head
        return cls(inputs=vla.cfg.inputs, template=vla.template, action_space=vla.action_space,
                   action_stats=vla.action_stats, state_stats=vla.state_stats, tasks=vla.tasks,
                   horizon=int(hc.horizon), action_dim=int(hc.action_dim), state_dim=int(hc.state_dim))

    def to_dict(self) -> dict[str, Any]:
        return {"format": SPECS_FORMAT, "inputs": self.inputs.to_dict(), "prompt_template": self.template.to_dict(),
                "action_space": self.action_space.to_dict(), "action_stats": self.action_stats.to_dict(),
                "state_stats": self.state_stats.to_dict(), "tasks": self.tasks.to_dict(), "horizon": self.horizon,
                "action_dim": self.action_dim, "state_dim": self.state_dim}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "specs") -> RuntimeSpecs:
        data = check_format(data, SPECS_FORMAT, source, "runtime specs")
        keys = ("inputs", "prompt_template", "action_space", "action_stats", "state_stats", "tasks", "horizon",
                "action_dim", "state_dim")
        check_fields(data, keys, source, required=keys)
        try:
            return cls(inputs=VLAInputSpec.from_dict(data["inputs"], source=f"{source}.inputs"),
                       template=PromptTemplate.from_dict(data["prompt_template"], source=f"{source}.prompt_template"),
                       action_space=ActionSpace.from_dict(data["action_space"], source=f"{source}.action_space"),
                       action_stats=NormStats.from_dict(data["action_stats"], source=f"{source}.action_stats"),
                       state_stats=NormStats.from_dict(data["state_stats"], source=f"{source}.state_stats"),
                       tasks=TaskSet.from_dict(data["tasks"], source=f"{source}.tasks"), horizon=int(data["horizon"]),
                       action_dim=int(data["action_dim"]), state_dim=int(data["state_dim"]))
        except SpecError:
            raise
        except (TypeError, KeyError, ValueError) as e:
            raise SpecError(f"{source}: {e}") from None


def check_specs(specs: RuntimeSpecs, action_space: str | ActionSpace | None = None,
                cameras: Sequence[str] | None = None, source: str = "checkpoint") -> None:
    """Raise :class:`SpecMismatchError` if ``specs`` do not match the requested action space / cameras.

    ``action_space``: a name (``eef_delta``) or an :class:`ActionSpace` (then the dimension names must
    match too). ``cameras``: the camera names the caller will provide; they must be exactly the model's
    cameras (order free) — a missing camera cannot be fed and an extra one would be silently ignored.
    ``None`` skips that check.
    """
    problems = []
    if action_space is not None:
        want = action_space.name if isinstance(action_space, ActionSpace) else str(action_space)
        if want != specs.action_space.name:
            problems.append(f"action space: requested {want!r}, {source} emits {specs.action_space.name!r} "
                            f"({', '.join(specs.action_names)})")
        elif isinstance(action_space, ActionSpace) and tuple(action_space.names) != specs.action_names:
            problems.append(f"action dimensions: requested {tuple(action_space.names)}, {source} emits "
                            f"{specs.action_names}")
    if cameras is not None:
        want_cams = tuple(cameras)
        missing = [c for c in specs.cameras if c not in want_cams]
        extra = [c for c in want_cams if c not in specs.cameras]
        if missing or extra:
            detail = []
            if missing:
                detail.append(f"the model needs {missing} which the request lacks")
            if extra:
                detail.append(f"the model does not use {extra}")
            problems.append(f"cameras: requested {list(want_cams)}, {source} was trained on {list(specs.cameras)} "
                            f"({'; '.join(detail)})")
    if problems:
        raise SpecMismatchError(f"{source} does not match the request: " + " | ".join(problems))
