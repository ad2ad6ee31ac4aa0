"""``roboalign train sft|grpo|vla --config …``: dispatch to the stage's ``main(argv)``.

``sft`` -> roboalign.training.sft, ``grpo`` -> roboalign.training.grpo, ``vla`` -> roboalign.training.vla_head
(the VLA head's trainer). Every stage takes the same options (``training/overrides.py``): ``--config FILE``,
``--set key=value ...`` (repeatable, nested keys with dots, e.g. ``--set data.dataset=D steps=30``) and the
shortcuts ``--data`` / ``--output-dir`` / ``--max-steps``; a user's mistake ends in one line (exit code 2). For several
processes / GPUs run the stage module under accelerate instead, e.g.
``accelerate launch --config_file training/configs/accelerate_zero3.yaml -m roboalign.training.sft --config …``.
"""

from __future__ import annotations

import sys

from roboalign.commands.dispatch import dispatch

STAGES: dict[str, tuple[str, str]] = {
    "sft": ("roboalign.training.sft", "stage 1: SFT to reasoning + FAST action tokens"),
    "grpo": ("roboalign.training.grpo", "stage 3: GRPO on the format + prefix-accuracy reward"),
    "vla": ("roboalign.training.vla_head", "stage 4: flow-matching action head on the frozen aligned MLLM"),
}


def main(argv: list[str] | None = None) -> int:
    return dispatch("roboalign train", "<stage> --config CONFIG [options]", "stage", STAGES, argv)


if __name__ == "__main__":
    sys.exit(main())
