"""LeRobotDataset v3.0: ours -> LeRobot -> ours round trip, the documented schema (info, stats, tasks, episode
table), validation naming episode and file, and reading a community-style dataset written without our layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

FPS = 20


def _episode(k: int, t: int):
    from roboalign.data.episodes import Episode

    rng = np.random.default_rng(k)
    yy, xx = np.mgrid[0:32, 0:48]
    base = np.broadcast_to(((xx + yy) * 2 + 20 * k)[None, :, :, None], (t, 32, 48, 3)) * np.array([1.0, 0.7, 0.4])
    img = np.clip(base, 0, 255).astype(np.uint8)
    for i in range(t):  # a bright block that moves every frame: a frame off by one is far off
        x, y = (4 * i) % 40, (2 * i) % 24
        img[i, y:y + 8, x:x + 8] = 250
    return Episode(task=f"task{k % 2}", instruction=f"put object {k % 2} away", success=k != 1,
                   images={"agentview": img, "wrist": 255 - img}, state=rng.normal(size=(t, 8)).astype(np.float32),
                   actions={"joint_position": rng.normal(size=(t, 8)).astype(np.float32),
                            "eef_delta": rng.uniform(-1, 1, (t, 7)).astype(np.float32)},
                   phases=["approach"] * (t // 2) + ["grasp"] * (t - t // 2),
                   robot={"joint_vel": rng.normal(size=(t, 7)), "joint_position_command": rng.normal(size=(t, 8)),
                          "tick_time": np.arange(t) / FPS},
                   privileged={"object_aabb": rng.normal(size=(t, 2, 3))}, final_state=np.arange(8, dtype=np.float32),
                   meta={"seed": k, "state_names": [f"s{i}" for i in range(8)]})


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    from roboalign.data.lerobot_v3 import LeRobotV3Writer

    root = tmp_path_factory.mktemp("lr") / "ds"
    eps = [_episode(k, 20 + 7 * k) for k in range(3)]
    w = LeRobotV3Writer(root, fps=FPS, vcodec="libsvtav1")
    for e in eps:
        w.add(e)
    w.close()
    return root, eps


def test_round_trip_keeps_every_field(written) -> None:
    from roboalign.data.lerobot_v3_reader import LeRobotV3Dataset

    root, eps = written
    ds = LeRobotV3Dataset(root)
    assert len(ds) == 3 and ds.action_space == "joint_position"
    for i, e in enumerate(eps):
        r = ds.episode(i)
        assert (r.task, r.instruction, r.success, r.length, r.phases) == (e.task, e.instruction, e.success, e.length,
                                                                            e.phases)
        np.testing.assert_array_equal(r.state, e.state)
        for space in ("joint_position", "eef_delta"):
            np.testing.assert_array_equal(r.actions[space], e.actions[space])
        np.testing.assert_allclose(r.robot["joint_vel"], e.robot["joint_vel"], rtol=1e-6)
        np.testing.assert_allclose(r.robot["joint_position_command"], e.robot["joint_position_command"], rtol=1e-6)
        np.testing.assert_allclose(r.privileged["object_aabb"], e.privileged["object_aabb"], rtol=1e-6)
        np.testing.assert_allclose(r.robot["tick_time"], e.robot["tick_time"], rtol=1e-6)  # (T,) stays (T,)
        np.testing.assert_array_equal(r.final_state, e.final_state)
        assert r.meta["seed"] == i
        for cam in e.images:  # lossy AV1, but the right frames: each nearer its own frame than to a neighbour
            got, want = r.images[cam].astype(int), e.images[cam].astype(int)
            err = np.abs(got - want).mean(axis=(1, 2, 3))
            shifted = np.abs(got[1:] - want[:-1]).mean(axis=(1, 2, 3))
            assert err.max() < 4.0 and (err[1:] < 0.5 * shifted).all(), (cam, err.max(), shifted.min())
    ds.close()


def test_files_follow_the_v3_schema(written) -> None:
    import pandas as pd
    import pyarrow.parquet as pq

    root, eps = written
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == FPS and info["total_episodes"] == 3
    assert info["total_frames"] == sum(e.length for e in eps) and info["total_tasks"] == 2
    assert info["chunks_size"] == 1000 and info["splits"] == {"train": "0:3"}
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    f = info["features"]
    assert f["action"]["names"][-1] == "gripper" and f["observation.state"]["names"] == [f"s{i}" for i in range(8)]
    vid = f["observation.images.wrist"]
    assert vid["dtype"] == "video" and vid["shape"] == [32, 48, 3] and vid["info"]["video.codec"] == "av1"
    for k in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert k in f
    tasks = pd.read_parquet(root / "meta/tasks.parquet")
    assert dict(zip(tasks.index, tasks.task_index, strict=True)) == {"put object 0 away": 0, "put object 1 away": 1}
    ep_table = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [r["dataset_from_index"] for r in ep_table] == [0, 20, 47]
    assert [r["videos/observation.images.wrist/from_timestamp"] for r in ep_table] == [0.0, 1.0, 2.35]
    assert ep_table[1]["tasks"] == ["put object 1 away"] and ep_table[1]["data/file_index"] == 0
    assert len(ep_table[0]["stats/action/mean"]) == 8
    data = pq.read_table(root / "data/chunk-000/file-000.parquet")
    import pyarrow as pa

    for k, feat in f.items():  # lerobot casts shape (1,) to a plain value and (n,) to a fixed-size list
        if feat["dtype"] == "float32" and k != "timestamp":
            want = pa.float32() if feat["shape"] == [1] else pa.list_(pa.float32(), feat["shape"][0])
            assert data.schema.field(k).type == want, (k, data.schema.field(k).type)
    assert data.num_rows == 81 and data.column("index").to_pylist() == list(range(81))
    np.testing.assert_allclose(data.column("timestamp").to_numpy()[20:23], [0.0, 0.05, 0.1], atol=1e-6)
    stats = json.loads((root / "meta/stats.json").read_text())
    acts = np.concatenate([e.actions["joint_position"] for e in eps]).astype(np.float64)
    np.testing.assert_allclose(stats["action"]["mean"], acts.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats["action"]["q99"], np.quantile(acts, 0.99, axis=0), rtol=1e-6)
    assert stats["action"]["count"] == [81]
    assert set(stats["observation.images.wrist"]) == {"mean", "std", "min", "max", "count", "q01", "q10", "q50",
                                                      "q90", "q99"}
    assert np.shape(stats["observation.images.wrist"]["mean"]) == (3, 1, 1)
    assert 0.0 <= np.min(stats["observation.images.wrist"]["min"]) <= np.max(stats["observation.images.wrist"]["max"]) <= 1.0


def test_validate_names_episode_file_and_field(written, tmp_path: Path) -> None:
    import shutil

    from roboalign.data.formats import Expect, validate

    root, _ = written
    assert validate(root, full=True) == []
    bad = tmp_path / "bad"
    shutil.copytree(root, bad)
    info = json.loads((bad / "meta/info.json").read_text())
    info["total_frames"] += 1
    (bad / "meta/info.json").write_text(json.dumps(info))
    stats = json.loads((bad / "meta/stats.json").read_text())
    del stats["observation.state"]["q99"]
    (bad / "meta/stats.json").write_text(json.dumps(stats))
    (bad / "videos/observation.images.wrist/chunk-000/file-000.mp4").unlink()
    problems = validate(bad, Expect(cameras=("agentview", "top")))
    text = "\n".join(f"{w}: {p}" for w, p in problems)
    assert "total_frames 82 but the episodes sum to 81" in text
    assert "feature observation.state: stats lack ['q99']" in text
    assert "episode 1" in text and "videos/observation.images.wrist/chunk-000/file-000.mp4 missing" in text
    assert "cameras ['top'] missing" in text


def test_reads_a_community_dataset_without_our_layout(tmp_path: Path) -> None:
    """LIBERO-in-LeRobot style: 7-d action (OSC deltas), 8-d state, PNG image features, no roboalign columns."""
    import cv2
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from roboalign.data.convert import convert
    from roboalign.data.dataset import EpisodeDataset

    root = tmp_path / "libero_lerobot"
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    (root / "data/chunk-000").mkdir(parents=True)
    lengths, rows, data = [5, 7], [], []
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (12, 8, 8, 3), dtype=np.uint8)
    for e, n in enumerate(lengths):
        start = sum(lengths[:e])
        rows.append({"episode_index": e, "tasks": ["open the drawer"], "length": n, "data/chunk_index": 0,
                     "data/file_index": 0, "dataset_from_index": start, "dataset_to_index": start + n})
        for i in range(n):
            png = cv2.imencode(".png", frames[start + i][..., ::-1])[1].tobytes()
            data.append({"observation.images.image": {"bytes": png, "path": None},
                         "observation.state": rng.normal(size=8).astype(np.float32).tolist(),
                         "action": rng.uniform(-1, 1, 7).astype(np.float32).tolist(), "timestamp": i / 10,
                         "frame_index": i, "episode_index": e, "index": start + i, "task_index": 0})
    pq.write_table(pa.Table.from_pylist(data), root / "data/chunk-000/file-000.parquet")
    pq.write_table(pa.Table.from_pylist(rows), root / "meta/episodes/chunk-000/file-000.parquet")
    pd.DataFrame({"task_index": [0]}, index=["open the drawer"]).to_parquet(root / "meta/tasks.parquet")
    feats = {"observation.images.image": {"dtype": "image", "shape": [8, 8, 3], "names": ["height", "width", "channel"]},
             "observation.state": {"dtype": "float32", "shape": [8], "names": None},
             "action": {"dtype": "float32", "shape": [7], "names": None},
             **{k: {"dtype": "int64", "shape": [1], "names": None} for k in ("frame_index", "episode_index", "index",
                                                                               "task_index")},
             "timestamp": {"dtype": "float32", "shape": [1], "names": None}}
    (root / "meta/info.json").write_text(json.dumps({
        "codebase_version": "v3.0", "fps": 10, "features": feats, "total_episodes": 2, "total_frames": 12,
        "total_tasks": 1, "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": None}))
    with pytest.raises(NotADirectoryError, match="is a LeRobotDataset v3, which `roboalign dataset convert"):
        EpisodeDataset(root)  # the training loader points at the converter
    report = convert(root, tmp_path / "ours", "roboalign", progress=False)
    assert report.written == ["episode_000000", "episode_000001"] and not report.failed
    ds = EpisodeDataset(tmp_path / "ours")
    ep = ds[1]
    assert ep.task == "open_the_drawer" and ep.instruction == "open the drawer" and ep.length == 7
    assert sorted(ep.actions) == ["eef_delta"] and ep.actions["eef_delta"].shape == (7, 7)
    np.testing.assert_array_equal(ep.images["image"], frames[5:12])  # PNG: lossless
    assert ds.norm_stats("actions.eef_delta").names[0] == "dx"


def test_files_roll_over_at_the_size_limits_and_read_back(tmp_path: Path, monkeypatch) -> None:
    import roboalign.data.lerobot_v3 as lr
    from roboalign.data.formats import validate
    from roboalign.data.lerobot_v3_reader import LeRobotV3Dataset

    monkeypatch.setattr(lr, "DATA_FILE_MB", 0)  # every episode after the first opens new files
    monkeypatch.setattr(lr, "VIDEO_FILE_MB", 0)
    eps = [_episode(k, 10 + k) for k in range(3)]
    w = lr.LeRobotV3Writer(tmp_path / "ds", fps=FPS)
    for e in eps:
        w.add(e)
    w.close()
    ds = LeRobotV3Dataset(tmp_path / "ds")
    assert [r["data/file_index"] for r in ds.episodes] == [0, 1, 2]
    assert [r["videos/observation.images.wrist/from_timestamp"] for r in ds.episodes] == [0.0, 0.0, 0.0]
    assert (tmp_path / "ds/videos/observation.images.wrist/chunk-000/file-002.mp4").is_file()
    for i, e in enumerate(eps):
        r = ds.episode(i)
        np.testing.assert_array_equal(r.state, e.state)
        assert np.abs(r.images["agentview"].astype(int) - e.images["agentview"]).mean() < 4.0
    assert validate(tmp_path / "ds", full=True) == []


def _policy() -> tuple[int, int]:
    import os

    return os.sched_getscheduler(0), os.sched_getparam(0).sched_priority


def test_writing_video_leaves_the_threads_scheduling_as_it_was(tmp_path) -> None:
    """SVT-AV1 puts the encoding thread under SCHED_FIFO 99 when run as root (as CI does); a real-time busy
    thread then starved every later DDS test of the same process. Threads started afterwards inherit it too."""
    import os
    import threading

    from roboalign.data.lerobot_v3 import LeRobotV3Writer

    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))  # whatever ran before (lowering is always allowed)
    before = _policy()
    w = LeRobotV3Writer(tmp_path / "ds", fps=FPS, vcodec="libsvtav1")
    w.add(_episode(0, 6))
    assert _policy() == before
    w.close()
    seen = []
    t = threading.Thread(target=lambda: seen.append(_policy()))
    t.start()
    t.join()
    assert _policy() == before and seen == [before]


def test_scheduling_kept_restores_a_policy_a_library_changed() -> None:
    import os

    from roboalign.data.scheduling import scheduling_kept

    before = _policy()
    try:
        with scheduling_kept():
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))  # what the encoder does
    except PermissionError:
        pytest.skip("SCHED_FIFO is not permitted here (not root, no rtprio): nothing can change it")
    assert _policy() == before
