"""A node's pushes to one replica store travel in batches (`ReplicateBatch`), answered in order.

Real TCP on loopback where a message crosses nodes; the store is the real `replica_store`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest
from replication_support import WAIT, nodes, stored

from casty.abc import JournalEntry
from casty.actors import ActorContext, ActorRef, Behavior, Behaviors
from casty.errors import AskTimeout, JournalUnavailable, ReplicationError, ReplicationTimeout
from casty.journals import InMemoryJournal
from casty.replication import ReplicatedJournal, ReplicationConfig, ShardLedger, replica_store
from casty.replication.protocol import (
    GetShardProgress,
    ReplicaBehind,
    ReplicaDiverged,
    ReplicaFenced,
    Replicate,
    ReplicateBatch,
    ReplicatedBatch,
    ShardProgress,
)

pytestmark = pytest.mark.slow

CONFIG = ReplicationConfig(replicas=1, min_acks=1, ack_timeout=5.0)


def entries(pid: str, first: int, last: int, epoch: int = 1) -> tuple[JournalEntry, ...]:
    return tuple(
        JournalEntry(pid, n, f"{pid}{n}".encode(), "msgpack", "m", epoch, 1000 + n)
        for n in range(first, last + 1)
    )


def spy(target: ActorRef[Any], seen: list[str]) -> Behavior[Any]:
    """Forwards every message to ``target``, noting its type."""

    def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        seen.append(type(msg).__name__)
        target.tell(msg)
        return Behaviors.same()

    return Behaviors.receive(receive)


async def batch(system: Any, store: ActorRef[Any], pushes: Sequence[Replicate]) -> Any:
    return await system.ask(store, lambda r: ReplicateBatch.batch_of(pushes, r), timeout=WAIT)


def test_a_batch_carries_its_pushes_unchanged() -> None:
    catch_up = (*entries("b", 1, 2, epoch=1), *entries("b", 3, 3, epoch=2))
    pushes = [Replicate(entries("a", 4, 4), None, 7, 3, 1), Replicate(catch_up, None, 0, 3, 2)]
    assert ReplicateBatch.batch_of(pushes, None).pushes() == pushes


async def test_concurrent_writes_of_many_ids_reach_a_store_in_few_messages() -> None:
    async with nodes(2) as (a, b):
        seen: list[str] = []
        watched = a.system.resolve(b.system.spawn(spy(b.store, seen), "spy").address)
        journal = ReplicatedJournal(a.journal, [watched], CONFIG, a.system)
        ids = [f"id{i}" for i in range(50)]
        await asyncio.gather(*(journal.write(entries(pid, 1, 1)) for pid in ids))
        for pid in ids:
            assert await stored(b.journal, pid) == [(1, 1)]
        assert set(seen) == {"ReplicateBatch"}
        assert len(seen) < len(ids)


async def test_a_batch_answers_each_push_in_order() -> None:
    async with nodes(1) as (a,):
        # Shard 5 is fenced at epoch 3 (a promotion question): its older pushes are refused.
        answer = await a.system.ask(a.store, lambda r: GetShardProgress(5, 3, r), timeout=WAIT)
        assert isinstance(answer, ShardProgress)
        pushes = [
            Replicate(entries("x", 1, 2), None, 0, 4, 1),
            Replicate(entries("y", 3, 3), None, 0, 4, 1),  # misses 1..2
            Replicate(entries("z", 1, 1), None, 0, 5, 1),  # fenced
            Replicate(entries("x", 3, 3), None, 0, 4, 1),  # after the first push of x
        ]
        reply = await batch(a.system, a.store, pushes)
        assert reply == ReplicatedBatch((2, ReplicaBehind("y", 0), ReplicaFenced("z", 3), 3))
        assert await stored(a.journal, "x") == [(1, 1), (2, 1), (3, 1)]
        assert await stored(a.journal, "z") == []


async def test_an_entry_the_store_holds_is_confirmed_even_after_a_newer_epochs_entry() -> None:
    """Found by a review: a promoted primary's catch-up pushes its last entry of the previous
    epoch, and its first write at the new epoch can reach the store first. The store refused
    the catch-up as fenced, the primary took that for being replaced and stopped syncing the
    shard's other ids, and losing that primary later lost their acknowledged entries."""
    async with nodes(1) as (a,):
        first = [Replicate(entries("k", 1, 2, epoch=1), None, 0, 4, 1)]
        assert await batch(a.system, a.store, first) == ReplicatedBatch((2,))
        # The promoted primary's first write, sent from the entry both logs hold (log matching).
        promoted = [
            Replicate((*entries("k", 2, 2, epoch=1), *entries("k", 3, 3, epoch=2)), None, 0, 4, 2)
        ]
        assert await batch(a.system, a.store, promoted) == ReplicatedBatch((3,))
        late_catch_up = [Replicate(entries("k", 2, 2, epoch=1), None, 0, 4, 2)]
        # Confirmed up to its own last entry (the store's later ones are not the push's).
        assert await batch(a.system, a.store, late_catch_up) == ReplicatedBatch((2,))
        # Another entry at 2 is never acknowledged: the store asks for the entry before it,
        # and then refuses to replace its own of the same epoch; anything the replaced primary
        # (shard epoch 1) pushes is refused too.
        other = entries("k", 1, 2, epoch=1)
        changed = (other[0], dataclasses.replace(other[1], payload=b"other"))
        reply = await batch(a.system, a.store, [Replicate(changed[1:], None, 0, 4, 2)])
        assert reply == ReplicatedBatch((ReplicaBehind("k", 0),))
        reply = await batch(a.system, a.store, [Replicate(changed, None, 0, 4, 2)])
        assert reply == ReplicatedBatch((ReplicaDiverged("k", 2),))
        old_primary = [Replicate(entries("k", 2, 2, epoch=1), None, 0, 4, 1)]
        assert await batch(a.system, a.store, old_primary) == ReplicatedBatch(
            (ReplicaFenced("k", 2),)
        )
        assert await stored(a.journal, "k") == [(1, 1), (2, 1), (3, 2)]


async def test_a_malformed_batch_is_not_answered_and_the_store_goes_on() -> None:
    async with nodes(1) as (a,):
        with pytest.raises(AskTimeout):
            await a.system.ask(a.store, lambda r: ReplicateBatch([[4, 1, 0, "x"]], r), timeout=0.3)
        reply = await batch(a.system, a.store, [Replicate(entries("x", 1, 1), None, 0, 4, 1)])
        assert reply == ReplicatedBatch((1,))


class FailingJournal(InMemoryJournal):
    """Refuses every write of entity ids, as a broken disk would."""

    async def write(self, entries: Sequence[JournalEntry]) -> None:
        if entries and entries[0].persistence_id.startswith("id"):
            raise JournalUnavailable("disk failed")
        await super().write(entries)


async def test_a_store_whose_journal_fails_fails_the_write_without_confirming_it() -> None:
    async with nodes(2) as (a, b):
        failing = FailingJournal()
        store = b.system.spawn(replica_store(failing, ShardLedger(failing, "t")), "failing")
        journal = ReplicatedJournal(a.journal, [a.system.resolve(store.address)], CONFIG, a.system)
        with pytest.raises(ReplicationTimeout, match="0 of min_acks=1") as caught:
            await journal.write(entries("id1", 1, 1))
        assert isinstance(caught.value.__cause__, ReplicationError)
        # The primary's own journal has the entries; the result is unknown, never a success.
        assert await stored(a.journal, "id1") == [(1, 1)]
