"""Which policy is live, in words an operator reads at a glance (no rclpy: files only)."""

from __future__ import annotations

import json
from pathlib import Path

EXPERT = "scripted expert (simulation only: it reads the objects' true poses)"
UNTRAINED = "tiny untrained model: it will not succeed"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def checkpoint_config(checkpoint: str) -> dict:
    """The VLA config of a checkpoint folder, or of the checkpoint an ONNX export names in its manifest."""
    if not checkpoint:
        return {}
    folder = Path(checkpoint)
    config = _read_json(folder / "config.json")
    if config:
        return config
    source = _read_json(folder / "manifest.json").get("checkpoint", "")
    return _read_json(Path(source) / "config.json") if source else {}


def describe_policy(backend: str, checkpoint: str) -> str:
    """One line: the expert, an untrained model, or a trained checkpoint and where it came from."""
    if not backend:
        return "no policy status yet (is policy_node running?)"
    if backend == "expert":
        return EXPERT
    config = checkpoint_config(checkpoint)
    source = str(config.get("backbone_source", ""))
    if "random init" in source:
        return f"{UNTRAINED} ({backend}, {checkpoint})"
    if not config:
        return f"{backend} model from {checkpoint or '(no checkpoint)'}: no config.json found, training unknown"
    name = Path(checkpoint).name or checkpoint
    return f"trained model {name} ({backend}; backbone: {source or config.get('backbone_family', '?')})"
