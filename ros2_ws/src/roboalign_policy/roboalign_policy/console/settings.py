"""The console node's parameters (``ros2 param describe``; the graph tools read them as ``PARAMS``)."""

from __future__ import annotations

from roboalign.spec.tasks import DEFAULT_TASKS
from roboalign_policy import qos
from roboalign_policy.params import ParamSpec

PARAMS = [
    ParamSpec("host", "127.0.0.1", "address the page is served on (127.0.0.1: this computer only)"),
    ParamSpec("port", 8765, "port of the page (0: any free port, printed at start)", min=0, max=65535),
    ParamSpec("token", "", "access token of the page and its actions (empty: a random one, printed at start)"),
    ParamSpec("refresh_hz", 5.0, "camera JPEGs and state pushed to the page per second", min=0.2, max=30.0),
    ParamSpec("camera_names", list(qos.CAMERA_NAMES), "cameras shown", array="str"),
    ParamSpec("camera_topics", list(qos.CAMERA_TOPICS), "their sensor_msgs/Image topics", array="str"),
    ParamSpec("mode", "sim", "sim (success by the simulator) or real (the operator marks each trial)",
              choices=("sim", "real")),
    ParamSpec("trials_dir", "runs/console/trials", "trials.csv / results.* of the console's trials"),
    ParamSpec("label", "policy", "results column of the console's trials (model / checkpoint)"),
    ParamSpec("trial_tasks", list(DEFAULT_TASKS.names), "tasks of the console's trials", array="str"),
    ParamSpec("first_init_state", 0, "sim: trial k starts from LIBERO init state FIRST + k", min=0, max=100000),
    ParamSpec("record_dir", "runs/console/record", "record.csv and dataset/ of the console's recordings"),
]
