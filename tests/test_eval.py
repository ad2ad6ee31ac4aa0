"""Evaluation: DTW phase labels, the KNN probe, offline MSE, and the LIBERO harness end to end."""

from __future__ import annotations

import csv
import itertools

import numpy as np
import pytest

from roboalign.evaluation.probe import (
    ProbeSetting,
    dtw_path,
    dtw_phase_labels,
    knn_predict,
    knn_probe,
    pooled_probe,
    probe_splits,
    project,
    transfer_labels,
)


def _brute_force_dtw(a: np.ndarray, b: np.ndarray) -> float:
    """Minimum over all monotone warping paths (tiny sizes only) — an independent check of the DP."""
    n, m = len(a), len(b)
    cost = np.linalg.norm(a[:, None] - b[None], axis=-1)
    best = np.inf

    def walk(i: int, j: int, acc: float) -> None:
        nonlocal best
        acc += cost[i, j]
        if acc >= best:
            return
        if (i, j) == (n - 1, m - 1):
            best = acc
            return
        for di, dj in ((1, 0), (0, 1), (1, 1)):
            if i + di < n and j + dj < m:
                walk(i + di, j + dj, acc)

    walk(0, 0, 0.0)
    return best


def test_dtw_matches_brute_force_and_path_is_valid():
    rng = np.random.default_rng(0)
    for n, m in itertools.product((1, 3, 5), (2, 4, 6)):
        a, b = rng.normal(size=(n, 2)), rng.normal(size=(m, 2))
        total, path = dtw_path(a, b)
        assert total == pytest.approx(_brute_force_dtw(a, b))
        assert path[0] == (0, 0) and path[-1] == (n - 1, m - 1)
        steps = {(i2 - i1, j2 - j1) for (i1, j1), (i2, j2) in itertools.pairwise(path)}
        assert steps <= {(1, 0), (0, 1), (1, 1)}
        cost = np.linalg.norm(a[:, None] - b[None], axis=-1)
        assert total == pytest.approx(sum(cost[i, j] for i, j in path))


def test_dtw_transfers_phases_to_a_time_warped_copy():
    """A slowed-down copy of the reference gets the reference's phases at the warped times."""
    t_ref = np.linspace(0, 1, 60)
    ref = np.stack([np.sin(3 * t_ref), t_ref ** 2], axis=1)
    ref_labels = ["approach"] * 20 + ["grasp"] * 15 + ["lift"] * 25
    t_warp = np.linspace(0, 1, 90) ** 1.5  # non-uniform time
    other = np.stack([np.sin(3 * t_warp), t_warp ** 2], axis=1)
    expect = [ref_labels[min(59, int(np.argmin(np.abs(t_ref - t))))] for t in t_warp]
    labels = dtw_phase_labels([ref, other], 0, ref_labels)
    assert labels[0] == ref_labels
    assert np.mean(np.asarray(labels[1]) == np.asarray(expect)) > 0.95
    with pytest.raises(ValueError, match="phase labels"):
        dtw_phase_labels([ref, other], 0, ref_labels[:-1])


def test_transfer_labels_majority_and_coverage():
    path = [(0, 0), (0, 1), (0, 2), (1, 3), (2, 3)]
    assert transfer_labels(path, ["a", "b", "b", "c"], 3) == ["b", "c", "c"]
    with pytest.raises(ValueError, match="cover"):
        transfer_labels([(0, 0), (2, 1)], ["a", "b"], 3)


def test_knn_probe_separates_clusters_and_reports_chance():
    rng = np.random.default_rng(0)
    centers = {"approach": np.array([1.0, 0, 0]), "grasp": np.array([0, 1.0, 0]), "lift": np.array([0, 0, 1.0])}
    feats, labels = [], []
    for _ in range(6):
        lab = ["approach"] * 10 + ["grasp"] * 5 + ["lift"] * 10
        feats.append(np.stack([centers[x] + 0.05 * rng.normal(size=3) for x in lab]))
        labels.append(lab)
    r = knn_probe(feats, labels, test_episodes=[4, 5], k=3)
    assert r.accuracy == 1.0 and r.n_test == 50 and r.n_train == 100
    assert r.chance == pytest.approx(0.4)  # majority class 'approach' (or 'lift') covers 20 of 50
    shuffled = [list(rng.permutation(lab)) for lab in labels]  # labels unrelated to features -> near chance
    assert knn_probe(feats, shuffled, test_episodes=[4, 5], k=3).accuracy < 0.7
    assert knn_predict(np.eye(2), ["x", "y"], np.array([[0.9, 0.1]]), k=1) == ["x"]


