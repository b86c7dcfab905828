"""Helpers of the sharding wiring tests: clusters of in-process nodes with a sharded type.

Kept in a plain module so every ``test_wiring_*`` and ``test_process_*`` file can import it by
name. It reuses the cluster harness (``tests/cluster/cluster_harness.py``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "tests" / "cluster") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests" / "cluster"))

from cluster_harness import Node, free_ports, node, running, stop_all, wait_all  # noqa: E402

from casty import (  # noqa: E402
    ActorContext,
    ActorRef,
    Behavior,
    Behaviors,
    DeadLetter,
    ShardEnvelope,
)
from casty.cluster import ClusteredActorSystem  # noqa: E402
from casty.remote import ActorAddress  # noqa: E402
from casty.sharding import (  # noqa: E402
    CoordinatorState,
    GetCoordinatorState,
    GetShardRegionState,
    ShardRegionState,
    coordinator_name,
)
from casty.testing import FakeNetwork, wait_until  # noqa: E402

__all__ = [
    "Node",
    "Where",
    "WhereIs",
    "asking",
    "coordinator_state",
    "dead_letter_recorder",
    "free_ports",
    "hosted_entities",
    "node",
    "region_state",
    "running",
    "start_cluster",
    "stop_all",
    "wait_all",
    "wait_until",
    "where_entity",
]


@dataclass(frozen=True, slots=True)
class WhereIs:
    """Ask an entity where it runs; it answers `Where`."""

    reply_to: ActorRef[Any]


@dataclass(frozen=True, slots=True)
class Where:
    """Where an entity runs: its id, its node's address and its incarnation's serial."""

    entity_id: str
    node: str
    serial: int


_serials = iter(range(1, 1 << 62))


def where_entity(entity_id: str) -> Behavior[Any]:
    """An entity that answers `WhereIs` with its node and a serial unique to the incarnation."""

    def setup(ctx: ActorContext[Any]) -> Behavior[Any]:
        serial = next(_serials)
        node_address = ctx.system.address

        def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
            if isinstance(msg, WhereIs):
                msg.reply_to.tell(Where(entity_id, node_address, serial))
            return Behaviors.same()

        return Behaviors.receive(receive)

    return Behaviors.setup(setup)


async def start_cluster(
    count: int, network: FakeNetwork | None = None, **options: Any
) -> list[Node]:
    """Start ``count`` nodes (the first is the oldest) and wait until all are up everywhere
    (else stop them and raise `TimeoutError`). With ``network``, node ``i`` is host
    ``h<i+1>`` of that `FakeNetwork`, whose links a test can cut."""

    def member(i: int, **more: Any) -> Node:
        if network is None:
            return node(node_id=f"n{i}", **more, **options)
        host = f"h{i + 1}"
        return node(host=host, node_id=host, transport=network.transport(host), **more, **options)

    first = member(0)
    await first.system.__aenter__()
    seeds = [first.system.node_address]
    others = [member(i, seed_nodes=seeds) for i in range(1, count)]
    await asyncio.gather(*(n.system.__aenter__() for n in others))
    everyone = [first, *others]
    try:
        await wait_all(everyone, lambda n: len(n.system.cluster.up_members) == count, 15.0)
    except BaseException:
        await stop_all(everyone, leave=False)
        raise
    return everyone


def asking(
    entity_id: str, make: Callable[[ActorRef[Any]], Any]
) -> Callable[[ActorRef[Any]], ShardEnvelope]:
    """An ask factory: ``ShardEnvelope(entity_id, make(reply_to))``."""

    def factory(reply_to: ActorRef[Any]) -> ShardEnvelope:
        return ShardEnvelope(entity_id, make(reply_to))

    return factory


async def region_state(system: ClusteredActorSystem, region: ActorRef[Any]) -> ShardRegionState:
    state: ShardRegionState = await system.ask(region, GetShardRegionState, timeout=5.0)
    return state


async def hosted_entities(system: ClusteredActorSystem, region: ActorRef[Any]) -> set[str]:
    state = await region_state(system, region)
    return {entity_id for shard in state.shards for entity_id in shard.entity_ids}


async def coordinator_state(
    system: ClusteredActorSystem, type_name: str
) -> CoordinatorState | None:
    """The coordinator's state, asked on the node that runs it now (None while it has none)."""
    cluster = system.cluster
    oldest = min(cluster.up_members, key=lambda m: m.age_key, default=None)
    if oldest is None:
        return None
    root = ActorAddress.of_node(system.name, oldest.address).root
    ref = system.resolve(f"{root}/system/{coordinator_name(type_name)}")
    try:
        state: CoordinatorState = await system.ask(ref, GetCoordinatorState, timeout=1.0)
    except Exception:
        return None
    return state


def dead_letter_recorder(system: ClusteredActorSystem) -> list[DeadLetter]:
    """Record every dead letter of ``system`` (the list fills as they are published)."""
    from casty import EventStreamSubscribe

    letters: list[DeadLetter] = []

    def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        letters.append(msg)
        return Behaviors.same()

    ref = system.spawn(Behaviors.receive(receive), "dead-letter-recorder")
    system.event_stream.tell(EventStreamSubscribe(DeadLetter, ref))
    return letters
