"""The `ShardLedger` is kept in the node's journal: a restarted node reports its copy as before.

Found by the chaos test (``tests/chaos/test_chaos_kill.py``, overlapping kills): the ledger was
in memory, so when the nodes of every copy of a shard restarted within the failover window,
every copy answered the promotion question with ``(0, 0)`` and the coordinator could promote
one whose journal ends with an old primary's unconfirmed entries, losing acknowledged events
held on another node's disk. Real SQLite files, real TCP; a restarted node is a new system
over the same file.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from replication_support import FAST, Add, Added, Get, stored
from sharded_support import NUM_SHARDS, factory, shard_of
from sharding_harness import Node, asking, free_ports, hosted_entities, node, stop_all, wait_all

from casty import Behaviors
from casty.abc import MAX_SEQUENCE_NR, JournalEntry
from casty.actors.ref import ActorRef
from casty.errors import WriteRejected
from casty.journals import InMemoryJournal, SQLiteJournal
from casty.remote import RemoteActorSystem
from casty.replication import ReplicationConfig, ShardLedger, pull_missing, replica_store
from casty.replication.ledger import LEDGER_PREFIX
from casty.replication.protocol import (
    GetShardProgress,
    ReplicaFenced,
    Replicate,
    Replicated,
    ShardProgress,
)
from casty.replication.sharded import REPLICA_STORE_NAME
from casty.sharding import wait_registered
from casty.sharding.table import ShardAllocationTable
from casty.testing import wait_until

WAIT = 5.0
CONFIG = ReplicationConfig(replicas=1, min_acks=1, ack_timeout=3.0)


def entries(pid: str, first: int, last: int, epoch: int, tag: str = "") -> tuple[JournalEntry, ...]:
    return tuple(
        JournalEntry(pid, n, f"{pid}{n}{tag}".encode(), "msgpack", epoch=epoch)
        for n in range(first, last + 1)
    )


@contextlib.asynccontextmanager
async def store_node(path: Path, asker: RemoteActorSystem) -> AsyncIterator[ActorRef[Any]]:
    """A node (real TCP) whose replica store keeps its type's ledger in the SQLite file
    ``path``; yields the store as a ref of ``asker``."""
    async with SQLiteJournal(path) as journal, RemoteActorSystem("rep", settings=FAST) as system:
        store = system.spawn(replica_store(journal, ShardLedger(journal, "accounts")), "s")
        yield asker.resolve(store.address)


async def push(
    asker: RemoteActorSystem, store: ActorRef[Any], batch: tuple[JournalEntry, ...]
) -> Any:
    request = Replicate(batch, None, 1, shard=5, epoch=batch[-1].epoch)
    return await asker.ask(store, request.with_reply_to, timeout=WAIT)


async def progress(asker: RemoteActorSystem, store: ActorRef[Any], epoch: int = 0) -> ShardProgress:
    answer: ShardProgress = await asker.ask(
        store, lambda r: GetShardProgress(5, epoch, r), timeout=WAIT
    )
    return answer


async def test_a_restarted_store_reports_the_progress_and_fence_it_had(
    tmp_path: Path,
) -> None:
    path = tmp_path / "node.db"
    async with RemoteActorSystem("rep", settings=FAST) as a:
        async with store_node(path, a) as store:
            assert await push(a, store, entries("a", 1, 3, epoch=1)) == Replicated("a", 3, 1)
            assert await push(a, store, entries("b", 1, 2, epoch=1)) == Replicated("b", 2, 1)
            before = await progress(a, store, epoch=4)  # the coordinator fences it at 4
            assert (before.epoch, before.total, before.fence) == (1, 5, 1)
        async with store_node(path, a) as store:  # the node restarted over its file
            after = await progress(a, store)
            assert (after.epoch, after.total, after.fence) == (1, 5, 4)
            # The fence at 4 holds too: a push of an epoch-3 primary is refused.
            assert isinstance(await push(a, store, entries("a", 4, 4, epoch=3)), ReplicaFenced)


async def test_persistence_ids_of_the_ledgers_streams_are_refused(tmp_path: Path) -> None:
    async with SQLiteJournal(tmp_path / "node.db") as journal:
        ledger = ShardLedger(journal, "accounts")
        with pytest.raises(WriteRejected):
            await ledger.hold(5, f"{LEDGER_PREFIX}accounts/5")
        await ledger.hold(5, "acct-1")
        await ledger.load(5)
        assert ledger.persistence_ids(5) == {"acct-1"}


@pytest.mark.slow
async def test_a_restarted_replica_node_reports_its_copy_to_the_promotion_question(
    tmp_path: Path,
) -> None:
    ports = free_ports(3)
    journals = [SQLiteJournal(tmp_path / f"n{i}.db") for i in range(3)]
    nodes: list[Node] = []
    regions: list[ActorRef[Any]] = []

    async def start(i: int) -> None:
        seeds = {} if i == 0 else {"seed_nodes": [nodes[0].system.node_address]}
        started = node(node_id=f"n{i}", host="127.0.0.1", port=ports[i], **seeds)
        await started.system.__aenter__()
        region = started.system.spawn(
            Behaviors.sharded(
                factory(journals[i]), num_shards=NUM_SHARDS, replication=CONFIG,
                journal=journals[i],
            ),
            "accounts",
        )  # fmt: skip
        await wait_registered(started.system, region)
        if i < len(nodes):
            nodes[i], regions[i] = started, region
        else:
            nodes.append(started)
            regions.append(region)

    async def owner(entity: str) -> int:
        for i, n in enumerate(nodes):
            if entity in await hosted_entities(n.system, regions[i]):
                return i
        raise AssertionError(f"{entity} runs nowhere")

    async def holds(i: int, entity: str, count: int) -> bool:
        return len(await stored(journals[i], entity)) >= count

    try:
        for i in range(3):
            await start(i)
        await wait_all(nodes, lambda n: len(n.system.cluster.up_members) == 3, 15.0)
        # An entity whose primary and replica are on n1 and n2 (n0 hosts the coordinator).
        for k in range(64):
            entity = f"acct-{k}"
            for amount in (1, 2, 3):
                reply = await nodes[0].system.ask(
                    regions[0], asking(entity, lambda r, a=amount: Add(a, r)), timeout=10.0
                )
                assert isinstance(reply, Added)
            primary = await owner(entity)
            if primary != 0 and not await holds(0, entity, 1):
                break
        else:
            raise AssertionError("no entity has both copies away from n0")
        replica = 3 - primary
        assert await holds(replica, entity, 3)

        # The replica's node stops without leaving; its slot moves to n0 (caught up there).
        await nodes[replica].system.shutdown(leave=False)
        await journals[replica].aclose()
        survivors = [nodes[0], nodes[primary]]
        await wait_all(survivors, lambda n: len(n.system.cluster.up_members) == 2, 30.0)
        await wait_until(lambda: holds(0, entity, 3), 15.0, 0.05)

        # It comes back over the same file.
        journals[replica] = SQLiteJournal(tmp_path / f"n{replica}.db")
        await start(replica)
        await wait_all(nodes, lambda n: len(n.system.cluster.up_members) == 3, 30.0)
        system = nodes[replica].system
        store = system.resolve(f"{regions[replica].address}/{REPLICA_STORE_NAME}")
        answer: ShardProgress = await system.ask(
            store, lambda r: GetShardProgress(shard_of(entity), 0, r), timeout=WAIT
        )
        # Its copy of the shard (an in-memory ledger answered (0, 0) until pushed to again).
        assert answer.epoch >= 1
        assert answer.total >= 3

        # The primary's node is lost: the promoted copy serves every acknowledged event.
        await nodes[primary].system.shutdown(leave=False)
        survivors = [nodes[0], nodes[replica]]
        await wait_all(survivors, lambda n: len(n.system.cluster.up_members) == 2, 30.0)
        total = await nodes[0].system.ask(regions[0], asking(entity, Get), timeout=20.0)
        assert total == 1 + 2 + 3
    finally:
        await stop_all(nodes, leave=False)
        for journal in journals:
            await journal.aclose()


class StallingJournal(InMemoryJournal):
    """An in-memory journal whose reads of more than one entry never finish (a store that
    answers what it holds, then dies before it answers the read)."""

    async def replay(
        self,
        persistence_id: str,
        from_sequence_nr: int = 1,
        to_sequence_nr: int = MAX_SEQUENCE_NR,
        limit: int | None = None,
    ) -> AsyncIterator[JournalEntry]:
        if limit != 1:
            await asyncio.Event().wait()
        async for entry in super().replay(persistence_id, from_sequence_nr, to_sequence_nr, limit):
            yield entry


async def test_a_pull_reads_from_another_store_with_the_same_last_entry_when_one_stalls() -> None:
    journals = [InMemoryJournal(), StallingJournal(), InMemoryJournal()]
    async with contextlib.AsyncExitStack() as stack:
        systems = [
            await stack.enter_async_context(RemoteActorSystem("rep", settings=FAST))
            for _ in journals
        ]
        await journals[0].write(entries("x", 1, 2, epoch=1))
        for journal in journals[1:]:
            await journal.write(entries("x", 1, 5, epoch=1))
        stores = [
            systems[0].resolve(s.spawn(replica_store(j), "replica").address)
            for s, j in zip(systems[1:], journals[1:], strict=True)
        ]
        # Both hold the same last entry; the first one never answers the read.
        copied = await pull_missing(systems[0], journals[0], stores, "x", timeout=1.0)
        assert copied == 3
        assert [e.sequence_nr async for e in journals[0].replay("x")] == [1, 2, 3, 4, 5]


def test_a_table_rebuilt_without_a_shard_allocates_it_above_a_reported_fence() -> None:
    table = ShardAllocationTable(4)
    table.add_region("a")
    table.raise_epoch(2, 8)  # a replica store said it was fenced at 8
    table.raise_epoch(2, 3)  # never lowers
    assert table.allocate(2, "a") == 9
