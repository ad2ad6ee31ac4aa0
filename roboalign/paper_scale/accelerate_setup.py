"""The distributed setup of a run, read from an accelerate config file (DeepSpeed ZeRO, FSDP, DDP).

Only what a memory estimate and the GPU-count check need: the strategy, process and machine counts,
mixed precision and offloading. Errors name the file and the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

STRATEGIES = {"DEEPSPEED": "deepspeed", "FSDP": "fsdp", "MULTI_GPU": "ddp", "NO": "single", "MULTI_CPU": "ddp"}


class SetupError(ValueError):
    """A run config and its distributed setup disagree (the message names the file and field)."""


@dataclass(frozen=True)
class DistSetup:
    """How the run is spread over GPUs."""

    strategy: str = "single"  # deepspeed | fsdp | ddp | single
    num_processes: int = 1  # total processes (= GPUs) over all machines
    num_machines: int = 1
    zero_stage: int = 0
    mixed_precision: str = "no"
    offload_optimizer: bool = False
    offload_params: bool = False
    source: str = "(no accelerate config: one process)"

    @property
    def shards(self) -> int:
        """Over how many GPUs parameters / gradients / optimizer states are split."""
        if self.strategy == "fsdp" or (self.strategy == "deepspeed" and self.zero_stage == 3):
            return self.num_processes
        return 1

    def describe(self) -> str:
        what = f"DeepSpeed ZeRO-{self.zero_stage}" if self.strategy == "deepspeed" else self.strategy.upper()
        off = " + optimizer offload" if self.offload_optimizer else ""
        return (f"{what}{off}, {self.num_processes} process(es) on {self.num_machines} machine(s), "
                f"mixed precision {self.mixed_precision} ({self.source})")


def _int_field(data: dict[str, Any], key: str, where: str, default: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SetupError(f"{where}: {key}={value!r} must be a positive integer")
    return value


def load_accelerate_config(path: str | Path) -> DistSetup:
    """Parse an ``accelerate config`` YAML file."""
    path = Path(path)
    if not path.is_file():
        raise SetupError(f"accelerate config {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    dist = data.get("distributed_type", "NO")
    if dist not in STRATEGIES:
        raise SetupError(f"{path}: distributed_type={dist!r}; valid: {', '.join(STRATEGIES)}")
    ds = data.get("deepspeed_config") or {}
    stage = int(ds.get("zero_stage", 0)) if dist == "DEEPSPEED" else 0
    if dist == "DEEPSPEED" and stage not in (0, 1, 2, 3):
        raise SetupError(f"{path}: deepspeed_config.zero_stage={stage}; valid: 0, 1, 2, 3")
    fsdp = data.get("fsdp_config") or {}
    return DistSetup(strategy=STRATEGIES[dist], num_processes=_int_field(data, "num_processes", str(path), 1),
                     num_machines=_int_field(data, "num_machines", str(path), 1), zero_stage=stage,
                     mixed_precision=str(data.get("mixed_precision", "no")),
                     offload_optimizer=ds.get("offload_optimizer_device", "none") not in ("none", None),
                     offload_params=(ds.get("offload_param_device", "none") not in ("none", None)
                                     or bool(fsdp.get("fsdp_offload_params", False))),
                     source=str(path))


def documented_accelerate_config(config_path: str | Path) -> Path | None:
    """The ``accelerate launch --config_file X`` a run config's header comment documents (so the documented
    command is checked too), resolved against the repository root; None when there is none."""
    text = Path(config_path).read_text()
    match = re.search(r"^#.*--config_file\s+(\S+)", text, flags=re.MULTILINE)
    if not match:
        return None
    rel = Path(match.group(1))
    for base in (Path.cwd(), Path(config_path).resolve().parents[2], Path(config_path).resolve().parent):
        if (base / rel).is_file():
            return base / rel
    return Path(config_path).resolve().parents[2] / rel


def check_gpu_count(setup: DistSetup, gpus: int | None) -> list[str]:
    """Raise when the accelerate config's process count does not match the GPUs; notes for the report."""
    if gpus is None:
        return [f"GPU count not given (--gpus) and no CUDA here: assuming one GPU per process "
                f"({setup.num_processes})"]
    total = gpus * setup.num_machines
    if setup.num_processes != total:
        raise SetupError(f"{setup.source}: num_processes={setup.num_processes} but there are {gpus} GPU(s) x "
                         f"{setup.num_machines} machine(s) = {total}; set num_processes to {total} (one process per "
                         "GPU) or pass --gpus")
    return []