def test_probe_splits_hold_out_each_tasks_last_episodes_or_one_task_per_fold():
    task_of = ["a"] * 4 + ["b"] * 6
    assert probe_splits(task_of, ProbeSetting()) == {"episodes": [2, 3, 7, 8, 9]}
    assert probe_splits(task_of, ProbeSetting(split="tasks")) == {"a": [0, 1, 2, 3], "b": [4, 5, 6, 7, 8, 9]}
    with pytest.raises(ValueError, match="two tasks"):
        probe_splits(["a"] * 4, ProbeSetting(split="tasks"))
    with pytest.raises(ValueError, match="split"):
        ProbeSetting(split="frames")
    with pytest.raises(ValueError, match="test_fraction"):
        ProbeSetting(feature_dim=8, projections=0)


def test_projection_is_one_fixed_map_for_every_backbone():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 32)), rng.normal(size=(7, 32))
    pa, pb = project([a, b], 8)
    assert pa.shape == (5, 8) and pb.shape == (7, 8)
    np.testing.assert_allclose(project([a], 8)[0], pa)  # the same seed: the same basis in a later call
    np.testing.assert_allclose(project([a + b[:5]], 8)[0], pa + pb[:5], atol=1e-12)  # linear
    assert project([a], 0)[0] is a


def _phase_clusters(shared: bool, seed: int = 0) -> tuple[list[np.ndarray], list[list[str]], list[str]]:
    """Two tasks x 4 episodes; each phase a cluster, in one space for both tasks (shared) or one space per task."""
    rng = np.random.default_rng(seed)
    feats, labels, task_of = [], [], []
    for t, task in enumerate(("a", "b")):
        for _ in range(4):
            lab = ["approach"] * 8 + ["grasp"] * 4 + ["lift"] * 8
            offset = 0 if shared else 3 * t  # per task: the phases sit on other axes
            feats.append(np.stack([np.eye(6)[offset + ("approach", "grasp", "lift").index(x)]
                                   + 0.05 * rng.normal(size=6) for x in lab]))
            labels.append(lab)
            task_of.append(task)
    return feats, labels, task_of


def test_leave_one_task_out_measures_whether_phases_transfer_across_tasks():
    for shared in (True, False):
        feats, labels, task_of = _phase_clusters(shared)
        within = pooled_probe(feats, labels, probe_splits(task_of, ProbeSetting()), k=3)
        across = pooled_probe(feats, labels, probe_splits(task_of, ProbeSetting(split="tasks")), k=3)
        assert within["accuracy"] == 1.0 and within["n_test"] == 80  # 2 of 4 episodes of each task held out
        assert set(across["per_fold"]) == {"a", "b"} and across["n_test"] == 160
        assert across["chance"] == pytest.approx(0.4)
        # a task's own phases are always easy; only phases that look alike across tasks survive the task split
        assert (across["accuracy"] == 1.0) if shared else (across["accuracy"] < 0.7)


def test_projected_probe_averages_projections_and_pairs_backbones_by_test_episode():
    from roboalign.evaluation.probe import paired_deltas, projected_probe

    feats, labels, task_of = _phase_clusters(shared=True)
    rng = np.random.default_rng(3)
    noisy = [f + 0.6 * rng.normal(size=f.shape) for f in feats]  # a worse "backbone" on the same frames
    setting = ProbeSetting(feature_dim=3, projections=4, k=3)
    folds = probe_splits(task_of, setting)
    good, bad = (projected_probe(f, labels, folds, setting) for f in (feats, noisy))
    assert sorted(good["per_episode"]) == [2, 3, 6, 7] and good["accuracy_sd"] >= 0.0
    manual = np.mean([pooled_probe(project(noisy, 3, seed=s), labels, folds, 3)["accuracy"] for s in range(4)])
    assert bad["accuracy"] == pytest.approx(manual) and bad["accuracy"] < good["accuracy"]
    d = paired_deltas({"good": good, "bad": bad})["bad"]
    per_ep = [bad["per_episode"][i] - good["per_episode"][i] for i in (2, 3, 6, 7)]
    assert d["vs"] == "good" and d["delta"] == pytest.approx(np.mean(per_ep)) and d["delta"] < 0
    assert d["se"] == pytest.approx(np.std(per_ep, ddof=1) / 2)


