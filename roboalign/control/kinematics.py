"""FR3 kinematics with pinocchio: forward kinematics, the TCP Jacobian and damped differential IK.

The model is built from Franka's published kinematic parameters (FR3 and Panda share them; Franka Robotics,
"Robot and interface specifications", modified DH after Craig): per joint ``a``, ``d``, ``alpha``, each joint a
rotation about its local z. The tool frame is the flange (d = 0.107 m) plus the Franka Hand's TCP (d = 0.1034 m,
rotated -45° about z), as franka_description's ``fr3_hand_tcp``. Only kinematics: no inertias are needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

# (a [m], d [m], alpha [rad]) of joints 1..7, modified DH (Craig): T_i = Rx(alpha) Tx(a) Rz(q_i) Tz(d)
FR3_DH = (
    (0.0, 0.333, 0.0),
    (0.0, 0.0, -np.pi / 2),
    (0.0, 0.316, np.pi / 2),
    (0.0825, 0.0, np.pi / 2),
    (-0.0825, 0.384, -np.pi / 2),
    (0.0, 0.0, np.pi / 2),
    (0.088, 0.0, np.pi / 2),
)
FR3_FLANGE_D = 0.107  # joint 7 -> flange along z [m]
FR3_HAND_TCP_D = 0.1034  # flange -> Franka Hand TCP along z [m]
SINGULAR_BAND = 0.05  # IK damping fades in below this smallest singular value of the TCP Jacobian


def _pin():
    try:
        import pinocchio
    except ImportError as e:  # pragma: no cover - pin is a project dependency
        raise ImportError("FR3 kinematics need pinocchio: pip install pin (it is in the project's dependencies; "
                          "run make setup)") from e
    return pinocchio


def _dh_placement(a: float, d: float, alpha: float):
    pin = _pin()
    rx = pin.SE3(pin.utils.rotate("x", alpha), np.zeros(3))
    return rx * pin.SE3(np.eye(3), np.array([a, 0.0, 0.0])) * pin.SE3(np.eye(3), np.array([0.0, 0.0, d]))


@dataclass(frozen=True)
class Pose:
    """A TCP pose in the robot base frame: position (3,) [m] and rotation (3, 3)."""

    position: np.ndarray
    rotation: np.ndarray


class FR3Kinematics:
    """FK, TCP Jacobian and one damped-least-squares IK step for the 7-joint FR3 arm."""

    def __init__(self, tcp: bool = True) -> None:
        pin = _pin()
        self.model = pin.Model()
        parent = 0
        for i, (a, d, alpha) in enumerate(FR3_DH, start=1):
            parent = self.model.addJoint(parent, pin.JointModelRZ(), _dh_placement(a, d, alpha), f"fr3_joint{i}")
        tool = FR3_FLANGE_D + (FR3_HAND_TCP_D if tcp else 0.0)
        rot = pin.utils.rotate("z", -np.pi / 4) if tcp else np.eye(3)
        frame = pin.Frame("tcp", parent, 0, pin.SE3(rot, np.array([0.0, 0.0, tool])), pin.FrameType.OP_FRAME)
        self.tcp_id = self.model.addFrame(frame)
        self.data = self.model.createData()

    @cached_property
    def nq(self) -> int:
        return int(self.model.nq)

    def _q(self, q: np.ndarray) -> np.ndarray:
        q = np.asarray(q, np.float64).reshape(-1)
        if q.shape != (self.nq,) or not np.all(np.isfinite(q)):
            raise ValueError(f"FR3 kinematics need {self.nq} finite joint positions, got {q.tolist()}")
        return q

    def fk(self, q: np.ndarray) -> Pose:
        """The TCP pose at joint positions ``q`` (7,)."""
        pin = _pin()
        pin.framesForwardKinematics(self.model, self.data, self._q(q))
        m = self.data.oMf[self.tcp_id]
        return Pose(m.translation.copy(), m.rotation.copy())

    def jacobian(self, q: np.ndarray) -> np.ndarray:
        """(6, 7) TCP Jacobian, rows [linear xyz; angular xyz], in the base frame at the TCP."""
        pin = _pin()
        return pin.computeFrameJacobian(self.model, self.data, self._q(q), self.tcp_id,
                                        pin.ReferenceFrame.LOCAL_WORLD_ALIGNED).copy()

    def ik_step(self, q: np.ndarray, twist: np.ndarray, dt: float, damping: float = 0.05,
                nullspace_target: np.ndarray | None = None, nullspace_gain: float = 0.0) -> np.ndarray:
        """Joint positions after following ``twist`` (6,) [m/s, rad/s] for ``dt`` s from ``q``; optional pull
        towards ``nullspace_target``. Damped least squares with the damping faded in only near a singularity
        (smallest singular value below ``SINGULAR_BAND``; Chiaverini 1997), so tracking is exact elsewhere and
        bounded near one."""
        q = self._q(q)
        v = np.asarray(twist, np.float64).reshape(6)
        if not np.all(np.isfinite(v)):
            raise ValueError(f"twist must be 6 finite values, got {v.tolist()}")
        J = self.jacobian(q)  # (6, 7)
        sigma_min = float(np.linalg.svd(J, compute_uv=False)[-1])
        lam2 = damping**2 * max(0.0, 1.0 - (sigma_min / SINGULAR_BAND) ** 2)
        JJt = J @ J.T + lam2 * np.eye(6)
        J_pinv = J.T @ np.linalg.solve(JJt, np.eye(6))  # (7, 6)
        qdot = J_pinv @ v
        if nullspace_target is not None and nullspace_gain > 0:
            qdot += (np.eye(self.nq) - J_pinv @ J) @ (nullspace_gain * (np.asarray(nullspace_target) - q))
        return q + qdot * dt
