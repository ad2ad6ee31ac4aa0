"""Keeping rclpy's Python executor off the hot paths (the control loop, image -> chunk).

rclpy's executors are Python: every wake-up rebuilds the wait set over all of a node's entities while
holding the GIL. Measured with py-spy in `roboalign bench ros`, that loop was ~90 % of all GIL time in both
the policy and the bridge process (~1/3 of the wall time), the control thread and the inference callback
waiting behind it. Two things made it expensive, and both are removed here:

- **Wake-ups for inputs that are only read as the newest message** (100 Hz joint states, 30 Hz cameras):
  subscriptions in a :class:`PolledGroup` are left out of every wait set, and their owner takes the newest
  message itself when it needs one (:func:`take_newest`; the DDS queue keeps ``depth`` messages meanwhile,
  as for any subscription; the DDS reception time, :func:`received_s`, stamps its arrival).
- **Two QoS event handlers per publisher and subscription** (rclpy's default "incompatible QoS / type"
  warnings), each a Python waitable visited on every wake-up: :class:`QuietEvents` creates entities without
  them (measured: half of the executor's CPU per message), and :func:`qos_problems`, run by the 1 Hz
  diagnostics, reports an incompatible peer instead, with the same information.

``take_all`` uses the same rclpy calls the executor uses to take a message (``Subscription.handle``).
"""

from __future__ import annotations

from typing import Any

from rclpy.callback_groups import CallbackGroup
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.lifecycle.publisher import LifecyclePublisher
from rclpy.node import Node
from rclpy.qos import QoSCompatibility, qos_check_compatible
from rclpy.subscription import Subscription


class QuietEvents:
    """Node mixin (``class MyNode(QuietEvents, Node)``): publishers and subscriptions get no default QoS event
    handlers (explicit ``event_callbacks`` still work); see :func:`qos_problems` for the replacement."""

    def create_publisher(self, *args: Any, event_callbacks: PublisherEventCallbacks | None = None, **kw: Any):
        return super().create_publisher(  # type: ignore[misc]
            *args, event_callbacks=event_callbacks or PublisherEventCallbacks(use_default_callbacks=False), **kw)

    def create_lifecycle_publisher(self, *args: Any, **kw: Any) -> LifecyclePublisher:
        """A lifecycle node's managed publisher (publishes only while the node is active), without event handlers."""
        pub = self.create_publisher(*args, publisher_class=LifecyclePublisher, **kw)
        self.add_managed_entity(pub)  # type: ignore[attr-defined]
        return pub

    def create_subscription(self, *args: Any, event_callbacks: SubscriptionEventCallbacks | None = None,
                            **kw: Any):
        return super().create_subscription(  # type: ignore[misc]
            *args, event_callbacks=event_callbacks or SubscriptionEventCallbacks(use_default_callbacks=False),
            **kw)


def qos_problems(node: Node) -> list[str]:
    """Peers whose QoS cannot talk to this node's publishers / subscriptions (what rclpy's default event
    handlers would have warned about), one line each.

    Both sides are compared as the ROS graph reports them: an entity's own ``qos_profile`` says 0 for a
    default deadline / liveliness lease where the graph says "infinite", and ``qos_check_compatible`` of
    the two mixed forms reports an incompatibility that does not exist.
    """
    me = (node.get_name(), node.get_namespace().rstrip("/"))
    out = []
    sides = ((node.subscriptions, node.get_publishers_info_by_topic, node.get_subscriptions_info_by_topic,
              "publisher", "offers", "no messages reach us"),
             (node.publishers, node.get_subscriptions_info_by_topic, node.get_publishers_info_by_topic,
              "subscription", "requests", "it gets nothing from us"))
    for entities, peers_of, own_of, kind, verb, effect in sides:
        for topic in sorted({ent.topic_name for ent in entities}):
            own = [i.qos_profile for i in own_of(topic) if (i.node_name, i.node_namespace.rstrip("/")) == me]
            for peer in peers_of(topic):
                for mine in own[:1]:  # one entity of ours per topic and side (all this project creates)
                    pub_qos, sub_qos = (peer.qos_profile, mine) if kind == "publisher" else (mine, peer.qos_profile)
                    ok, why = qos_check_compatible(pub_qos, sub_qos)
                    if ok == QoSCompatibility.ERROR:
                        out.append(f"{kind} {peer.node_namespace.rstrip('/')}/{peer.node_name} on {topic} "
                                   f"{verb} incompatible QoS, {effect}: {why}")
    return out


class PolledGroup(CallbackGroup):
    """A callback group whose entities no executor waits on or runs (see the module docstring)."""

    def can_execute(self, entity: Any) -> bool:
        return False

    def beginning_execution(self, entity: Any) -> bool:
        return False

    def ending_execution(self, entity: Any) -> None:
        pass


def take_all(sub: Subscription) -> list[tuple[Any, dict[str, Any]]]:
    """Every message waiting on ``sub``, oldest first, as (message, MessageInfo dict) pairs."""
    out = []
    with sub.handle:
        while (taken := sub.handle.take_message(sub.msg_type, sub.raw)) is not None:
            out.append(taken)
    return out


def take_newest(sub: Subscription) -> tuple[Any, dict[str, Any]] | None:
    """The newest waiting message (older ones are dropped), or None."""
    got = take_all(sub)
    return got[-1] if got else None


def received_s(info: dict[str, Any]) -> float:
    """The DDS reception time of a taken message [s, system clock] (what the executor's wake-up would delay)."""
    return info["received_timestamp"] * 1e-9


def arrival_s(info: dict[str, Any], now: float, sim_time: bool) -> float:
    """When a message taken at ``now`` (the node's clock) arrived: its DDS reception time, never later than
    ``now``; under sim time ``now`` itself (the reception time is on the system clock)."""
    return now if sim_time else min(received_s(info), now)


def polled_subscription(node: Node, group: PolledGroup, msg_type: type, topic: str, qos: Any,
                        raw: bool = False) -> Subscription:
    """A subscription in ``group``, to be taken with :func:`take_all` / :func:`take_newest` (its callback is
    never called)."""
    return node.create_subscription(msg_type, topic, _never_called, qos, callback_group=group, raw=raw)


def _never_called(msg: Any) -> None:  # rclpy wants a callback; a PolledGroup never runs it
    raise AssertionError("a polled subscription was called by an executor")
