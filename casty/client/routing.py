"""The client's routing state: the current topology, per-node circuit breakers, the buffer.

`ClientRouting` decides, for one `ShardEnvelope`, where it goes: the owning node's region (the
normal case, no proxy hop), any available node's region when the shard has no live owner (that
region asks the coordinator and allocates the shard, one extra hop until the next snapshot names
the owner), or the bounded buffer when no node can take it (no snapshot yet, the owner is
unreachable or its breaker is open). Every new snapshot and every breaker change flushes the
buffer through the same decision again, in order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, final

from casty.abc import Address
from casty.actors.ref import ActorRef
from casty.cluster.events import TopologySnapshot
from casty.cluster.member import MemberStatus
from casty.errors import ConfigurationError
from casty.remote.address import ActorAddress
from casty.sharding.hashing import shard_id_for
from casty.sharding.messages import ShardEnvelope

__all__ = ["ClientRouting", "ClientStatistics"]

_USABLE: Final = frozenset({MemberStatus.UP, MemberStatus.WEAKLY_UP, MemberStatus.LEAVING})
_SHARD_CACHE_SIZE: Final = 100_000

# What a breaker remembers about its node when it opened: the member's identity, status and
# reachability. The breaker closes when a snapshot shows something else (a topology change).
_Fingerprint = tuple[object, object, bool] | None


@dataclass(frozen=True, slots=True)
class ClientStatistics:
    """Counts of what a `ClusterClient` did with the envelopes told to its shard refs.

    Attributes:
        direct: envelopes sent straight to the node the snapshot names as the shard's owner.
        via_region: envelopes sent to another node's region because the shard had no live
            owner in the snapshot (that region allocates it; one extra hop).
        buffered: envelopes waiting now (no usable node).
        dead_letters: envelopes turned into dead letters (buffer full, bad entity id).
        open_breakers: nodes the client does not send to now.
        contact: the node whose topology actor the client is subscribed to, or None.
    """

    direct: int
    via_region: int
    buffered: int
    dead_letters: int
    open_breakers: frozenset[Address]
    contact: Address | None


@final
class ClientRouting:
    """Routing state shared by a client's shard refs (single-threaded: the event loop's).

    Args:
        system_name: the cluster's system name (region addresses are built from it).
        resolve: turns an actor address string into a ref (the client system's ``resolve``).
        dead_letter: publishes a dead letter ``(message, reason)``.
        buffer_size: envelopes held at most while no node can take them.
    """

    def __init__(
        self,
        system_name: str,
        resolve: Callable[[str], ActorRef[Any]],
        dead_letter: Callable[[object, str], None],
        buffer_size: int,
    ) -> None:
        self._system_name = system_name
        self._resolve = resolve
        self._dead_letter = dead_letter
        self._buffer_size = buffer_size
        self.snapshot: TopologySnapshot | None = None
        self._status: dict[Address, MemberStatus] = {}
        self._members: dict[Address, object] = {}
        self._available: list[Address] = []
        self._breakers: dict[Address, _Fingerprint] = {}
        self._regions: dict[tuple[Address, str], ActorRef[Any]] = {}
        self._shards: dict[tuple[str, int], dict[str, int]] = {}
        self._buffer: deque[tuple[str, int, ShardEnvelope, str]] = deque()
        self._direct = 0
        self._via_region = 0
        self._dead = 0
        self.contact: Address | None = None

    # -- topology and breakers ------------------------------------------------------------

    def on_snapshot(self, snapshot: TopologySnapshot) -> None:
        """Adopt ``snapshot``; close breakers of nodes it shows changed; flush the buffer."""
        self.snapshot = snapshot
        self._status = {m.address: m.status for m in snapshot.members}
        self._members = {m.address: m.unique_address for m in snapshot.members}
        for node, seen in list(self._breakers.items()):
            if self._fingerprint(node) != seen:
                del self._breakers[node]
        self._refresh_available()
        self.flush()

    def trip(self, node: Address) -> None:
        """Stop sending to ``node`` until the topology shows it changed (or it reconnects)."""
        if node not in self._breakers:
            self._breakers[node] = self._fingerprint(node)
            self._refresh_available()

    def reset(self, node: Address) -> None:
        """Close ``node``'s breaker (its connection is back) and flush the buffer."""
        if self._breakers.pop(node, False) is not False:
            self._refresh_available()
            self.flush()

    def usable(self, node: Address) -> bool:
        """Whether envelopes may go to ``node``: a reachable live member, breaker closed."""
        snapshot = self.snapshot
        return (
            snapshot is not None
            and self._status.get(node) in _USABLE
            and node not in snapshot.unreachable
            and node not in self._breakers
        )

    def members(self) -> list[Address]:
        """Addresses of the usable members, oldest snapshot order (sorted by address)."""
        return list(self._available)

    def _fingerprint(self, node: Address) -> _Fingerprint:
        snapshot = self.snapshot
        if snapshot is None or node not in self._members:
            return None
        return (self._members[node], self._status[node], node in snapshot.unreachable)

    def _refresh_available(self) -> None:
        snapshot = self.snapshot
        self._available = (
            [m.address for m in snapshot.members if self.usable(m.address)]
            if snapshot is not None
            else []
        )

    # -- routing ----------------------------------------------------------------------------

    def route(
        self, type_name: str, num_shards: int, message: object, namespace: str = "user"
    ) -> None:
        """Send ``message`` (a `ShardEnvelope`) towards its shard's owner, or buffer it.

        ``namespace`` is where the type's regions live: ``"user"``, or ``"system"`` for
        regions spawned as system actors (the coordination types).
        """
        if message.__class__ is not ShardEnvelope:
            self._drop(message, f"a shard ref of {type_name!r} takes ShardEnvelope messages")
            return
        envelope: ShardEnvelope = message
        cache = self._shards.get((type_name, num_shards))
        if cache is None:
            cache = self._shards[(type_name, num_shards)] = {}
        shard_id = cache.get(envelope.entity_id)
        if shard_id is None:
            try:
                shard_id = shard_id_for(envelope.entity_id, num_shards)
            except ConfigurationError as exc:
                self._drop(envelope, f"invalid entity id: {exc}")
                return
            if len(cache) >= _SHARD_CACHE_SIZE:
                cache.clear()
            cache[envelope.entity_id] = shard_id
        if not self._send(type_name, shard_id, envelope, namespace):
            self._hold(type_name, shard_id, envelope, namespace)

    def _send(self, type_name: str, shard_id: int, envelope: ShardEnvelope, namespace: str) -> bool:
        snapshot = self.snapshot
        if snapshot is None:
            return False
        owner = snapshot.shard_allocations.get(type_name, {}).get(shard_id)
        if owner is not None:
            if self.usable(owner):
                self._region(owner, type_name, namespace).tell(envelope)
                self._direct += 1
                return True
            if self._status.get(owner) in _USABLE:
                return False  # unreachable or tripped but still a member: it may come back
        # No live owner: any region allocates the shard (it asks the coordinator).
        available = self._available
        if not available:
            return False
        via = available[shard_id % len(available)]
        self._region(via, type_name, namespace).tell(envelope)
        self._via_region += 1
        return True

    def _region(self, node: Address, type_name: str, namespace: str) -> ActorRef[Any]:
        ref = self._regions.get((node, type_name))
        if ref is None:
            root = ActorAddress.of_node(self._system_name, node).root
            path = f"{root}/{namespace}/{type_name}"
            ref = self._regions[(node, type_name)] = self._resolve(path)
        return ref

    def _hold(self, type_name: str, shard_id: int, envelope: ShardEnvelope, namespace: str) -> None:
        if len(self._buffer) >= self._buffer_size:
            self._drop(
                envelope,
                f"cluster client: buffer full ({self._buffer_size} envelopes) while shard "
                f"{shard_id} of {type_name!r} has no reachable owner",
            )
            return
        self._buffer.append((type_name, shard_id, envelope, namespace))

    def flush(self) -> None:
        """Route the buffered envelopes again, in order; those still stuck stay buffered."""
        if not self._buffer:
            return
        waiting, self._buffer = self._buffer, deque()
        for type_name, shard_id, envelope, namespace in waiting:
            if not self._send(type_name, shard_id, envelope, namespace):
                self._buffer.append((type_name, shard_id, envelope, namespace))

    def drain(self, reason: str) -> None:
        """Turn every buffered envelope into a dead letter (the client is closing)."""
        waiting, self._buffer = self._buffer, deque()
        for _, _, envelope, _ in waiting:
            self._drop(envelope, reason)

    def _drop(self, message: object, reason: str) -> None:
        self._dead += 1
        self._dead_letter(message, reason)

    def statistics(self) -> ClientStatistics:
        return ClientStatistics(
            self._direct,
            self._via_region,
            len(self._buffer),
            self._dead,
            frozenset(self._breakers),
            self.contact,
        )
