"""Replication inside cluster sharding: the shard's journal binding, and the store's name.

A region of a type sharded with ``replication=`` calls the entity factory inside
`binding_shard`, so the ``Behaviors.event_sourced(journal=...)`` the factory builds writes
through `ShardJournal` (the shard's replica stores, the shard's epoch) instead of the bare
journal. ``event_sourced`` consults `bind_entity_journal` for that; outside a replicated
region it changes nothing. See ``docs/replication.md``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, final

from casty.abc import Journal, JournalEntry
from casty.errors import ConfigurationError, ReplicationError
from casty.replication._reads import LocalReads
from casty.replication.config import ReplicationConfig
from casty.replication.replicator import ReplicatedJournal

if TYPE_CHECKING:
    from casty.actors.ref import ActorRef
    from casty.actors.system import ActorSystem

__all__ = [
    "REPLICA_STORE_NAME",
    "ShardJournal",
    "ShardReplicas",
    "bind_entity_journal",
    "binding_shard",
]

REPLICA_STORE_NAME = "%replica"
"""The child name of a region's replica store; no entity's child name can be it (entity names
are %-escaped, and ``%r`` is no escape)."""


@dataclass(slots=True)
class ShardReplicas:
    """What a region knows of one hosted shard's replication (mutated by the region).

    Attributes:
        journal: the node's journal (``sharded(journal=...)``), the one entities must use.
        config: the type's `ReplicationConfig`.
        system: the region's actor system (the replicator asks the stores through it).
        epoch: the shard's epoch, the entries' fencing token.
        stores: the replica stores of the shard's replica regions (on other nodes).
    """

    journal: Journal
    config: ReplicationConfig
    system: ActorSystem
    epoch: int
    stores: tuple[ActorRef[Any], ...] = field(default=())


_current: ContextVar[ShardReplicas | None] = ContextVar("casty_shard_replicas", default=None)


@contextlib.contextmanager
def binding_shard(replicas: ShardReplicas) -> Iterator[None]:
    """Within the block, `bind_entity_journal` binds journals to ``replicas`` (the region's use)."""
    token = _current.set(replicas)
    try:
        yield
    finally:
        _current.reset(token)


def bind_entity_journal(journal: Journal | str, epoch: int) -> tuple[Journal | str, int]:
    """The journal and epoch an event-sourced entity uses (``event_sourced`` calls this).

    Outside `binding_shard`: ``(journal, epoch)`` unchanged. Inside: a `ShardJournal` over
    ``journal`` and the shard's epoch (which replaces ``epoch``).

    Raises:
        ConfigurationError: inside `binding_shard`, ``journal`` is not the journal given to
            ``sharded(journal=...)`` (a promoted replica would not find the events there).
    """
    replicas = _current.get()
    if replicas is None:
        return journal, epoch
    if journal is not replicas.journal:
        raise ConfigurationError(
            "an entity of a replicated sharded type must use the journal given to "
            f"Behaviors.sharded(journal=...), got {journal!r}"
        )
    return ShardJournal(replicas), replicas.epoch


@final
class ShardJournal(LocalReads):
    """The journal of a replicated shard's entity: ``write`` goes through `ReplicatedJournal`.

    The stores are read at each write from the shared `ShardReplicas`, so a replica the
    coordinator adds later (to restore the count) is used by entities already running. Reads
    go to the node's journal.

    ``write`` raises `ReplicationError` without writing anything when the shard has fewer
    replica stores than ``min_acks`` (not enough nodes); otherwise as `ReplicatedJournal`.
    """

    def __init__(self, replicas: ShardReplicas) -> None:
        self._replicas = replicas
        self._local = replicas.journal
        self._cached: tuple[tuple[ActorRef[Any], ...], ReplicatedJournal] | None = None

    async def write(self, entries: Sequence[JournalEntry]) -> None:
        replicas = self._replicas
        stores = replicas.stores
        cached = self._cached
        if cached is None or cached[0] != stores:
            if len(stores) < replicas.config.min_acks:
                raise ReplicationError(
                    f"min_acks={replicas.config.min_acks} but the shard has {len(stores)} "
                    "replica stores (too few other nodes); nothing was written"
                )
            cached = self._cached = (
                stores,
                ReplicatedJournal(self._local, stores, replicas.config, replicas.system),
            )
        await cached[1].write(entries)

    async def aclose(self) -> None:
        """Nothing to release: the node's journal belongs to the caller, who closes it."""
