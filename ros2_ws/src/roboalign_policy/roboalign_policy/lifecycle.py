"""What the managed (lifecycle) nodes share: autostart, and releasing what a configure created.

``policy_node`` and ``bridge_node`` are ``rclpy.lifecycle.LifecycleNode``s (``ros2 lifecycle set``, launch_ros
``LifecycleNode``, as ros2_control's hardware components). :func:`start_autostart` gives a node with the
``autostart`` parameter (``params.AUTOSTART``) a one-shot timer that configures and then activates it once it
spins; :class:`Created` records the entities a configure creates so cleanup destroys exactly those.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rclpy.callback_groups import CallbackGroup, MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

_KINDS = (("publishers", "destroy_publisher"), ("subscriptions", "destroy_subscription"),
          ("services", "destroy_service"), ("clients", "destroy_client"), ("timers", "destroy_timer"))


def start_autostart(node: LifecycleNode, group: CallbackGroup | None = None,
                    on_failure: Callable[[str], None] | None = None) -> Any:
    """With ``autostart`` true: a one-shot timer that triggers configure, then activate; ``on_failure(what)``
    when a transition fails (the node says why itself and stays where the transition left it)."""
    if not node.get_parameter("autostart").value:
        return None
    timer = None

    def run() -> None:
        timer.cancel()
        for what, trigger in (("configure", node.trigger_configure), ("activate", node.trigger_activate)):
            if trigger() != TransitionCallbackReturn.SUCCESS:
                if on_failure is not None:
                    on_failure(what)
                return

    timer = node.create_timer(0.0, run, callback_group=group or MutuallyExclusiveCallbackGroup())
    return timer


def lifecycle_hint(node: LifecycleNode, transition: str) -> str:
    """The command that takes ``node`` through ``transition`` (configure, activate, ...)."""
    return f"ros2 lifecycle set {node.get_fully_qualified_name()} {transition}"


class Created:
    """The publishers, subscriptions, services, clients and timers a node created between construction of this
    object and :meth:`mark`; :meth:`release` destroys them (lifecycle publishers are managed entities too)."""

    def __init__(self, node: LifecycleNode) -> None:
        self._node = node
        self._before = {kind: {id(e) for e in getattr(node, kind)} for kind, _ in _KINDS}
        self._made: list[tuple[str, Any]] = []

    def mark(self) -> None:
        """Record what was created since construction (again: also what was created since the last mark, e.g. a
        camera subscription re-created for a publisher's QoS)."""
        node, known = self._node, {id(e) for _, e in self._made}
        for kind, destroy in _KINDS:
            self._made += [(destroy, e) for e in getattr(node, kind)
                           if id(e) not in self._before[kind] and id(e) not in known]

    def release(self) -> None:
        """Destroy what :meth:`mark` recorded; safe to call twice."""
        made, self._made = self._made, []
        for destroy, entity in reversed(made):
            if destroy == "destroy_publisher" and hasattr(self._node, "destroy_lifecycle_publisher"):
                destroy = "destroy_lifecycle_publisher"  # removes it from the managed entities as well
            getattr(self._node, destroy)(entity)
