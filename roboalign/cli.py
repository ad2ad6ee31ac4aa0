"""The ``roboalign`` command: a thin dispatcher to the subcommand modules.

Each subcommand lives in its own module exposing ``main(argv: list[str] | None) -> int``; modules are
imported only when their command runs, so ``roboalign say`` does not import torch.
"""

from __future__ import annotations

import importlib
import sys

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "collect": ("roboalign.sim.collect", "record scripted-expert demonstrations in LIBERO"),
    "train": ("roboalign.training.cli", "train: sft | grpo | vla"),
    "eval": ("roboalign.evaluation.cli", "evaluate: libero | offline | probe | compare"),
    "export": ("roboalign.export.cli", "export a VLA checkpoint to ONNX (+ TensorRT engines)"),
    "bench": ("roboalign.bench", "benchmarks: fast | sim | align | runtime | ros | all"),
    "trials": ("roboalign.trials", "run the paper's trial protocol (24 trials per object)"),
    "say": ("roboalign.operator", "send an operator command to the bridge and follow the episode"),
    "demo": ("roboalign.demo", "start the full ROS 2 stack on the simulated robot"),
}


def _usage() -> str:
    lines = ["usage: roboalign <command> [args]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"roboalign: unknown command {name!r}; valid commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
