"""Simulation constants shared by the LIBERO wrapper, the expert, evaluation, benchmarks and the sim node."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Camera names used everywhere in roboalign (policy inputs, ROS topics, datasets) -> robosuite camera names.
CAMERAS: dict[str, str] = {"agentview": "agentview", "wrist": "robot0_eye_in_hand"}
DEFAULT_CAMERAS: tuple[str, ...] = ("agentview", "wrist")
SIM_CAMERA_SIZE = 128  # rendered square image size [px] of the sim cameras (LIBERO's datasets use 128² too)

# robosuite OSC_POSE limits: one unit of eef_delta input moves this far per control step (output_max).
OSC_POS_SCALE = 0.05  # m
OSC_ROT_SCALE = 0.5  # rad
# robosuite JOINT_POSITION output_max: the PD set point is at most this far from the current joints per step [rad]
# (LiberoEnv; `roboalign collect` and the sim node both use it, so the same commands move the arm the same way).
JOINT_MAX_DELTA = 0.5

# Privileged observation extras the scripted expert reads (LiberoEnv fills them; the sim node forwards them).
EXPERT_EXTRAS: tuple[str, ...] = ("eef_pos", "eef_quat", "eef_jacobian", "joint_pos", "gripper_width",
                                  "object_corners", "object_aabb", "target_aabb")


class MissingExtrasError(KeyError):
    """An observation lacks privileged extras the scripted expert needs."""

    def __str__(self) -> str:  # KeyError quotes its message; this one is a sentence
        return str(self.args[0]) if self.args else ""


def check_expert_extras(extras: Mapping[str, Any], where: str = "observation") -> None:
    """Raise :class:`MissingExtrasError` listing every :data:`EXPERT_EXTRAS` key absent from ``extras``."""
    missing = [k for k in EXPERT_EXTRAS if k not in extras]
    if missing:
        raise MissingExtrasError(f"scripted expert: {where} lacks privileged extras {missing} (needs "
                                 f"{', '.join(EXPERT_EXTRAS)}; LiberoEnv observations or the sim node's "
                                 "privileged topic carry them)")
