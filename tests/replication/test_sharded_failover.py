"""Failover of replicated sharded entities: promotion of the most advanced replica, catch-up of
lagging and new replicas, and fencing of a partitioned old primary.

In-process cluster nodes (real TCP, or the in-process `FakeNetwork` where links are cut), each
with its own journal: the only copies of an entity's events are on the nodes' own journals.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from replication_support import Added, Refused, stored
from sharded_support import (
    Cluster,
    GatedJournal,
    entity_on,
    highest,
    replicated_cluster,
    shard_of,
)
from sharding_harness import wait_all, wait_until

from casty.errors import (
    AskTimeout,
    CastyError,
    HandshakeFailed,
    ReplicationError,
    ReplicationTimeout,
    StaleEpoch,
)
from casty.journals import SQLiteJournal
from casty.replication import ReplicationConfig
from casty.replication.protocol import ReplicaFenced, Replicate
from casty.replication.sharded import REPLICA_STORE_NAME
from casty.testing import FakeNetwork

pytestmark = pytest.mark.slow

TWO_REPLICAS = ReplicationConfig(replicas=2, min_acks=1, ack_timeout=3.0)


@pytest.mark.parametrize("lagging", [0, 1], ids=["lower-address-lags", "higher-address-lags"])
async def test_the_most_advanced_replica_is_promoted_and_the_lagging_one_catches_up(
    lagging: int,
) -> None:
    journals = [GatedJournal() for _ in range(3)]
    async with replicated_cluster(3, TWO_REPLICAS, journals=journals) as cluster:
        (entity,) = await entity_on(cluster, via=0)
        primary = await cluster.owner(entity)
        # Both other nodes are replicas (replicas=2); one of them misses three pushes. Either
        # may hold the first replica slot, so both orders are run.
        replicas = sorted(
            (i for i in range(3) if i != primary), key=lambda i: str(cluster.regions[i])
        )
        lag, lead = replicas[lagging], replicas[1 - lagging]
        assert await cluster.add(primary, entity, 1) == Added(1)
        await wait_until(lambda: _has(journals[lag], entity, 2), 5.0, 0.02)
        journals[lag].closed = True
        acked = [await cluster.add(primary, entity, n) for n in (10, 100, 1000)]
        assert acked == [Added(11), Added(111), Added(1111)]  # min_acks=1: the lead confirmed
        journals[lag].closed = False
        assert await highest(journals[lag], entity) == 2  # the start event and the first
        assert await highest(journals[lead], entity) == 5

        survivors = await cluster.kill(primary)
        # Served again by the most advanced replica, with every acknowledged event.
        assert await cluster.get(lag, entity) == 1111
        assert await cluster.owner(entity, survivors) == lead
        # The lagging replica keeps its slot and is caught up by the promoted primary at once.
        await wait_until(lambda: _has(journals[lag], entity, 5), 10.0, 0.05)
        assert await cluster.add(lag, entity, 2) == Added(1113)
        old_epoch = (await stored(journals[lead], entity))[0][1]
        for journal in (journals[lead], journals[lag]):
            assert await stored(journal, entity) == [(n, old_epoch) for n in range(1, 6)] + [
                (6, old_epoch + 1)
            ]


async def test_acked_writes_that_reached_different_replicas_all_survive_the_promotion() -> None:
    journals = [GatedJournal() for _ in range(3)]
    async with replicated_cluster(3, TWO_REPLICAS, journals=journals) as cluster:
        x, y = await entity_on(cluster, via=0, count=2)  # one shard, so one primary
        primary = await cluster.owner(x)
        b, c = (i for i in range(3) if i != primary)
        await wait_until(lambda: _has(journals[c], x, 1), 5.0, 0.02)
        await wait_until(lambda: _has(journals[b], x, 1), 5.0, 0.02)
        # min_acks=1 with replicas=2: x's second write reaches only B, y's first only C.
        journals[c].closed = True
        assert await cluster.add(primary, x, 5) == Added(5)
        journals[c].closed = False
        journals[b].closed = True
        assert await cluster.add(primary, y, 7) == Added(7)
        journals[b].closed = False
        assert (await highest(journals[b], x), await highest(journals[c], x)) == (2, 1)
        assert (await highest(journals[b], y), await highest(journals[c], y)) == (0, 1)

        survivors = await cluster.kill(primary)
        # Whichever replica is promoted, it takes from the other what it lacks.
        assert await cluster.get(b, x) == 5
        assert await cluster.get(c, y) == 7
        promoted = await cluster.owner(x, survivors)
        assert await highest(journals[promoted], x) == 2
        assert await highest(journals[promoted], y) == 1


async def test_a_replica_store_that_does_not_answer_is_skipped_at_promotion() -> None:
    async with replicated_cluster(3, TWO_REPLICAS) as cluster:
        (entity,) = await entity_on(cluster, via=0)
        primary = await cluster.owner(entity)
        silent, other = (i for i in range(3) if i != primary)
        # The silent node's region stays eligible, but its replica store is gone: it neither
        # takes pushes nor answers the promotion question or the pull.
        system = cluster.nodes[silent].system
        await system.stop(system.resolve(_store_of(cluster, silent)))
        acked = [await cluster.add(primary, entity, n) for n in (1, 2, 3)]
        assert acked == [Added(1), Added(3), Added(6)]
        survivors = await cluster.kill(primary)
        assert await cluster.get(silent, entity) == 6  # served within the ack timeout
        assert await cluster.owner(entity, survivors) == other


async def test_a_partitioned_old_primary_is_fenced_and_its_late_writes_never_show(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="casty.replication")
    network = FakeNetwork("replication-fencing")
    config = ReplicationConfig(replicas=1, min_acks=1, ack_timeout=2.0)
    async with replicated_cluster(3, config, network=network) as cluster:
        journals = cluster.journals
        (entity,) = await entity_on(cluster, via=0)
        old = await cluster.owner(entity)
        assert await cluster.add(old, entity, 1) == Added(1)
        assert await cluster.add(old, entity, 2) == Added(3)
        holding = [i for i in range(3) if i != old and await highest(journals[i], entity)]
        (replica,) = holding  # replicas=1, min_acks=1: the acknowledged writes are there
        third = ({0, 1, 2} - {old, replica}).pop()
        epoch = (await stored(journals[old], entity))[-1][1]

        # Cut the primary off; a command it takes now cannot be confirmed by its replica.
        old_host = cluster.nodes[old].system.node_address.host
        for i in (replica, third):
            network.partition(old_host, cluster.nodes[i].system.node_address.host)
        late = await _answer_or_timeout(cluster, old, entity, 100)
        assert not isinstance(late, Added)  # unknown to its client, never a success
        late_entry = (await _entries(journals[old], entity))[-1]
        assert (late_entry.sequence_nr, late_entry.epoch) == (4, epoch)  # only in its journal

        # The majority downs it and promotes the replica at a newer epoch.
        await wait_until(lambda: cluster.nodes[old].system.cluster.is_downed, 20.0)
        survivors = [replica, third]
        await wait_until(
            lambda: all(len(cluster.nodes[i].system.cluster.up_members) == 2 for i in survivors),
            20.0,
        )
        assert await cluster.get(third, entity) == 3
        assert await cluster.owner(entity, survivors) == replica
        assert await cluster.add(third, entity, 10) == Added(13)
        network.heal()

        # The old primary's late write is refused everywhere. It cannot reach the others (a
        # downed node is quarantined); delivered by a live node, the replicas refuse its epoch
        # (the shard's fence), and so do the journals.
        system = cluster.nodes[old].system
        with pytest.raises((HandshakeFailed, AskTimeout)):
            await system.ask(
                system.resolve(_store_of(cluster, replica)),
                lambda r: Replicate((late_entry,), r, 1, shard_of(entity), epoch),
                timeout=1.0,
            )
        live = cluster.nodes[third].system
        for i in survivors:
            answer = await live.ask(
                live.resolve(_store_of(cluster, i)),
                lambda r: Replicate((late_entry,), r, 1, shard_of(entity), epoch),
                timeout=5.0,
            )
            assert isinstance(answer, ReplicaFenced) and answer.epoch > epoch
            with pytest.raises(StaleEpoch):
                await journals[i].write([late_entry])
        assert "refused a push of shard" in caplog.text

        # Never visible: not in any live journal, not in the promoted entity's state.
        for i in survivors:
            assert await stored(journals[i], entity) == [
                (1, epoch),
                (2, epoch),
                (3, epoch),
                (4, epoch + 1),
            ]
        assert await cluster.get(third, entity) == 13


async def _answer_or_timeout(cluster: Cluster, via: int, entity: str, amount: int) -> Any:
    try:
        answer = await cluster.add(via, entity, amount)
    except AskTimeout as exc:  # the downed region stopped the entity before it answered
        return exc
    assert isinstance(answer, Refused) and isinstance(answer.cause, ReplicationTimeout), answer
    return answer


async def _entries(journal: Any, entity: str) -> list[Any]:
    return [e async for e in journal.replay(entity)]


async def _has(journal: Any, entity: str, count: int) -> bool:
    return bool(await journal.highest_sequence_nr(entity) >= count)


def _store_of(cluster: Cluster, i: int) -> str:
    return f"{cluster.regions[i].address}/{REPLICA_STORE_NAME}"


async def test_two_node_losses_in_turn_keep_every_acknowledged_write(tmp_path: Path) -> None:
    """After the first loss the promoted primary restores the replica count: the new replica
    gets every id of the shard, so losing that primary too loses nothing acknowledged.

    A review found this broken (126 of 150 ids lost in 3 of 5 runs of its script): the
    catch-up of an id whose new-epoch write reached the store first was refused as fenced,
    the primary took that for being replaced and never synced the shard's other ids. That
    race needs precise timing, which this test does not force; its root cause is pinned by
    `test_batched_pushes.py::test_an_entry_the_store_holds_is_confirmed_even_after_a_newer_epochs_entry`.
    Writes keep coming to a few ids throughout, as in production.
    """
    journals = [SQLiteJournal(tmp_path / f"node-{i}.db") for i in range(4)]
    try:
        async with replicated_cluster(4, journals=journals) as cluster:
            by_shard: dict[int, list[str]] = {}
            for i in range(1000):
                by_shard.setdefault(shard_of(f"acct-{i}"), []).append(f"acct-{i}")
            # More ids than one sync batch (32), in a shard away from node 0 (the coordinator).
            # The hot ids sort first: the sync catches them up in its first batch.
            ids = sorted(await _ids_of_a_shard_away_from(cluster, by_shard, 0, 64))
            hot, quiet = ids[:8], ids[8:]
            for entity_id in quiet:
                assert await cluster.add(0, entity_id, 1) == Added(1)
            acked = dict.fromkeys(quiet, 1) | dict.fromkeys(hot, 0)
            first = await cluster.owner(quiet[0])
            alive = [i for i in range(4) if i != first]
            stop = False

            async def keep_writing(worker: int) -> None:
                entity_id = hot[worker % len(hot)]
                while not stop:
                    via = next(i for i in alive if i != 0) if worker % 2 else 0
                    try:
                        answer = await cluster.add(via, entity_id, 1)
                    except CastyError:  # the outcome is unknown: it may count, or not
                        continue
                    if isinstance(answer, Added):
                        acked[entity_id] += 1

            writers = [asyncio.create_task(keep_writing(w)) for w in range(16)]
            try:
                alive = await cluster.kill(first)

                async def promoted_and_replicated() -> bool:
                    # Every quiet id is on the new primary and on another survivor (its replica).
                    holders = [
                        i
                        for i in alive
                        if all([await highest(cluster.journals[i], e) >= 1 for e in quiet])
                    ]
                    return len(holders) >= 2

                await wait_until(promoted_and_replicated, timeout=30.0)
            finally:
                stop = True
                await asyncio.gather(*writers)
            assert await cluster.get(alive[0], quiet[0]) == 1  # starts it on the new primary
            second = await cluster.owner(quiet[0], among=alive)
            await cluster.nodes[second].system.shutdown(leave=False)
            alive.remove(second)
            survivors = [cluster.nodes[i] for i in alive]
            await wait_all(survivors, lambda n: len(n.system.cluster.up_members) == 2, 30.0)
            reader = alive[0]
            for entity_id, count in acked.items():
                total = await cluster.get(reader, entity_id)
                assert total == count or (entity_id in hot and total >= count), (entity_id, total)
    finally:
        for journal in journals:
            await journal.aclose()


async def _ids_of_a_shard_away_from(
    cluster: Cluster, by_shard: dict[int, list[str]], avoid: int, count: int
) -> list[str]:
    for ids in by_shard.values():
        if len(ids) >= count:
            assert await cluster.add(0, ids[0], 0) == Added(0)
            if await cluster.owner(ids[0]) != avoid:
                return ids[:count]
    raise AssertionError(f"no shard of {count} ids away from node {avoid}")


async def test_a_removed_nodes_replica_slot_leaves_its_owner_and_writes_are_refused() -> None:
    # Found by a new user's kill test: with replicas=2 on 3 nodes, a node's removal left no
    # region to take its slots, so the coordinator told the owners nothing and their writes
    # kept waiting on the removed node's store (ReplicationTimeout: result unknown) until it
    # came back. Now the owner is told the slot is gone and refuses at once (nothing written).
    config = ReplicationConfig(replicas=2, min_acks=2, ack_timeout=3.0)
    async with replicated_cluster(3, config) as cluster:
        [entity] = await entity_on(cluster, via=0, avoid=0)
        primary = await cluster.owner(entity)
        assert await cluster.add(primary, entity, 1) == Added(1)
        await cluster.kill(3 - primary)  # its replica slots are on node 0 and this one

        async def refused_as_too_few_stores() -> bool:
            # Asked on the primary's node: the test's Refused (an exception) is not sent on.
            answer = await cluster.add(primary, entity, 1)
            return (
                isinstance(answer, Refused)
                and isinstance(answer.cause, ReplicationError)
                and not isinstance(answer.cause, ReplicationTimeout)
            )

        await wait_until(refused_as_too_few_stores, 30.0)
