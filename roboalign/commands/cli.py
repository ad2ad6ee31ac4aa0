"""The ``roboalign`` command: a thin dispatcher to the subcommand modules.

Each subcommand lives in its own module exposing ``main(argv: list[str] | None) -> int``; modules are
imported only when their command runs, so ``roboalign say`` does not import torch.
"""

from __future__ import annotations

import sys

from roboalign.commands.dispatch import dispatch

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "collect": ("roboalign.sim.collect", "record scripted-expert demonstrations in LIBERO"),
    "train": ("roboalign.commands.train", "train: sft | grpo | vla"),
    "eval": ("roboalign.evaluation.cli", "evaluate: libero | offline | probe | compare"),
    "export": ("roboalign.export.cli", "export a VLA checkpoint to ONNX (+ TensorRT engines)"),
    "bench": ("roboalign.bench", "benchmarks: fast | sim | align | runtime | ros | all"),
    "record": ("roboalign.commands.record", "record demonstrations through the bridge (teleop / leader / kinesthetic)"),
    "trials": ("roboalign.commands.trials", "run the paper's trial protocol (24 trials per object)"),
    "say": ("roboalign.commands.say", "send an operator command to the bridge and follow the episode"),
    "console": ("roboalign.commands.console", "the operator console: one web page to run, score, record and e-stop"),
    "demo": ("roboalign.commands.demo", "start the full ROS 2 stack on the simulated robot"),
    "check-config": ("roboalign.paper_scale.check_config", "build a run config's models on the meta device and check it"),
    "doctor": ("roboalign.doctor", "check this GPU box / robot PC: CUDA, providers, cameras, RT limits, DDS, ROS env"),
    "dataset": ("roboalign.commands.dataset", "datasets: convert | info | validate | repair (rosbag2, ours, LeRobot v3)"),
}


def main(argv: list[str] | None = None) -> int:
    return dispatch("roboalign", "<command> [args]", "command", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
