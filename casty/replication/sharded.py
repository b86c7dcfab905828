"""Replication inside cluster sharding: the shard's journal binding, and the store's name.

A region of a type sharded with ``replication=`` calls the entity factory inside
`binding_shard`, so the ``Behaviors.event_sourced(journal=...)`` the factory builds writes
through `ShardJournal` (the shard's replica stores, the shard's epoch) instead of the bare
journal. ``event_sourced`` consults `bind_entity_journal` for that; outside a replicated
region it changes nothing. The region also runs `sync_shard` when a shard it hosts gets new
replicas or a new epoch. See ``docs/replication.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, final

from casty.abc import Journal, JournalEntry
from casty.errors import ConfigurationError, ReplicationError, StaleEpoch
from casty.replication._reads import LocalReads
from casty.replication.config import ReplicationConfig
from casty.replication.ledger import ShardLedger
from casty.replication.promotion import pull_missing
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
    "sync_shard",
]

_SYNC_BATCH = 32  # ids `sync_shard` catches up at once

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
        shard_id: the shard.
        ledger: the node's `ShardLedger` of the type (shared with its replica store).
        epoch: the shard's epoch, the entries' fencing token.
        stores: the replica stores of the shard's replica regions (on other nodes).
        settled: ids whose missing entries were pulled from the stores at ``settled_epoch``
            (`pull_missing`; a finished pull is None), so each id is pulled once per epoch.
        peers: the type's replica stores on every other up node; a pull asks them too (an
            earlier replica, or a restarted node, may hold entries the slots lack).
    """

    journal: Journal
    config: ReplicationConfig
    system: ActorSystem
    shard_id: int
    ledger: ShardLedger
    epoch: int
    stores: tuple[ActorRef[Any], ...] = field(default=())
    settled: dict[str, asyncio.Future[int] | None] = field(default_factory=dict)
    settled_epoch: int = 0
    peers: Callable[[], tuple[ActorRef[Any], ...]] | None = None


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
    go to the node's journal; at an epoch after the first (the shard was promoted or moved),
    the first `highest_sequence_nr` of an id (an entity's recovery) first copies the entries
    the most advanced of the stores (and ``peers``) holds beyond the node's journal
    (`pull_missing`, bounded by twice ``ack_timeout``).

    ``write`` raises `ReplicationError` without writing anything when the shard has fewer
    replica stores than ``min_acks`` (not enough nodes), and `StaleEpoch` without writing when
    this node has seen a newer epoch of the shard; otherwise as `ReplicatedJournal`.
    """

    def __init__(self, replicas: ShardReplicas) -> None:
        self._replicas = replicas
        self._local = replicas.journal
        self._cached: tuple[tuple[ActorRef[Any], ...], ReplicatedJournal] | None = None

    async def write(self, entries: Sequence[JournalEntry]) -> None:
        replicas = self._replicas
        ledger, shard_id = replicas.ledger, replicas.shard_id
        await ledger.load(shard_id)
        fence = ledger.fence(shard_id)
        if fence > replicas.epoch:
            raise StaleEpoch(
                f"shard {replicas.shard_id} is at epoch {fence} on this node, newer than this "
                f"primary's {replicas.epoch}; nothing was written"
            )
        if len(replicas.stores) < replicas.config.min_acks:
            raise ReplicationError(
                f"min_acks={replicas.config.min_acks} but the shard has "
                f"{len(replicas.stores)} replica stores (too few other nodes, or the coordinator "
                "has not given it new ones yet after a move); nothing was written"
            )
        if not entries:
            return
        last = entries[-1]
        await ledger.hold(shard_id, last.persistence_id)  # listed before its first entry
        await self._replicated().write(entries)
        await ledger.record(shard_id, last.epoch, last.persistence_id, last.sequence_nr)

    async def highest_sequence_nr(self, persistence_id: str) -> int:
        await self.settle(persistence_id)
        highest = await self._local.highest_sequence_nr(persistence_id)
        if highest:
            replicas = self._replicas
            await replicas.ledger.hold(replicas.shard_id, persistence_id)
            await replicas.ledger.record(replicas.shard_id, replicas.epoch, persistence_id, highest)
        return highest

    async def settle(self, persistence_id: str) -> None:
        """Pull the id's missing entries from the stores, once per epoch after the first."""
        replicas = self._replicas
        if replicas.epoch <= 1 or (
            replicas.settled_epoch == replicas.epoch
            and persistence_id in replicas.settled
            and replicas.settled[persistence_id] is None
        ):
            return  # before `peers()`, which resolves a ref per up node: recoveries call this
        stores = {s.address: s for s in replicas.stores}
        if replicas.peers is not None:
            stores.update((s.address, s) for s in replicas.peers() if s.address not in stores)
        if not stores:
            return
        # A pull may copy the id's entries into the node's journal: list it first.
        await replicas.ledger.hold(replicas.shard_id, persistence_id)
        if replicas.settled_epoch != replicas.epoch:
            replicas.settled.clear()
            replicas.settled_epoch = replicas.epoch
        pull = replicas.settled.get(persistence_id)
        if pull is None and persistence_id in replicas.settled:
            return  # pulled already at this epoch
        if pull is None or (pull.done() and (pull.cancelled() or pull.exception() is not None)):
            pull = asyncio.ensure_future(
                pull_missing(
                    replicas.system,
                    self._local,
                    tuple(stores.values()),
                    persistence_id,
                    timeout=replicas.config.ack_timeout,
                )
            )
            replicas.settled[persistence_id] = pull
        # Shielded: recoveries of the id share one pull, and a cancelled one leaves it running.
        try:
            await asyncio.shield(pull)
        except asyncio.CancelledError:
            raise
        except Exception:
            if replicas.settled.get(persistence_id) is pull:
                del replicas.settled[persistence_id]  # a later recovery tries again
            raise
        if replicas.settled.get(persistence_id) is pull:
            replicas.settled[persistence_id] = None

    async def catch_up(self, persistence_id: str) -> int:
        """Settle the id, then bring the shard's stores up to the node's entries of it.

        Returns:
            How many stores confirmed (see `ReplicatedJournal.catch_up`).
        """
        await self.settle(persistence_id)
        return await self._replicated().catch_up(persistence_id, self._replicas.epoch)

    def _replicated(self) -> ReplicatedJournal:
        replicas = self._replicas
        stores = replicas.stores
        cached = self._cached
        if cached is None or cached[0] != stores:
            config = replicas.config
            if len(stores) < config.min_acks:  # too few to write (`write` refuses): catch-up only
                config = dataclasses.replace(config, min_acks=len(stores))
            journal = ReplicatedJournal(
                self._local, stores, config, replicas.system, shard=replicas.shard_id
            )
            cached = self._cached = (stores, journal)
        return cached[1]

    async def aclose(self) -> None:
        """Nothing to release: the node's journal belongs to the caller, who closes it."""


async def sync_shard(replicas: ShardReplicas) -> int:
    """Bring the shard's stores up to this node's entries of the ids its `ShardLedger`
    lists for the shard (a new or lagging replica gets what it misses; each id is settled
    first).

    Returns:
        How many ids every store confirmed within ``ack_timeout``.

    Raises:
        StaleEpoch: a store holds a newer epoch of the shard: this primary was replaced.
        JournalUnavailable: the node's journal failed.
    """
    journal = ShardJournal(replicas)
    await replicas.ledger.load(replicas.shard_id)
    ids = sorted(replicas.ledger.persistence_ids(replicas.shard_id))
    confirmed = 0
    for start in range(0, len(ids), _SYNC_BATCH):
        counts = await asyncio.gather(
            *(journal.catch_up(pid) for pid in ids[start : start + _SYNC_BATCH])
        )
        confirmed += sum(1 for count in counts if count == len(replicas.stores))
    return confirmed
