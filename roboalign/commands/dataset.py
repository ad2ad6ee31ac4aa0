"""``roboalign dataset convert|info|validate|repair``: recorded rosbag2 episodes, our episode folders, LeRobot v3.

    roboalign dataset convert SRC DST --to roboalign|lerobot   (the source format is detected and reported)
    roboalign dataset info DIR
    roboalign dataset validate DIR [--config training/configs/vla_tiny.yaml] [--full]
    roboalign dataset repair RECORD_DIR    (recorded episodes cut short by a crash: readable bag, "incomplete")
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from roboalign.data.bag_salvage import recover_crashed
from roboalign.data.convert import ConvertOptions, convert
from roboalign.data.formats import Expect, detect, info, validate
from roboalign.data.rosbag_episodes import BagOptions


def _convert(args: argparse.Namespace) -> int:
    expect = Expect.from_config(args.config) if args.config else Expect()
    cams = tuple(args.cameras.split(",")) if args.cameras else expect.cameras
    bag = BagOptions(fps=args.fps, cameras=cams, max_gap_s=args.max_gap, action_source=args.actions)
    opts = ConvertOptions(bag=bag, action_space=args.action_space or expect.action_space,
                          include_incomplete=args.include_incomplete, success_only=args.success_only,
                          vcodec=args.vcodec, fps=int(args.fps) if args.fps else None)
    report = convert(args.src, args.dst, args.to, opts)
    print("\n".join(report.lines()))
    return 1 if report.failed or not report.written else 0


def _info(args: argparse.Namespace) -> int:
    print("\n".join(info(args.root)))
    return 0


def _validate(args: argparse.Namespace) -> int:
    expect = Expect.from_config(args.config) if args.config else Expect(
        args.action_space, tuple(args.cameras.split(",")) if args.cameras else None)
    problems = validate(args.root, expect, full=args.full)
    for where, what in problems:
        print(f"BAD {where}: {what}")
    print(f"{args.root}: {detect(args.root)} dataset, {len(problems)} problem(s)")
    return 1 if problems else 0


def _repair(args: argparse.Namespace) -> int:
    class _Print:
        @staticmethod
        def warning(msg: str) -> None:
            print(msg)

    done = recover_crashed(args.root, _Print(), force=args.force)
    print(f"{args.root}: {len(done)} crashed episode(s) repaired")
    return 0


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="roboalign dataset", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help="convert a dataset (format of SRC detected)")
    c.add_argument("src", type=Path, help="a record_dir / episode folder, our dataset, or a LeRobot v3 dataset")
    c.add_argument("dst", type=Path, help="output folder (LeRobot: new; ours: episodes added)")
    c.add_argument("--to", required=True, choices=["roboalign", "lerobot"], help="target format")
    c.add_argument("--fps", type=float, help="control grid rate (default: the recorded command rate)")
    c.add_argument("--actions", default="measured", choices=["measured", "commanded"],
                   help="rosbag: action = joints measured one tick later (default, as `collect`) or the command")
    c.add_argument("--max-gap", type=float, default=0.5, help="rosbag: longest allowed gap in a stream [s]")
    c.add_argument("--include-incomplete", action="store_true", help="keep crashed/interrupted recordings "
                   "(marked incomplete: the training loader still refuses them)")
    c.add_argument("--success-only", action="store_true", help="to lerobot: only successful episodes")
    c.add_argument("--vcodec", default="libsvtav1", help="to lerobot: libsvtav1 (AV1, lerobot's default) | h264")
    for p in (c, sub.add_parser("validate", help="check a dataset; lists every problem")):
        p.add_argument("--config", type=Path, help="training config whose action_space and cameras must be present")
        p.add_argument("--action-space", help="action space (lerobot: what 'action' is; check: must be present)")
        p.add_argument("--cameras", help="comma-separated cameras that must be present")
    v = sub.choices["validate"]
    v.add_argument("root", type=Path)
    v.add_argument("--full", action="store_true", help="also decode every array / video frame")
    sub.add_parser("info", help="summarise a dataset").add_argument("root", type=Path)
    r = sub.add_parser("repair", help="repair recorded episodes cut short by a crash (original kept as bag.crashed)")
    r.add_argument("root", type=Path)
    r.add_argument("--force", action="store_true", help="also when the recorded pid is alive (reused by another process)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"convert": _convert, "info": _info, "validate": _validate, "repair": _repair}[args.cmd](args)
    except (FileNotFoundError, FileExistsError, ValueError, KeyError) as e:
        print(f"roboalign dataset {args.cmd}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
