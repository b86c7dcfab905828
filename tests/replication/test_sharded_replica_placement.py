"""Where the coordinator keeps a replicated shard's replica slots as regions come and go: off a
leaving node before it stops, on the regions a successor coordinator inherited, and filled up
once more regions are eligible.

In-process cluster nodes (real TCP, or the in-process `FakeNetwork` where a link must be slow
or cut), each with its own `InMemoryJournal`: the only copies of an entity's events are on the
nodes' own journals.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from replication_support import Added
from sharded_support import Cluster, highest, replicated_cluster, shard_of
from sharding_harness import wait_until

from casty.cluster import ClusterConfig, DowningConfig, FailureDetectorConfig
from casty.replication import ReplicationConfig
from casty.sharding import ShardingSettings
from casty.testing import FakeNetwork

pytestmark = pytest.mark.slow


async def placed(cluster: Cluster, via: int, count: int = 16) -> dict[str, tuple[int, int]]:
    """Start one entity per shard (an event of 0, through node ``via``) and return each
    one's (primary, replica) node indexes."""
    firsts: dict[int, str] = {}
    for i in range(count):
        firsts.setdefault(shard_of(f"acct-{i}"), f"acct-{i}")
    where = {}
    for entity in firsts.values():
        assert await cluster.add(via, entity, 0) == Added(0)
        primary = await cluster.owner(entity)
        holders = [
            i
            for i, journal in enumerate(cluster.journals)
            if i != primary and await highest(journal, entity)
        ]
        assert len(holders) == 1, (entity, holders)  # replicas=1, min_acks=1
        where[entity] = (primary, holders[0])
    return where


async def test_a_leaving_nodes_replica_slots_move_before_it_stops_and_writes_go_on() -> None:
    # The exit hooks may take long: the leaver stays a member until this test releases it.
    async with replicated_cluster(3, cluster_config=ClusterConfig(leave_timeout=60.0)) as cluster:
        journals = cluster.journals
        where = await placed(cluster, via=0)
        # A replica on a node that does not run the coordinator (node 0), primary elsewhere.
        entity, (primary, leaver) = next((e, pr) for e, pr in where.items() if pr[1] != 0)
        third = ({0, 1, 2} - {primary, leaver}).pop()
        acked = [await cluster.add(primary, entity, 1) for _ in range(3)]
        assert acked == [Added(1), Added(2), Added(3)]
        written = await highest(journals[primary], entity)

        # The leaver hands its shards off, then stays exiting (and its replica store running)
        # until released: the exit hook added last runs last.
        system = cluster.nodes[leaver].system
        release = asyncio.Event()

        async def hold() -> None:
            await release.wait()

        system.cluster.add_exit_hook(hold)
        answers: list[Any] = []
        writing = True

        async def writer() -> None:
            while writing:
                answers.append(await cluster.add(primary, entity, 1))

        leave = asyncio.create_task(system.shutdown())
        load = asyncio.create_task(writer())
        try:
            # While the leaver still runs, the slot moves to the third node and the primary
            # catches that store up.
            await wait_until(lambda: _has(journals[third], entity, written), 10.0, 0.02)
            mark = len(answers)
            await wait_until(lambda: len(answers) >= mark + 3, 10.0)
            assert not system.cluster.is_removed
        finally:
            release.set()
        await asyncio.wait_for(leave, 20.0)
        mark = len(answers)
        await wait_until(lambda: len(answers) >= mark + 3, 10.0)  # after the leaver stopped
        writing = False
        await asyncio.wait_for(load, 10.0)

        # Every write was acknowledged, in order, and the third node's store holds them all.
        assert answers == [Added(4 + n) for n in range(len(answers))]
        final = await highest(journals[primary], entity)
        assert await highest(journals[third], entity) == final
        assert await highest(journals[leaver], entity) < final


async def test_shards_handed_off_right_after_the_coordinator_moved_go_to_their_replicas() -> None:
    # The coordinator's node leaves while the third node's messages to the successor are slow:
    # its region registers with the new coordinator only after the leaver's shards moved. The
    # successor must still place them on their replicas (the only holders of their events)
    # and give them a replica. Heartbeats are slow too, so the pause tolerated is long.
    network = FakeNetwork("replica-placement-handover")
    config = ClusterConfig(
        failure_detector=FailureDetectorConfig(acceptable_heartbeat_pause=15.0),
    )
    async with replicated_cluster(3, network=network, cluster_config=config) as cluster:
        where = await placed(cluster, via=0)
        successor = min((1, 2), key=lambda i: _age(cluster, i))
        other = 3 - successor
        moved = [e for e, (p, r) in where.items() if p == 0 and r == other]
        assert moved, where  # 8 shards spread over 3 nodes: node 0 holds some
        for entity in moved:
            assert await cluster.add(0, entity, 5) == Added(5)

        host = [n.system.node_address.host for n in cluster.nodes]
        network.delay(host[other], host[successor], 3.0, oneway=True)
        await asyncio.wait_for(cluster.nodes[0].system.shutdown(), 20.0)
        network.heal()

        for entity in moved:
            assert await cluster.get(successor, entity) == 5  # the replica's events
            assert await cluster.owner(entity, [successor, other]) == other
            assert await cluster.add(successor, entity, 1) == Added(6)  # it has a replica
            assert await highest(cluster.journals[successor], entity) == 3


async def test_a_shard_placed_with_too_few_replicas_gets_one_once_a_region_is_eligible() -> None:
    # min_acks=0: a shard placed while the other node is unreachable serves without a replica.
    # Once that node is reachable again the coordinator gives the shard a replica at once (not
    # at the region's next periodic report, slow here) and the primary catches it up.
    network = FakeNetwork("replica-placement-top-up")
    replication = ReplicationConfig(replicas=1, min_acks=0, ack_timeout=3.0)
    config = ClusterConfig(downing=DowningConfig(stable_after=30.0))
    settings = ShardingSettings(retry_interval=5.0)
    async with replicated_cluster(
        2, replication, network=network, settings=settings, cluster_config=config
    ) as cluster:
        first, second = (n.system for n in cluster.nodes)
        host = [n.system.node_address.host for n in cluster.nodes]
        network.partition(host[0], host[1])
        await wait_until(lambda: first.cluster.unreachable, 15.0)
        entity = "acct-0"
        for n in range(1, 4):
            assert await cluster.add(0, entity, 1) == Added(n)  # a new shard, on node 0
        assert await highest(cluster.journals[1], entity) == 0
        network.heal()
        await wait_until(lambda: not first.cluster.unreachable, 15.0)
        await wait_until(lambda: not second.cluster.unreachable, 15.0)
        await wait_until(lambda: _has(cluster.journals[1], entity, 3), 5.0, 0.02)


def _age(cluster: Cluster, i: int) -> Any:
    system = cluster.nodes[i].system
    member = next(m for m in system.cluster.members if m.address == system.node_address)
    return member.age_key


async def _has(journal: Any, entity: str, count: int) -> bool:
    return bool(await journal.highest_sequence_nr(entity) >= count)
