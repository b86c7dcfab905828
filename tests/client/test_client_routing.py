"""ClusterClient on real TCP against three in-process nodes: the spec's example, zero hops,
contact point death, buffering with overflow, and shards moving to a joining node."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import client_support  # noqa: F401  (puts the sharding harness on the path)
import pytest
from sharding_harness import (
    Node,
    Where,
    WhereIs,
    coordinator_state,
    free_ports,
    node,
    start_cluster,
    stop_all,
    wait_until,
    where_entity,
)

from casty import (
    ActorContext,
    ActorRef,
    Behavior,
    Behaviors,
    DeadLetter,
    EventStreamSubscribe,
    ShardEnvelope,
)
from casty.abc import Address
from casty.client import ClusterClient
from casty.errors import AskTimeout, ConfigurationError, ConnectFailed
from casty.sharding import ShardingSettings, shard_id_for, wait_registered

pytestmark = pytest.mark.slow

FAST = ShardingSettings(rebalance_interval=0.2, retry_interval=0.05)
SHARDS = 32
IDS = [f"e-{i}" for i in range(24)]


def client_of(contact: Node, **options: Any) -> ClusterClient:
    at = contact.system.node_address
    return ClusterClient(cluster_host=at.host, cluster_port=at.port, system_name="test", **options)


async def with_type(nodes: list[Node], factory: Any = where_entity, name: str = "where") -> None:
    regions = [
        n.system.spawn(Behaviors.sharded(factory, num_shards=SHARDS, settings=FAST), name)
        for n in nodes
    ]
    for n, region in zip(nodes, regions, strict=True):
        await wait_registered(n.system, region)


def owner(client: ClusterClient, entity_id: str, name: str = "where") -> Address | None:
    snapshot = client.topology
    assert snapshot is not None
    return snapshot.shard_allocations.get(name, {}).get(shard_id_for(entity_id, SHARDS))


async def where(client: ClusterClient, ref: ActorRef[Any], entity_id: str) -> Where:
    answer: Where = await client.ask(
        ref, lambda r: ShardEnvelope(entity_id, WhereIs(r)), timeout=10.0
    )
    assert answer.entity_id == entity_id
    return answer


async def eventually_where(
    client: ClusterClient, ref: ActorRef[Any], entity_id: str, deadline: float = 20.0
) -> Where:
    """`where`, asked again (2 s per try) until ``deadline`` seconds have passed."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        try:
            answer: Where = await client.ask(
                ref, lambda r: ShardEnvelope(entity_id, WhereIs(r)), timeout=2.0
            )
            return answer
        except AskTimeout:
            if loop.time() > end:
                raise


async def allocate_all(client: ClusterClient, ref: ActorRef[Any]) -> None:
    """Ask every entity once, then wait until the client's snapshot names every owner."""
    for entity_id in IDS:
        await where(client, ref, entity_id)
    await wait_until(lambda: all(owner(client, e) is not None for e in IDS), timeout=10.0)


def recorder(client: ClusterClient, kind: type) -> list[Any]:
    got: list[Any] = []

    def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        got.append(msg)
        return Behaviors.same()

    ref = client.system.spawn(Behaviors.receive(receive), f"record-{kind.__name__}")
    client.system.event_stream.tell(EventStreamSubscribe(kind, ref))
    return got


# -- the spec's example ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubmitTask:
    payload: str
    reply_to: ActorRef[Any]


@dataclass(frozen=True, slots=True)
class TaskResult:
    result: str
    node: str


def task_worker(entity_id: str) -> Behavior[Any]:
    async def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        if isinstance(msg, SubmitTask):
            msg.reply_to.tell(TaskResult(f"done:{msg.payload}", ctx.system.address))
        return Behaviors.same()

    return Behaviors.receive(receive)


