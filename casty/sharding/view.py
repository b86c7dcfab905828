"""What sharding reads from a `TopologySnapshot`: statuses, reachability, the coordinator's node."""

from __future__ import annotations

from collections.abc import Iterable
from typing import final

from casty.abc import Address
from casty.cluster.events import TopologySnapshot
from casty.cluster.member import Member, MemberStatus, oldest
from casty.errors import ConfigurationError
from casty.remote.address import ActorAddress

__all__ = ["ClusterView", "coordinator_name", "node_of"]

_EMPTY = TopologySnapshot(members=(), leader=None, unreachable=frozenset())


def coordinator_name(type_name: str) -> str:
    """The coordinator's actor name under ``/system`` for sharded type ``type_name``."""
    return f"sharding-{type_name}-coordinator"


def node_of(address: str) -> Address | None:
    """The node part of an actor address string, or None when it has none (or is malformed)."""
    try:
        return ActorAddress.parse(address).node
    except ConfigurationError:
        return None


@final
class ClusterView:
    """One node's latest topology, indexed by network address.

    The coordinator runs on the **oldest** ``up`` member having every role of the type (the
    smallest up number, as in Akka's cluster singleton): the oldest member changes only when it
    leaves or fails, whereas the leader (lowest address) changes whenever a lower address joins.
    """

    __slots__ = ("members", "snapshot", "unreachable")

    def __init__(self, snapshot: TopologySnapshot = _EMPTY) -> None:
        self.snapshot = snapshot
        self.members: dict[Address, Member] = {m.address: m for m in snapshot.members}
        self.unreachable = snapshot.unreachable

    def status(self, node: Address | None) -> MemberStatus | None:
        """The member's status at ``node``; None when no member is there (removed, unknown)."""
        member = self.members.get(node) if node is not None else None
        return member.status if member is not None else None

    def is_available(self, node: Address | None) -> bool:
        """Whether ``node`` is a reachable member that is not downed or removed."""
        status = self.status(node)
        return (
            status is not None and status is not MemberStatus.DOWN and node not in self.unreachable
        )

    def is_up(self, node: Address | None) -> bool:
        """Whether ``node`` is a reachable ``up`` member (eligible to host new shards)."""
        return self.status(node) is MemberStatus.UP and node not in self.unreachable

    def coordinator_node(self, roles: Iterable[str]) -> Address | None:
        """The node that runs the coordinator: the oldest ``up`` member with ``roles``."""
        needed = frozenset(roles)
        candidates = (
            m for m in self.members.values() if m.status is MemberStatus.UP and needed <= m.roles
        )
        found = oldest(candidates)
        return found.address if found is not None else None
