"""``Policy``: one API over interchangeable inference backends (torch, onnxruntime, tensorrt).

    policy = Policy.from_checkpoint("runs/vla", backend="onnxruntime", providers=["cuda", "cpu"],
                                    action_space="eef_delta", cameras=["agentview", "wrist"])
    policy.reset()
    chunk = policy.act(observation)      # ActionChunk: (H, A) un-normalised actions + timings in ms

``act`` = shared vectorised pre-processing (:mod:`roboalign.runtime.preprocess`) -> the backend's vision /
LLM / head stages from a noise sample (a numpy generator re-seeded by ``reset()``, so an episode is
reproducible and every backend given the same noise returns the same chunk) -> un-normalisation with
the checkpoint's action stats. Timings: ``preprocess``, ``vision``, ``llm``, ``head``, ``model`` (the
three stages), ``postprocess``, ``total``. The first ``warmup`` calls on synthetic observations happen at
construction (lazy allocations, ORT/TensorRT autotuning) and do not disturb the noise sequence.

Backends live in their own classes (:data:`BACKENDS`); parity tests hold them together. A checkpoint or
export whose specs disagree with the requested action space or cameras is refused
(:class:`~roboalign.runtime.checkpoint_specs.SpecMismatchError`).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from roboalign.runtime.backend import InferenceBackend
from roboalign.runtime.checkpoint_specs import RuntimeSpecs, check_specs
from roboalign.runtime.preprocess import draw_noise, synthetic_observations
from roboalign.spec.action_space import ActionSpace
from roboalign.spec.policy_io import RUNTIME_BACKENDS, ActionChunk, Observation

# backend name -> "module:Class" (imported only when used: the torch backend needs torch, tensorrt needs CUDA)
BACKENDS: dict[str, str] = dict(zip(RUNTIME_BACKENDS, ("roboalign.runtime.torch_backend:TorchBackend",
                                                       "roboalign.runtime.ort_backend:OnnxRuntimeBackend",
                                                       "roboalign.runtime.trt_backend:TensorRTBackend"), strict=True))


def backend_class(name: str) -> type:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


class Policy:
    """A VLA behind the :class:`~roboalign.spec.policy_io.BasePolicy` API (``reset`` / ``act``)."""

    def __init__(self, backend: InferenceBackend, seed: int = 0, warmup: int = 1) -> None:
        self.backend = backend
        self.specs: RuntimeSpecs = backend.specs
        self.preprocessor = backend.preprocessor
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.warmup(warmup)

    @classmethod
    def from_checkpoint(cls, path: str | Path, backend: str = "torch", *,
                        providers: Sequence[str] | str | None = None, action_space: str | ActionSpace | None = None,
                        cameras: Sequence[str] | None = None, seed: int = 0, warmup: int = 1,
                        num_threads: int | None = None, **backend_options: Any) -> Policy:
        """Load a policy.

        path: a VLA checkpoint folder (torch), an export folder with ``manifest.json`` (onnxruntime,
            tensorrt), or a checkpoint folder holding its export in ``onnx/``.
        backend: ``torch`` | ``onnxruntime`` | ``tensorrt``.
        providers: onnxruntime execution providers in priority order (``cpu``, ``cuda``, ``tensorrt``); one
            that cannot run here follows :data:`~roboalign.spec.policy_io.ALLOW_CPU_FALLBACK` (refused unless
            ``allow_cpu_fallback=True`` is among the backend options). Only for ``onnxruntime``.
        action_space / cameras: what the caller will send/expect; a mismatch raises SpecMismatchError.
        num_threads: CPU threads of the backend (torch intra-op / onnxruntime intra-op).
        backend_options: passed to the backend (e.g. ``device="cuda"`` for torch, ``precision="fp16"``
            for tensorrt, ``check_hash=False`` for onnxruntime on huge exports).
        """
        cls_ = backend_class(backend)
        options = dict(backend_options)
        if providers is not None:
            if backend != "onnxruntime":
                raise ValueError(f"providers= is an onnxruntime option; backend {backend!r} does not take it")
            options["providers"] = providers
        if num_threads is not None and backend != "tensorrt":
            options["num_threads"] = num_threads
        be = cls_.from_path(path, **options)
        check_specs(be.specs, action_space=action_space, cameras=cameras, source=f"{backend} model at {path}")
        return cls(be, seed=seed, warmup=warmup)

    # ------------------------------------------------------------------ properties
    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def action_space(self) -> str:
        return self.specs.action_space.name

    @property
    def cameras(self) -> tuple[str, ...]:
        return self.specs.cameras

    @property
    def horizon(self) -> int:
        return self.specs.horizon

    # ------------------------------------------------------------------ BasePolicy
    def reset(self) -> None:
        """Start a new episode: the noise sequence restarts from ``seed``."""
        self.rng = np.random.default_rng(self.seed)

    def warmup(self, n: int = 1) -> None:
        """Run ``n`` steps on synthetic observations (noise from a throw-away generator)."""
        if n <= 0:
            return
        obs = synthetic_observations(self.specs, 1, seed=12345)
        rng = np.random.default_rng(0)
        for _ in range(n):
            self._run(obs, draw_noise(rng, 1, self.specs.horizon, self.specs.action_dim))

    def act(self, obs: Observation, noise: np.ndarray | None = None, prefix: np.ndarray | None = None,
            prefix_len: int = 0, soft_horizon: int = 0) -> ActionChunk:
        """The next action chunk for ``obs``; ``noise`` (1, H, A) overrides the policy's noise draw.

        ``prefix`` (H, A) in action units: the committed prefix for real-time chunking, its first
        ``prefix_len`` rows held, a soft mask up to row ``soft_horizon``.
        """
        rtc = None if prefix is None else {"prefix_actions": np.asarray(prefix)[None],
                                           "prefix_len": np.array([prefix_len]), "soft_horizon": np.array([soft_horizon])}
        return self.act_batch([obs], noise, rtc)[0]

    def act_batch(self, observations: Sequence[Observation], noise: np.ndarray | None = None,
                  prefix: dict[str, np.ndarray] | None = None) -> list[ActionChunk]:
        """One chunk per observation, computed as one batch (e.g. parallel evaluation envs); ``prefix``:
        ``prefix_actions`` (B, H, A) in action units, ``prefix_len`` and ``soft_horizon`` (B,) (see ``act``)."""
        b = len(observations)
        if noise is None:
            noise = draw_noise(self.rng, b, self.specs.horizon, self.specs.action_dim)
        noise = np.asarray(noise, dtype=np.float32)
        want = (b, self.specs.horizon, self.specs.action_dim)
        if noise.shape != want:
            raise ValueError(f"noise must have shape {want} (batch, horizon, action_dim), got {noise.shape}")
        actions, timings = self._run(observations, noise, prefix)
        return [ActionChunk(actions=actions[i], action_space=self.specs.action_space.name,
                            action_names=self.specs.action_names, dt=self.specs.dt, stamp=float(o.stamp),
                            timings=dict(timings)) for i, o in enumerate(observations)]

    def _run(self, observations: Sequence[Observation], noise: np.ndarray,
             prefix: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, dict[str, float]]:
        t0 = time.perf_counter()
        x = self.preprocessor(observations)
        t1 = time.perf_counter()
        if prefix is None:
            norm, stages = self.backend.infer(x, noise)  # (B, H, A)
        else:  # the committed prefix in the head's normalised units
            rtc = {**prefix, "prefix_actions": self.specs.action_stats.normalize(
                np.asarray(prefix["prefix_actions"], np.float64)).astype(np.float32)}
            norm, stages = self.backend.infer(x, noise, rtc)
        t2 = time.perf_counter()
        if not np.all(np.isfinite(norm)):
            bad = np.argwhere(~np.isfinite(norm))[0].tolist()
            raise FloatingPointError(f"{self.backend.name} backend returned a non-finite action at index {bad}")
        actions = self.preprocessor.unnormalize(norm)  # (B, H, A) raw units
        t3 = time.perf_counter()
        timings = {"preprocess": (t1 - t0) * 1e3, **stages, "model": (t2 - t1) * 1e3,
                   "postprocess": (t3 - t2) * 1e3, "total": (t3 - t0) * 1e3}
        return actions, timings

    def describe(self) -> dict[str, Any]:
        return {**self.backend.describe(), "action_space": self.action_space, "cameras": list(self.cameras),
                "horizon": self.horizon}
