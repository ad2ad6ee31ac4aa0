"""The scripted expert solves real LIBERO episodes (the tasks' real-target scenes) in both action spaces."""

from __future__ import annotations

import numpy as np
import pytest

from roboalign.sim.expert import PHASES, ExpertConfig, ScriptedExpert, narrowest_direction
from roboalign.spec.policy_io import BasePolicy, Observation

pytestmark = pytest.mark.sim


def _episode(env, expert, init_state):
    env.set_render(False)
    obs = env.reset(init_state=init_state)
    expert.reset()
    assert obs.extras["success"] is False
    for _ in range(env.config.max_steps):
        chunk = expert.act(obs)
        r = env.step(chunk.actions[0])
        obs = r.obs
        if r.done:
            break
    return r, chunk


def _check_phases(phases):
    order = [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p]
    assert order[:5] == ["approach", "descend", "grasp", "lift", "carry"], order
    assert "release" in order and set(order) <= set(PHASES)


@pytest.mark.parametrize("init_state", [0, 21])
def test_expert_solves_eef_delta(init_state):
    from libero_cache import get_env

    env = get_env("can_to_bowl", "eef_delta")
    expert = ScriptedExpert()
    assert isinstance(expert, BasePolicy)
    r, chunk = _episode(env, expert, init_state)
    assert r.success, f"expert failed init state {init_state}: phases {expert.phases[-5:]}"
    assert chunk.actions.shape == (1, 7) and chunk.action_space == "eef_delta" and chunk.dt == pytest.approx(0.05)
    assert len(expert.phases) == r.info["step"]
    _check_phases(expert.phases)
    # the object ended up inside the bowl's footprint
    lo, hi = r.obs.extras["target_aabb"]
    assert np.all(lo[:2] < r.obs.extras["object_pos"][:2]) and np.all(r.obs.extras["object_pos"][:2] < hi[:2])


def test_expert_solves_joint_position():
    from libero_cache import get_env

    env = get_env("bottle_to_basket", "joint_position")
    expert = ScriptedExpert(ExpertConfig(action_space="joint_position"))
    r, chunk = _episode(env, expert, 3)
    assert r.success
    assert chunk.actions.shape == (1, 8) and chunk.action_names[-1] == "gripper"
    assert set(expert.last_info["commands"]) == {"eef_delta", "joint_position"}
    _check_phases(expert.phases)


def test_expert_needs_privileged_extras():
    expert = ScriptedExpert()
    obs = Observation(images={}, state=np.zeros(8, np.float32), instruction="x")
    with pytest.raises(KeyError, match="object_corners"):
        expert.act(obs)
    extras = {k: np.zeros(3) for k in ("eef_pos", "eef_quat", "joint_pos", "gripper_width", "object_corners",
                                       "object_aabb", "target_aabb")}  # everything but the Jacobian
    obs = Observation(images={}, state=np.zeros(8, np.float32), instruction="x", extras=extras)
    with pytest.raises(KeyError, match=r"lacks privileged extras \['eef_jacobian'\]"):
        expert.act(obs)


def test_narrowest_direction():
    # a 2 cm x 6 cm box along y: fingers must close along x (angle 0), whatever the current angle
    pts = np.array([[x, y] for x in (-0.01, 0.01) for y in (-0.03, 0.03)])
    assert narrowest_direction(pts, current=1.5) == pytest.approx(0.0)
    rot = np.array([[np.cos(0.5), -np.sin(0.5)], [np.sin(0.5), np.cos(0.5)]])
    assert narrowest_direction(pts @ rot.T, current=0.0, step_deg=1.0, slack=0.0) == pytest.approx(0.5, abs=0.02)
    # a round object: keep the current direction (no wrist spin)
    circle = np.stack([np.cos(np.linspace(0, 6.28, 64)), np.sin(np.linspace(0, 6.28, 64))], 1) * 0.03
    assert narrowest_direction(circle, current=np.deg2rad(100), step_deg=5.0) == pytest.approx(np.deg2rad(100))
