"""Replication wired into cluster sharding: `Behaviors.sharded(..., replication=...)`.

Three in-process cluster nodes on real TCP (the sharding harness), each with its own
`InMemoryJournal`: the only copies of an entity's events are on the nodes' own journals.
"""

from __future__ import annotations

from typing import Any

import pytest
from replication_support import Add, Added, Get, Refused, counter
from sharded_support import CONFIG, ENTITY, GatedJournal, highest, replicated_cluster
from sharding_harness import Node, asking, hosted_entities, wait_until

from casty import Behaviors
from casty.actors.ref import ActorRef
from casty.errors import ConfigurationError, ReplicationTimeout
from casty.journals import InMemoryJournal
from casty.replication import ReplicationConfig
from casty.sharding import shard_id_for

pytestmark = pytest.mark.slow


async def owner_index(
    nodes: list[Node], regions: list[ActorRef[Any]], entity_id: str = ENTITY
) -> int:
    for i, (n, region) in enumerate(zip(nodes, regions, strict=True)):
        if entity_id in await hosted_entities(n.system, region):
            return i
    raise AssertionError(f"{entity_id} runs nowhere")


def test_replication_needs_the_nodes_journal() -> None:
    with pytest.raises(ConfigurationError, match="journal="):
        Behaviors.sharded(lambda e: counter(e, InMemoryJournal(), 0), replication=CONFIG)
    with pytest.raises(ConfigurationError, match="only used with replication"):
        Behaviors.sharded(lambda e: counter(e, InMemoryJournal(), 0), journal=InMemoryJournal())


async def test_a_reply_comes_only_once_a_replica_on_another_node_holds_the_event() -> None:
    async with replicated_cluster(3) as cluster:
        nodes, regions, journals = cluster.nodes, cluster.regions, cluster.journals
        for n in range(1, 6):
            answer = await nodes[2].system.ask(
                regions[2], asking(ENTITY, lambda r: Add(1, r)), timeout=10.0
            )
            assert answer == Added(n)
            primary = await owner_index(nodes, regions)
            # Checked at once, without waiting: the reply promised a replica already had it.
            others = [await highest(j) for i, j in enumerate(journals) if i != primary]
            assert await highest(journals[primary]) == n
            assert n in others, others
        # Every entry carries the shard's epoch (>= 1), the fencing token of its allocation.
        epochs = {e.epoch async for e in journals[primary].replay(ENTITY)}
        assert len(epochs) == 1 and min(epochs) >= 1


@pytest.mark.parametrize("on_coordinator", [True, False], ids=["oldest-node", "younger-node"])
async def test_the_lost_primarys_entity_is_served_by_its_replica_with_every_acked_event(
    on_coordinator: bool,
) -> None:
    async with replicated_cluster(3) as cluster:
        nodes, regions, journals = cluster.nodes, cluster.regions, cluster.journals
        # Entities on every node (the strategy spreads shards); pick one whose primary is (or
        # is not) on the oldest node, which also runs the coordinator.
        candidates = [f"acct-{i}" for i in range(12)]
        for entity_id in candidates:
            for _ in range(4):
                await nodes[1].system.ask(
                    regions[1], asking(entity_id, lambda r: Add(10, r)), timeout=10.0
                )
        owners = {e: await owner_index(nodes, regions, e) for e in candidates}
        entity = next(e for e, i in owners.items() if (i == 0) == on_coordinator)
        primary = owners[entity]
        held = [await highest(j, entity) for j in journals]
        replica = next(i for i, h in enumerate(held) if i != primary and h == 4)
        third = ({0, 1, 2} - {primary, replica}).pop()
        await nodes[primary].system.shutdown(leave=False)
        survivors = [i for i in range(3) if i != primary]
        await wait_until(
            lambda: all(len(nodes[i].system.cluster.up_members) == 2 for i in survivors), 30.0
        )
        # Served again, by the promoted replica, with all four acknowledged increments.
        state = await nodes[third].system.ask(
            regions[third], asking(entity, lambda r: Get(r)), timeout=30.0
        )
        assert state == 40
        alive = [nodes[i] for i in survivors], [regions[i] for i in survivors]
        assert survivors[await owner_index(*alive, entity)] == replica
        # A new replica (the third node, the only other one left) restores the count: the
        # promoted primary catches it up at once, without waiting for a write.
        await wait_until(lambda: highest(journals[third], entity), 10.0, 0.05)
        assert await highest(journals[third], entity) == 4
        answer = await nodes[third].system.ask(
            regions[third], asking(entity, lambda r: Add(2, r)), timeout=10.0
        )
        assert answer == Added(42)
        assert await highest(journals[third], entity) == 5
        assert await highest(journals[replica], entity) == 5
        epochs = [e.epoch async for e in journals[replica].replay(entity)]
        assert epochs[-1] > epochs[0]  # the promoted primary writes at a newer epoch


async def test_a_write_whose_replica_does_not_answer_fails_to_its_sender() -> None:
    config = ReplicationConfig(replicas=1, min_acks=1, ack_timeout=0.5)
    gated = [GatedJournal(), GatedJournal()]
    async with replicated_cluster(2, config, journals=gated) as cluster:
        nodes, regions, journals = cluster.nodes, cluster.regions, cluster.journals
        answer = await nodes[0].system.ask(
            regions[0], asking(ENTITY, lambda r: Add(1, r)), timeout=10.0
        )
        assert answer == Added(1)
        primary = await owner_index(nodes, regions)
        replica = 1 - primary
        # The replica's store gets the push but cannot store it, so it never answers (a
        # removed node's slot is refused at once instead: test_sharded_failover.py).
        gated[replica].closed = True
        answer = await nodes[primary].system.ask(
            regions[primary], asking(ENTITY, lambda r: Add(1, r)), timeout=10.0
        )
        assert isinstance(answer, Refused)
        assert isinstance(answer.cause, ReplicationTimeout), answer
        assert await highest(journals[replica]) == 1  # it never got the second event


async def test_each_shards_replica_is_on_another_node_and_replicas_spread_over_nodes() -> None:
    async with replicated_cluster(3) as cluster:
        nodes, regions, journals = cluster.nodes, cluster.regions, cluster.journals
        entities = [f"acct-{i}" for i in range(24)]
        for entity_id in entities:
            answer = await nodes[0].system.ask(
                regions[0], asking(entity_id, lambda r: Add(1, r)), timeout=10.0
            )
            assert answer == Added(1)
        shards: dict[int, tuple[int, int]] = {}  # shard -> (primary node, replica node)
        for entity_id in entities:
            primary = await owner_index(nodes, regions, entity_id)
            holders = [i for i, j in enumerate(journals) if await highest(j, entity_id) == 1]
            assert primary in holders and len(holders) == 2, (entity_id, holders)
            replica = next(i for i in holders if i != primary)
            shard = shard_id_for(entity_id, 8)
            assert shards.setdefault(shard, (primary, replica)) == (primary, replica)
        per_node = [sum(1 for _, r in shards.values() if r == i) for i in range(3)]
        assert sum(per_node) == len(shards)
        assert max(per_node) - min(per_node) <= 1, per_node
