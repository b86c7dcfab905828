"""ClusterClient sharded ask throughput, beside the same asks from a cluster member.

Three cluster nodes and one `ClusterClient` run in this process on loopback TCP (one event
loop, so both figures pay for the whole cluster's CPU on the same core). A sharded no-op entity
answers ``Ping`` with ``Pong`` over 1,000 entity ids; 100 asks stay in flight for
``--seconds`` after a warm-up:

- ``client_sharded_ask`` (replies/s): the asks come from the client, which sends each envelope
  straight to the owning node (ours);
- the baseline, in the same run: the same asks from a member's own sharded ref (about 2/3 of
  them go to an entity on another node, one remote hop, as for the client).

Prints one JSON line: ``{"name", "ours", "baseline", "ratio", "unit"}`` (the issue's target is
a ratio >= 0.9). ``benchmarks/coordination.py`` reuses this entity and driver to measure the
same from a client and a member each in its own process.

Usage: ``python benchmarks/client.py [--seconds 3] [--in-flight 100]``
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from casty import ActorContext, ActorRef, Behavior, Behaviors, ShardEnvelope
from casty.client import ClusterClient
from casty.cluster import ClusteredActorSystem
from casty.sharding import wait_registered

IDS = [f"id-{i}" for i in range(1000)]


@dataclass(frozen=True, slots=True)
class Ping:
    reply_to: ActorRef[Any]


@dataclass(frozen=True, slots=True)
class Pong:
    pass


def ping_entity(entity_id: str) -> Behavior[Any]:
    def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        msg.reply_to.tell(Pong())
        return Behaviors.same()

    return Behaviors.receive(receive)


async def drive(ask: Callable[[str], Awaitable[Any]], seconds: float, in_flight: int) -> float:
    """Replies per second with ``in_flight`` concurrent askers over ``seconds``."""
    ids = itertools.cycle(IDS)
    count = 0
    stop = False

    async def worker() -> None:
        nonlocal count
        while not stop:
            await ask(next(ids))
            count += 1

    loop = asyncio.get_running_loop()
    tasks = [asyncio.create_task(worker()) for _ in range(in_flight)]
    try:
        await asyncio.sleep(seconds / 3)  # warm-up: allocate shards, fill caches
        count, start = 0, loop.time()
        await asyncio.sleep(seconds)
        rate = count / (loop.time() - start)
    finally:
        stop = True
        await asyncio.gather(*tasks, return_exceptions=True)
    return rate


async def start_cluster(roles: Sequence[str] = ()) -> list[ClusteredActorSystem]:
    """Three nodes ``n0``..``n2`` of system ``bench`` on loopback, each with ``roles``, all
    up (the caller shuts them down)."""
    first = ClusteredActorSystem("bench", node_id="n0", roles=roles)
    await first.__aenter__()
    others = [
        ClusteredActorSystem("bench", node_id=f"n{i}", roles=roles, seed_nodes=[first.node_address])
        for i in (1, 2)
    ]
    await asyncio.gather(*(o.__aenter__() for o in others))
    nodes = [first, *others]
    while any(len(n.cluster.up_members) < 3 for n in nodes):
        await asyncio.sleep(0.05)
    return nodes


async def main(seconds: float, in_flight: int) -> None:
    nodes = await start_cluster()
    first = nodes[0]
    try:
        regions = [n.spawn(Behaviors.sharded(ping_entity, num_shards=100), "ping") for n in nodes]
        for n, region in zip(nodes, regions, strict=True):
            await wait_registered(n, region)
        at = first.node_address
        async with ClusterClient(
            cluster_host=at.host, cluster_port=at.port, system_name="bench"
        ) as client:
            ref = await client.shard_ref("ping", num_shards=100)

            async def via_client(entity_id: str) -> Any:
                return await client.ask(
                    ref, lambda r: ShardEnvelope(entity_id, Ping(r)), timeout=10.0
                )

            async def via_member(entity_id: str) -> Any:
                return await first.ask(
                    regions[0], lambda r: ShardEnvelope(entity_id, Ping(r)), timeout=10.0
                )

            baseline = await drive(via_member, seconds, in_flight)
            ours = await drive(via_client, seconds, in_flight)
            stats = client.statistics()
        line = {
            "name": "client_sharded_ask",
            "ours": round(ours),
            "baseline": round(baseline),
            "ratio": round(ours / baseline, 3),
            "unit": "replies/s",
            "in_flight": in_flight,
            "client_direct": stats.direct,
            "client_via_region": stats.via_region,
        }
        print(json.dumps(line), flush=True)
    finally:
        await asyncio.gather(*(n.shutdown(leave=False) for n in nodes))


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--in-flight", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.in_flight))
