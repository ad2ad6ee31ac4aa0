"""LIBERO's official demonstration layout (robomimic HDF5) imported as an episode dataset and trained on."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest


def _demo_file(path, lengths, instruction, size=32, seed=0):
    """A small file in the layout LIBERO's datasets use (data/demo_k/{actions, obs/...}, problem_info)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["problem_info"] = json.dumps({"problem_name": "libero_tabletop_manipulation",
                                                 "language_instruction": instruction})
        for k, n in enumerate(lengths):
            obs = data.create_group(f"demo_{k}/obs")
            data[f"demo_{k}/actions"] = np.clip(rng.normal(0, 0.3, (n, 7)), -1, 1)
            for cam in ("agentview_rgb", "eye_in_hand_rgb"):
                obs[cam] = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
            obs["joint_states"] = rng.normal(0, 0.5, (n, 7))
            obs["gripper_states"] = np.stack([np.full(n, 0.02), np.full(n, -0.02)], 1)
    return path


@pytest.fixture
def libero_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBOALIGN_DATA_HOME", str(tmp_path / "home"))
    root = tmp_path / "datasets"
    _demo_file(root / "libero_goal" / "put_the_bowl_on_the_plate_demo.hdf5", (6, 5),
               "put the bowl on the plate", seed=1)
    _demo_file(root / "libero_object" / "pick_up_the_ketchup_and_place_it_in_the_basket_demo.hdf5", (7,),
               "pick up the ketchup and place it in the basket", seed=2)
    return root


def test_import_names_tasks_and_carries_the_suite_task_set(libero_datasets):
    from roboalign.data import EpisodeDataset
    from roboalign.sim.libero_import import as_episode_folder, is_libero_source
    from roboalign.spec.tasks import TaskSet

    assert is_libero_source(libero_datasets)
    out = as_episode_folder(libero_datasets)
    assert out != libero_datasets and not is_libero_source(out) and as_episode_folder(out) == out
    ds = EpisodeDataset(out)
    assert sorted((e.task, e.length) for e in ds.episodes) == [
        ("bottle_to_basket", 7), ("libero_goal/put_the_bowl_on_the_plate", 5),
        ("libero_goal/put_the_bowl_on_the_plate", 6)]
    goal = next(i for i, e in enumerate(ds.episodes) if e.length == 6)
    ep = ds.load(goal)
    assert ep.instruction == "put the bowl on the plate" and ep.images["agentview"].shape == (6, 32, 32, 3)
    with h5py.File(libero_datasets / "libero_goal" / "put_the_bowl_on_the_plate_demo.hdf5") as f:
        np.testing.assert_allclose(ep.actions["eef_delta"], f["data/demo_0/actions"][()], rtol=1e-6)
        np.testing.assert_array_equal(ep.images["wrist"], f["data/demo_0/obs/eye_in_hand_rgb"][()][:, ::-1])
    tasks = TaskSet.from_dict(ds.meta["tasks"])
    sim = tasks.sim_tasks["libero_goal/put_the_bowl_on_the_plate"]
    assert (sim.object_name, sim.target_name) == ("akita_black_bowl_1", "plate_1") and "plate_1" in sim.objects
    assert tasks.sim_tasks["libero_object/pick_up_the_ketchup_and_place_it_in_the_basket"].target_name == "basket_1"
    assert TaskSet.from_json(tasks.to_json()).sim_tasks == tasks.sim_tasks


def test_import_resumes_and_bad_sources_are_named(libero_datasets, tmp_path):
    from roboalign.sim.libero_import import STAMP, import_libero_demos, libero_demo_files

    out = import_libero_demos(libero_datasets, tmp_path / "imp", progress=False)
    files = sorted((out / "episodes").iterdir())
    keep = files[0].stat().st_mtime_ns
    files[-1].unlink()
    (out / STAMP).unlink()
    import_libero_demos(libero_datasets, out, progress=False)  # only the missing episode is converted again
    assert sorted((out / "episodes").iterdir()) == files and files[0].stat().st_mtime_ns == keep
    with pytest.raises(FileNotFoundError, match="libero_spatial, libero_object, libero_goal, libero_10, libero_90"):
        libero_demo_files(tmp_path / "nothing_here")


def test_train_vla_on_libero_demo_files(libero_datasets, tmp_path):
    """`roboalign train vla --data <LIBERO datasets>`: a tiny head trains and its tasks.json holds the suite tasks."""
    from roboalign.spec.tasks import TaskSet
    from roboalign.training.vla_head import VLATrainConfig, train

    cfg = VLATrainConfig(dataset=str(libero_datasets), output_dir=str(tmp_path / "run"), steps=1, batch_size=2,
                         eval_every=1, val_fraction=0.0, frame_stride=6, head_overrides={"num_layers": 2, "horizon": 4})
    m = train(cfg, progress=False)
    assert m["train_episodes"] == 3
    tasks = TaskSet.load(m["checkpoint"])
    assert set(tasks.sim_tasks) == {"libero_goal/put_the_bowl_on_the_plate",
                                    "libero_object/pick_up_the_ketchup_and_place_it_in_the_basket"}