def test_run_probe_end_to_end_with_a_harder_setting(tmp_path):
    from test_vla import _write_dataset

    from roboalign.evaluation.probe import run_probe

    root = _write_dataset(tmp_path / "ds", per_task=4, length=12)
    setting = ProbeSetting(cameras=("agentview",), image_size=(56, 56), feature_dim=8, split="tasks", k=3)
    res = run_probe(str(root), ["bottle_to_basket", "box_to_plate"], {"base": "tiny"}, setting=setting,
                    out=str(tmp_path / "probe"), progress=False)
    r = res["backbones"]["base"]
    assert set(r["per_fold"]) == {"bottle_to_basket", "box_to_plate"} and r["n_test"] == 2 * 4 * 12
    assert r["n_train"] == 4 * 12  # each fold trains on the other task's frames only
    assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 < r["chance"] < 1.0
    assert res["setting"]["feature_dim"] == 8 and res["setting"]["cameras"] == ("agentview",)
    assert "split by tasks" in (tmp_path / "probe" / "probe.md").read_text()


def test_offline_mse_on_held_out_episodes(tmp_path):
    from test_vla import _vla, _write_dataset

    from roboalign.data import EpisodeDataset
    from roboalign.evaluation.offline import offline_mse

    root = _write_dataset(tmp_path / "ds", tasks=("bottle_to_basket",), per_task=1, length=10)
    ds = EpisodeDataset(root)
    vla = _vla(1)
    ep = ds.load(0)
    vla.action_stats = type(vla.action_stats).from_data(ep.actions["eef_delta"].astype(np.float64),
                                                         names=vla.action_space.names)
    res = offline_mse(vla, ds, frame_stride=3, progress=False)
    assert res["all"]["frames"] == 4 and set(res["per_task"]) == {"bottle_to_basket"}
    # an untrained head samples ~N(0, 1)-ish normalised chunks: clearly non-zero error
    assert 0.05 < res["all"]["mse_normalized"] < 50
    assert res["all"]["mse_raw"] > 0 and res["all"]["mse_first_step_raw"] > 0


@pytest.mark.sim
@pytest.mark.slow
def test_libero_harness_runs_a_vla_episode_end_to_end(tmp_path):
    """The real LIBERO scene from an official init state, a tiny (untrained) VLA, reports written."""
    import dataclasses

    from test_vla import _vla

    from roboalign.evaluation.libero_eval import LiberoEvalConfig, evaluate_policy
    from roboalign.runtime.policy import Policy
    from roboalign.runtime.torch_backend import TorchBackend

    policy = Policy(TorchBackend(_vla(1)), seed=0, warmup=0)
    calls = []
    act = policy.act
    policy.act = lambda obs: calls.append(obs.images["agentview"].shape) or act(obs)  # type: ignore[method-assign]
    cfg = LiberoEvalConfig(tasks=("bottle_to_basket",), episodes=1, first_init_state=3, max_steps=10, execute_steps=4,
                           antialias=False, strip_frames=4)
    results = evaluate_policy(lambda task: policy, cfg, out=tmp_path, progress=False)
    assert len(results) == 1
    r = results[0]
    assert (r.task, r.init_state, r.steps, r.success) == ("bottle_to_basket", 3, 10, False)
    assert r.policy_calls == 3 and calls[0] == (128, 128, 3)  # 4 + 4 + 2 rows executed
    rows = list(csv.DictReader(open(tmp_path / "success.csv")))
    assert [x["task"] for x in rows] == ["bottle_to_basket", "mean"] and rows[0]["successes"] == "0"
    assert "| bottle_to_basket | 0/1 |" in (tmp_path / "success.md").read_text()
    assert (tmp_path / "rollouts.png").stat().st_size > 1000 and (tmp_path / "episodes.csv").is_file()
    # rerun with one more episode: init state 3 comes from the log, 4 runs (and is filmed)
    calls.clear()
    more = evaluate_policy(lambda task: policy, dataclasses.replace(cfg, episodes=2, video_episodes=2, strip_episodes=0),
                           out=tmp_path, progress=False)
    assert [(x.init_state, x.steps) for x in more] == [(3, 10), (4, 10)] and len(calls) == 3
    assert len(list(csv.DictReader(open(tmp_path / "episodes_log.csv")))) == 2
    assert [p.name for p in (tmp_path / "videos").iterdir()] == ["bottle_to_basket_004.mp4"]
    import av

    with av.open(str(tmp_path / "videos" / "bottle_to_basket_004.mp4")) as v:
        frames = [f.to_ndarray(format="rgb24") for f in v.decode(video=0)]
    assert len(frames) == 11 and frames[0].shape == (128, 256, 3)  # reset + 10 steps, agentview | wrist


