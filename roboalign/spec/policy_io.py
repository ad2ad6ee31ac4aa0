"""The data that crosses the policy boundary: one observation in, one action chunk out.

Shared by every backend, the evaluation harness and the ROS adapters (which convert messages to and
from these types and nothing else). Modelled on openpi-client's ``BasePolicy.infer``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

# The runtime Policy backends, the only list of their names (roboalign.runtime.policy.BACKENDS gives each its class;
# roboalign.control.backends adds the non-model policies a policy node can run).
RUNTIME_BACKENDS = ("torch", "onnxruntime", "tensorrt")

ALLOW_CPU_FALLBACK = False
"""Whether a policy may run on the CPU when an execution provider it asks for (``cuda``, ``tensorrt``) cannot run.

The one default of every path that loads a model on onnxruntime (``Policy.from_checkpoint``,
``OnnxRuntimeBackend``, ``resolve_providers``, ``make_session``, the policy node's ``allow_cpu_fallback``
parameter, ``roboalign doctor``). A robot that asks for CUDA and silently runs a GPU-sized model on the CPU
misses its control deadlines, so such a policy refuses to load: ``ProviderUnavailable`` names the providers
asked for, those available and this setting. With ``allow_cpu_fallback=True`` the unusable providers are
dropped with a logged warning and the model runs on the next provider, the CPU last
(``roboalign.runtime.ort_backend.refuse_or_fall_back`` applies it).
"""


@dataclass
class Observation:
    """What a policy sees at one instant.

    images: camera name -> (H, W, 3) uint8 RGB, right way up.
    state: (S,) float32 proprioception (joint positions + gripper, see the checkpoint's state spec).
    instruction: the language instruction.
    stamp: seconds (sim or ROS time) of the newest image.
    extras: privileged or optional data (sim object poses for the scripted expert); models ignore it.
    """

    images: dict[str, np.ndarray]
    state: np.ndarray
    instruction: str
    stamp: float = 0.0
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class ActionChunk:
    """A chunk of future actions, un-normalised, in the units of ``action_space``.

    actions: (T, D) float32; row k is the target to reach at ``stamp + (k + 1) * dt`` (the LIBERO /
    recorded-dataset convention: an action is the target at the end of its control step; the
    JointTrajectory built from a chunk says so in ``time_from_start``).
    timings: milliseconds, at least ``preprocess``, ``model`` and ``total``.
    """

    actions: np.ndarray
    action_space: str
    action_names: tuple[str, ...]
    dt: float
    stamp: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def horizon(self) -> int:
        return int(self.actions.shape[0])

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[1])


@runtime_checkable
class BasePolicy(Protocol):
    """Anything that turns observations into action chunks."""

    def reset(self) -> None:
        """Forget episode state (called at the start of every episode)."""

    def act(self, obs: Observation) -> ActionChunk:
        """Predict the next action chunk for ``obs``."""
