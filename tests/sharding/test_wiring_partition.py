"""A partitioned node is downed: its region stops serving before the majority takes over.

Runs over the in-process `MemoryTransport` (`FakeNetwork`), which can cut links; the cluster
and sharding wiring are the real ones.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sharding_harness import (
    Where,
    WhereIs,
    asking,
    dead_letter_recorder,
    hosted_entities,
    region_state,
    start_cluster,
    stop_all,
    wait_until,
)

from casty import ActorContext, Behavior, Behaviors, PostStop, ShardEnvelope
from casty.sharding import StartEntity, shard_id_for, wait_registered
from casty.testing import FakeNetwork

pytestmark = pytest.mark.slow

ENTITIES = [f"p-{i}" for i in range(30)]


def shard_for(entity_id: str) -> int:
    return shard_id_for(entity_id, 32)


def timed(events: list[tuple[float, str, str, str]]) -> Any:
    """Entities that log ``(loop time, "start" | "stop", entity_id, node)`` and answer WhereIs."""

    def factory(entity_id: str) -> Behavior[Any]:
        def setup(ctx: ActorContext[Any]) -> Behavior[Any]:
            here = ctx.system.address
            now = asyncio.get_running_loop().time
            events.append((now(), "start", entity_id, here))

            def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
                if isinstance(msg, WhereIs):
                    msg.reply_to.tell(Where(entity_id, here, 0))
                return Behaviors.same()

            def on_signal(ctx: ActorContext[Any], signal: Any) -> None:
                if isinstance(signal, PostStop):
                    events.append((now(), "stop", entity_id, here))

            return Behaviors.receive(receive, on_signal)

        return Behaviors.setup(setup)

    return factory


@pytest.mark.parametrize("cut", [2, 0], ids=["youngest", "oldest-runs-the-coordinator"])
async def test_a_downed_node_stops_serving_before_its_shards_run_elsewhere(cut: int) -> None:
    network = FakeNetwork(f"sharding-partition-{cut}")
    events: list[tuple[float, str, str, str]] = []
    nodes = await start_cluster(3, network)
    try:
        behavior = Behaviors.sharded(timed(events), num_shards=32)
        regions = [n.system.spawn(behavior, "fenced") for n in nodes]
        for n, region in zip(nodes, regions, strict=True):
            await wait_registered(n.system, region)
        for entity_id in ENTITIES:
            regions[0].tell(StartEntity(entity_id))
        await wait_until(lambda: len({e for _, k, e, _ in events if k == "start"}) == 30, 10.0)
        minority = nodes[cut]
        majority = [n for n in nodes if n is not minority]
        region_of = dict(zip((id(n) for n in nodes), regions, strict=True))
        before = {
            shard.shard_id: shard.epoch
            for n in nodes
            for shard in (await region_state(n.system, region_of[id(n)])).shards
        }
        on_minority = await hosted_entities(minority.system, region_of[id(minority)])
        assert on_minority
        letters = dead_letter_recorder(minority.system)
        host = minority.system.node_address.host
        for other in majority:
            network.partition(other.system.node_address.host, host)
        await wait_until(lambda: minority.system.cluster.is_downed, 20.0)

        def stopped(entity_id: str) -> bool:
            return any(k == "stop" and e == entity_id for _, k, e, _ in events)

        await wait_until(lambda: all(stopped(x) for x in on_minority), 5.0)
        assert await hosted_entities(minority.system, region_of[id(minority)]) == set()
        hello = ShardEnvelope("p-0", "hello")
        region_of[id(minority)].tell(hello)
        await wait_until(lambda: any(d.message == hello for d in letters))
        assert "downed" in next(d.reason for d in letters if d.message == hello)
        # The majority serves the minority's entities again, once the minority has stopped.
        survivor = majority[0]
        for entity_id in sorted(on_minority):
            answer: Where = await survivor.system.ask(
                region_of[id(survivor)], asking(entity_id, WhereIs), timeout=20.0
            )
            assert answer.node != minority.system.address
        gone = minority.system.address
        for entity_id in on_minority:
            stop_at = max(
                t for t, k, e, n in events if k == "stop" and e == entity_id and n == gone
            )
            start_at = min(
                t for t, k, e, n in events if k == "start" and e == entity_id and n != gone
            )
            assert stop_at < start_at, entity_id  # never running on both sides at once
        # Epochs never go back, even when the coordinator's node was the one lost: shards that
        # stayed keep theirs, and a moved shard's new epoch outranks its old one.
        after = {
            shard.shard_id: shard.epoch
            for n in majority
            for shard in (await region_state(n.system, region_of[id(n)])).shards
        }
        for shard_id, epoch in after.items():
            assert epoch >= before.get(shard_id, 0), shard_id
        moved = {shard_for(e) for e in on_minority}
        assert all(after[s] > before[s] for s in moved)
    finally:
        await stop_all(nodes, leave=False)
