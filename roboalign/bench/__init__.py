"""``roboalign bench <name>``: benchmarks, each printing one final summary line.

Each benchmark is a module ``roboalign.bench.<name>`` with ``main(argv) -> int``.
``roboalign bench all`` runs them in order (``make bench``).
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ["fast", "sim", "align", "runtime", "ros", "rtc"]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: roboalign bench <{' | '.join(BENCHMARKS + ['all'])}> [args]")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    names = BENCHMARKS if name == "all" else [name]
    for n in names:
        if n not in BENCHMARKS:
            print(f"unknown benchmark {n!r}; valid: {', '.join(BENCHMARKS)}, all", file=sys.stderr)
            return 2
    rc = 0
    for n in names:
        rc |= int(importlib.import_module(f"roboalign.bench.{n}").main(rest if name != "all" else []) or 0)
    return rc
