"""``python -m roboalign_policy.console --ros-args ...``: the console as a node of a graph (see ``node.py``)."""

import sys

from roboalign_policy.console.node import main

sys.exit(main())