@pytest.mark.sim
@pytest.mark.slow
def test_rendering_only_policy_steps_gives_the_same_rollout():
    """Skipping the frames the policy never sees changes nothing: same chunks, same images, same end state.
    The first episode of a new env is also the same as a later one (LiberoEnv.reset primes a new env)."""
    import dataclasses

    from test_vla import _vla

    from roboalign.evaluation.libero_eval import LiberoEvalConfig, run_episode
    from roboalign.runtime.policy import Policy
    from roboalign.runtime.torch_backend import TorchBackend
    from roboalign.sim.libero_env import LiberoEnv, LiberoEnvConfig

    # 10 steps of 4-row chunks: the last chunk stops after 2 rows, unrendered; the next episode must still
    # hand the policy images at its first call
    cfg = LiberoEvalConfig(tasks=("bottle_to_basket",), episodes=1, max_steps=10, execute_steps=4, antialias=False,
                           camera_size=64, strip_episodes=0)
    runs = []
    with LiberoEnv(LiberoEnvConfig(task="bottle_to_basket", camera_size=64, antialias=False, max_steps=10)) as env:
        for only in (True, True, False):
            policy = Policy(TorchBackend(_vla(1)), seed=0, warmup=0)
            seen, act = [], policy.act
            policy.act = lambda obs, act=act, seen=seen: (  # type: ignore[method-assign]
                seen.append((obs.images["agentview"].copy(), obs.state.copy())) or act(obs))
            r = run_episode(env, policy, 5, dataclasses.replace(cfg, render_policy_steps_only=only), record=False,
                            task="bottle_to_basket")
            runs.append((seen, env.robot_state()["joint_pos"].copy(), r.steps))
    (seen_a, q_a, steps_a) = runs[0]
    assert not np.array_equal(seen_a[0][0], seen_a[-1][0]) or not np.array_equal(seen_a[0][1], seen_a[-1][1])
    for seen_b, q_b, steps_b in runs[1:]:  # a later episode, then one rendering every step
        assert steps_a == steps_b == 10 and len(seen_a) == len(seen_b) == 3
        for (img_a, st_a), (img_b, st_b) in zip(seen_a, seen_b, strict=True):
            assert img_a.shape == (64, 64, 3) and np.array_equal(img_a, img_b) and np.array_equal(st_a, st_b)
        np.testing.assert_array_equal(q_a, q_b)


def test_compare_merges_episode_logs_of_split_runs(tmp_path):
    """Two lanes of one run plus another run: deduplicated per (task, init state), Wilson CIs, table + plot."""
    from roboalign.evaluation.cli import main
    from roboalign.evaluation.episode_results import EpisodeResult, append_episode

    def log(folder, task, init, ok, name="episodes_log.csv"):
        append_episode(EpisodeResult(task, init, ok, 100 if ok else 180, 1.0, 13, 50.0), tmp_path / folder / name)

    for i in range(4):
        log("base_A", "bottle_to_basket", 20 + i, i == 0)
        log("base_B", "box_to_plate", 20 + i, i < 3, name="episodes_log_1.csv")
        log("sft", "bottle_to_basket", 20 + i, False)
    log("base_B", "box_to_plate", 20, False, name="episodes_log_1.csv")  # a repeated init state counts once
    out = tmp_path / "cmp"
    assert main(["compare", "--run", f"base={tmp_path / 'base_A'},{tmp_path / 'base_B'}",
                 "--run", f"sft={tmp_path / 'sft'}", "--out", str(out)]) == 0
    rows = {(r["run"], r["task"]): r for r in csv.DictReader(open(out / "compare.csv"))}
    assert (rows["base", "box_to_plate"]["successes"], rows["base", "box_to_plate"]["episodes"]) == ("3", "4")
    assert (rows["base", "mean"]["successes"], rows["base", "mean"]["episodes"]) == ("4", "8")
    assert rows["sft", "box_to_plate"]["episodes"] == "0" and rows["sft", "mean"]["episodes"] == "4"
    lo, hi = float(rows["base", "bottle_to_basket"]["ci_low"]), float(rows["base", "bottle_to_basket"]["ci_high"])
    assert 0 < lo < 0.25 < hi < 1  # Wilson interval around 1/4
    assert float(rows["sft", "bottle_to_basket"]["ci_low"]) == 0.0
    md = (out / "compare.md").read_text()
    assert "| box_to_plate | 3/4 (75 %) | — |" in md and "| all tasks (pooled) | 4/8 (50 %) | 0/4 (0 %) |" in md
    assert (out / "success_bars.png").stat().st_size > 1000


