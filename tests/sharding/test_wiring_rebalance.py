"""Shards move on real TCP: rebalance to a joining node, and handoff when a node leaves.

A producer keeps sending while the shards move; every message must be processed exactly once
and, per entity, in the order it was sent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from sharding_harness import (
    coordinator_state,
    hosted_entities,
    node,
    start_cluster,
    stop_all,
    wait_until,
)

from casty import ActorContext, Behavior, Behaviors, ShardEnvelope
from casty.sharding import (
    HASH_VERSION,
    ShardingSettings,
    StartEntity,
    coordinator_name,
    wait_registered,
)
from casty.sharding.messages import RegisterRegion

pytestmark = pytest.mark.slow

FAST = ShardingSettings(rebalance_interval=0.2, retry_interval=0.05)
ENTITIES = [f"seq-{i}" for i in range(60)]


@dataclass(frozen=True, slots=True)
class Seq:
    n: int


def recording(log: dict[str, list[int]], starts: dict[str, list[str]]) -> Any:
    """Entities that append every `Seq` to ``log[entity_id]`` and each start's node."""

    def factory(entity_id: str) -> Behavior[Any]:
        def setup(ctx: ActorContext[Any]) -> Behavior[Any]:
            starts.setdefault(entity_id, []).append(ctx.system.address)

            def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
                if isinstance(msg, Seq):
                    log.setdefault(entity_id, []).append(msg.n)
                return Behaviors.same()

            return Behaviors.receive(receive)

        return Behaviors.setup(setup)

    return factory


class Producer:
    """Sends ``Seq(1), Seq(2), ...`` to every entity, one round per few milliseconds."""

    def __init__(self, region: Any) -> None:
        self.region = region
        self.rounds = 0
        self.stop = asyncio.Event()

    async def run(self) -> None:
        while not self.stop.is_set():
            self.rounds += 1
            for entity_id in ENTITIES:
                self.region.tell(ShardEnvelope(entity_id, Seq(self.rounds)))
            # Pacing of the load, not synchronisation: the checks below wait on conditions.
            await asyncio.sleep(0.003)


def complete(log: dict[str, list[int]], rounds: int) -> bool:
    return all(log.get(e) == list(range(1, rounds + 1)) for e in ENTITIES)


async def test_a_joining_node_receives_shards_while_a_producer_sends() -> None:
    nodes = await start_cluster(3)
    log: dict[str, list[int]] = {}
    starts: dict[str, list[str]] = {}
    behavior = Behaviors.sharded(recording(log, starts), num_shards=32, settings=FAST)
    newcomer = None
    try:
        regions = [n.system.spawn(behavior, "moving") for n in nodes]
        for n, region in zip(nodes, regions, strict=True):
            await wait_registered(n.system, region)
        producer = Producer(regions[1])
        async with asyncio.TaskGroup() as group:
            group.create_task(producer.run())
            await wait_until(lambda: producer.rounds >= 20 and len(log) == len(ENTITIES), 10.0)
            newcomer = node(node_id="n3", seed_nodes=[nodes[0].system.node_address])
            await newcomer.system.__aenter__()
            region = newcomer.system.spawn(behavior, "moving")
            await wait_registered(newcomer.system, region)

            async def settled() -> bool:
                state = await coordinator_state(nodes[0].system, "moving")
                if state is None or state.in_handoff:
                    return False
                counts = sorted(len(shards) for _, shards in state.regions)
                return len(counts) == 4 and counts[0] >= 1 and counts[-1] - counts[0] <= 1

            await wait_until(settled, timeout=20.0, interval=0.05)
            moved_rounds = producer.rounds
            await wait_until(lambda: producer.rounds >= moved_rounds + 20, 10.0)
            producer.stop.set()
        await wait_until(lambda: complete(log, producer.rounds), timeout=10.0)
        on_newcomer = await hosted_entities(newcomer.system, region)
        assert on_newcomer, "the newcomer hosts entities after the rebalance"
        assert all(starts[e][-1] == newcomer.system.address for e in on_newcomer)
        # Each entity that moved ran first on an old node, then on the newcomer: once each.
        assert all(len(starts[e]) == 2 for e in on_newcomer)
        assert all(len(starts[e]) == 1 for e in ENTITIES if e not in on_newcomer)
    finally:
        await stop_all([*nodes, *([newcomer] if newcomer else [])], leave=False)


