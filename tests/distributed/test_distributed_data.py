"""Counters, maps, sets and queues on real TCP, three nodes in one process: their semantics,
redelivery of unacked queue items, and survival of a node loss when replicated."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from distributed_harness import Node, host_of, start_cluster, started, stop_all, wait_until

from casty.abc import Journal
from casty.distributed import COUNTER_TYPE, MAP_TYPE, QUEUE_TYPE, SET_TYPE
from casty.errors import ConfigurationError, CoordinationError, LeaseExpired
from casty.journals import InMemoryJournal
from casty.replication import ReplicationConfig

pytestmark = pytest.mark.slow


async def test_counter_map_and_set_answer_from_every_node() -> None:
    nodes = await started(3)
    try:
        counters = [n.system.distributed().counter("hits") for n in nodes]
        totals = await asyncio.gather(*(c.increment() for c in counters for _ in range(10)))
        assert sorted(totals) == list(range(1, 31))  # every increment saw its own new value
        assert await counters[1].get() == 30
        assert await counters[2].add(-5) == 25
        assert await counters[0].compare_and_set(25, 100) is True
        assert await counters[0].compare_and_set(25, 7) is False
        assert await counters[1].decrement() == 99

        maps = [n.system.distributed().map("config") for n in nodes]
        assert await maps[0].put("colour", "blue") is None
        assert await maps[1].put("colour", "red") == "blue"
        assert await maps[2].get("colour") == "red"
        assert await maps[2].get("size", "unset") == "unset"
        await maps[0].put(("tuple", 1), {"nested": [1, 2]})
        assert await maps[1].items() == {"colour": "red", ("tuple", 1): {"nested": [1, 2]}}
        assert await maps[2].remove("colour") == "red"
        assert not await maps[0].contains("colour")
        assert await maps[1].size() == 1

        sets = [n.system.distributed().set("seen") for n in nodes]
        added = await asyncio.gather(*(s.add("x") for s in sets))
        assert sorted(added) == [False, False, True]  # exactly one add was the first
        assert await sets[0].add("y") is True
        assert await sets[1].members() == frozenset({"x", "y"})
        assert await sets[2].remove("x") is True
        assert await sets[2].remove("x") is False
        assert await sets[0].contains("y") and await sets[0].size() == 1

        with pytest.raises(CoordinationError, match="adds ints"):
            await counters[0].add("1")  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError):
            nodes[0].system.distributed().map("")
    finally:
        await stop_all(nodes, leave=False)


async def test_queue_delivers_once_per_reservation_and_redelivers_what_was_not_acked() -> None:
    nodes = await started(3)
    try:
        queues = [n.system.distributed().queue("jobs") for n in nodes]
        ids = [await queues[i % 3].put(f"job-{i}") for i in range(6)]
        assert ids == sorted(ids) and len(set(ids)) == 6
        assert await queues[0].size() == (6, 0)
        # Six consumers on three nodes reserve concurrently: each item goes to exactly one.
        taken = await asyncio.gather(*(queues[i % 3].reserve(visibility=30.0) for i in range(6)))
        assert all(r is not None for r in taken)
        assert sorted(r.item for r in taken if r is not None) == [f"job-{i}" for i in range(6)]
        assert await queues[1].reserve() is None  # all six are invisible now
        assert await queues[1].reserve(wait=0.2) is None
        for r in taken[:5]:
            assert r is not None
            await queues[2].ack(r)
        # The sixth consumer "crashed": its item comes back after the visibility timeout.
        crashed = taken[5]
        assert crashed is not None
        await queues[0].release(crashed)  # shown at once by a release ...
        again = await queues[1].reserve(visibility=0.3)
        assert again is not None and again.item == crashed.item
        assert again.delivery > crashed.delivery
        with pytest.raises(LeaseExpired):
            await queues[0].ack(crashed)  # the old reservation is fenced off
        # ... and after the visibility timeout, with nothing done at all.
        third = await queues[2].reserve(wait=10.0, visibility=30.0)
        assert third is not None and third.item_id == again.item_id
        assert third.delivery > again.delivery
        with pytest.raises(LeaseExpired):
            await queues[1].ack(again)
        await queues[0].ack(third)
        assert await queues[0].size() == (0, 0)
        # A consumer waiting on an empty queue gets the next item put.
        waiting = asyncio.create_task(queues[0].reserve(wait=10.0))
        await queues[1].put("late")
        late = await waiting
        assert late is not None and late.item == "late"
    finally:
        await stop_all(nodes, leave=False)


NAMES = [f"d-{i}" for i in range(8)]
CONFIG = ReplicationConfig(replicas=1, min_acks=1, ack_timeout=3.0)


async def replicated(count: int) -> tuple[list[Node], list[Journal]]:
    """``count`` nodes whose structures are journaled in their own memory and replicated."""
    nodes = await start_cluster(count)
    journals: list[Journal] = [InMemoryJournal() for _ in nodes]
    for n, journal in zip(nodes, journals, strict=True):
        n.system.distributed(journal=journal, replication=CONFIG)
    return nodes, journals


async def test_acknowledged_operations_survive_the_loss_of_a_node() -> None:
    nodes, _ = await replicated(3)
    try:
        d = nodes[0].system.distributed()
        for i, name in enumerate(NAMES):
            await d.counter(name).add(i + 1)
            await d.map(name).put("k", i)
            await d.set(name).add(i)
            await d.queue(name).put(f"a-{i}")
            await d.queue(name).put(f"b-{i}")
            acked = await d.queue(name).reserve()
            assert acked is not None
            await d.queue(name).ack(acked)  # a-i is done for good
            assert await d.queue(name).reserve(visibility=1.0) is not None  # b-i is in flight
        homes = Counter(
            id(host)
            for name in NAMES
            for type_name in (COUNTER_TYPE, MAP_TYPE, SET_TYPE, QUEUE_TYPE)
            if (host := host_of(nodes, type_name, name)) is not None
        )
        # Lose the younger node that hosts most entities (the oldest runs the coordinators).
        victim = max(nodes[1:], key=lambda n: homes[id(n)])
        assert homes[id(victim)] > 0
        await victim.system.shutdown(leave=False)
        survivors = [n for n in nodes if n is not victim]
        await wait_until(
            lambda: all(len(n.system.cluster.up_members) == 2 for n in survivors), 30.0
        )
        d = survivors[1].system.distributed()
        for i, name in enumerate(NAMES):
            assert await d.counter(name, timeout=30.0).get() == i + 1
            assert await d.map(name, timeout=30.0).get("k") == i
            assert await d.set(name, timeout=30.0).members() == frozenset({i})
            queue = d.queue(name, timeout=30.0)
            assert (await queue.size())[0] == 1
            again = await queue.reserve(wait=10.0)  # the unacked b-i comes back, a-i never
            assert again is not None and again.item == f"b-{i}"
            await queue.ack(again)
    finally:
        await stop_all(nodes, leave=False)


async def test_options_are_checked() -> None:
    nodes = await start_cluster(1)
    try:
        with pytest.raises(ConfigurationError, match="journal"):
            nodes[0].system.distributed(replication=CONFIG)
        facade = nodes[0].system.distributed(journal=InMemoryJournal())
        with pytest.raises(ConfigurationError, match="first call"):
            nodes[0].system.distributed(journal=InMemoryJournal())
        assert nodes[0].system.distributed() is facade
        counter = facade.counter("journaled")
        assert await counter.add(2) == 2  # stored in the journal before the answer
        assert facade.journal is not None
        assert await facade.journal.highest_sequence_nr(f"{COUNTER_TYPE}|journaled") == 1
    finally:
        await stop_all(nodes, leave=False)
