"""Episode files, dataset folders, normalisation stats, the LIBERO HDF5 reader and resumable collection."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from roboalign.data import (
    ChunkDataset,
    CorruptEpisodeError,
    Episode,
    EpisodeDataset,
    read_episode,
    read_libero_hdf5,
    validate_dir,
    write_episode,
)
from roboalign.spec.action_space import STATE_NAMES
from roboalign.spec.normalization import NormStats


def make_episode(rng, task="bottle_to_basket", t=12, success=True) -> Episode:
    q = np.cumsum(rng.normal(0, 0.02, (t + 1, 7)), axis=0).astype(np.float32)  # (T+1, 7)
    grip = np.where(np.arange(t) < t // 2, -1.0, 1.0).astype(np.float32)
    state = np.concatenate([q[:-1], rng.uniform(0, 0.08, (t, 1))], axis=1).astype(np.float32)
    phases = ["approach"] * (t // 3) + ["grasp"] * (t // 3) + ["lift"] * (t - 2 * (t // 3))
    return Episode(
        task=task,
        instruction=f"instruction for {task}",
        success=success,
        images={c: rng.integers(0, 256, (t, 16, 16, 3), dtype=np.uint8) for c in ("agentview", "wrist")},
        state=state,
        actions={
            "eef_delta": np.concatenate([rng.uniform(-1, 1, (t, 6)), grip[:, None]], 1).astype(np.float32),
            "joint_position": np.concatenate([q[1:], grip[:, None]], 1),
        },
        phases=phases,
        robot={"eef_pos": rng.normal(size=(t, 3)).astype(np.float32)},
        privileged={"object_pos": rng.normal(size=(t, 3)).astype(np.float32),
                    "object_aabb": rng.normal(size=(t, 2, 3)).astype(np.float32)},
        final_state=np.concatenate([q[-1], [0.01]]).astype(np.float32),
        meta={"init_state": 3, "seed": 7, "state_names": list(STATE_NAMES)},
    )


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    eps = []
    for task in ("bottle_to_basket", "can_to_bowl"):
        for k in range(5):
            ep = make_episode(rng, task, t=10 + k, success=(k != 4))
            write_episode(tmp_path / "episodes" / f"{task}_{k:05d}.hdf5", ep)
            eps.append(ep)
    return tmp_path, eps


def test_roundtrip(tmp_path):
    ep = make_episode(np.random.default_rng(1))
    p = write_episode(tmp_path / "e.hdf5", ep)
    assert not list(tmp_path.glob("*.tmp"))
    got = read_episode(p)
    assert (got.task, got.instruction, got.success, got.meta, got.phases) == (
        ep.task, ep.instruction, ep.success, ep.meta, ep.phases)
    for group in ("images", "actions", "robot", "privileged"):
        assert set(getattr(got, group)) == set(getattr(ep, group))
        for k in getattr(ep, group):
            np.testing.assert_array_equal(getattr(got, group)[k], getattr(ep, group)[k])
    np.testing.assert_array_equal(got.state, ep.state)
    np.testing.assert_array_equal(got.final_state, ep.final_state)
    assert read_episode(p, images=False).images == {}


def test_action_chunks_pad_with_hold(tmp_path):
    ep = make_episode(np.random.default_rng(2), t=6)
    a, m = ep.action_chunk(4, 4, "joint_position")  # rows 4, 5, then 2 padded
    assert a.shape == (4, 8) and m.tolist() == [True, True, False, False]
    np.testing.assert_array_equal(a[2], ep.actions["joint_position"][5])  # absolute: repeat last target
    d, _ = ep.action_chunk(4, 4, "eef_delta")
    np.testing.assert_array_equal(d[3, :6], 0.0)  # delta: zero motion ...
    assert d[3, 6] == ep.actions["eef_delta"][5, 6]  # ... gripper kept
    chunks, masks = ep.action_chunks("eef_delta", 3)
    assert chunks.shape == (6, 3, 7) and masks.sum() == 6 + 5 + 4
    np.testing.assert_array_equal(chunks[1, 1], ep.actions["eef_delta"][2])
    with pytest.raises(KeyError, match="eef_delta"):
        ep.action_chunk(0, 2, "torque")


def test_episode_validation():
    rng = np.random.default_rng(3)
    ep = make_episode(rng)
    with pytest.raises(ValueError, match="steps"):
        Episode(ep.task, ep.instruction, True, ep.images, ep.state[:-1], ep.actions)
    with pytest.raises(ValueError, match="uint8"):
        Episode(ep.task, ep.instruction, True, {"a": ep.images["wrist"].astype(np.float32)}, ep.state, ep.actions)


def test_dataset_split_stats_and_chunks(folder):
    root, eps = folder
    ds = EpisodeDataset(root)
    assert len(ds) == 8 and ds.num_failed == 2 and ds.tasks == ["bottle_to_basket", "can_to_bowl"]
    assert len(EpisodeDataset(root, success_only=False)) == 10
    assert len(EpisodeDataset(root, tasks=["can_to_bowl"])) == 4
    with pytest.raises(ValueError, match="not in dataset"):
        EpisodeDataset(root, tasks=["shelf_to_tray"])
    train, val = ds.split(val_fraction=0.25, seed=0)
    tr, va = {e.path for e in train.episodes}, {e.path for e in val.episodes}
    assert not tr & va and len(tr) + len(va) == 8
    assert {e.task for e in val.episodes} == {"bottle_to_basket", "can_to_bowl"}
    assert [e.path for e in ds.split(0.25, seed=0)[1].episodes] == [e.path for e in val.episodes]
    # stats equal NormStats over the concatenated successful training episodes
    stats = train.norm_stats("actions.joint_position")
    expect = np.concatenate([read_episode(p, images=False).actions["joint_position"] for p in sorted(tr)])
    ref = NormStats.from_data(expect)
    np.testing.assert_allclose(stats.q01, ref.q01)
    np.testing.assert_allclose(stats.q99, ref.q99)
    assert stats.names[-1] == "gripper"
    assert ds.norm_stats("state").names == STATE_NAMES
    paths = ds.save_norm_stats()
    assert NormStats.load(paths["actions.eef_delta"]) == ds.norm_stats("actions.eef_delta")
    assert ds.load_norm_stats("state") == ds.norm_stats("state")
    cd = ChunkDataset(ds, horizon=5, action_space="eef_delta")
    assert len(cd) == ds.num_steps
    s = cd[len(cd) - 1]
    assert s["actions"].shape == (5, 7) and s["action_mask"].tolist() == [True, False, False, False, False]
    assert s["images"]["wrist"].shape == (16, 16, 3) and s["state"].shape == (8,) and s["phase"] == "lift"
    full = read_episode(ds.episodes[s["episode"]].path)
    np.testing.assert_array_equal(s["images"]["wrist"], full.images["wrist"][s["step"]])
    np.testing.assert_array_equal(s["state"], full.state[s["step"]])


def test_truncated_and_corrupt_files_are_reported(folder):
    root, _ = folder
    ep_dir = root / "episodes"
    victim = ep_dir / "can_to_bowl_00002.hdf5"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # truncated mid-file
    (ep_dir / "bottle_to_basket_00009.hdf5").write_bytes(b"not an hdf5 file at all" * 100)
    with pytest.raises(CorruptEpisodeError, match="can_to_bowl_00002.hdf5|bottle_to_basket_00009.hdf5"):
        EpisodeDataset(root)
    bad = dict(validate_dir(root))
    assert set(p.name for p in bad) == {"can_to_bowl_00002.hdf5", "bottle_to_basket_00009.hdf5"}
    (ep_dir / "can_to_bowl_00003.hdf5.tmp").write_bytes(b"partial")
    assert any(p.name.endswith(".tmp") for p, _ in validate_dir(root))
    from roboalign.data.validate import main as validate_main

    assert validate_main([str(root)]) == 1


def test_inconsistent_file_is_reported(folder):
    root, _ = folder
    p = root / "episodes" / "bottle_to_basket_00000.hdf5"
    with h5py.File(p, "a") as f:
        del f["actions/eef_delta"]
        f["actions/eef_delta"] = np.zeros((3, 7), np.float32)  # wrong length
    with pytest.raises(CorruptEpisodeError, match=r"bottle_to_basket_00000.*actions/eef_delta"):
        EpisodeDataset(root)


def test_crash_during_write_leaves_no_file(tmp_path):
    class Boom:
        def __array__(self, *a, **k):
            raise KeyboardInterrupt

    ep = make_episode(np.random.default_rng(4))
    ep.privileged["boom"] = Boom()
    with pytest.raises(KeyboardInterrupt):
        write_episode(tmp_path / "x.hdf5", ep)
    assert list(tmp_path.iterdir()) == []


def _write_libero_file(path, t=(9, 7)):
    """A file in the layout of LIBERO's official demos (robomimic HDF5)."""
    rng = np.random.default_rng(5)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["problem_info"] = json.dumps({"problem_name": "libero_tabletop_manipulation",
                                                 "language_instruction": "pick up the ketchup and place it in the basket"})
        for k, n in enumerate(t):
            g = data.create_group(f"demo_{k}")
            g["actions"] = rng.uniform(-1, 1, (n, 7))
            obs = g.create_group("obs")
            img = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
            img[:, 0, :, :] = 255  # the first stored row (the bottom of the scene)
            img[:, 1:, :, :] = np.minimum(img[:, 1:], 200)
            obs["agentview_rgb"] = img
            obs["eye_in_hand_rgb"] = img
            obs["joint_states"] = rng.normal(size=(n, 7))
            obs["gripper_states"] = np.stack([np.full(n, 0.03), np.full(n, -0.03)], 1)
            obs["ee_pos"] = rng.normal(size=(n, 3))


