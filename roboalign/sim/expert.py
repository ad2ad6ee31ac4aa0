"""Scripted expert for the LIBERO-Object pick-and-place tasks, driven by privileged object poses.

A finite-state machine over phases (:data:`PHASES`):

``approach``  fly above the object at a safe height, turning the gripper so its fingers close across
              the narrowest horizontal width of the object (found from the object's collision boxes).
``descend``   go straight down to the grasp height (a few cm below the object's top, never lower than
              just above the table).
``grasp``     close the gripper and wait for the fingers to settle.
``lift``      raise the object until its bottom clears the basket rim. If the object did not come up
              (missed grasp) the expert opens and retries from ``approach`` (at most ``max_retries``).
``carry``     move horizontally to above the basket centre.
``lower``     go down until the object's bottom is just above the rim.
``release``   open the gripper and wait.
``retreat``   move up and away; then ``done`` (hold still, gripper open).

It reads only ``obs.extras`` (filled by :class:`roboalign.sim.libero_env.LiberoEnv`): EEF pose, EEF
Jacobian, joint positions, gripper width and the object / target corner points and boxes. It emits
one-row :class:`ActionChunk` s in either action space: ``eef_delta`` (a P-controller on the EEF pose,
saturating at the OSC limits) or ``joint_position`` (the same Cartesian step mapped through a damped
least-squares inverse of the Jacobian, plus a null-space pull to the start posture; target = q + dq).
The phase of every step is recorded in :attr:`ScriptedExpert.phases` and with the step's targets in
:attr:`ScriptedExpert.last_info`; the alignment data builder turns phases + facts into reasoning text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from roboalign.sim.constants import OSC_POS_SCALE, OSC_ROT_SCALE, check_expert_extras
from roboalign.spec.action_space import GRIPPER_CLOSE, GRIPPER_OPEN, get_action_space
from roboalign.spec.policy_io import ActionChunk, Observation

PHASES = ("approach", "descend", "grasp", "lift", "carry", "lower", "release", "retreat", "done")


@dataclass(frozen=True)
class ExpertConfig:
    """Geometry and gains of the scripted expert (metres, radians, control steps)."""

    action_space: str = "eef_delta"
    hover_clearance: float = 0.06  # EEF above the object top while approaching
    grasp_depth: float = 0.03  # EEF this far below the object top when grasping
    min_grasp_height: float = 0.012  # ... but at least this far above the object's bottom
    rim_clearance: float = 0.04  # object bottom above the basket rim while carrying
    release_clearance: float = 0.015  # object bottom above the rim when releasing
    grasp_steps: int = 12
    release_steps: int = 10
    retreat_height: float = 0.08
    pos_gain: float = 2.0  # eef_delta: input = gain * error / 0.05
    rot_gain: float = 2.0
    max_rot_input: float = 0.4  # eef_delta: cap on the rotation input (~0.1 rad/step, wrist < 2.6 rad/s)
    max_step: float = 0.015  # joint_position: Cartesian step per control step [m]
    max_rot_step: float = 0.1  # joint_position: rotation per control step [rad]
    pos_tol: float = 0.008
    coarse_tol: float = 0.015
    rot_tol: float = 0.08
    max_phase_steps: int = 80  # give up waiting for a tolerance after this many steps in a phase
    max_retries: int = 2
    yaw_step_deg: float = 5.0

    def __post_init__(self) -> None:
        get_action_space(self.action_space)  # raises listing valid names
        if self.grasp_steps <= 0 or self.release_steps <= 0:
            raise ValueError("grasp_steps and release_steps must be > 0")


def _rotvec(r: np.ndarray) -> np.ndarray:
    """Axis-angle vector (3,) of a rotation matrix (3, 3)."""
    return Rotation.from_matrix(r).as_rotvec()


def _quat_to_mat(q_xyzw: np.ndarray) -> np.ndarray:
    return Rotation.from_quat(q_xyzw).as_matrix()


def _rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def narrowest_direction(points_xy: np.ndarray, current: float, step_deg: float = 5.0, slack: float = 0.004) -> float:
    """Angle in [0, π) of the horizontal direction across which ``points_xy`` (N, 2) is narrowest.

    Among directions within ``slack`` metres of the minimum width, the one closest to ``current``
    (mod π) is chosen so round objects do not make the wrist spin.
    """
    angles = np.deg2rad(np.arange(0.0, 180.0, step_deg))
    dirs = np.stack([np.cos(angles), np.sin(angles)], axis=1)  # (A, 2)
    proj = points_xy @ dirs.T  # (N, A)
    widths = proj.max(0) - proj.min(0)  # (A,)
    ok = widths <= widths.min() + slack
    dist = np.abs((angles - current + np.pi / 2) % np.pi - np.pi / 2)
    return float(angles[ok][np.argmin(dist[ok])])


@dataclass
class _Plan:
    grasp_xy: np.ndarray
    grasp_z: float
    hover_z: float
    carry_z: float
    release_z: float
    basket_xy: np.ndarray
    orient: np.ndarray  # (3, 3) desired EEF orientation
    object_bottom0: float
    width: float
    yaw: float  # wrist rotation about the vertical applied before the grasp [rad]


@dataclass(frozen=True)
class _Step:
    """Where the EEF is at this step, its orientation error and whether the phase ran out of steps."""

    eef: np.ndarray
    rot_err: float
    timeout: bool

    def near(self, target: np.ndarray, tol: float) -> bool:
        """The EEF is within ``tol`` of ``target`` (or the phase timed out)."""
        return bool(np.linalg.norm(target - self.eef) < tol) or self.timeout


@dataclass
class ScriptedExpert:
    """A ``BasePolicy`` that solves LIBERO-Object pick-and-place from privileged observations."""

    config: ExpertConfig = field(default_factory=ExpertConfig)

    def __post_init__(self) -> None:
        self.space = get_action_space(self.config.action_space)
        self.reset()

    # BasePolicy -----------------------------------------------------------------------------------
    def reset(self) -> None:
        self.phase = PHASES[0]
        self.phases: list[str] = []
        self.retries = 0
        self._phase_steps = 0
        self._plan: _Plan | None = None
        self._q0: np.ndarray | None = None
        self.last_info: dict[str, Any] = {}

    def act(self, obs: Observation) -> ActionChunk:
        t0 = time.perf_counter()
        ex = self._extras(obs)
        if self._plan is None:
            self._plan = self._make_plan(ex)
            self._q0 = ex["joint_pos"].copy()
        target, grip = self._update_phase(ex)
        commands = {"eef_delta": self._command(ex, target, grip, "eef_delta")}
        if self.space.name != "eef_delta":
            commands[self.space.name] = self._command(ex, target, grip, self.space.name)
        action = commands[self.space.name]  # (D,)
        self.phases.append(self.phase)
        self.last_info = {"phase": self.phase, "target_pos": target.copy(), "gripper": grip,
                          "retries": self.retries, "grasp_width": self._plan.width, "commands": commands}
        dt_ms = 1e3 * (time.perf_counter() - t0)
        return ActionChunk(actions=action[None].astype(np.float32), action_space=self.space.name,
                           action_names=self.space.names, dt=self.space.dt, stamp=obs.stamp,
                           timings={"preprocess": 0.0, "model": dt_ms, "total": dt_ms})

    @property
    def done(self) -> bool:
        return self.phase == "done"

    def plan_facts(self) -> dict[str, Any]:
        """The current plan as plain numbers (grasp point, heights, basket centre, wrist yaw, grasp width)."""
        if self._plan is None:
            return {}
        p = self._plan
        return {"grasp_xy": p.grasp_xy.tolist(), "grasp_z": p.grasp_z, "hover_z": p.hover_z, "carry_z": p.carry_z,
                "release_z": p.release_z, "basket_xy": p.basket_xy.tolist(), "wrist_yaw": p.yaw,
                "grasp_width": p.width, "retries": self.retries}

    # ----------------------------------------------------------------------------------------------
    @staticmethod
    def _extras(obs: Observation) -> dict[str, Any]:
        check_expert_extras(obs.extras)
        return obs.extras

    def _make_plan(self, ex: dict[str, Any]) -> _Plan:
        c = self.config
        corners = np.asarray(ex["object_corners"])  # (8K, 3)
        lo, hi = corners.min(0), corners.max(0)
        r_now = _quat_to_mat(ex["eef_quat"])
        close_axis = r_now[:, 0]  # Panda fingers close along the EEF x axis
        current = float(np.arctan2(close_axis[1], close_axis[0]) % np.pi)
        theta = narrowest_direction(corners[:, :2], current, c.yaw_step_deg)
        dirs = np.array([np.cos(theta), np.sin(theta)])
        proj = corners[:, :2] @ dirs
        yaw = (theta - current + np.pi / 2) % np.pi - np.pi / 2
        # Keep the gripper pointing straight down: rotate the current frame so z is exactly -z.
        down = r_now.copy()
        z_err = np.cross(down[:, 2], np.array([0.0, 0.0, -1.0]))
        ang = np.arcsin(np.clip(np.linalg.norm(z_err), 0.0, 1.0))
        if ang > 1e-6:
            down = Rotation.from_rotvec(z_err / np.linalg.norm(z_err) * ang).as_matrix() @ down
        grasp_z = max(hi[2] - c.grasp_depth, lo[2] + c.min_grasp_height)
        b_lo, b_hi = np.asarray(ex["target_aabb"])
        rim = b_hi[2]
        hold = grasp_z - lo[2]  # EEF height above the object's bottom while holding it
        return _Plan(
            grasp_xy=(lo[:2] + hi[:2]) / 2,
            grasp_z=float(grasp_z),
            hover_z=float(max(hi[2] + c.hover_clearance, ex["eef_pos"][2] - 0.02)),
            # the object's bottom clears the target's rim, and where it started (an object on a shelf above the tray)
            carry_z=float(max(rim, lo[2]) + c.rim_clearance + hold),
            release_z=float(rim + c.release_clearance + hold),
            basket_xy=(b_lo[:2] + b_hi[:2]) / 2,
            orient=_rot_z(yaw) @ down,
            object_bottom0=float(lo[2]),
            width=float(proj.max() - proj.min()),
            yaw=float(yaw),
        )

    def _set(self, phase: str) -> None:
        self.phase, self._phase_steps = phase, 0

    def _update_phase(self, ex: dict[str, Any]) -> tuple[np.ndarray, float]:
        """Advance the state machine; return (EEF target position (3,), gripper command)."""
        c, p = self.config, self._plan
        assert p is not None
        self._phase_steps += 1
        step = _Step(eef=np.asarray(ex["eef_pos"]), timeout=self._phase_steps > c.max_phase_steps,
                   rot_err=float(np.linalg.norm(_rotvec(p.orient @ _quat_to_mat(ex["eef_quat"]).T))))
        if self.phase in ("approach", "descend", "grasp", "lift"):
            return self._pick(step, ex)
        if self.phase in ("carry", "lower", "release", "retreat"):
            return self._place(step)
        return step.eef.copy(), GRIPPER_OPEN  # done: hold still

    def _pick(self, step: _Step, ex: dict[str, Any]) -> tuple[np.ndarray, float]:
        """``approach`` / ``descend`` / ``grasp`` / ``lift`` (a missed grasp restarts from ``approach``)."""
        c, p, eef = self.config, self._plan, step.eef
        assert p is not None
        if self.phase == "approach":
            t = np.array([*p.grasp_xy, p.hover_z])
            if np.linalg.norm(eef[:2] - p.grasp_xy) > 0.03 and eef[2] < p.hover_z - 0.03:
                t = np.array([*eef[:2], p.hover_z])  # below hover height and off target: rise first
            if step.near(t, c.pos_tol) and (step.rot_err < c.rot_tol or step.timeout):
                self._set("descend")
            return t, GRIPPER_OPEN
        t = np.array([*p.grasp_xy, p.grasp_z])
        if self.phase == "descend":
            if step.near(t, c.pos_tol):
                self._set("grasp")
            return t, GRIPPER_OPEN
        if self.phase == "grasp":
            if self._phase_steps >= c.grasp_steps:
                self._set("lift")
            return t, GRIPPER_CLOSE
        t = np.array([*p.grasp_xy, p.carry_z])  # lift
        lifted = float(np.asarray(ex["object_corners"])[:, 2].min()) > p.object_bottom0 + 0.02
        if eef[2] > p.grasp_z + 0.05 and not lifted and self.retries < c.max_retries:  # missed: reopen and retry
            self.retries += 1
            self._plan = self._make_plan(ex)
            self._set("approach")
            return np.array([*eef[:2], p.hover_z]), GRIPPER_OPEN
        if step.near(t, c.coarse_tol):
            self._set("carry")
        return t, GRIPPER_CLOSE

    def _place(self, step: _Step) -> tuple[np.ndarray, float]:
        """``carry`` / ``lower`` / ``release`` / ``retreat``, then ``done``."""
        c, p = self.config, self._plan
        assert p is not None
        if self.phase == "carry":
            t = np.array([*p.basket_xy, p.carry_z])
            if step.near(t, c.coarse_tol):
                self._set("lower")
            return t, GRIPPER_CLOSE
        t = np.array([*p.basket_xy, p.release_z])
        if self.phase == "lower":
            if step.near(t, c.coarse_tol):
                self._set("release")
            return t, GRIPPER_CLOSE
        if self.phase == "release":
            if self._phase_steps >= c.release_steps:
                self._set("retreat")
            return t, GRIPPER_OPEN
        t = np.array([*p.basket_xy, p.release_z + c.retreat_height])  # retreat
        if step.near(t, c.coarse_tol):
            self._set("done")
        return t, GRIPPER_OPEN

    def _command(self, ex: dict[str, Any], target: np.ndarray, grip: float, space: str) -> np.ndarray:
        """The action (D,) in ``space`` that moves the EEF toward ``target`` with the planned orientation."""
        c, p = self.config, self._plan
        assert p is not None
        pos_err = target - np.asarray(ex["eef_pos"])  # (3,)
        rot_err = _rotvec(p.orient @ _quat_to_mat(ex["eef_quat"]).T)  # (3,) world frame
        if self.phase == "done":
            pos_err, rot_err = np.zeros(3), np.zeros(3)
        if space == "eef_delta":
            a_pos = np.clip(c.pos_gain * pos_err / OSC_POS_SCALE, -1.0, 1.0)
            a_rot = np.clip(c.rot_gain * rot_err / OSC_ROT_SCALE, -c.max_rot_input, c.max_rot_input)
            return np.concatenate([a_pos, a_rot, [grip]])
        # joint_position: Cartesian step through the damped least-squares inverse Jacobian.
        n = np.linalg.norm(pos_err)
        dp = pos_err * min(1.0, c.max_step / n) if n > 0 else pos_err
        m = np.linalg.norm(rot_err)
        dw = rot_err * min(1.0, c.max_rot_step / m) if m > 0 else rot_err
        jac = np.asarray(ex["eef_jacobian"])  # (6, 7)
        lam = 1e-2
        j_pinv = jac.T @ np.linalg.inv(jac @ jac.T + lam**2 * np.eye(6))  # (7, 6)
        q = np.asarray(ex["joint_pos"])
        null = (np.eye(7) - j_pinv @ jac) @ (0.1 * (self._q0 - q))
        dq = j_pinv @ np.concatenate([dp, dw]) + null
        return np.concatenate([q + dq, [grip]])
