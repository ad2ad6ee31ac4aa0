"""``python -m roboalign.data.validate DIR [--full]``: list every bad episode file of a dataset folder.

Exit status 1 when any file is truncated, corrupt, inconsistent, or left in flight by an interrupted run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from roboalign.data.episodes import episode_files, validate_dir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m roboalign.data.validate", description=__doc__.split("\n")[0])
    ap.add_argument("root", type=Path, help="dataset folder (or its episodes/ folder)")
    ap.add_argument("--full", action="store_true", help="decompress every array (slower, catches bad chunks)")
    args = ap.parse_args(argv)
    files = episode_files(args.root)
    bad = validate_dir(args.root, full=args.full)
    for p, why in bad:
        print(f"BAD {p}: {why}")
    print(f"{len(files)} episode files, {len(bad)} problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
