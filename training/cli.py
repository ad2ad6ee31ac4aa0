"""``roboalign train sft|grpo|vla --config …``: dispatch to the stage's ``main(argv)``.

``sft`` -> roboalign.training.sft, ``grpo`` -> roboalign.training.grpo, ``vla`` -> roboalign.training.vla
(the VLA head's trainer). Each stage parses its own options (``roboalign train sft --help``). For several
processes / GPUs run the stage module under accelerate instead, e.g.
``accelerate launch --config_file training/configs/accelerate_zero3.yaml -m roboalign.training.sft --config …``.
"""

from __future__ import annotations

import importlib
import sys

STAGES: dict[str, tuple[str, str]] = {
    "sft": ("roboalign.training.sft", "stage 1: SFT to reasoning + FAST action tokens"),
    "grpo": ("roboalign.training.grpo", "stage 3: GRPO on the format + prefix-accuracy reward"),
    "vla": ("roboalign.training.vla", "stage 4: flow-matching action head on the frozen aligned MLLM"),
}


def _usage() -> str:
    lines = ["usage: roboalign train <stage> --config CONFIG [options]", "", "stages:"]
    lines += [f"  {name:<5} {help_}" for name, (_, help_) in STAGES.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        print(f"roboalign train: unknown stage {stage!r}; valid stages: {', '.join(STAGES)}", file=sys.stderr)
        return 2
    module = importlib.import_module(STAGES[stage][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
