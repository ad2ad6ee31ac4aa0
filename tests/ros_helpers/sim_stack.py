"""The sim graph as the end-to-end tests follow it: an operator client that also keeps every action chunk and
joint trajectory, and the wait until the simulator answers."""

from __future__ import annotations

import time
from collections.abc import Iterator

from roboalign_msgs.msg import ActionChunk
from trajectory_msgs.msg import JointTrajectory

from roboalign_policy.tools.operator_client import OperatorClient
from roboalign_policy.tools.process_graph import ProcessGraph


def following(procs: ProcessGraph, depth: int, timeout: float = 240.0) -> Iterator[tuple[OperatorClient, dict]]:
    """Yield (client, seen) once the started graph's simulator answers (``seen``: "chunks" and "trajs" as received,
    queues of ``depth``); the client is closed and the graph stopped afterwards."""
    client = OperatorClient()
    seen: dict[str, list] = {"chunks": [], "trajs": []}
    client.node.create_subscription(ActionChunk, "/roboalign/action_chunk", seen["chunks"].append, depth)
    client.node.create_subscription(JointTrajectory, "/fr3_arm_controller/joint_trajectory", seen["trajs"].append,
                                    depth)
    try:
        deadline = time.monotonic() + timeout
        while not (client.wait_for_status(timeout=1.0) and client.joints):
            assert not procs.dead(), {n: procs.log_tail(n) for n in procs.dead()}
            assert time.monotonic() < deadline, f"the sim stack did not come up in {timeout:g} s"
        yield client, seen
    finally:
        client.close()
        procs.stop()