def test_libero_hdf5_reader(tmp_path):
    p = tmp_path / "pick_up_the_ketchup_and_place_it_in_the_basket_demo.hdf5"
    _write_libero_file(p)
    eps = read_libero_hdf5(p)
    assert [e.length for e in eps] == [9, 7]
    ep = eps[0]
    assert ep.task == "bottle_to_basket" and ep.success and ep.phases is None
    assert ep.instruction == "pick up the ketchup and place it in the basket"
    with h5py.File(p) as f:
        joints = f["data/demo_0/obs/joint_states"][()]
        actions = f["data/demo_0/actions"][()]
    np.testing.assert_allclose(ep.state[:, :7], joints, rtol=1e-6)
    np.testing.assert_allclose(ep.state[:, 7], 0.06, rtol=1e-6)
    np.testing.assert_allclose(ep.actions["joint_position"][:-1, :7], joints[1:], rtol=1e-6)
    np.testing.assert_allclose(ep.actions["joint_position"][:, 7], actions[:, 6], rtol=1e-6)
    np.testing.assert_allclose(ep.actions["eef_delta"], actions, rtol=1e-6)
    assert (ep.images["agentview"][:, -1] == 255).all()  # flipped: stored row 0 becomes the bottom row
    assert read_libero_hdf5(p, demos=[1])[0].length == 7
    # written as our own episode format it reads back the same
    q = write_episode(tmp_path / "converted.hdf5", ep)
    np.testing.assert_array_equal(read_episode(q).images["wrist"], ep.images["wrist"])


