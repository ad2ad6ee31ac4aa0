"""Build the policy a policy node runs from a backend name, a checkpoint and backend options.

- ``torch`` | ``onnxruntime`` | ``tensorrt``: ``roboalign.runtime.policy.Policy.from_checkpoint``
- ``expert``: the scripted LIBERO expert (``roboalign.sim.expert``; options = ExpertConfig fields, action space
  ``joint_position`` by default); it reads privileged object poses from ``Observation.extras``, which only
  the simulator can provide (see sim_robot_node's privileged topic)
- ``reach``: :class:`roboalign.control.reach_policy.ReachPolicy` (bring-up / tests; options: goal, speed,
  horizon, gripper, compute_s: a stand-in model time per chunk)
Backends are imported only when asked for, so a robot without torch can still run ``onnxruntime``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from roboalign.control.reach_policy import ReachPolicy
from roboalign.spec.policy_io import RUNTIME_BACKENDS, BasePolicy

BACKENDS = (*RUNTIME_BACKENDS, "expert", "reach")


def load_policy(backend: str, checkpoint: str = "", options: dict[str, Any] | None = None) -> BasePolicy:
    """The policy for ``backend``; raises ValueError naming the valid backends or the missing piece."""
    options = dict(options or {})
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if backend in RUNTIME_BACKENDS:
        if not checkpoint:
            raise ValueError(f"backend {backend!r} needs a checkpoint (a folder with config.json, or an export)")
        from roboalign.runtime.policy import Policy

        return Policy.from_checkpoint(checkpoint, backend=backend, **options)
    if backend == "expert":
        from roboalign.sim.expert import ExpertConfig, ScriptedExpert

        options.setdefault("action_space", "joint_position")  # what the bridge executes
        return ScriptedExpert(ExpertConfig(**options))
    if "goal" not in options:
        raise ValueError("backend 'reach' needs options {'goal': [7 joint positions]}")
    return ReachPolicy(goal=np.asarray(options.pop("goal"), np.float64), **options)
