"""Two "hosts" on one machine: two Linux network namespaces joined by a veth pair (traffic stays on this
machine; addresses are private ones assigned inside the namespaces only).

    with two_hosts() as (robot, policy):          # needs root (CAP_NET_ADMIN) and iproute2
        subprocess.run([*robot.prefix, "python", ...])

Each namespace has its loopback and one end of the veth pair, a multicast route (DDS discovery) and,
optionally, a rate limit on its end (``rate="1gbit"``: a tc token bucket, like a gigabit link). Raises
:class:`NetnsUnavailable` with the reason when namespaces cannot be made (not root, no ``ip``, a container
without CAP_NET_ADMIN), so a test can skip with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

SUBNET = "10.231.7"  # a private /24 used only inside the two namespaces


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be made here (the message says why)."""


@dataclass(frozen=True)
class Host:
    namespace: str
    address: str
    device: str

    @property
    def prefix(self) -> list[str]:
        """Command prefix running a program on this host (environment kept)."""
        return ["ip", "netns", "exec", self.namespace]


def _ip(*args: str) -> None:
    out = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise NetnsUnavailable(f"'ip {' '.join(args)}' failed: {out.stderr.strip() or out.returncode}")


def _setup(host: Host, peer_ns: str | None, rate: str | None) -> None:
    ns = ["-n", host.namespace]
    _ip(*ns, "link", "set", "lo", "up")
    _ip(*ns, "addr", "add", f"{host.address}/24", "dev", host.device)
    _ip(*ns, "link", "set", host.device, "up")
    _ip(*ns, "route", "add", "224.0.0.0/4", "dev", host.device)  # DDS discovery is multicast
    if rate and shutil.which("tc"):
        subprocess.run(["ip", "netns", "exec", host.namespace, "tc", "qdisc", "add", "dev", host.device, "root",
                        "tbf", "rate", rate, "burst", "256kb", "latency", "50ms"], check=False, capture_output=True)


@contextmanager
def two_hosts(name: str = "roboalign", rate: str | None = None) -> Iterator[tuple[Host, Host]]:
    """(robot host, policy host) joined by a veth pair; removed on exit."""
    if shutil.which("ip") is None:
        raise NetnsUnavailable("iproute2's 'ip' is not installed")
    if os.geteuid() != 0:
        raise NetnsUnavailable("network namespaces need root (CAP_NET_ADMIN); run as root to measure two hosts")
    tag = f"{name}{os.getpid() % 10000}"
    robot = Host(f"{tag}_robot", f"{SUBNET}.1", "veth_r")
    policy = Host(f"{tag}_policy", f"{SUBNET}.2", "veth_p")
    made: list[str] = []
    try:
        for h in (robot, policy):
            _ip("netns", "add", h.namespace)
            made.append(h.namespace)
        _ip("link", "add", "veth_r", "netns", robot.namespace, "type", "veth", "peer", "name", "veth_p",
            "netns", policy.namespace)
        _setup(robot, policy.namespace, rate)
        _setup(policy, robot.namespace, rate)
        yield robot, policy
    finally:
        for ns in made:  # deleting a namespace removes its end of the veth pair, and so the pair
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
