"""Sharding on real TCP, several nodes in one process: routing, spread, join check, buffering."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
from sharding_harness import (
    Where,
    WhereIs,
    asking,
    coordinator_state,
    dead_letter_recorder,
    hosted_entities,
    node,
    region_state,
    start_cluster,
    stop_all,
    wait_until,
    where_entity,
)

from casty import ActorContext, ActorRef, Behavior, Behaviors, ShardEnvelope
from casty.errors import (
    ActorStopped,
    ConfigurationError,
    EncodeError,
    JoinRefused,
    ShardUnavailable,
)
from casty.sharding import StartEntity, coordinator_name, shard_id_for, wait_registered
from casty.sharding.messages import GetShardHome

pytestmark = pytest.mark.slow


async def test_the_same_entity_answers_from_every_node() -> None:
    nodes = await start_cluster(3)
    try:
        regions = [
            n.system.spawn(Behaviors.sharded(where_entity, num_shards=32), "where") for n in nodes
        ]
        seen: dict[str, set[tuple[str, int]]] = {}
        for _ in range(2):
            for n, region in zip(nodes, regions, strict=True):
                for i in range(30):
                    answer: Where = await n.system.ask(
                        region, asking(f"user-{i}", WhereIs), timeout=5.0
                    )
                    assert answer.entity_id == f"user-{i}"
                    seen.setdefault(answer.entity_id, set()).add((answer.node, answer.serial))
        # One live entity per id: the same node and the same incarnation for every sender.
        assert all(len(places) == 1 for places in seen.values())
        hosts = {node_address for places in seen.values() for node_address, _ in places}
        assert len(hosts) == 3  # 30 ids over 32 shards and 3 nodes use every node
        # Topology snapshots carry the shard homes (for external clients), on every node.
        for n in nodes:
            await wait_until(
                lambda n=n: all(
                    str(
                        n.system.cluster.snapshot.shard_allocations.get("where", {}).get(
                            shard_id_for(e, 32)
                        )
                    )
                    in next(iter(places))[0]
                    for e, places in seen.items()
                )
            )
        for n, region in zip(nodes, regions, strict=True):
            hosted = await hosted_entities(n.system, region)
            assert hosted == {
                e for e, places in seen.items() if next(iter(places))[0] == n.system.address
            }
    finally:
        await stop_all(nodes, leave=False)


async def test_a_thousand_entities_spread_evenly_over_three_nodes() -> None:
    nodes = await start_cluster(3)
    try:
        regions = [n.system.spawn(Behaviors.sharded(where_entity), "spread") for n in nodes]
        for n, region in zip(nodes, regions, strict=True):
            await wait_registered(n.system, region)
        sender = regions[0]
        for i in range(1000):
            sender.tell(StartEntity(f"entity-{i}"))

        async def counts() -> list[int]:
            return [
                len(await hosted_entities(n.system, r)) for n, r in zip(nodes, regions, strict=True)
            ]

        async def all_started() -> bool:
            return sum(await counts()) == 1000

        await wait_until(all_started, timeout=20.0, interval=0.05)
        per_node = await counts()
        mean = 1000 / 3
        assert max(per_node) <= 1.5 * mean, per_node
        assert min(per_node) > 0
        state = await coordinator_state(nodes[0].system, "spread")
        assert state is not None and state.active
        shard_counts = sorted(len(shards) for _, shards in state.regions)
        assert sum(shard_counts) == len({shard_id_for(f"entity-{i}", 256) for i in range(1000)})
        assert shard_counts[-1] - shard_counts[0] <= 1  # least-shards allocation
    finally:
        await stop_all(nodes, leave=False)


# -- the spec's task queue, as written ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    name: str


send_welcome = Job("send_welcome")
generate_pdf = Job("generate_pdf")


async def execute(payload: Job) -> str:
    return f"done:{payload.name}"


@dataclass(frozen=True, slots=True)
class SubmitTask:
    payload: Job
    reply_to: ActorRef[Any]


@dataclass(frozen=True, slots=True)
class TaskResult:
    result: str


TaskMsg = SubmitTask


def task_worker(entity_id: str) -> Behavior[TaskMsg]:
    def idle() -> Behavior[TaskMsg]:
        async def receive(ctx: ActorContext[TaskMsg], msg: TaskMsg) -> Behavior[TaskMsg]:
            match msg:
                case SubmitTask(payload, reply_to):
                    result = await execute(payload)
                    reply_to.tell(TaskResult(result))
            return idle()

        return Behaviors.receive(receive)

    return idle()


async def test_the_spec_task_queue_runs_on_three_nodes() -> None:
    nodes = await start_cluster(3)
    try:
        everywhere = [
            n.system.spawn(Behaviors.sharded(task_worker, num_shards=256), "tasks") for n in nodes
        ]
        results: list[tuple[int, str]] = []
        for i, (n, tasks) in enumerate(zip(nodes, everywhere, strict=True)):
            for queue, job in (("queue:emails", send_welcome), ("queue:reports", generate_pdf)):
                reply: TaskResult = await n.system.ask(
                    tasks, asking(queue, partial(SubmitTask, job)), timeout=5.0
                )
                results.append((i, reply.result))
        assert results == [
            (i, r) for i in range(3) for r in ("done:send_welcome", "done:generate_pdf")
        ]
        homes: Counter[str] = Counter()
        for n, tasks in zip(nodes, everywhere, strict=True):
            for entity_id in await hosted_entities(n.system, tasks):
                homes[entity_id] += 1
        assert homes == Counter({"queue:emails": 1, "queue:reports": 1})
    finally:
        await stop_all(nodes, leave=False)


# -- join compatibility --------------------------------------------------------------------------


async def test_a_region_with_another_shard_count_is_refused_with_the_reason() -> None:
    nodes = await start_cluster(2)
    try:
        good = nodes[0].system.spawn(Behaviors.sharded(where_entity, num_shards=64), "typed")
        await wait_registered(nodes[0].system, good)
        letters = dead_letter_recorder(nodes[1].system)
        odd = nodes[1].system.spawn(Behaviors.sharded(where_entity, num_shards=128), "typed")
        with pytest.raises(
            JoinRefused, match=r"num_shards=128 differs from the cluster's num_shards=64"
        ):
            await wait_registered(nodes[1].system, odd)
        odd.tell(ShardEnvelope("x", "hello"))
        await wait_until(lambda: any(d.message == ShardEnvelope("x", "hello") for d in letters))
        letter = next(d for d in letters if d.message == ShardEnvelope("x", "hello"))
        assert "refused" in letter.reason and "num_shards=128" in letter.reason
        state = await region_state(nodes[1].system, odd)
        assert state.refused is not None and not state.registered
        # An ask through the refused region fails with the reason, not at its timeout.
        with pytest.raises(ShardUnavailable, match="region refused"):
            await nodes[1].system.ask(odd, asking("x", WhereIs), timeout=60.0)
    finally:
        await stop_all(nodes, leave=False)


@dataclass(frozen=True)
class Unencodable:
    payload: Any
    reply_to: ActorRef[Any]


async def test_asks_in_a_dropped_envelope_fail_fast_with_the_reason() -> None:
    # The reply ref sits inside the envelope's message; before, these asks waited for their
    # timeout (60 s here, so a regression fails on the exception's type, not on time).
    nodes = await start_cluster(2)
    try:
        first, second = nodes[0].system, nodes[1].system
        regions = [n.system.spawn(Behaviors.sharded(where_entity), "fast") for n in nodes]
        remote_id = None
        for i in range(40):
            where = await first.ask(regions[0], asking(f"e-{i}", WhereIs), timeout=5.0)
            if where.node == second.address:
                remote_id = f"e-{i}"
                break
        assert remote_id is not None
        # Remoting cannot encode the request for the entity's node.
        with pytest.raises(EncodeError):
            await first.ask(
                regions[0], asking(remote_id, partial(Unencodable, lambda: 0)), timeout=60.0
            )
        # The other node has no region of this name: it drops the envelope, and tells the asker.
        nowhere = first.resolve(second.address + "/user/no-such-type")
        with pytest.raises(ActorStopped, match="unknown recipient"):
            await first.ask(nowhere, asking("e-0", WhereIs), timeout=60.0)
    finally:
        await stop_all(nodes, leave=False)


def test_bad_arguments_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        Behaviors.sharded(where_entity, num_shards=0)
    with pytest.raises(ConfigurationError):
        Behaviors.sharded(where_entity, passivate_after=-1.0)
    with pytest.raises(ConfigurationError):
        Behaviors.sharded(where_entity, roles="worker")
    with pytest.raises(ConfigurationError):
        Behaviors.sharded(where_entity, buffer_size=0)
    with pytest.raises(ConfigurationError, match="replication"):
        Behaviors.sharded(where_entity, replication=object())
    with pytest.raises(ConfigurationError):
        Behaviors.sharded("not callable")  # type: ignore[arg-type]


# -- buffering -------------------------------------------------------------------------------------


async def test_messages_wait_for_a_coordinator_and_overflow_becomes_dead_letters() -> None:
    nodes = await start_cluster(2)
    try:
        young = nodes[1].system
        letters = dead_letter_recorder(young)
        received: list[str] = []

        def recording(entity_id: str) -> Behavior[Any]:
            def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
                received.append(msg)
                return Behaviors.same()

            return Behaviors.receive(receive)

        # The oldest node runs the coordinator; it has not spawned the type yet, so the young
        # node's region holds what it is told, up to its buffer size.
        region = young.spawn(Behaviors.sharded(recording, buffer_size=5), "late")
        for i in range(8):
            region.tell(ShardEnvelope(f"id-{i}", f"m{i}"))
        overflow = [ShardEnvelope(f"id-{i}", f"m{i}") for i in range(5, 8)]
        await wait_until(lambda: all(any(d.message == m for d in letters) for m in overflow))
        reasons = [d.reason for d in letters if d.message in overflow]
        assert len(reasons) == 3
        assert all("'late': buffer full (5 messages) while shard" in r for r in reasons)
        assert received == []
        nodes[0].system.spawn(Behaviors.sharded(recording, buffer_size=5), "late")
        await wait_until(lambda: sorted(received) == [f"m{i}" for i in range(5)], timeout=10.0)
    finally:
        await stop_all(nodes, leave=False)


async def test_an_ask_whose_request_overflows_the_buffer_fails_at_once() -> None:
    nodes = await start_cluster(2)
    try:
        young = nodes[1].system
        letters = dead_letter_recorder(young)
        # No coordinator yet (the oldest node has not spawned the type): one message fills
        # the buffer, and the ask's request overflows it.
        region = young.spawn(Behaviors.sharded(where_entity, buffer_size=1), "full")
        region.tell(ShardEnvelope("first", "held"))
        with pytest.raises(ShardUnavailable, match="'full': buffer full"):
            await young.ask(region, asking("second", WhereIs), timeout=60.0)
        await wait_until(
            lambda: any(
                isinstance(d.message, ShardEnvelope) and d.message.entity_id == "second"
                for d in letters
            )
        )
    finally:
        await stop_all(nodes, leave=False)


@pytest.mark.parametrize("bad_id", [["x"], {"x": 1}, None, 42])
async def test_an_invalid_entity_id_is_a_dead_letter_and_the_region_goes_on(bad_id: Any) -> None:
    # An unhashable id used to raise TypeError in the region's fast path: the region restarted,
    # its entities stopped and the messages queued for them were lost.
    nodes = await start_cluster(1)
    try:
        system = nodes[0].system
        letters = dead_letter_recorder(system)
        received: list[int] = []

        def counting(entity_id: str) -> Behavior[Any]:
            def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
                received.append(msg)
                return Behaviors.same()

            return Behaviors.receive(receive)

        region = system.spawn(Behaviors.sharded(counting, num_shards=16), "counted")
        for i in range(200):
            region.tell(ShardEnvelope("a", i))
        region.tell(ShardEnvelope(bad_id, -1))
        region.tell(StartEntity(bad_id))
        for i in range(200, 400):
            region.tell(ShardEnvelope("a", i))
        await wait_until(lambda: len(received) == 400, timeout=10.0)
        assert received == list(range(400))
        await wait_until(lambda: sum("invalid entity id" in d.reason for d in letters) == 2)
        invalid = [d for d in letters if "invalid entity id" in d.reason]
        assert [type(d.message) for d in invalid] == [ShardEnvelope, StartEntity]
        assert all(d.message.entity_id == bad_id for d in invalid)
    finally:
        await stop_all(nodes, leave=False)


async def test_a_region_on_a_node_without_the_role_only_routes() -> None:
    first = node(node_id="worker", roles={"worker"})
    await first.system.__aenter__()
    second = node(node_id="web", seed_nodes=[first.system.node_address])
    await second.system.__aenter__()
    nodes = [first, second]
    try:
        regions = [
            n.system.spawn(
                Behaviors.sharded(where_entity, roles={"worker"}, num_shards=16), "roles"
            )
            for n in nodes
        ]
        for n, region in zip(nodes, regions, strict=True):
            await wait_registered(n.system, region)
        for i in range(20):
            answer: Where = await second.system.ask(
                regions[1], asking(f"r{i}", WhereIs), timeout=5.0
            )
            assert answer.node == first.system.address
        assert (await region_state(second.system, regions[1])).shards == ()
        state = await coordinator_state(first.system, "roles")
        assert state is not None
        assert state.proxies == (str(regions[1].address),)
    finally:
        await stop_all(nodes, leave=False)


async def test_a_failed_coordinator_restarts_and_rebuilds_from_the_regions_reports() -> None:
    nodes = await start_cluster(2)
    try:
        behavior = Behaviors.sharded(where_entity, num_shards=32)
        regions = [n.system.spawn(behavior, "sturdy") for n in nodes]
        for n, region in zip(nodes, regions, strict=True):
            await wait_registered(n.system, region)
        system = nodes[1].system
        first: dict[str, Where] = {}
        for i in range(20):
            first[f"s{i}"] = await system.ask(regions[1], asking(f"s{i}", WhereIs), timeout=5.0)
        coordinator = nodes[0].system.resolve(f"/system/{coordinator_name('sturdy')}")
        coordinator.tell(GetShardHome(0, None))  # type: ignore[arg-type]  # makes it fail

        async def collecting() -> bool:
            state = await coordinator_state(nodes[0].system, "sturdy")
            return state is not None and not state.active  # restarted: waits for reports

        await wait_until(collecting, timeout=10.0, interval=0.01)

        async def rebuilt() -> bool:
            state = await coordinator_state(nodes[0].system, "sturdy")
            return state is not None and state.active and len(state.regions) == 2

        await wait_until(rebuilt, timeout=10.0, interval=0.05)
        state = await coordinator_state(nodes[0].system, "sturdy")
        assert state is not None
        # Shard 0 was allocated for the failing request; the others come from the reports.
        expected = {shard_id_for(e, 32) for e in first} | {0}
        assert sorted(s for _, shards in state.regions for s in shards) == sorted(expected)
        for entity_id, before in first.items():
            after: Where = await system.ask(regions[1], asking(entity_id, WhereIs), timeout=5.0)
            assert (after.node, after.serial) == (before.node, before.serial)  # not restarted
    finally:
        await stop_all(nodes, leave=False)
