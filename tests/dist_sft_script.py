"""Run by tests/test_distributed_sft.py under ``accelerate launch`` (2 CPU processes, gloo).

Usage: ``dist_sft_script.py DATASET_DIR OUT_DIR``. Runs a few real SFT steps through ``run_sft`` on the
episode dataset folder and writes, per rank, what the process saw: world size,
rank, the checksum of its first batch's input ids (ranks must see different data) and of the trained
weights (ranks must agree after DDP's gradient all-reduce).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from roboalign.training.config import DataConfig, SFTRunConfig
from roboalign.training.sft import run_sft


class FirstBatch:
    ids: list[int] = []


def main() -> None:
    from accelerate import PartialState

    torch.set_num_threads(1)
    dataset, out = sys.argv[1], Path(sys.argv[2])
    state = PartialState()
    data = DataConfig(dataset=dataset, chunk_len=4, stride=4, fast_vocab_size=64, mixture={"robot": 1.0, "vqa": 0.5})
    cfg = SFTRunConfig(output_dir=str(out), data=data, learning_rate=3e-3, max_steps=3, per_device_train_batch_size=2,
                       logging_steps=1, save_steps=1000)

    import roboalign.training.sft as sft

    original = sft.make_sft_trainer

    def make(*args, **kwargs):
        trainer = original(*args, **kwargs)
        batch = next(iter(trainer.get_train_dataloader()))  # this rank's shard of the first batch
        FirstBatch.ids = batch["input_ids"].flatten().tolist()
        return trainer

    sft.make_sft_trainer = make
    aligned = run_sft(cfg)  # reads the episode dataset folder through roboalign.data
    weights = sum(float(p.detach().double().sum()) for p in aligned.backbone.model.parameters())
    report = {"rank": state.process_index, "world": state.num_processes, "backend": str(state.backend),
              "batch_sum": sum(FirstBatch.ids), "batch_len": len(FirstBatch.ids), "weights": weights}
    (out / f"rank{state.process_index}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
