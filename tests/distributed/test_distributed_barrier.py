"""Barriers on real TCP, three nodes in one process: release together, reuse, timeout, death."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from distributed_harness import Node, host_of, started, stop_all, wait_until

from casty import ShardEnvelope
from casty.distributed import BARRIER_TYPE
from casty.distributed.barrier import BarrierState, GetBarrierState
from casty.errors import BarrierBroken, ConfigurationError

pytestmark = pytest.mark.slow


async def waiting(node: Node, name: str) -> BarrierState:
    region = node.system.distributed()._channel.refs[BARRIER_TYPE]
    state: BarrierState = await node.system.ask(
        region, lambda r: ShardEnvelope(name, GetBarrierState(r)), timeout=5.0
    )
    return state


async def test_all_parties_are_released_together_and_the_name_is_reused() -> None:
    nodes = await started(3)
    try:
        log: list[tuple[str, int, float]] = []

        async def party(i: int) -> int:
            log.append(("arrive", i, time.monotonic()))
            generation = await nodes[i].system.barrier("work-complete", 3, timeout=20.0)
            log.append(("pass", i, time.monotonic()))
            return generation

        for round_number in range(2):
            log.clear()
            first_two = [asyncio.create_task(party(i)) for i in (0, 1)]

            async def two_waiting() -> bool:
                return (await waiting(nodes[2], "work-complete")).waiting == 2

            await wait_until(two_waiting, timeout=10.0)
            assert not any(t.done() for t in first_two)  # nobody passes before the last
            last = await party(2)
            generations = [*(await asyncio.gather(*first_two)), last]
            assert generations == [round_number] * 3
            last_arrival = next(t for kind, i, t in log if kind == "arrive" and i == 2)
            passes = [t for kind, _, t in log if kind == "pass"]
            assert len(passes) == 3 and min(passes) >= last_arrival
        assert (await waiting(nodes[0], "work-complete")) == BarrierState(2, 0)
    finally:
        await stop_all(nodes, leave=False)


async def test_a_timeout_breaks_the_barrier_for_every_waiter() -> None:
    nodes = await started(3)
    try:
        results = await asyncio.gather(
            nodes[0].system.barrier("short", 3, timeout=0.3),
            nodes[1].system.barrier("short", 3, timeout=5.0),
            return_exceptions=True,
        )
        assert all(isinstance(r, BarrierBroken) for r in results), results
        assert all("timed out" in str(r) for r in results)
        # The broken round is over: the name serves a next round that completes.
        done = await asyncio.gather(*(n.system.barrier("short", 3, timeout=20.0) for n in nodes))
        assert done == [1, 1, 1]
        with pytest.raises(ConfigurationError):
            await nodes[0].system.barrier("short", 0)
    finally:
        await stop_all(nodes, leave=False)


async def test_a_participant_node_that_dies_breaks_the_barrier_for_the_others() -> None:
    nodes = await started(3)
    try:
        name = "with-a-crash"
        tasks = [asyncio.create_task(n.system.barrier(name, 4, timeout=60.0)) for n in nodes]

        async def three_waiting() -> bool:
            return (await waiting(nodes[0], name)).waiting == 3

        await wait_until(three_waiting, timeout=10.0)
        host = host_of(nodes, BARRIER_TYPE, name)
        assert host is not None
        # Crash a participant that neither hosts the entity nor runs the coordinator.
        victim = next(n for n in nodes[1:] if n is not host)
        await victim.system.shutdown(leave=False)
        survivors = [t for n, t in zip(nodes, tasks, strict=True) if n is not victim]
        results: list[Any] = await asyncio.wait_for(
            asyncio.gather(*survivors, return_exceptions=True), timeout=30.0
        )
        assert all(isinstance(r, BarrierBroken) for r in results), results
        assert all(str(victim.system.self_node) in str(r) for r in results)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await stop_all(nodes, leave=False)