def _result(task, init, ok, steps=100):
    from roboalign.evaluation.episode_results import EpisodeResult

    return EpisodeResult(task, init, ok, steps, 1.0, 13, 50.0)


def test_suite_table_is_per_suite_and_averages_the_suites(tmp_path):
    from roboalign.evaluation.suite_table import suite_markdown, suite_of, write_suite_table

    assert suite_of("libero_goal/put_the_bowl_on_the_plate") == "libero_goal" and suite_of("box_to_plate") == "tasks"
    results = ([_result("libero_goal/a", i, i < 2) for i in range(4)]  # 2/4
               + [_result("libero_goal/b", i, True) for i in range(4)]  # 4/4 -> suite 75 %
               + [_result("libero_10/c", i, i == 0) for i in range(4)])  # 1/4 -> 25 %
    rows = write_suite_table(results, tmp_path, label="tiny")
    assert [(r["suite"], r["tasks"], r["successes"], r["episodes"]) for r in rows] == [
        ("libero_goal", 2, 6, 8), ("libero_10", 1, 1, 4), ("average", 3, 7, 12)]
    assert rows[0]["success_rate"] == pytest.approx(0.75) and rows[-1]["success_rate"] == pytest.approx(0.5)
    md = (tmp_path / "suites.md").read_text()
    assert md.splitlines()[0] == "| tiny | libero_goal | libero_10 | average |"
    assert "| success % | 75.0 | 25.0 | 50.0 |" in md and md == suite_markdown(rows, "tiny")
    assert [r["suite"] for r in csv.DictReader(open(tmp_path / "suites.csv"))][-1] == "average"
    assert (tmp_path / "suites.png").stat().st_size > 1000


def test_eval_resolves_suite_tasks_and_refuses_what_does_not_fit():
    from roboalign.evaluation.libero_tasks import (
        EvalSetupError,
        check_checkpoint,
        check_expert,
        resolve_tasks,
    )
    from roboalign.models.action_head import ActionHeadConfig
    from roboalign.models.vla import VLAConfig
    from roboalign.models.vla_inputs import VLAInputSpec
    from roboalign.sim.suites import MAX_STEPS, SUITES, suite_problems

    scenes = resolve_tasks(["libero_goal"], ["6", "put_the_bowl_on_the_plate"], "targets")
    assert list(scenes) == ["libero_goal/put_the_cream_cheese_in_the_bowl", "libero_goal/put_the_bowl_on_the_plate"]
    assert scenes["libero_goal/put_the_cream_cheese_in_the_bowl"].target_name == "akita_black_bowl_1"
    assert [len(suite_problems(s)) for s in SUITES] == [10, 10, 10, 10, 90]
    assert len(resolve_tasks(["libero_10", "libero_goal"], None, "targets")) == 20
    ours = resolve_tasks(["tasks"], None, "libero_object")
    assert list(ours) == ["bottle_to_basket", "box_to_plate", "can_to_bowl", "shelf_to_tray"]
    assert {s.suite for s in ours.values()} == {"libero_object"}
    assert (MAX_STEPS["libero_spatial"], MAX_STEPS["libero_10"], MAX_STEPS["libero_90"]) == (220, 520, 400)
    with pytest.raises(EvalSetupError, match="valid: tasks, libero_spatial, libero_object, libero_goal"):
        resolve_tasks(["libero_100"], None, "targets")
    with pytest.raises(EvalSetupError, match="0: pick_up_the_alphabet_soup_and_place_it_in_the_basket"):
        resolve_tasks(["libero_object"], ["pick up the banana"], "targets")
    with pytest.raises(EvalSetupError, match="valid tasks: bottle_to_basket"):
        resolve_tasks(["tasks"], ["stack_blocks"], "targets")
    with pytest.raises(EvalSetupError, match="turn_on_the_stove"):
        check_expert(resolve_tasks(["libero_goal"], ["turn on the stove"], "targets"))
    check_expert(ours)

    def cfg(**kw):
        space = kw.pop("action_space", "eef_delta")
        head = ActionHeadConfig.tiny(action_dim=7 if space == "eef_delta" else 8)
        return VLAConfig(head=head, inputs=VLAInputSpec(**kw), action_space=space, backbone_total_layers=2)

    check_checkpoint(cfg(), ["libero_goal", "tasks"], 128, "ckpt")
    check_checkpoint(cfg(action_space="joint_position"), ["tasks"], 128, "ckpt")  # our tasks take both spaces
    with pytest.raises(EvalSetupError, match="in 'eef_delta'"):
        check_checkpoint(cfg(action_space="joint_position"), ["libero_goal"], 128, "ckpt")
    with pytest.raises(EvalSetupError, match=r"cameras \['side'\]; the LIBERO scenes render agentview, wrist"):
        check_checkpoint(cfg(cameras=("agentview", "side")), ["tasks"], 128, "ckpt")
    with pytest.raises(EvalSetupError, match="--camera-size 224"):
        check_checkpoint(cfg(image_size=(224, 224)), ["libero_10"], 128, "ckpt")