async def test_a_leaving_node_hands_its_shards_off_first() -> None:
    nodes = await start_cluster(3)
    log: dict[str, list[int]] = {}
    starts: dict[str, list[str]] = {}
    behavior = Behaviors.sharded(recording(log, starts), num_shards=32, settings=FAST)
    try:
        regions = [n.system.spawn(behavior, "leaving") for n in nodes]
        for n, region in zip(nodes, regions, strict=True):
            await wait_registered(n.system, region)
        # The oldest node leaves: it runs the coordinator too, which moves with a handover.
        leaver = nodes[0]
        producer = Producer(regions[1])
        async with asyncio.TaskGroup() as group:
            group.create_task(producer.run())
            await wait_until(lambda: producer.rounds >= 20 and len(log) == len(ENTITIES), 10.0)
            on_leaver = await hosted_entities(leaver.system, regions[0])
            assert on_leaver
            assert await leaver.system.leave()
            left_at = producer.rounds
            # Handed off before the node stopped: every one of its entities runs elsewhere.
            assert await hosted_entities(leaver.system, regions[0]) == set()
            await wait_until(lambda: producer.rounds >= left_at + 20, 10.0)
            producer.stop.set()
        await wait_until(lambda: complete(log, producer.rounds), timeout=10.0)
        assert all(starts[e][-1] != leaver.system.address for e in ENTITIES)

        # The new coordinator forgets the leaver's region once it sees the member removed,
        # which may come after `leave()` returned on the leaver.
        async def leaver_forgotten() -> bool:
            state = await coordinator_state(nodes[1].system, "leaving")
            return (
                state is not None
                and state.active
                and all(str(regions[0].address) != key for key, _ in state.regions)
            )

        await wait_until(leaver_forgotten, timeout=10.0)
        state = await coordinator_state(nodes[1].system, "leaving")
        assert state is not None
        assert sum(len(shards) for _, shards in state.regions) == len(
            {s for _, shards in state.regions for s in shards}
        )
    finally:
        await stop_all(nodes, leave=False)


async def test_remembered_entities_restart_where_their_shard_moves() -> None:
    nodes = await start_cluster(2)
    log: dict[str, list[int]] = {}
    starts: dict[str, list[str]] = {}
    behavior = Behaviors.sharded(
        recording(log, starts), num_shards=16, settings=FAST, remember_entities=True
    )
    try:
        regions = [n.system.spawn(behavior, "remembered") for n in nodes]
        for n, region in zip(nodes, regions, strict=True):
            await wait_registered(n.system, region)
        for entity_id in ENTITIES:
            regions[0].tell(StartEntity(entity_id))
        await wait_until(lambda: len(starts) == len(ENTITIES), 10.0)
        on_second = await hosted_entities(nodes[1].system, regions[1])
        assert on_second
        assert await nodes[1].system.leave()
        # Without any message, the entities of the leaving node start again on the other one.
        await wait_until(lambda: all(len(starts[e]) == 2 for e in on_second), timeout=10.0)
        assert all(starts[e][-1] == nodes[0].system.address for e in on_second)
        assert await hosted_entities(nodes[0].system, regions[0]) == set(ENTITIES)
    finally:
        await stop_all(nodes, leave=False)


async def test_the_coordinator_ignores_a_registration_from_a_node_that_is_not_a_member() -> None:
    # A removed node's region may still be retrying its registration (a node that left stays
    # up until its owner stops it); once its node is gone from the membership, nothing would
    # sweep the region out of the table again, so it is never added.
    nodes = await start_cluster(2)
    try:
        behavior = Behaviors.sharded(recording({}, {}), num_shards=8, settings=FAST)
        regions = [n.system.spawn(behavior, "ghosts") for n in nodes]
        for n, region in zip(nodes, regions, strict=True):
            await wait_registered(n.system, region)
        system = nodes[0].system  # the oldest: it runs the coordinator
        ghost = system.resolve(f"casty://{system.name}@127.0.0.1:1/user/ghosts")
        coordinator = system.resolve(f"/system/{coordinator_name('ghosts')}")
        coordinator.tell(RegisterRegion(ghost, "ghosts", 8, HASH_VERSION))
        coordinator.tell(RegisterRegion(regions[1], "ghosts", 8, HASH_VERSION))  # a member's
        state = await coordinator_state(system, "ghosts")  # asked after both were handled
        assert state is not None and state.active
        keys = {key for key, _ in state.regions}
        assert str(regions[1].address) in keys
        assert str(ghost.address) not in keys
    finally:
        await stop_all(nodes, leave=False)
