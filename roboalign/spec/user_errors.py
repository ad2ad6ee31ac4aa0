"""One line, not a traceback, for a user's expected mistakes: a missing dataset, export or config, a bad spec.

Every ``roboalign`` sub-command runs through :func:`run_main` (``roboalign.commands.dispatch``): a
``FileNotFoundError`` / ``NotADirectoryError`` / ``ValueError`` (``SpecError``, ``ManifestError``,
``SpecMismatchError``, ``TaskError``, ``DataError`` are all ``ValueError``\\ s) ends as
``<prog>: error: <message>`` on stderr with exit code 2; ``ROBOALIGN_DEBUG=1`` re-raises it with its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

USER_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, NotADirectoryError, ValueError)
DEBUG_ENV = "ROBOALIGN_DEBUG"


def run_main(prog: str, main: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """``main(argv)``, with a user error printed as one line (exit code 2) unless ``$ROBOALIGN_DEBUG`` is set."""
    try:
        return int(main(argv) or 0)
    except USER_ERRORS as e:
        if os.environ.get(DEBUG_ENV):
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"{prog}: error: {message} (ROBOALIGN_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 2
