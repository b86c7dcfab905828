"""`ShardEnvelope` and the messages between shard regions, their coordinator and entities.

One coordinator per sharded type runs on one node (the leader or the oldest member); every node
that hosts the type runs a region for it, and a node that only sends to it runs a proxy. The
protocol follows the design Akka Cluster Sharding documents:

1. Registration. A region sends `RegisterRegion` (a proxy `RegisterProxy`) with its shard
   settings and the shards it already hosts; the coordinator answers `RegisterAck`, or
   `RegisterRefused` when ``num_shards`` or the hash version differs from the cluster's.
2. Routing. A region computes the shard of an envelope's entity id. For a shard whose home it
   does not know it buffers the message (bounded) and sends `GetShardHome`; the coordinator
   allocates the shard if needed, sends `HostShard` to the chosen region (which answers
   `ShardStarted`) and then `ShardHome` to the asker, which caches it and flushes its buffer to
   the home (a local shard, or the remote region).
3. Rebalance. The coordinator sends `BeginHandoff` to every region; each drops the shard's home
   from its cache, buffers new messages for it and answers `BeginHandoffAck`. Then the owner gets
   `Handoff`: it stops the shard's entities (their mailboxes drain first), answers
   `ShardStopped`, and the shard is unallocated; the next `GetShardHome` allocates it anew.
4. Failover. A downed node's shards are unallocated at once and re-allocated on the next
   `GetShardHome`. Every allocation carries a higher epoch (a fencing token): a region drops a
   `HostShard`, `Handoff` or `ShardHome` whose epoch is older than one it has seen.
5. Leaving. A region that shuts down gracefully sends `GracefulShutdownRequest`; the coordinator
   hands its shards off one by one and the region ends with `RegionStopped`.
6. Entities. An entity asks its shard to passivate it with `Passivate`; `StartEntity` starts an
   entity without a user message (remember-entities restarts after a move use it).

Every message is a frozen dataclass with a stable ``module:qualname``; fields added later must
have defaults, so an older node can still read a newer message. Refs are typed `RefLike`: any
object with ``tell(message)``, which the serializer carries as an address.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from casty.sharding.hashing import HASH_VERSION

__all__ = [
    "BeginHandoff",
    "BeginHandoffAck",
    "GetShardHome",
    "GetShardRegionState",
    "GracefulShutdownRequest",
    "Handoff",
    "HostShard",
    "HostedShard",
    "Passivate",
    "RefLike",
    "RegionStopped",
    "RegisterAck",
    "RegisterProxy",
    "RegisterRefused",
    "RegisterRegion",
    "ShardEnvelope",
    "ShardHome",
    "ShardRegionState",
    "ShardStarted",
    "ShardState",
    "ShardStopped",
    "StartEntity",
]


class RefLike(Protocol):
    """What the protocol needs of an actor ref: a non-blocking ``tell``."""

    def tell(self, message: Any, /) -> None:
        """Enqueue ``message`` for the actor; never blocks."""


@dataclass(frozen=True, slots=True)
class ShardEnvelope:
    """A message for the sharded entity ``entity_id``, sent to a sharded type's ref from any node.

    The entity id picks the shard (`casty.sharding.hashing.shard_id_for`); messages from one
    sender to one entity arrive in order while its shard does not move.

    Attributes:
        entity_id: the entity's id; any `str` encodable as UTF-8.
        message: what the entity receives.

    An ask whose reply ref is a top-level field of ``message`` fails fast when the envelope
    is dropped (see `ActorSystem.ask`).
    """

    # Where `casty.actors.ask.request_fields` looks for the reply ref of an ask.
    __wrapped_request__: ClassVar[str] = "message"

    entity_id: str
    message: Any


@dataclass(frozen=True, slots=True)
class HostedShard:
    """A shard a region runs, and the epoch it was given with."""

    shard_id: int
    epoch: int


# ---------------------------------------------------------------------------- registration


@dataclass(frozen=True, slots=True)
class RegisterRegion:
    """Region to coordinator: register ``region`` for ``type_name`` (sent again until acked).

    Attributes:
        region: the region's ref; coordinator replies go there.
        type_name: the sharded type's name.
        num_shards: the region's shard count; must equal the cluster's.
        hash_version: the region's `HASH_VERSION`; must equal the cluster's.
        roles: the region's node roles, sorted; role-aware placement uses them.
        hosted: the shards the region already runs (after a coordinator moved), so the
            coordinator can rebuild its table; conflicts go to the highest epoch.
    """

    region: RefLike
    type_name: str
    num_shards: int
    hash_version: int = HASH_VERSION
    roles: tuple[str, ...] = ()
    hosted: tuple[HostedShard, ...] = ()


@dataclass(frozen=True, slots=True)
class RegisterProxy:
    """Proxy to coordinator: register a node that sends to ``type_name`` but hosts no shards."""

    proxy: RefLike
    type_name: str
    num_shards: int
    hash_version: int = HASH_VERSION


@dataclass(frozen=True, slots=True)
class RegisterAck:
    """Coordinator to region or proxy: registered; ``coordinator`` is where to ask from now on."""

    coordinator: RefLike


@dataclass(frozen=True, slots=True)
class RegisterRefused:
    """Coordinator to region or proxy: refused for good; ``reason`` names the mismatch."""

    type_name: str
    reason: str


# ---------------------------------------------------------------------------- shard homes


@dataclass(frozen=True, slots=True)
class GetShardHome:
    """Region or proxy to coordinator: where does ``shard_id`` live? Answered by `ShardHome`."""

    shard_id: int
    reply_to: RefLike


@dataclass(frozen=True, slots=True)
class ShardHome:
    """Coordinator to region or proxy: ``shard_id`` lives in ``region`` since ``epoch``."""

    shard_id: int
    region: RefLike
    epoch: int


@dataclass(frozen=True, slots=True)
class HostShard:
    """Coordinator to region: start hosting ``shard_id`` at ``epoch``; answer `ShardStarted`.

    With replication, ``replicas`` are the shard's replica regions (sent again, at the same
    epoch, when they change); the region pushes its entities' events to their replica stores.
    """

    shard_id: int
    epoch: int
    replicas: tuple[RefLike, ...] = ()


@dataclass(frozen=True, slots=True)
class ShardStarted:
    """Region to coordinator: ``region`` hosts ``shard_id`` at ``epoch``."""

    shard_id: int
    epoch: int
    region: RefLike


# ---------------------------------------------------------------------------- handoff


@dataclass(frozen=True, slots=True)
class BeginHandoff:
    """Coordinator to every region: ``shard_id`` is moving; forget its home, buffer, then ack."""

    shard_id: int
    reply_to: RefLike


@dataclass(frozen=True, slots=True)
class BeginHandoffAck:
    """Region to coordinator: ``region`` now buffers messages for ``shard_id``."""

    shard_id: int
    region: RefLike


@dataclass(frozen=True, slots=True)
class Handoff:
    """Coordinator to the owner: stop ``shard_id``'s entities (after their queued messages).

    Answered by `ShardStopped`. A region that does not host ``shard_id`` at ``epoch`` answers
    `ShardStopped` at once, so a retried handoff completes.
    """

    shard_id: int
    epoch: int
    reply_to: RefLike


@dataclass(frozen=True, slots=True)
class ShardStopped:
    """Region to coordinator: ``shard_id`` (given at ``epoch``) no longer runs in ``region``."""

    shard_id: int
    epoch: int
    region: RefLike


@dataclass(frozen=True, slots=True)
class GracefulShutdownRequest:
    """Region to coordinator: hand off all of ``region``'s shards; it is leaving."""

    region: RefLike


