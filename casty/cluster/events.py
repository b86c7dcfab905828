"""Membership events, the topology snapshot, and the pure diff that produces them.

Subscribers match on the classes (``case MemberUp(member=m)``) or on the bases:
`ClusterDomainEvent` is the root, `MemberEvent` covers status changes and `ReachabilityEvent`
covers reachability changes. Every event carries the member as it is after the change
(``member.address``, ``member.node_id``, ``member.status``, ``member.roles``).

`diff_events` compares two successive states of one node and yields each change exactly once:
the topology actor calls it on every state change and publishes the result, so a node publishes
each change exactly once. `topology_snapshot` builds the `TopologySnapshot` pushed to
subscribers on every change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from casty.abc import Address
from casty.cluster.member import Member, MemberStatus, UniqueAddress

if TYPE_CHECKING:
    from casty.cluster.gossip import Gossip

__all__ = [
    "ClusterDomainEvent",
    "LeaderChanged",
    "MemberDowned",
    "MemberEvent",
    "MemberExited",
    "MemberJoined",
    "MemberLeft",
    "MemberRemoved",
    "MemberUp",
    "MemberWeaklyUp",
    "ReachabilityEvent",
    "ReachableMember",
    "TopologySnapshot",
    "UnreachableMember",
    "diff_events",
    "topology_snapshot",
]


@dataclass(frozen=True, slots=True)
class ClusterDomainEvent:
    """Base class of every cluster membership event."""


@dataclass(frozen=True, slots=True)
class MemberEvent(ClusterDomainEvent):
    """Base class of member status changes.

    Attributes:
        member: the member with the status this event reports.
    """

    member: Member


@dataclass(frozen=True, slots=True)
class MemberJoined(MemberEvent):
    """A new member is ``joining``."""


@dataclass(frozen=True, slots=True)
class MemberWeaklyUp(MemberEvent):
    """A joining member is ``weakly_up`` (reachable, but the cluster had no convergence)."""


@dataclass(frozen=True, slots=True)
class MemberUp(MemberEvent):
    """A member is ``up``."""


@dataclass(frozen=True, slots=True)
class MemberLeft(MemberEvent):
    """A member is ``leaving`` (it asked to leave)."""


@dataclass(frozen=True, slots=True)
class MemberExited(MemberEvent):
    """A leaving member is ``exiting``: it hands its work off and is about to be removed."""


@dataclass(frozen=True, slots=True)
class MemberDowned(MemberEvent):
    """A member was marked ``down`` (crashed or on the losing side of a partition)."""


@dataclass(frozen=True, slots=True)
class MemberRemoved(MemberEvent):
    """A member was removed from the cluster; ``member.status`` is ``removed``.

    Attributes:
        previous_status: ``exiting`` after a graceful leave, ``down`` after a failure (or
            another status when this node missed the intermediate states).
    """

    previous_status: MemberStatus


@dataclass(frozen=True, slots=True)
class ReachabilityEvent(ClusterDomainEvent):
    """Base class of reachability changes.

    Attributes:
        member: the member whose reachability changed.
    """

    member: Member


@dataclass(frozen=True, slots=True)
class UnreachableMember(ReachabilityEvent):
    """Some member's failure detector lost this member."""


@dataclass(frozen=True, slots=True)
class ReachableMember(ReachabilityEvent):
    """Every observer that had lost this member hears from it again."""


@dataclass(frozen=True, slots=True)
class LeaderChanged(ClusterDomainEvent):
    """The leader, as this node sees it, changed.

    Attributes:
        leader: the new leader's address, or ``None`` when there is none.
    """

    leader: Address | None


@dataclass(frozen=True, slots=True)
class TopologySnapshot:
    """The whole picture, pushed to subscribers on every change.

    Attributes:
        members: every member, sorted by unique address.
        leader: the leader's address as this node sees it, or ``None``.
        unreachable: addresses of members some observer records as unreachable.
        shard_allocations: sharded type name to (shard id to the owning node's address);
            empty until sharding fills it in.
    """

    members: tuple[Member, ...]
    leader: Address | None
    unreachable: frozenset[Address]
    shard_allocations: Mapping[str, Mapping[int, Address]] = field(default_factory=dict)


