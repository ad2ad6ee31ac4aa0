"""``make demo``: start the RoboAlign node graph on the simulated robot and run until Ctrl-C.

Placeholder graph until the ROS issue lands: it starts each node of roboalign_policy as its own process
(the same executables ``ros2 launch`` would start) and stops them cleanly on Ctrl-C.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

NODES = ["sim_robot_node", "policy_node", "bridge_node"]


def main(argv: list[str] | None = None) -> int:
    procs = [subprocess.Popen([sys.executable, "-m", f"roboalign_policy.{n}"]) for n in NODES]
    print(f"[demo] started {', '.join(NODES)}; Ctrl-C to stop", flush=True)
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.2)
        print("[demo] a node exited; stopping the others", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("[demo] stopping", flush=True)
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
