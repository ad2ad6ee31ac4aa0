"""The interface every inference backend implements, and where a backend finds its model files.

A backend turns pre-processed inputs (:class:`~roboalign.runtime.preprocess.ModelInputs`) and a noise
sample into a normalised action chunk, and reports how long each stage took. It also carries the specs and
the pre-processor that belong to its model, so :class:`~roboalign.runtime.policy.Policy` can stay the same
for every backend. Backends are separate classes (torch, onnxruntime, tensorrt) held together by parity
tests, not branches inside one class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from roboalign.runtime.checkpoint_specs import RuntimeSpecs
from roboalign.runtime.preprocess import ModelInputs, Preprocessor
from roboalign.spec.folder_kind import wrong_kind

EXPORT_SUBDIR = "onnx"  # default export folder inside a checkpoint folder
STAGES = ("vision", "llm", "head")


@runtime_checkable
class InferenceBackend(Protocol):
    """What :class:`~roboalign.runtime.policy.Policy` needs from a backend."""

    name: str
    specs: RuntimeSpecs
    preprocessor: Preprocessor

    def infer(self, x: ModelInputs, noise: np.ndarray,
              prefix: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, dict[str, float]]:
        """Normalised actions (B, H, A) float32 for ``x`` and ``noise`` (B, H, A); stage timings in ms.
        ``prefix``: real-time chunking's ``prefix_actions`` (B, H, A) normalised, ``prefix_len`` and
        ``soft_horizon`` (B,)."""

    def describe(self) -> dict[str, Any]:
        """Human-readable facts (device, providers, threads, files) for logs and benchmarks."""


def resolve_export_dir(path: str | Path) -> Path:
    """An export folder (holding ``manifest.json``): ``path`` itself or ``path/onnx`` of a checkpoint."""
    path = Path(path)
    for cand in (path, path / EXPORT_SUBDIR):
        if (cand / "manifest.json").is_file():
            return cand
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    raise FileNotFoundError(f"no ONNX export at {path} (no manifest.json in it or in {path / EXPORT_SUBDIR}); create "
                            f"one with `roboalign export --checkpoint <checkpoint> --out {path / EXPORT_SUBDIR}`"
                            f"{wrong_kind(path, 'export')}")