_LIFECYCLE = (
    MemberStatus.JOINING,
    MemberStatus.WEAKLY_UP,
    MemberStatus.UP,
    MemberStatus.LEAVING,
    MemberStatus.EXITING,
)
_EVENT_OF: dict[MemberStatus, type[MemberEvent]] = {
    MemberStatus.JOINING: MemberJoined,
    MemberStatus.WEAKLY_UP: MemberWeaklyUp,
    MemberStatus.UP: MemberUp,
    MemberStatus.LEAVING: MemberLeft,
    MemberStatus.EXITING: MemberExited,
    MemberStatus.DOWN: MemberDowned,
}


def _status_steps(old: MemberStatus | None, new: MemberStatus) -> list[MemberStatus]:
    """The statuses a member went through from ``old`` to ``new``, each reported once.

    A member first seen in ``new`` reports only its current status. A member that moved
    several steps along the lifecycle between two states of this node reports every step (so a
    subscriber sees ``MemberUp`` before ``MemberLeft`` even when it missed the ``up`` state);
    ``weakly_up`` is optional and only reported when it is the current status.
    """
    if old is None or new is MemberStatus.DOWN or new not in _LIFECYCLE or old not in _LIFECYCLE:
        return [new]
    start, end = _LIFECYCLE.index(old), _LIFECYCLE.index(new)
    if end < start:
        return [new]
    return [
        s for s in _LIFECYCLE[start + 1 : end + 1] if s is new or s is not MemberStatus.WEAKLY_UP
    ]


def _unreachable(gossip: Gossip) -> frozenset[UniqueAddress]:
    return gossip.reachability_excluding_downed_observers().all_unreachable_or_terminated()


def diff_events(old: Gossip, new: Gossip, self_node: UniqueAddress) -> list[ClusterDomainEvent]:
    """The events for one node's state going from ``old`` to ``new``; empty when equal.

    Order: status changes (members in address order), then removals, then unreachable and
    reachable members (never about ``self_node``), then a leader change. A member that moved
    several lifecycle steps between the two states reports each step once (see
    `MemberRemoved` for removals); calling this on every state change of a node therefore
    reports each change once.
    """
    events: list[ClusterDomainEvent] = []
    for member in new.members:
        before = old.member(member.unique_address)
        previous = before.status if before is not None else None
        if previous is member.status:
            continue
        for status in _status_steps(previous, member.status):
            events.append(_EVENT_OF[status](replace(member, status=status)))
    for member in old.members:
        if not new.has_member(member.unique_address):
            removed = replace(member, status=MemberStatus.REMOVED)
            events.append(MemberRemoved(removed, member.status))
    was_unreachable, is_unreachable = _unreachable(old), _unreachable(new)
    for member in new.members:
        node = member.unique_address
        if node == self_node:
            continue
        if node in is_unreachable and node not in was_unreachable:
            events.append(UnreachableMember(member))
        elif node in was_unreachable and node not in is_unreachable:
            events.append(ReachableMember(member))
    old_leader, new_leader = old.leader(self_node), new.leader(self_node)
    if old_leader != new_leader:
        events.append(LeaderChanged(new_leader.address if new_leader is not None else None))
    return events


def topology_snapshot(
    gossip: Gossip,
    self_node: UniqueAddress,
    shard_allocations: Mapping[str, Mapping[int, Address]] | None = None,
) -> TopologySnapshot:
    """The `TopologySnapshot` of ``gossip`` as ``self_node`` sees it."""
    leader = gossip.leader(self_node)
    return TopologySnapshot(
        members=gossip.members,
        leader=leader.address if leader is not None else None,
        unreachable=frozenset(m.address for m in gossip.unreachable_members()),
        shard_allocations=dict(shard_allocations or {}),
    )