def test_eval_cli_bad_input_is_one_line(capsys):
    from roboalign.evaluation.cli import main

    assert main(["libero", "--policy", "expert", "--suite", "libero_100"]) == 2
    assert main(["libero", "--policy", "expert", "--suite", "libero_10", "--tasks", "0"]) == 2
    assert main(["libero", "--suite", "libero_goal", "--checkpoint", "/no/such/ckpt"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("roboalign eval libero: ") for line in err)
    assert "libero_100" in err[0] and "only places one object" in err[1] and "/no/such/ckpt" in err[2]


def test_eval_resumes_from_the_episode_logs(tmp_path):
    """Episodes already logged in --out are not run again (no scene is even built) and count in the reports."""
    from roboalign.evaluation.episode_results import append_episode
    from roboalign.evaluation.libero_eval import LiberoEvalConfig, evaluate_policy

    for i in range(3):
        append_episode(_result("libero_object/pick_up_the_milk_and_place_it_in_the_basket", 4 + i, i != 1),
                     tmp_path / "episodes_log_1.csv")

    def no_policy(task):
        raise AssertionError(f"{task} was run again")

    cfg = LiberoEvalConfig(tasks=("libero_object/pick_up_the_milk_and_place_it_in_the_basket",), episodes=3,
                           first_init_state=4, strip_episodes=0)
    results = evaluate_policy(no_policy, cfg, out=tmp_path, progress=False)
    assert [(r.init_state, r.success) for r in results] == [(4, True), (5, False), (6, True)]
    assert "| libero_object | average |" in (tmp_path / "suites.md").read_text().splitlines()[0]
    assert cfg.steps_for(cfg.tasks[0]) == 280 and cfg.steps_for("box_to_plate") == 300


@pytest.mark.sim
@pytest.mark.slow
def test_a_libero_suite_task_runs_from_its_official_init_states(tmp_path):
    """A LIBERO-Object task by suite name: its own BDDL and official init states, physics-only expert, logged."""
    from roboalign.evaluation.libero_eval import LiberoEvalConfig, evaluate_policy
    from roboalign.evaluation.libero_tasks import resolve_tasks
    from roboalign.sim.expert import ScriptedExpert

    scenes = resolve_tasks(["libero_object"], ["7"], "targets")
    (task,) = scenes
    assert task == "libero_object/pick_up_the_milk_and_place_it_in_the_basket"
    cfg = LiberoEvalConfig(tasks=(task,), episodes=2, first_init_state=48, max_steps=15, render=False,
                           strip_episodes=0, antialias=False)
    results = evaluate_policy(lambda t: ScriptedExpert(), cfg, out=tmp_path, progress=False, env_tasks=scenes)
    assert [(r.task, r.init_state, r.steps, r.success) for r in results] == [(task, 48, 15, False), (task, 49, 15, False)]
    assert results[0].policy_calls == 15 and not results[0].frames  # nothing rendered for the expert
    assert "| libero_object | average |" in (tmp_path / "suites.md").read_text()
    with pytest.raises(ValueError, match="exceed the 50 official init states"):
        evaluate_policy(lambda t: ScriptedExpert(), LiberoEvalConfig(tasks=(task,), episodes=3, first_init_state=48,
                                                                     max_steps=2, render=False), progress=False)
