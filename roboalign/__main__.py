"""``python -m roboalign ...``: the same as the ``roboalign`` command."""

import sys

from roboalign.commands.cli import main

sys.exit(main())
