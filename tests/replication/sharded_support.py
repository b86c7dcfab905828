"""Clusters of in-process nodes running a replicated sharded counter type, for the tests of
replication through sharding (real TCP on port 0, or the in-process `FakeNetwork`).

Each node gets its own journal (the only copies of an entity's events are on the nodes' own
journals) unless the test passes one shared journal per node (PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sharding"))

from replication_support import Add, Added, Get, counter
from sharding_harness import (
    Node,
    asking,
    hosted_entities,
    node,
    start_cluster,
    stop_all,
    wait_all,
)

from casty import Behavior, Behaviors
from casty.abc import Journal, JournalEntry
from casty.actors.ref import ActorRef
from casty.cluster import ClusterConfig
from casty.errors import JournalUnavailable
from casty.journals import InMemoryJournal
from casty.replication import ReplicationConfig
from casty.sharding import ShardingSettings, shard_id_for, wait_registered
from casty.testing import FakeNetwork

CONFIG = ReplicationConfig(replicas=1, min_acks=1, ack_timeout=3.0)
NUM_SHARDS = 8
ENTITY = "acct-1"
ASK = 10.0  # seconds a command may take (failover included)


class GatedJournal(InMemoryJournal):
    """An in-memory journal whose writes fail while ``closed`` (a replica that misses pushes:
    its store gets them but cannot store them, so it never confirms)."""

    closed = False

    async def write(self, entries: Sequence[JournalEntry]) -> None:
        if self.closed:
            raise JournalUnavailable("the test closed this journal for writes")
        await super().write(entries)


def factory(journal: Journal) -> Callable[[str], Behavior[Any]]:
    """Counters over ``journal``; the epoch (0 here) is the shard's once a region binds it."""
    return lambda entity_id: counter(entity_id, journal, 0)


class Cluster:
    """The nodes, their ``accounts`` regions and their journals (same order)."""

    def __init__(self, nodes: list[Node], regions: list[ActorRef[Any]], journals: list[Journal]):
        self.nodes = nodes
        self.regions = regions
        self.journals = journals

    async def ask(self, via: int, entity_id: str, make: Callable[[ActorRef[Any]], Any]) -> Any:
        """Send ``make(reply_to)`` to ``entity_id`` through node ``via``'s region; the answer."""
        return await self.nodes[via].system.ask(
            self.regions[via], asking(entity_id, make), timeout=ASK
        )

    async def add(self, via: int, entity_id: str, amount: int) -> Any:
        return await self.ask(via, entity_id, lambda r: Add(amount, r))

    async def get(self, via: int, entity_id: str) -> Any:
        return await self.ask(via, entity_id, lambda r: Get(r))

    async def owner(self, entity_id: str, among: Sequence[int] | None = None) -> int:
        """The index of the node whose region runs ``entity_id`` (looking at ``among`` only)."""
        for i in range(len(self.nodes)) if among is None else among:
            if entity_id in await hosted_entities(self.nodes[i].system, self.regions[i]):
                return i
        raise AssertionError(f"{entity_id} runs nowhere")

    async def kill(self, i: int) -> list[int]:
        """Stop node ``i`` without leaving; wait until the others removed it. The survivors."""
        await self.nodes[i].system.shutdown(leave=False)
        survivors = [j for j in range(len(self.nodes)) if j != i]
        count = len(survivors)
        await wait_all(
            [self.nodes[j] for j in survivors],
            lambda n: len(n.system.cluster.up_members) == count,
            30.0,
        )
        return survivors


async def entity_on(cluster: Cluster, via: int, avoid: int = 0, count: int = 1) -> list[str]:
    """``count`` entities of one shard whose primary is not node ``avoid`` (the coordinator's
    node, so that losing the primary does not move the coordinator too)."""
    by_shard: dict[int, list[str]] = {}
    for i in range(64):
        by_shard.setdefault(shard_of(f"acct-{i}"), []).append(f"acct-{i}")
    for ids in by_shard.values():
        if len(ids) < count:
            continue
        assert await cluster.add(via, ids[0], 0) == Added(0)  # starts it (an event of 0)
        if await cluster.owner(ids[0]) != avoid:
            return ids[:count]
    raise AssertionError(f"no shard of {NUM_SHARDS} is away from node {avoid}")


async def _start_on(network: FakeNetwork, count: int, **node_options: Any) -> list[Node]:
    def member(host: str, **options: Any) -> Node:
        transport = network.transport(host)
        return node(host=host, node_id=host, transport=transport, **options, **node_options)

    first = member("h0")
    await first.system.__aenter__()
    others = [member(f"h{i}", seed_nodes=[first.system.node_address]) for i in range(1, count)]
    await asyncio.gather(*(n.system.__aenter__() for n in others))
    everyone = [first, *others]
    await wait_all(everyone, lambda n: len(n.system.cluster.up_members) == count, 15.0)
    return everyone


@contextlib.asynccontextmanager
async def replicated_cluster(
    count: int,
    config: ReplicationConfig = CONFIG,
    *,
    journals: Sequence[Journal] | None = None,
    network: FakeNetwork | None = None,
    settings: ShardingSettings | None = None,
    cluster_config: ClusterConfig | None = None,
) -> AsyncIterator[Cluster]:
    """``count`` nodes (the first is the oldest) with a replicated ``accounts`` region each.

    ``journals`` (one per node) default to fresh `InMemoryJournal` objects; ``network`` runs
    the nodes on the in-process network (hosts h0, h1, ...) instead of real TCP; ``settings``
    go to every region, ``cluster_config`` to every node.
    """
    node_options = {} if cluster_config is None else {"config": cluster_config}
    nodes = await (
        start_cluster(count, **node_options)
        if network is None
        else _start_on(network, count, **node_options)
    )
    try:
        node_journals = list(journals) if journals is not None else []
        node_journals += [InMemoryJournal() for _ in range(count - len(node_journals))]
        regions = []
        for n, journal in zip(nodes, node_journals, strict=True):
            behavior = Behaviors.sharded(
                factory(journal),
                num_shards=NUM_SHARDS,
                replication=config,
                journal=journal,
                settings=settings,
            )
            regions.append(n.system.spawn(behavior, "accounts"))
        for n, region in zip(nodes, regions, strict=True):
            await wait_registered(n.system, region)
        yield Cluster(nodes, regions, node_journals)
    finally:
        await stop_all(nodes, leave=False)


async def highest(journal: Journal, entity_id: str = ENTITY) -> int:
    return await journal.highest_sequence_nr(entity_id)


def shard_of(entity_id: str) -> int:
    return shard_id_for(entity_id, NUM_SHARDS)
