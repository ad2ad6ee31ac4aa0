"""``roboalign check-config CONFIG.yaml ...``: a run config checked at its real size before any weights load.

For an ``sft`` / ``grpo`` / ``vla`` config it builds the configured model on the meta device (the published
architecture of Qwen2.5-VL-7B-Instruct / Qwen3-VL-8B-Instruct from :mod:`.architectures` when the model
folder is not here, its own ``config.json`` when it is), applies the action-vocabulary resize
(+2 markers + one token per FAST id), freezes what the paper freezes (SFT: the vision encoder; GRPO:
nothing; VLA: the whole backbone), attaches the head at the configured layer, pushes shapes through every
stage (SFT batch -> loss; a GRPO step's generation tensors; the VLA head's loss and sampler; the export
graphs' inputs and outputs), and prints parameter counts, tokens per sample and a per-GPU memory
estimate (:mod:`.memory`) for the accelerate setup the config's header documents (or ``--accelerate``)
and the GPU count (``--gpus``, else the visible CUDA devices).

Any mismatch is one line naming the file and the field (layer index beyond the depth, head width !=
hidden size, a missing local model folder, ``num_processes`` != GPUs, a prompt longer than
``max_length``, a GRPO batch that does not split into groups) and exit status 1. ``--allow-missing``
checks a config whose model folders are not on this machine (CI) by the architecture the folder name
implies (``Qwen2.5-VL-7B`` ...), or by the SFT config whose ``output_dir`` it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from roboalign.paper_scale.accelerate_setup import (
    DistSetup,
    SetupError,
    check_gpu_count,
    documented_accelerate_config,
    load_accelerate_config,
)

KINDS = ("sft", "grpo", "vla", "accelerate")


class CheckError(ValueError):
    """The config cannot run as written; the message names the file and the field."""


@dataclass
class Report:
    """What one config check found: lines (status, text) and machine-readable facts."""

    path: str
    kind: str = ""
    lines: list[tuple[str, str]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def add(self, text: str, status: str = "OK") -> None:
        self.lines.append((status, text))

    @property
    def ok(self) -> bool:
        return all(s != "FAIL" for s, _ in self.lines)

    def render(self) -> str:
        head = f"check-config {self.path} ({self.kind or '?'}): {'OK' if self.ok else 'FAIL'}"
        return "\n".join([head, *(f"  {s:<4}  {t}" for s, t in self.lines)])

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.path, "kind": self.kind, "ok": self.ok,
                "checks": [{"status": s, "text": t} for s, t in self.lines], **self.facts}


@dataclass(frozen=True)
class Options:
    gpus: int | None = None
    accelerate: str | None = None
    gpu_memory_gb: float = 80.0
    allow_missing: bool = False


def config_kind(path: Path) -> str:
    if not path.is_file():
        raise CheckError(f"config file {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if isinstance(data, dict) and "distributed_type" in data and "kind" not in data:
        return "accelerate"  # an accelerate config file: its GPU count is checked
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in KINDS[:3]:
        raise CheckError(f"{path}: kind={kind!r}; check-config checks run configs with kind: {', '.join(KINDS[:3])} "
                         "and accelerate config files")
    return kind


def dist_setup(path: Path, opts: Options, report: Report) -> DistSetup:
    """The accelerate setup (``--accelerate``, else the one the header documents), checked against the GPUs."""
    acc = Path(opts.accelerate) if opts.accelerate else documented_accelerate_config(path)
    setup = load_accelerate_config(acc) if acc is not None else DistSetup()
    gpus = opts.gpus
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count() or None
    for note in check_gpu_count(setup, gpus):
        report.add(note, "WARN")
    report.add(f"distributed setup: {setup.describe()}")
    report.facts["setup"] = {"strategy": setup.strategy, "num_processes": setup.num_processes,
                             "zero_stage": setup.zero_stage, "source": setup.source}
    return setup


def check(path: str | Path, opts: Options | None = None) -> Report:
    """Check one run config; failures are FAIL lines in the report (never an exception for bad input)."""
    from roboalign.paper_scale import stages, vla_stage

    opts = opts or Options()
    path = Path(path)
    report = Report(str(path))
    try:
        report.kind = config_kind(path)
        if report.kind == "accelerate":
            dist_setup(path, Options(**{**opts.__dict__, "accelerate": str(path)}), report)
            return report
        if report.kind == "vla":  # one GPU, no accelerate setup
            vla_stage.check_vla(path, opts, report)
            return report
        setup = dist_setup(path, opts, report)
        {"sft": stages.check_sft, "grpo": stages.check_grpo}[report.kind](path, opts, setup, report)
    except (CheckError, SetupError, ValueError, FileNotFoundError) as e:
        report.add(str(e), "FAIL")
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="roboalign check-config", description=__doc__.split("\n\n")[0])
    ap.add_argument("configs", nargs="+", help="run configs (training/configs/*.yaml with kind sft|grpo|vla)")
    ap.add_argument("--gpus", type=int, default=None, help="GPUs per machine (default: the visible CUDA devices)")
    ap.add_argument("--accelerate", default=None, help="accelerate config (default: the one the config's header "
                    "documents in its `accelerate launch --config_file ...` line)")
    ap.add_argument("--gpu-memory-gb", type=float, default=80.0, help="memory per GPU for the fit check (80)")
    ap.add_argument("--allow-missing", action="store_true", help="model folders that are not here: check the "
                    "architecture their name implies instead of failing (CI)")
    ap.add_argument("--json", action="store_true", help="one JSON object per config instead of text")
    args = ap.parse_args(argv)
    opts = Options(gpus=args.gpus, accelerate=args.accelerate, gpu_memory_gb=args.gpu_memory_gb,
                   allow_missing=args.allow_missing)
    reports = [check(c, opts) for c in args.configs]
    for r in reports:
        print(json.dumps(r.to_dict()) if args.json else r.render())
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
