"""LIBERO environment wrapper: one LIBERO scene (any suite's task or our four tasks' scenes) as ``roboalign`` Observations.

What it adds over ``libero.libero.envs.OffScreenRenderEnv``:

* **Rendering on CPU, right way up.** Cameras ``agentview`` and ``wrist`` (robosuite's
  ``robot0_eye_in_hand``) are rendered offscreen after each control step at ``camera_size``² (default
  :data:`~roboalign.sim.constants.SIM_CAMERA_SIZE`) and flipped vertically (OpenGL rows are bottom-up; a vertical flip, not LIBERO's usual 180°
  rotation, gives the non-mirrored camera view). ``antialias=False`` turns off MuJoCo's 4× multisample
  offscreen buffer (≈2× faster in software GL; images differ by ~2/255 on average).
  ``render=False`` (or :meth:`LiberoEnv.set_render`) is the physics-only mode: no images at all.
* **Reproducible episodes.** ``reset(init_state=i)`` restores LIBERO's official init state ``i`` of the
  task (the ``.pruned_init`` files, loaded with ``torch.load(weights_only=True)``), then runs
  ``settle_steps`` no-op steps so objects come to rest (as the OpenVLA/openpi LIBERO evaluations do).
  ``reset(init_state=None, seed=s)`` uses LIBERO's random object placement seeded with ``s``.
* **Two action spaces** (``roboalign.spec.action_space``): ``eef_delta`` is passed to robosuite's
  ``OSC_POSE`` controller unchanged. ``joint_position`` rows are *absolute* joint targets q* (rad) +
  gripper; robosuite's ``JOINT_POSITION`` controller expects per-step deltas normalised to [-1, 1] and
  scaled by ``output_max``; its PD set point is ``q + delta``. The wrapper sends
  ``clip((g - q) / joint_max_delta, -1, 1)`` with q the current joint positions, ``output_max =
  joint_max_delta`` (default 0.5 rad) and the set point ``g = q* + (kd/kp) v*``, where
  ``v* = (q*_t - q*_{t-1}) / dt`` is the target velocity: this velocity feed-forward makes the PD track
  a stream of 20 Hz targets like a trajectory controller instead of lagging ~2 steps behind. Stiffness
  ``joint_kp`` defaults to 300 (robosuite's upper limit; its default 50 is too soft). Targets are
  clipped to the simulated Panda's joint limits; velocity/step limits are the safety layer's job.
* **State and privileged data every frame.** ``Observation.state`` is (8,) float32 = 7 joint positions
  [rad] + gripper opening [m] (names in :data:`STATE_NAMES`). ``extras`` holds the EEF pose, gripper
  finger positions, joint velocities, the (6, 7) EEF Jacobian, and privileged object data: pose of the task object and the
  target (basket), their world axis-aligned bounding boxes, all object positions, and ``success``.
  Quaternions are (x, y, z, w) like robosuite's.
* **Success** is LIBERO's BDDL goal for the task, checked after every step.
* **Tasks**: one of the four tasks on a scene set (``scenes``: ``targets``, their real targets, or the
  ``libero_object`` stand-ins; :mod:`roboalign.spec.tasks`), a LIBERO-Object object (``milk``), or any LIBERO
  task as ``<suite>/<index or name>`` (``libero_goal/3``; :mod:`roboalign.sim.suites`).

Importing this module loads nothing: LIBERO's config file, the assets link and ``MUJOCO_GL`` are set up
(:func:`~roboalign.sim.libero_setup.ensure_libero`) when the first env is built.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

try:  # numpy >= 2 (the name LIBERO's pickled init states were saved with is numpy 1's)
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct

from roboalign.sim.constants import CAMERAS, DEFAULT_CAMERAS, JOINT_MAX_DELTA, SIM_CAMERA_SIZE
from roboalign.sim.libero_setup import ensure_libero
from roboalign.sim.scenes import bddl_path, init_states_path
from roboalign.sim.suites import libero_task
from roboalign.spec.action_space import (
    GRIPPER_OPEN,
    PANDA_LIMITS,
    STATE_NAMES,
    ActionSpace,
    get_action_space,
)
from roboalign.spec.loader import build
from roboalign.spec.policy_io import Observation
from roboalign.spec.tasks import (
    LIBERO_OBJECT_OBJECTS,
    SCENE_SETS,
    SimTask,
    TaskError,
    libero_object_task,
    sim_task_set,
)

CONTROLLERS = {"eef_delta": "OSC_POSE", "joint_position": "JOINT_POSITION"}


@dataclass(frozen=True)
class LiberoEnvConfig:
    """Settings of one LIBERO scene.

    task: one of the four tasks (``roboalign.spec.tasks``) on the ``scenes`` set, any LIBERO-Object object
    (``milk``), or any LIBERO task as ``<suite>/<index or name>``.
    """

    task: str = "bottle_to_basket"
    camera_size: int = SIM_CAMERA_SIZE
    cameras: tuple[str, ...] = DEFAULT_CAMERAS
    action_space: str = "eef_delta"
    render: bool = True
    antialias: bool = True
    settle_steps: int = 10
    max_steps: int = 300
    joint_kp: float = 300.0
    joint_max_delta: float = JOINT_MAX_DELTA
    seed: int = 0
    scenes: str = "targets"

    def __post_init__(self) -> None:
        if self.scenes not in SCENE_SETS:
            raise ValueError(f"scenes {self.scenes!r}; valid: {', '.join(SCENE_SETS)}")
        resolve_sim_task(self.task, self.scenes)  # raises listing valid names
        if self.action_space not in CONTROLLERS:
            raise ValueError(f"action_space {self.action_space!r}; valid: {', '.join(CONTROLLERS)}")
        bad = [c for c in self.cameras if c not in CAMERAS]
        if bad:
            raise ValueError(f"unknown cameras {bad}; valid: {', '.join(CAMERAS)}")
        if not 16 <= self.camera_size <= 1024:
            raise ValueError(f"camera_size {self.camera_size} outside 16..1024")
        if self.settle_steps < 0 or self.max_steps <= 0:
            raise ValueError("settle_steps must be >= 0 and max_steps > 0")
        if not 0 < self.joint_kp <= 300:
            raise ValueError(f"joint_kp {self.joint_kp} outside (0, 300] (robosuite kp_limits)")
        if not 0 < self.joint_max_delta <= 0.5:  # robosuite's limit
            raise ValueError(f"joint_max_delta {self.joint_max_delta} outside (0, 0.5] rad")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LiberoEnvConfig:
        return build(cls, d, "LiberoEnvConfig")


class StepResult(NamedTuple):
    obs: Observation
    success: bool
    done: bool
    info: dict[str, Any]


def resolve_sim_task(name: str, scenes: str = "targets") -> tuple[str, SimTask]:
    """(task name, SimTask) for one of the four tasks, a LIBERO-Object object or ``<suite>/<task>``."""
    tasks = sim_task_set(scenes)
    try:
        t = tasks.get(name)
        return t.name, t.sim
    except TaskError:
        pass
    key = name.replace(" ", "_")
    if key in LIBERO_OBJECT_OBJECTS:
        return key, libero_object_task(key)
    if "/" in name:
        suite, task = name.split("/", 1)
        try:
            sim = libero_task(suite, task)
        except TaskError as e:
            raise ValueError(str(e)) from None
        return f"{suite}/{sim.problem}", sim
    raise ValueError(
        f"unknown sim task {name!r}; valid: {', '.join(tasks.names)}, a LIBERO-Object object "
        f"({', '.join(LIBERO_OBJECT_OBJECTS)}) or <suite>/<task index or name> (e.g. libero_goal/0)"
    )


def load_init_states(sim_task: SimTask) -> np.ndarray:
    """The init states (N, S) float64 of a task (LIBERO's official ones or our scene's), without unpickling."""
    path = init_states_path(sim_task)
    if not path.is_file():
        raise FileNotFoundError(f"init states of sim task {sim_task.problem!r} not found: {path}")
    if path.suffix == ".npy":
        return _checked_states(path, np.load(path, allow_pickle=False))
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is part of the project install
        raise ImportError("loading LIBERO init states needs torch (torch.load with weights_only=True)") from e

    allowed = [(_reconstruct, "numpy.core.multiarray._reconstruct"), np.ndarray, np.dtype, np.dtypes.Float64DType]
    with torch.serialization.safe_globals(allowed):
        states = torch.load(path, weights_only=True)
    return _checked_states(path, states)


def _checked_states(path: Path, states: Any) -> np.ndarray:
    states = np.asarray(states, dtype=np.float64)
    if states.ndim != 2 or len(states) == 0:
        raise ValueError(f"{path}: expected (N, S) init states, got shape {states.shape}")
    return states


def collision_corners(model: Any, data: Any, body_id: int) -> np.ndarray:
    """(8K, 3) world corners of the oriented boxes around the K collision geoms of a body (+ children)."""
    bodies = {body_id}
    for b in range(1, model.nbody):  # children are numbered after their parent
        if model.body_parentid[b] in bodies:
            bodies.add(b)
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    out = []
    for g in np.flatnonzero(np.isin(model.geom_bodyid, list(bodies))):
        if model.geom_contype[g] == 0 and model.geom_conaffinity[g] == 0:
            continue  # visual-only geom
        local = model.geom_aabb[g, :3] + model.geom_aabb[g, 3:] * signs  # (8, 3) in the geom frame
        out.append(data.geom_xpos[g] + local @ data.geom_xmat[g].reshape(3, 3).T)
    if not out:
        raise ValueError(f"body {body_id} has no collision geoms")
    return np.concatenate(out)


def _quat_wxyz_to_xyzw(q: np.ndarray) -> np.ndarray:
    return np.array([q[1], q[2], q[3], q[0]], dtype=np.float64)


class LiberoEnv:
    """One LIBERO scene with the roboalign observation/action conventions (see module doc).

    ``sim_task`` (e.g. from a checkpoint's ``tasks.json``) overrides the scene ``config.task`` names.
    """

    def __init__(self, config: LiberoEnvConfig | None = None, sim_task: SimTask | None = None,
                 **overrides: Any) -> None:
        cfg = config or LiberoEnvConfig()
        if overrides:
            cfg = LiberoEnvConfig.from_dict({**cfg.to_dict(), **overrides})
        self.config = cfg
        self.task_name, self.sim_task = resolve_sim_task(cfg.task, cfg.scenes)
        if sim_task is not None:
            self.sim_task = sim_task
        self.action_space: ActionSpace = get_action_space(cfg.action_space)
        self._render_on = cfg.render
        ensure_libero()  # config file, assets link and MUJOCO_GL must exist before robosuite/libero load
        from libero.libero.envs import OffScreenRenderEnv

        bddl = bddl_path(self.sim_task)
        self._libero = OffScreenRenderEnv(
            bddl_file_name=str(bddl),
            controller=CONTROLLERS[cfg.action_space],
            camera_names=[CAMERAS[c] for c in cfg.cameras],
            camera_heights=cfg.camera_size,
            camera_widths=cfg.camera_size,
            use_camera_obs=False,  # we render ourselves after each step (or not at all)
            hard_reset=False,  # keep one model; init states set the full sim state anyway
            ignore_done=True,
            horizon=10**6,
        )
        self.env = self._libero.env  # the robosuite/LIBERO task env
        self.instruction = self.sim_task.instruction
        self.state_names = STATE_NAMES
        goal = tuple(str(x).lower() for x in self.env.parsed_problem["goal_state"][0])
        if self.sim_task.goal and goal != self.sim_task.goal:
            raise ValueError(f"task spec goal {self.sim_task.goal} differs from LIBERO's {goal} for {bddl.name}")
        self.robot = self.env.robots[0]
        if cfg.action_space == "joint_position":
            cc = self.robot.controller_config
            cc["kp"] = cfg.joint_kp
            cc["output_max"], cc["output_min"] = cfg.joint_max_delta, -cfg.joint_max_delta
            self.robot._load_controller()
        if not cfg.antialias:
            self._disable_multisampling()
        self._init_states: np.ndarray | None = None
        self._prev_target: np.ndarray | None = None
        # robosuite's joint PD: tau = M (kp (goal - q) - kd dq), kd = 2 sqrt(kp) (critically damped).
        # Shifting the goal by (kd / kp) * v_target turns it into kp (q* - q) + kd (v* - dq): tracking a
        # moving target without the ~2-step lag of a plain PD.
        self._joint_ff = 2.0 / np.sqrt(cfg.joint_kp)
        self.step_count = 0
        self.init_state: int | None = None
        self._success = False
        self._primed = False  # see reset()

    # ----------------------------------------------------------------------------------------------
    @property
    def dt(self) -> float:
        return 1.0 / float(self.env.control_freq)

    @property
    def init_states(self) -> np.ndarray:
        if self._init_states is None:
            self._init_states = load_init_states(self.sim_task)
        return self._init_states

    @property
    def num_init_states(self) -> int:
        return int(len(self.init_states))

    @property
    def rendering(self) -> bool:
        return self._render_on

    def set_render(self, on: bool) -> None:
        """Switch between rendering steps and physics-only steps (no images)."""
        self._render_on = bool(on)

    def _disable_multisampling(self) -> None:
        ctx = self.env.sim._render_context_offscreen
        self.env.sim.model._model.vis.quality.offsamples = 0
        ctx.gl_ctx.make_current()
        ctx.con.free()
        ctx._set_mujoco_context_and_buffers()

    # ----------------------------------------------------------------------------------------------
    def reset(self, init_state: int | None = 0, seed: int | None = None) -> Observation:
        """Start an episode from LIBERO's init state ``init_state`` (or random placement if None).

        The same (init state, seed) gives the same episode whatever ran before in this env: the very first
        reset of a new LIBERO env lands ~4e-4 rad away from every later one (measured), so a new env
        resets once more before its first episode; a resumed ``collect`` redoes an episode exactly.
        """
        if not self._primed:
            self._primed = True
            self._reset_once(init_state, seed)
        return self._reset_once(init_state, seed)

    def _reset_once(self, init_state: int | None, seed: int | None) -> Observation:
        seed = self.config.seed if seed is None else seed
        self._libero.seed(seed)
        self._libero.reset()
        if init_state is not None:
            n = self.num_init_states
            if not 0 <= init_state < n:
                raise IndexError(f"init_state {init_state} outside 0..{n - 1} for {self.sim_task.problem}")
            self._libero.set_init_state(self.init_states[init_state])
        self.init_state = init_state
        self.robot.controller.reset_goal()
        hold = self._hold_action()
        for _ in range(self.config.settle_steps):
            self.env.step(hold)
        self.step_count = 0
        self._prev_target = None
        self._success = self.sim_task.check_success(self.env)
        return self.observe()

    def _hold_action(self) -> np.ndarray:
        arm = np.zeros(self.robot.controller.control_dim)
        return np.concatenate([arm, [GRIPPER_OPEN]])

    def to_robosuite(self, action: np.ndarray) -> np.ndarray:
        """Convert one row of the configured action space to robosuite's controller input (8,) or (7,)."""
        a = self.action_space.validate(action, where=f"{self.action_space.name} action")
        if a.ndim != 1:
            raise ValueError(f"step() takes one action row (D,), got {a.shape}; execute chunks row by row")
        if self.action_space.name == "eef_delta":
            return np.clip(a.astype(np.float64), -1.0, 1.0)
        q_target = PANDA_LIMITS.clip(a[:7].astype(np.float64))
        q = self.robot.sim.data.qpos[self.robot._ref_joint_pos_indexes]
        prev = q if self._prev_target is None else self._prev_target
        v_target = (q_target - prev) / self.dt  # target velocity from consecutive targets
        self._prev_target = q_target
        goal = q_target + self._joint_ff * v_target  # velocity feed-forward through the PD set point
        delta = np.clip((goal - q) / self.config.joint_max_delta, -1.0, 1.0)
        return np.concatenate([delta, [np.clip(a[7], -1.0, 1.0)]])

    def step(self, action: np.ndarray) -> StepResult:
        """Execute one action row; returns (obs, success, done, info)."""
        t0 = time.perf_counter()
        self.env.step(self.to_robosuite(action))
        t1 = time.perf_counter()
        self.step_count += 1
        self._success = self.sim_task.check_success(self.env)
        obs = self.observe()
        t2 = time.perf_counter()
        done = self._success or self.step_count >= self.config.max_steps
        info = {"physics_ms": 1e3 * (t1 - t0), "render_ms": 1e3 * (t2 - t1), "step": self.step_count}
        return StepResult(obs, self._success, done, info)

    def check_success(self) -> bool:
        return self.sim_task.check_success(self.env)

    # ----------------------------------------------------------------------------------------------
    def render(self) -> dict[str, np.ndarray]:
        """Camera name -> (H, W, 3) uint8 RGB, right way up."""
        s = self.config.camera_size
        sim = self.env.sim
        return {c: np.ascontiguousarray(sim.render(camera_name=CAMERAS[c], width=s, height=s)[::-1])
                for c in self.config.cameras}

    def robot_state(self) -> dict[str, np.ndarray]:
        data = self.env.sim.data
        r = self.robot
        q = np.array(data.qpos[r._ref_joint_pos_indexes], dtype=np.float64)
        qd = np.array(data.qvel[r._ref_joint_vel_indexes], dtype=np.float64)
        fingers = np.array(data.qpos[r._ref_gripper_joint_pos_indexes], dtype=np.float64)
        eef_site = r.eef_site_id
        eef_pos = np.array(data.site_xpos[eef_site], dtype=np.float64)
        import mujoco
        from robosuite.utils.transform_utils import mat2quat

        eef_quat = mat2quat(np.array(data.site_xmat[eef_site]).reshape(3, 3))  # xyzw
        model = self.env.sim.model._model
        jacp, jacr = np.zeros((3, model.nv)), np.zeros((3, model.nv))
        mujoco.mj_jacSite(model, data._data, jacp, jacr, eef_site)
        jac = np.concatenate([jacp, jacr])[:, r._ref_joint_vel_indexes]  # (6, 7) world-frame EEF Jacobian
        return {"joint_pos": q, "joint_vel": qd, "gripper_qpos": fingers,
                "gripper_width": np.array([fingers[0] - fingers[1]]), "eef_pos": eef_pos, "eef_quat": eef_quat,
                "eef_jacobian": jac}

    def privileged(self) -> dict[str, Any]:
        """Object poses and boxes from the simulator (for the scripted expert and analysis only)."""
        env, data, model = self.env, self.env.sim.data, self.env.sim.model._model
        out: dict[str, Any] = {"object_name": self.sim_task.object_name, "target_name": self.sim_task.target_name}
        for key, name in (("object", self.sim_task.object_name), ("target", self.sim_task.target_name)):
            if name not in env.obj_body_id:
                continue  # a task without one object -> target pair (e.g. "open the drawer"): no expert data
            bid = env.obj_body_id[name]
            out[f"{key}_pos"] = np.array(data.body_xpos[bid], dtype=np.float64)
            out[f"{key}_quat"] = _quat_wxyz_to_xyzw(data.body_xquat[bid])
            corners = collision_corners(model, data._data, bid)  # (8K, 3)
            out[f"{key}_aabb"] = np.stack([corners.min(0), corners.max(0)])  # (2, 3) world [min, max]
            if key == "object":
                out["object_corners"] = corners
        out["object_positions"] = {n: np.array(data.body_xpos[b], dtype=np.float64)
                                   for n, b in env.obj_body_id.items() if n in env.objects_dict}
        return out

    def observe(self) -> Observation:
        rs = self.robot_state()
        state = np.concatenate([rs["joint_pos"], rs["gripper_width"]]).astype(np.float32)  # (8,)
        extras = {**rs, **self.privileged(), "success": self._success, "step": self.step_count,
                  "init_state": self.init_state, "task": self.task_name}
        images = self.render() if self._render_on else {}
        return Observation(images=images, state=state, instruction=self.instruction,
                           stamp=self.step_count * self.dt, extras=extras)

    def close(self) -> None:
        if getattr(self, "_libero", None) is not None:
            try:
                self._libero.close()
            finally:
                self._libero = None

    def __enter__(self) -> LiberoEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