def test_libero_hdf5_reader_errors(tmp_path):
    p = tmp_path / "demo.hdf5"
    _write_libero_file(p)
    with h5py.File(p, "a") as f:
        del f["data/demo_1/obs/joint_states"]
    with pytest.raises(CorruptEpisodeError, match=r"demo\.hdf5.*demo_1.*joint_states"):
        read_libero_hdf5(p)
    p.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(CorruptEpisodeError, match="demo.hdf5"):
        read_libero_hdf5(p)


@pytest.mark.sim
def test_collect_is_resumable(tmp_path):
    from roboalign.sim.collect import main

    out = tmp_path / "ds"
    args = ["--tasks", "can_to_bowl", "--out", str(out), "--camera-size", "32", "--max-steps", "6",
            "--no-antialias", "--no-stats"]
    assert main(args + ["--episodes", "1"]) == 0
    first = out / "episodes" / "can_to_bowl_00000.hdf5"
    mtime = first.stat().st_mtime_ns
    (out / "episodes" / "can_to_bowl_00001.hdf5.tmp").write_bytes(b"in flight")  # a crashed run's leftover
    assert main(args + ["--episodes", "2"]) == 0
    assert first.stat().st_mtime_ns == mtime  # finished episode skipped
    assert validate_dir(out, full=True) == []
    ds = EpisodeDataset(out, success_only=False)
    assert len(ds) == 2 and ds.num_failed == 2  # 6 steps are too few to succeed; kept, flagged
    ep = ds.load(1)
    assert ep.length == 6 and ep.images["agentview"].shape == (6, 32, 32, 3)
    assert ep.meta["init_state"] == 1 and ep.phases[0] == "approach"
    np.testing.assert_allclose(ep.actions["joint_position"][:-1, :7], ep.state[1:, :7], atol=1e-6)
    assert json.loads((out / "meta.json").read_text())["env_config"]["camera_size"] == 32
    with pytest.raises(SystemExit, match="camera_size"):
        main(["--tasks", "can_to_bowl", "--out", str(out), "--camera-size", "64", "--episodes", "2",
              "--max-steps", "6", "--no-antialias"])
