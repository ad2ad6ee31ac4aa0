"""The one override parser of ``roboalign train sft|grpo|vla`` and one-line user errors of the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from roboalign.commands.cli import main as roboalign_main
from roboalign.spec.loader import SpecError
from roboalign.training.config import DataConfig, SFTRunConfig, VLATrainConfig, load_config
from roboalign.training.overrides import apply_sets, parse_run_config

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"


def test_repeated_and_multi_value_sets_all_apply():
    # every --set applies, not only the last one
    argv = ["--config", str(CONFIGS / "vla_tiny.yaml"), "--set", "dataset=D", "--set", "steps=30", "output_dir=O",
            "--set", "cameras=wrist", "image_size=[56, 56]", "tasks=can_to_bowl,box_to_plate"]
    cfg, _ = parse_run_config("vla", "", argv)
    assert (cfg.dataset, cfg.steps, cfg.output_dir, cfg.cameras, cfg.image_size) == ("D", 30, "O", ("wrist",), (56, 56))
    assert cfg.tasks == ("can_to_bowl", "box_to_plate")
    cfg, _ = parse_run_config("vla", "", ["--config", str(CONFIGS / "vla_tiny.yaml"), "--set", "image_size=84,84"])
    assert cfg.image_size == (84, 84)
    assert cfg.learning_rate == 1e-3 and cfg.prompt_state == "none"  # the rest from the file
    cfg, _ = parse_run_config("vla", "", ["--config", str(CONFIGS / "vla_tiny.yaml"), "--data", "X", "--max-steps",
                                          "7", "--set", "steps=9"])
    assert (cfg.dataset, cfg.steps) == ("X", 9)  # --set comes after the shortcuts: last value wins


def test_nested_keys_keep_the_rest_of_the_section():
    cfg, _ = parse_run_config("sft", "", ["--config", str(CONFIGS / "sft_tiny.yaml"), "--data", "/d",
                                          "--set", "data.chunk_len=6", "data.mixture.vqa=0.5", "model.tiny.num_layers=3",
                                          "--max-steps", "5", "--resume"])
    assert (cfg.data.dataset, cfg.data.chunk_len, cfg.max_steps) == ("/d", 6, 5)
    assert cfg.data.mixture == {"robot": 1.0, "vqa": 0.5} and cfg.data.fast_vocab_size == 64
    assert cfg.model.tiny == {"num_layers": 3} and cfg.resume_from_checkpoint is True
    grpo, _ = parse_run_config("grpo", "", ["--config", str(CONFIGS / "grpo_tiny.yaml"), "--set", "data.dataset=/e",
                                            "init_checkpoint=runs/s", "beta=0"])
    assert grpo.data.mixture == {"robot": 1.0} and grpo.init_checkpoint == "runs/s" and grpo.beta == 0.0


def test_values_are_typed_by_the_field():
    raw = {"data": {"dataset": "x"}}
    out = apply_sets(SFTRunConfig, raw, ["learning_rate=1e-3", "save_total_limit=null", "max_length=64",
                                         "data.cameras=agentview,wrist", "data.include_state=false",
                                         "output_dir=007", "resume_from_checkpoint=runs/x/checkpoint-5"])
    assert raw == {"data": {"dataset": "x"}}  # the input is not modified
    assert out["learning_rate"] == 1e-3 and out["save_total_limit"] is None and out["max_length"] == 64
    assert out["data"] == {"dataset": "x", "cameras": ["agentview", "wrist"], "include_state": False}
    assert out["output_dir"] == "007" and out["resume_from_checkpoint"] == "runs/x/checkpoint-5"
    for bad, match in [("max_steps=1.5", r"max_steps=1.5: expected int"),
                       ("data.include_state=maybe", "expected bool"),
                       ("learning_rate=fast", "expected float"),
                       ("learning_rate=true", "expected float"),
                       ("data.mixture=robot", "expected dict"),
                       ("steps", "expects key=value"),
                       ("learning_rat=1", r"unknown key 'learning_rat'; valid keys: output_dir, model, data,"),
                       ("data.datset=x", r"unknown key 'datset' in section 'data'; valid keys: dataset, split,"),
                       ("data=x", r"'data' is a section; set its keys: data.dataset, data.split"),
                       ("max_steps.x=1", "'max_steps' is a int, it has no keys")]:
        with pytest.raises(SpecError, match=match):
            apply_sets(SFTRunConfig, {}, [bad])


def test_vla_config_lives_beside_the_others_and_loads_strictly(tmp_path):
    cfg = load_config(CONFIGS / "vla_tiny.yaml")
    assert isinstance(cfg, VLATrainConfig) and cfg.dataset == "default" and not Path(cfg.output_dir).is_absolute()
    for name in ("sft_tiny", "grpo_tiny", "vla_tiny", "vla_tiny_joint"):  # every tiny config: the cached default
        c = load_config(CONFIGS / f"{name}.yaml")
        assert (c.dataset if isinstance(c, VLATrainConfig) else c.data.dataset) == "default"
    assert DataConfig().dataset == "default"
    p = tmp_path / "c.yaml"
    p.write_text("kind: vla\nhead_overrides: {depth: 3}\n")
    with pytest.raises(SpecError, match=r"c.yaml: VLATrainConfig.head_overrides: unknown fields \['depth'\]"):
        load_config(p)
    p.write_text("kind: vla\nsteps: [1\n")
    with pytest.raises(SpecError, match="c.yaml: not valid YAML"):
        load_config(p)


def _one_line_error(capsys, argv, *needles):
    assert roboalign_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def test_user_mistakes_end_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ROBOALIGN_DEBUG", raising=False)
    vla = str(CONFIGS / "vla_tiny.yaml")
    missing = str(tmp_path / "nodata")
    _one_line_error(capsys, ["train", "vla", "--config", vla, "--set", f"dataset={missing}", "--set", "steps=30",
                             f"output_dir={tmp_path / 'o'}"],
                    "roboalign train vla: error: dataset", missing, "does not exist", "roboalign collect")
    _one_line_error(capsys, ["train", "sft", "--config", str(CONFIGS / "sft_tiny.yaml"), "--set", "data.datset=x"],
                    "roboalign train sft: error:", "valid keys: dataset")
    _one_line_error(capsys, ["eval", "offline", "--checkpoint", str(tmp_path / "ckpt"), "--dataset", missing],
                    "error:", str(tmp_path / "ckpt"), "does not exist")
    monkeypatch.setenv("ROBOALIGN_DEBUG", "1")
    with pytest.raises(SpecError):
        roboalign_main(["train", "vla", "--config", vla, "--set", "stepz=1"])


def test_a_folder_of_the_wrong_kind_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ROBOALIGN_DEBUG", raising=False)
    aligned, vla = tmp_path / "sft", tmp_path / "vla"
    aligned.mkdir()
    (aligned / "align_spec.json").write_text("{}")
    vla.mkdir()
    (vla / "head.safetensors").write_bytes(b"")
    _one_line_error(capsys, ["export", "--checkpoint", str(aligned), "--out", str(tmp_path / "exp")],
                    "is missing", f"{aligned} is an aligned MLLM checkpoint", "needs a VLA checkpoint")
    _one_line_error(capsys, ["eval", "offline", "--checkpoint", str(aligned), "--dataset", str(tmp_path)],
                    f"{aligned} is an aligned MLLM checkpoint", "needs a VLA checkpoint")
    _one_line_error(capsys, ["train", "vla", "--config", str(CONFIGS / "vla_tiny.yaml"), "--data", str(vla),
                             "--output-dir", str(tmp_path / "o")],
                    f"{vla} is not an episode dataset ({vla} is a VLA checkpoint", "needs an episode dataset")
