"""Sub-command dispatch shared by ``roboalign`` and ``roboalign train``: a table of name -> (module, help),
modules imported only when their command runs (``roboalign say`` does not import torch), each exposing
``main(argv: list[str] | None) -> int``."""

from __future__ import annotations

import importlib
import sys

from roboalign.spec.user_errors import run_main


def dispatch(prog: str, usage: str, kind: str, table: dict[str, tuple[str, str]], argv: list[str] | None) -> int:
    """Run ``table[argv[0]]``'s ``main(argv[1:])``; usage on -h / no argument, exit code 2 on an unknown name."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        width = max(map(len, table)) + 1
        lines = [f"usage: {prog} {usage}", "", f"{kind}s:"]
        lines += [f"  {name:<{width}} {help_}" for name, (_, help_) in table.items()]
        print("\n".join(lines))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in table:
        print(f"{prog}: unknown {kind} {name!r}; valid {kind}s: {', '.join(table)}", file=sys.stderr)
        return 2
    return run_main(f"{prog} {name}", importlib.import_module(table[name][0]).main, rest)  # user errors: one line
