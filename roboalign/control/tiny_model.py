"""A tiny joint-position VLA exported to ONNX, for the ROS demo, the ROS tests and ``roboalign bench ros``.

Same architecture as the CPU test VLA (tiny Qwen2.5-VL read at its last layer + tiny flow-matching head,
cameras agentview + wrist, horizon 16) but for the ``joint_position`` action space the bridge executes,
with random weights. Its normalisation stats are centred on LIBERO's start posture with a small spread,
so its (meaningless) chunks are joint targets near where the simulated arm starts: the whole pipeline
(images -> ONNX Runtime -> chunk -> safety -> robot) runs for real without a trained model.
Built once per folder (``ensure_tiny_export``): about half a minute on two cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from roboalign.spec.action_space import get_action_space
from roboalign.spec.normalization import NormStats

# LIBERO-Object's robot start posture (Panda), from its init states.
LIBERO_START_Q = np.array([0.0, 0.18, 0.0, -2.44, 0.0, 2.62, 0.79])
MANIFEST = "manifest.json"


def make_tiny_joint_checkpoint(path: str | Path, seed: int = 0, spread: float = 0.05) -> Path:
    """A random-weight tiny joint-position VLA checkpoint folder."""
    from roboalign.models.action_head import ActionHeadConfig
    from roboalign.models.backbone import build_tiny_backbone
    from roboalign.models.vla import build_vla, save_vla

    rng = np.random.default_rng(seed)
    space = get_action_space("joint_position")
    q = LIBERO_START_Q + rng.normal(0.0, spread, size=(512, 7))  # (N, 7)
    grip = rng.choice([-1.0, 1.0], size=(512, 1))
    actions = NormStats.from_data(np.hstack([q, grip]), names=space.names)
    state = NormStats.from_data(np.hstack([q, rng.uniform(0.0, 0.08, size=(512, 1))]),
                                names=[*space.names[:7], "gripper_width"])
    backbone = build_tiny_backbone("qwen2_5_vl")
    head = ActionHeadConfig.tiny(action_dim=space.dim, state_dim=8, backbone_dim=backbone.hidden_size,
                                 backbone_layer=max(backbone.num_layers - 1, 0))
    vla = build_vla(backbone, head, actions, state, space, backbone_source="tiny (random init)", seed=seed)
    return save_vla(vla, path)


def ensure_tiny_export(folder: str | Path, seed: int = 0) -> Path:
    """``folder/export`` with the ONNX export of the tiny joint VLA (built if missing or incomplete)."""
    folder = Path(folder)
    export = folder / "export"
    if (export / MANIFEST).is_file():
        try:
            json.loads((export / MANIFEST).read_text())
            return export
        except json.JSONDecodeError:
            pass  # a half-written earlier build: rebuild
    from roboalign.export.onnx_export import export_checkpoint

    ckpt = make_tiny_joint_checkpoint(folder / "checkpoint", seed=seed)
    export_checkpoint(ckpt, export)
    return export
