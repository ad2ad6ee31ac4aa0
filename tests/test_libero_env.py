"""Real LIBERO scenes (the tasks' real-target scenes, LIBERO suites): observations, resets, both action spaces."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def env():
    from libero_cache import get_env

    return get_env("can_to_bowl", "eef_delta")  # shared with test_expert (each scene costs ~2 GB)


@pytest.fixture(scope="module")
def joint_env():
    from libero_cache import get_env

    return get_env("bottle_to_basket", "joint_position")


def test_observation_contents(env):
    env.set_render(True)
    obs = env.reset(init_state=0)
    assert set(obs.images) == {"agentview", "wrist"}
    for im in obs.images.values():
        assert im.shape == (64, 64, 3) and im.dtype == np.uint8 and im.std() > 5
    assert obs.state.shape == (8,) and obs.state.dtype == np.float32
    np.testing.assert_allclose(obs.state[:7], obs.extras["joint_pos"], atol=1e-6)
    assert 0.0 < obs.state[7] < 0.09  # gripper opening in metres
    assert obs.instruction == "pick up the tomato sauce and put it in the bowl"
    ex = obs.extras
    assert ex["object_name"] == "tomato_sauce_1" and ex["target_name"] == "akita_black_bowl_1"
    assert ex["eef_pos"].shape == (3,) and ex["eef_quat"].shape == (4,) and ex["eef_jacobian"].shape == (6, 7)
    lo, hi = ex["object_aabb"]
    assert np.all(lo <= ex["object_pos"]) and np.all(ex["object_pos"] <= hi)
    assert ex["success"] is False and env.check_success() is False


def test_images_are_right_way_up(env):
    """The wrist camera looks down past the gripper: its grey fingers fill the bottom rows, the brown table the top."""
    env.set_render(True)
    wrist = env.reset(init_state=0).images["wrist"].astype(np.float32)
    red_minus_blue = wrist[..., 0] - wrist[..., 2]  # (H, W): ~0 on the grey gripper, ~40 on the wooden table
    assert red_minus_blue[-6:].mean() < 5.0  # bottom band: the gripper
    assert red_minus_blue[:8].mean() > 15.0  # top band: the table (both fail if the image were flipped)


def test_init_states_are_reproducible(env):
    env.set_render(False)
    a = env.reset(init_state=5)
    b = env.reset(init_state=5)
    np.testing.assert_allclose(a.state, b.state, atol=1e-9)
    np.testing.assert_allclose(a.extras["target_pos"], b.extras["target_pos"], atol=1e-9)
    c = env.reset(init_state=6)
    assert np.abs(c.extras["target_pos"] - a.extras["target_pos"]).max() > 1e-3  # another layout
    assert env.num_init_states == 50
    with pytest.raises(IndexError, match="0..49"):
        env.reset(init_state=50)


def test_eef_delta_moves_the_end_effector(env):
    env.set_render(False)
    obs = env.reset(init_state=0)
    z0, x0 = obs.extras["eef_pos"][2], obs.extras["eef_pos"][0]
    for _ in range(5):
        obs = env.step(np.array([0, 0, 1.0, 0, 0, 0, -1.0])).obs
    assert obs.extras["eef_pos"][2] > z0 + 0.02
    for _ in range(5):
        obs = env.step(np.array([1.0, 0, 0, 0, 0, 0, -1.0])).obs
    assert obs.extras["eef_pos"][0] > x0 + 0.02
    env.set_render(True)
    r = env.step(np.zeros(7))
    assert r.obs.images["agentview"].shape == (64, 64, 3) and not r.done and r.info["step"] == 11
    with pytest.raises(ValueError, match="last dimension must be 7"):
        env.step(np.zeros(8))


def test_joint_position_tracks_absolute_targets(joint_env):
    joint_env.set_render(False)
    obs = joint_env.reset(init_state=0)
    q0 = obs.state[:7].astype(np.float64)
    target = q0 + np.array([0.1, 0.08, 0.0, 0.1, 0.0, -0.1, -0.15])  # a step (torque limits slow big ones)
    errs = [np.abs(q0 - target).max()]
    for _ in range(12):
        obs = joint_env.step(np.concatenate([target, [-1.0]])).obs
        errs.append(np.abs(obs.state[:7] - target).max())
    assert errs[1] < errs[0] and errs[-1] < 0.01, errs
    # a moving target stream (20 Hz) is followed closely, not with a lag of several steps
    q = obs.state[:7].astype(np.float64)
    lag = []
    for k in range(1, 11):
        tgt = q + 0.03 * k * np.array([1, 0, 0, 0, 0, 0, 1.0])
        obs = joint_env.step(np.concatenate([tgt, [1.0]])).obs
        lag.append(np.abs(obs.state[:7] - tgt).max())
    assert max(lag[3:]) < 0.03, lag  # a plain PD (no feed-forward) lags ~0.054 rad here
    assert obs.state[7] < 0.07  # gripper closing


def test_config_validation():
    from roboalign.sim.libero_env import LiberoEnvConfig

    with pytest.raises(ValueError, match="bottle_to_basket"):
        LiberoEnvConfig(task="stack_blocks")
    with pytest.raises(ValueError, match="eef_delta, joint_position"):
        LiberoEnvConfig(action_space="torque")
    with pytest.raises(ValueError, match="agentview, wrist"):
        LiberoEnvConfig(cameras=("frontview",))
    with pytest.raises(ValueError, match="targets, libero_object"):
        LiberoEnvConfig(scenes="kitchen")
    cfg = LiberoEnvConfig(task="milk", camera_size=96)
    assert LiberoEnvConfig.from_dict(cfg.to_dict()) == cfg


def test_task_names_resolve_to_scenes():
    from roboalign.sim.libero_env import resolve_sim_task
    from roboalign.sim.scenes import bddl_path, init_states_path

    name, sim = resolve_sim_task("box_to_plate")
    assert (name, sim.suite, sim.target_name) == ("box_to_plate", "roboalign", "plate_1")
    assert bddl_path(sim).parent.name == "scenes" and init_states_path(sim).suffix == ".pruned_init"
    assert resolve_sim_task("box_to_plate", "libero_object")[1].problem == \
        "pick_up_the_cream_cheese_and_place_it_in_the_basket"
    assert resolve_sim_task("can_to_bowl")[1].suite == "roboalign"
    assert init_states_path(resolve_sim_task("can_to_bowl")[1]).is_file()  # our own init states ship with the scene
    name, sim = resolve_sim_task("libero_goal/put_the_cream_cheese_in_the_bowl")
    assert name == "libero_goal/put_the_cream_cheese_in_the_bowl"
    assert (sim.object_name, sim.target_name) == ("cream_cheese_1", "akita_black_bowl_1")
    assert resolve_sim_task("libero_10/0")[1].object_name == ""  # two goals: no single object -> target pair
    with pytest.raises(ValueError, match="0: open_the_middle_drawer_of_the_cabinet"):
        resolve_sim_task("libero_goal/open the fridge")
    with pytest.raises(ValueError, match="libero_spatial, libero_object, libero_goal, libero_10, libero_90"):
        resolve_sim_task("libero_100/0")


def test_import_sets_nothing_up(tmp_path):
    """Importing the wrapper writes no file and no environment variable; the first env does (ensure_libero)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    env["LIBERO_CONFIG_PATH"] = str(tmp_path / "cfg")
    code = ("import os, sys; before = dict(os.environ); import roboalign.sim.libero_env; "
            "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items()); "
            "assert 'libero' not in sys.modules and 'mujoco' not in sys.modules, 'imported LIBERO'")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    assert not (tmp_path / "cfg").exists()


def test_setup_is_idempotent_and_complete(tmp_path):
    from roboalign.sim import libero_setup as ls

    root = ls.libero_root()
    actions: list[str] = []
    ls._write_config(tmp_path, root, actions)
    assert actions == [f"wrote {tmp_path / 'config.yaml'}"]
    ls._write_config(tmp_path, root, actions)
    assert len(actions) == 1  # unchanged config is not rewritten
    import yaml

    cfg = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert cfg["bddl_files"] == str(root / "bddl_files")
    assets = root / "assets"
    assert assets.is_dir() and (assets / "scenes").is_dir()
    report = ls.ensure_libero()
    assert report.mujoco_gl in ("egl", "osmesa") and report.assets == assets


def test_setup_names_missing_packages():
    from roboalign.sim import libero_setup as ls

    with pytest.raises(ls.LiberoSetupError, match="pip install --no-deps not-a-package"):
        ls._package_dir("roboalign_no_such_module", "not-a-package")