async def test_the_spec_example_reaches_the_entity_and_the_reply_comes_back() -> None:
    nodes = await start_cluster(3)
    try:
        await with_type(nodes, task_worker, "tasks")
        async with client_of(nodes[0]) as client:
            tasks = await client.shard_ref("tasks", num_shards=SHARDS)
            replies: list[TaskResult] = []

            def collect(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
                replies.append(msg)
                return Behaviors.same()

            reply_to = client.system.spawn(Behaviors.receive(collect), "replies")
            tasks.tell(ShardEnvelope("queue:emails", SubmitTask("send_welcome", reply_to)))
            await wait_until(lambda: len(replies) == 1, timeout=10.0)
            assert replies[0].result == "done:send_welcome"
            answer: TaskResult = await client.ask(
                tasks,
                lambda r: ShardEnvelope("queue:reports", SubmitTask("generate_pdf", r)),
                timeout=10.0,
            )
            assert answer.result == "done:generate_pdf"
            # The snapshot learns where the shard went, and the entity ran there.
            await wait_until(lambda: owner(client, "queue:emails", "tasks") is not None)
            assert str(owner(client, "queue:emails", "tasks")) in replies[0].node
    finally:
        await stop_all(nodes, leave=False)


# -- zero extra hops ------------------------------------------------------------------------------


def received_from(n: Node, client: ClusterClient) -> int:
    me = client.system.node_address
    stats = n.system.remote_statistics()
    return sum(p.messages_received for p in stats.peers if p.address == me)


async def test_envelopes_go_straight_to_the_owning_node() -> None:
    nodes = await start_cluster(3)
    try:
        await with_type(nodes)
        async with client_of(nodes[0]) as client:
            ref = await client.shard_ref("where", num_shards=SHARDS)
            await allocate_all(client, ref)
            before_stats = client.statistics()
            before = {n.system.node_address: received_from(n, client) for n in nodes}
            rounds = 5
            for _ in range(rounds):
                for entity_id in IDS:
                    answer = await where(client, ref, entity_id)
                    # The entity runs where the client's snapshot says.
                    assert str(owner(client, entity_id)) in answer.node
            after_stats = client.statistics()
            assert after_stats.direct - before_stats.direct == rounds * len(IDS)
            assert after_stats.via_region == before_stats.via_region
            owned: dict[Address, int] = {}
            for entity_id in IDS:
                home = owner(client, entity_id)
                assert home is not None
                owned[home] = owned.get(home, 0) + rounds
            assert len(owned) == 3
            contact = nodes[0].system.node_address
            for n in nodes:
                at = n.system.node_address
                delta = received_from(n, client) - before[at]
                if at == contact:
                    # The contact point may also receive remoting heartbeat replies.
                    assert delta >= owned[at]
                else:
                    # Exactly one remote message per envelope, and nothing else: no proxy hop.
                    assert delta == owned[at], (at, delta, owned[at])
    finally:
        await stop_all(nodes, leave=False)


# -- contact point death ------------------------------------------------------------------------


async def test_survives_the_death_of_its_contact_point() -> None:
    nodes = await start_cluster(3)
    try:
        await with_type(nodes)
        victim = nodes[2]
        dead_at = victim.system.node_address
        async with client_of(victim) as client:
            ref = await client.shard_ref("where", num_shards=SHARDS)
            await allocate_all(client, ref)
            assert any(owner(client, e) == dead_at for e in IDS)
            await victim.system.shutdown(leave=False)
            await wait_until(lambda: dead_at in client.statistics().open_breakers, timeout=10.0)
            assert client.statistics().contact != dead_at  # subscribed via another node at once
            # Every entity answers, from the survivors, through the new subscription. Delivery
            # is at most once: an envelope a member region forwarded to the dead node before
            # the cluster noticed is lost with it, so a request may need asking again.
            for entity_id in IDS:
                answer = await eventually_where(client, ref, entity_id)
                assert str(dead_at) not in answer.node
            await wait_until(
                lambda: all(owner(client, e) not in (None, dead_at) for e in IDS), timeout=20.0
            )
    finally:
        await stop_all(nodes[:2], leave=False)


# -- buffering while no node can take the envelopes ---------------------------------------------


async def test_buffers_while_no_member_is_usable_and_overflow_is_a_dead_letter() -> None:
    (port,) = free_ports(1)
    only = node(node_id="only", port=port)
    await only.system.__aenter__()
    second: Node | None = None
    try:
        await with_type([only])
        async with client_of(only, buffer_size=2) as client:
            letters = recorder(client, DeadLetter)
            ref = await client.shard_ref("where", num_shards=SHARDS)
            await where(client, ref, "e-0")
            gone = only.system.node_address
            await only.system.shutdown(leave=False)
            await wait_until(lambda: gone in client.statistics().open_breakers, timeout=10.0)
            replies: list[Where] = []

            def collect(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
                replies.append(msg)
                return Behaviors.same()

            reply_to = client.system.spawn(Behaviors.receive(collect), "late")
            for entity_id in ("e-1", "e-2", "e-3", "e-4"):
                ref.tell(ShardEnvelope(entity_id, WhereIs(reply_to)))
            assert client.statistics().buffered == 2
            await wait_until(lambda: len(letters) == 2)
            assert all("buffer full" in d.reason for d in letters)
            assert {d.message.entity_id for d in letters} == {"e-3", "e-4"}
            # A new cluster at the same address: the client subscribes again and flushes.
            second = node(node_id="again", port=port)
            await second.system.__aenter__()
            await with_type([second])
            await wait_until(lambda: len(replies) == 2, timeout=20.0)
            assert [r.entity_id for r in replies] == ["e-1", "e-2"] or {
                r.entity_id for r in replies
            } == {"e-1", "e-2"}
            assert client.statistics().buffered == 0
    finally:
        await stop_all([only, *([second] if second is not None else [])], leave=False)


# -- shards move ----------------------------------------------------------------------------------


async def test_keeps_routing_after_shards_move_to_a_joining_node() -> None:
    nodes = await start_cluster(2)
    late: Node | None = None
    try:
        await with_type(nodes)
        async with client_of(nodes[1]) as client:
            ref = await client.shard_ref("where", num_shards=SHARDS)
            await allocate_all(client, ref)
            late = node(node_id="late", seed_nodes=[nodes[0].system.node_address])
            await late.system.__aenter__()
            await with_type([late])
            late_at = late.system.node_address
            # A rebalance hands shards off (they are unallocated until the next message); the
            # client keeps sending, and the moved entities start on the newcomer.
            loop = asyncio.get_running_loop()
            end = loop.time() + 20.0
            seen_late = False
            while not seen_late:
                for entity_id in IDS:
                    answer = await eventually_where(client, ref, entity_id)
                    seen_late = seen_late or str(late_at) in answer.node
                assert loop.time() < end, "no entity moved to the joining node"

            async def balanced() -> bool:
                state = await coordinator_state(nodes[0].system, "where")
                if state is None or state.in_handoff or len(state.regions) != 3:
                    return False
                counts = [len(shards) for _, shards in state.regions]
                return max(counts) - min(counts) <= 1

            async def settled() -> bool:
                # Asking every entity allocates the shards a handoff left without a home.
                for entity_id in IDS:
                    await eventually_where(client, ref, entity_id)
                return all(owner(client, e) is not None for e in IDS) and await balanced()

            await wait_until(settled, timeout=30.0, interval=0.1, message="shards still moving")
            before = client.statistics()
            for entity_id in IDS:
                answer = await where(client, ref, entity_id)
                assert str(owner(client, entity_id)) in answer.node
            assert client.statistics().direct - before.direct == len(IDS)
            assert any(owner(client, e) == late_at for e in IDS)
    finally:
        await stop_all([*nodes, *([late] if late is not None else [])], leave=False)


# -- arguments ------------------------------------------------------------------------------------


async def test_bad_arguments_and_no_contact_point() -> None:
    with pytest.raises(ConfigurationError):
        ClusterClient(system_name="test")
    with pytest.raises(ConfigurationError):
        ClusterClient(contact_points=["no-port"], system_name="test")
    with pytest.raises(ConfigurationError):
        ClusterClient(cluster_host="127.0.0.1", cluster_port=1, buffer_size=0)
    (port,) = free_ports(1)
    client = ClusterClient(
        cluster_host="127.0.0.1", cluster_port=port, system_name="test", connect_timeout=0.2
    )
    with pytest.raises(ConnectFailed, match="no contact point"):
        async with client:
            pass
