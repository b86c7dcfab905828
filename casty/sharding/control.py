"""The wiring's own messages, beside the protocol of `casty.sharding.messages`.

These carry what the protocol leaves to an implementation: the relay that keeps handoffs
lossless, the coordinator's state copies and handover, remember-entities bookkeeping, the end
of a graceful shutdown, and the coordinator's inspection query. Like every wire message they
are frozen dataclasses with a stable ``module:qualname``; fields added later get defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from casty.sharding.messages import RefLike

__all__ = [
    "CoordinatorHandover",
    "CoordinatorHandoverAck",
    "CoordinatorState",
    "CoordinatorStateCopy",
    "EntityStarted",
    "EntityStopped",
    "GetCoordinatorState",
    "HandoffAckRelay",
    "RememberedEntities",
    "ShardRegionRefused",
    "ShardsHandedOff",
]


@dataclass(frozen=True, slots=True)
class HandoffAckRelay:
    """Region to the shard's current home: pass my `BeginHandoffAck` on to ``coordinator``.

    A region that has been sending a shard's messages to a remote home acknowledges a
    `BeginHandoff` through that home. Messages between two nodes keep their order, so when the
    home forwards the ack, it has already received every message the region sent it; the
    coordinator's `Handoff` therefore never overtakes a message still on its way.
    """

    shard_id: int
    region: RefLike
    coordinator: RefLike


@dataclass(frozen=True, slots=True)
class CoordinatorStateCopy:
    """Coordinator to every region: the latest state, so that a successor starts from it.

    Attributes:
        type_name: the sharded type.
        table: `ShardAllocationTable.to_wire` of the coordinator's table.
        remembered: ``[[shard_id, [entity_id, ...]], ...]`` for remember-entities; empty else.
    """

    type_name: str
    table: Any
    remembered: Any = ()


@dataclass(frozen=True, slots=True)
class CoordinatorHandover:
    """A retiring coordinator to its successor: my final state; answer `CoordinatorHandoverAck`.

    Sent again until acknowledged (or until the retiring node stops).
    """

    type_name: str
    table: Any
    remembered: Any
    reply_to: RefLike


@dataclass(frozen=True, slots=True)
class CoordinatorHandoverAck:
    """Successor to the retiring coordinator: the handover arrived; stop sending it."""

    type_name: str


@dataclass(frozen=True, slots=True)
class RememberedEntities:
    """Coordinator to a shard's new home (after `HostShard`): start these entities now."""

    shard_id: int
    epoch: int
    entity_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EntityStarted:
    """Region to coordinator (remember-entities): ``entity_id`` of ``shard_id`` runs."""

    shard_id: int
    entity_id: str


@dataclass(frozen=True, slots=True)
class EntityStopped:
    """Region to coordinator (remember-entities): ``entity_id`` was passivated or stopped."""

    shard_id: int
    entity_id: str


@dataclass(frozen=True, slots=True)
class ShardsHandedOff:
    """Coordinator to a region that asked for a graceful shutdown: none of its shards remain."""

    type_name: str


@dataclass(frozen=True, slots=True)
class ShardRegionRefused:
    """Published on the event stream when the coordinator refuses this node's region.

    Attributes:
        type_name: the sharded type.
        reason: the coordinator's sentence naming the mismatch (``num_shards``, hash version).
    """

    type_name: str
    reason: str


@dataclass(frozen=True, slots=True)
class GetCoordinatorState:
    """To a coordinator: answered by `CoordinatorState` (for operators and tests)."""

    reply_to: RefLike


@dataclass(frozen=True, slots=True)
class CoordinatorState:
    """What a coordinator holds.

    Attributes:
        type_name: the sharded type.
        active: whether it allocates (False while it waits for a handover or for reports).
        regions: region address to its shards (sorted), every registered region.
        proxies: addresses of the registered proxies, sorted.
        in_handoff: shards whose handoff has begun and not completed, sorted.
    """

    type_name: str
    active: bool
    regions: tuple[tuple[str, tuple[int, ...]], ...]
    proxies: tuple[str, ...] = ()
    in_handoff: tuple[int, ...] = ()
