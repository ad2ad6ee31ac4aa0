"""One doctor check's result (OK / WARN / FAIL, what was found, what to do) and the config it reads."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from roboalign.spec.policy_io import ALLOW_CPU_FALLBACK

STATUSES = ("OK", "WARN", "FAIL")


@dataclass(frozen=True)
class Check:
    """A finding: ``status`` OK | WARN | FAIL, ``detail`` what is there, ``fix`` what to do (empty when OK)."""

    area: str
    status: str
    detail: str
    fix: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"Check.status={self.status!r}; valid: {', '.join(STATUSES)}")

    def render(self) -> str:
        return f"{self.status:<4}  {self.area:<14} {self.detail}" + (f"\n{'':20}-> {self.fix}" if self.fix else "")

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class DeployConfig:
    """What a ROS params file (e.g. real_robot.yaml) asks of this machine; defaults when no file is given."""

    source: str = ""
    backend: str = ""
    providers: tuple[str, ...] = ()
    allow_cpu_fallback: bool = ALLOW_CPU_FALLBACK
    cameras: tuple[str, ...] = ()
    realtime_priority: int = 0
    cpu_affinity: dict[str, tuple[int, ...]] = field(default_factory=dict)
    device: str = ""  # backend_options.device (torch backend: cpu | cuda[:N])

    @classmethod
    def load(cls, path: str | Path | None) -> DeployConfig:
        if path is None:
            return cls()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"doctor --config {path}: no such file (a ROS params YAML, e.g. "
                                    "ros2_ws/src/roboalign_policy/config/real_robot.yaml)")
        data = yaml.safe_load(path.read_text()) or {}
        nodes = {name: (v or {}).get("ros__parameters", {}) for name, v in data.items() if isinstance(v, dict)}
        policy, bridge = nodes.get("policy_node", {}), nodes.get("bridge_node", {})
        try:
            options = json.loads(policy.get("backend_options", "{}") or "{}")
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: policy_node.backend_options is not valid JSON: {e}") from None
        providers = options.get("providers", [])
        providers = [p.strip() for p in providers.split(",")] if isinstance(providers, str) else list(providers)
        return cls(source=str(path), backend=str(policy.get("backend", "")), providers=tuple(providers),
                   allow_cpu_fallback=bool(options.get("allow_cpu_fallback", policy.get("allow_cpu_fallback", ALLOW_CPU_FALLBACK))),
                   cameras=tuple(policy.get("camera_names", ())),
                   realtime_priority=int(bridge.get("realtime_priority", 0) or 0),
                   cpu_affinity={n: tuple(int(c) for c in p["cpu_affinity"]) for n, p in nodes.items()
                                 if p.get("cpu_affinity")}, device=str(options.get("device", "")))
