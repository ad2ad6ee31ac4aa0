"""The operator console: one web page served next to the stack (cameras, plots, commands, e-stop, trials, recording).

The console process talks ROS (topics, the TaskCommand service, the e-stop) and serves one page; it owns no
safety: losing the page or the process moves nothing, the bridge's own watchdogs decide.
"""

from roboalign_policy.console.settings import PARAMS  # noqa: F401  (the node's parameters, as every node module)