@dataclass(frozen=True, slots=True)
class RegionStopped:
    """Region to coordinator: ``region`` hosts nothing and is stopping; deallocate it."""

    region: RefLike


# ---------------------------------------------------------------------------- entities


@dataclass(frozen=True, slots=True)
class Passivate:
    """Entity to its shard: stop me while idle; the next message starts me again.

    The shard stops delivering to the entity, buffers what arrives meanwhile, and sends
    ``stop_message`` to the entity (or stops it directly when it is None).
    """

    entity_id: str
    stop_message: Any = None


@dataclass(frozen=True, slots=True)
class StartEntity:
    """To a sharded type's ref: start ``entity_id`` without a user message (idempotent)."""

    entity_id: str


# ---------------------------------------------------------------------------- inspection


@dataclass(frozen=True, slots=True)
class GetShardRegionState:
    """To a region: which shards and entities run here? Answered by `ShardRegionState`."""

    reply_to: RefLike


@dataclass(frozen=True, slots=True)
class ShardState:
    """One hosted shard: its id, epoch and live entity ids (sorted)."""

    shard_id: int
    epoch: int
    entity_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ShardRegionState:
    """A region's hosted shards, sorted by shard id, and its standing with the coordinator.

    Attributes:
        shards: the shards the region hosts (a proxy hosts none).
        registered: whether the current coordinator has acknowledged the region.
        refused: the coordinator's reason when it refused the region for good, else None.
    """

    shards: tuple[ShardState, ...] = ()
    registered: bool = False
    refused: str | None = None
