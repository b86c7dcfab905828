"""Replication through sharding over one PostgreSQL journal shared by every node: the replicas
are warm standbys (they verify the shared journal holds each batch before acknowledging it, and
copy nothing), promotion recovers from the shared journal, and fencing holds through the
journal's epoch check.

Needs ``CASTY_TEST_POSTGRES_DSN`` (skipped without it; failed when ``CASTY_REQUIRE_POSTGRES=1``).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from replication_support import Added, Refused, stored
from sharded_support import entity_on, replicated_cluster, shard_of
from sharding_harness import wait_until

from casty.abc import Journal, JournalEntry
from casty.errors import AskTimeout, ReplicationTimeout, StaleEpoch
from casty.journals import PostgresJournal
from casty.replication import ReplicationConfig
from casty.replication.protocol import ReplicaFenced, Replicate
from casty.replication.sharded import REPLICA_STORE_NAME
from casty.testing import FakeNetwork
from casty.testing._postgres import drop_journal_tables, require_postgres_dsn

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def postgres_dsn() -> str:
    return require_postgres_dsn()


@pytest_asyncio.fixture
async def shared(postgres_dsn: str) -> AsyncIterator[list[Journal]]:
    """Three `PostgresJournal` objects (one per node) over one table no other test uses."""
    table = f"casty_test_{uuid.uuid4().hex[:12]}"
    journals: list[Journal] = [PostgresJournal(postgres_dsn, table=table) for _ in range(3)]
    try:
        for journal in journals:  # one after the other: the first creates the tables
            await journal.open()
        yield journals
    finally:
        for journal in journals:
            await journal.aclose()
        await drop_journal_tables(postgres_dsn, table)


async def test_warm_standby_replicas_over_a_shared_journal_promote_and_fence(
    shared: list[Journal],
) -> None:
    network = FakeNetwork("replication-shared-journal")
    config = ReplicationConfig(replicas=1, min_acks=1, ack_timeout=2.0)
    async with replicated_cluster(3, config, journals=shared, network=network) as cluster:
        (entity,) = await entity_on(cluster, via=0)
        old = await cluster.owner(entity)
        assert await cluster.add(old, entity, 1) == Added(1)
        assert await cluster.add(old, entity, 2) == Added(3)
        # One row per event: the replica verified the shared journal and copied nothing.
        epoch = (await stored(shared[0], entity))[0][1]
        assert await stored(shared[0], entity) == [(1, epoch), (2, epoch), (3, epoch)]

        # Cut the primary off the cluster (not off PostgreSQL). Its write reaches the shared
        # journal, but no replica confirms it: the client is told it failed (result unknown).
        old_host = cluster.nodes[old].system.node_address.host
        others = [i for i in range(3) if i != old]
        for i in others:
            network.partition(old_host, cluster.nodes[i].system.node_address.host)
        try:
            answer = await cluster.add(old, entity, 100)
        except AskTimeout:
            pass  # the downed region stopped the entity before it answered
        else:
            assert isinstance(answer, Refused) and isinstance(answer.cause, ReplicationTimeout)
        assert await stored(shared[0], entity) == [(n, epoch) for n in range(1, 5)]

        # The others down it; a standby takes the shard at a newer epoch and recovers from the
        # shared journal, the unknown write included (it is there).
        await wait_until(lambda: cluster.nodes[old].system.cluster.is_downed, 20.0)
        await wait_until(
            lambda: all(len(cluster.nodes[i].system.cluster.up_members) == 2 for i in others),
            20.0,
        )
        assert await cluster.get(others[0], entity) == 103
        promoted = await cluster.owner(entity, others)
        assert await cluster.add(others[0], entity, 10) == Added(113)
        network.heal()

        # Fencing through the shared journal: the old primary's journal object, still
        # connected to PostgreSQL, cannot write its epoch any more; nor can its pushes land.
        late = (await _entries(shared[old], entity))[-1]
        assert (late.sequence_nr, late.epoch) == (5, epoch + 1)
        stale = dataclasses.replace(late, sequence_nr=6, epoch=epoch)
        with pytest.raises(StaleEpoch):
            await shared[old].write([stale])
        live = cluster.nodes[promoted].system
        standby = next(i for i in others if i != promoted)
        answer = await live.ask(
            live.resolve(f"{cluster.regions[standby].address}/{REPLICA_STORE_NAME}"),
            lambda r: Replicate((stale,), r, 1, shard_of(entity), epoch),
            timeout=5.0,
        )
        assert isinstance(answer, ReplicaFenced) and answer.epoch > epoch
        assert await stored(shared[0], entity) == [(n, epoch) for n in range(1, 5)] + [
            (5, epoch + 1)
        ]
        assert await cluster.get(standby, entity) == 113


async def _entries(journal: Journal, entity: str) -> list[JournalEntry]:
    return [e async for e in journal.replay(entity)]
