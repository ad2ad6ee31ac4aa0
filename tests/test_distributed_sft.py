"""SFT as 2 processes (DDP over gloo on CPU) launched by ``accelerate launch`` — the multi-GPU code path.

Each rank must see its own shard of the data, and after the gradient all-reduce both ranks must hold
identical weights; the main process alone writes a complete, loadable checkpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from align_fixtures import write_dataset  # noqa: E402

from roboalign.models.aligned import load_aligned, missing_files  # noqa: E402

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_two_process_sft(tmp_path):
    dataset = write_dataset(tmp_path / "data", 4, steps=16)
    out = tmp_path / "dist"
    accelerate = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [str(accelerate), "launch", "--config_file", str(ROOT / "training/configs/accelerate_cpu2.yaml"),
           "--main_process_port", "0", str(ROOT / "tests/dist_sft_script.py"), str(dataset), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{i}.json").read_text()) for i in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["world"] == 2 and r["backend"] == "gloo" for r in ranks)
    assert ranks[0]["batch_sum"] != ranks[1]["batch_sum"], "both ranks got the same batch: no data sharding"
    assert ranks[0]["weights"] == pytest.approx(ranks[1]["weights"], rel=1e-9), "ranks diverged: no all-reduce"
    assert missing_files(out) == []
    loaded = load_aligned(out)
    total = sum(float(p.detach().double().sum()) for p in loaded.backbone.model.parameters())
    assert total == pytest.approx(ranks[0]["weights"], rel=1e-9)
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3]  # logged once (main process), not twice
