"""The real wiring on a `ManualClock` and the in-process network: the issue's timing targets.

Every timer of the nodes (gossip, heartbeats, the failure detectors, the split brain resolver,
remoting's backoff) reads the injected clock, and `MemoryTransport` delivers at once, so these
runs take virtual seconds and little wall time, and the figures are those of the defaults
without scheduling noise:

* a crashed node of three is downed and removed on every survivor within 5 s;
* a node cut off for 1 s every 10 s (a pause, as far as the others can tell) over 60 s is
  never suspected.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cluster_harness import Node, node

from casty.cluster import MemberDowned, MemberRemoved, MemberStatus, UnreachableMember
from casty.testing import FakeNetwork, ManualClock

pytestmark = pytest.mark.slow


async def advance_until(clock: ManualClock, done: Any, limit: float, step: float = 0.05) -> None:
    """Advance virtual time in ``step`` increments until ``done()`` (at most ``limit`` s)."""
    spent = 0.0
    while not done():
        if spent >= limit:
            raise AssertionError(f"not done after {limit} virtual seconds")
        await clock.advance(step)
        spent += step


class VirtualCluster:
    def __init__(self, name: str, size: int) -> None:
        self.clock = ManualClock()
        self.network = FakeNetwork(name)
        self.hosts = [f"v{i}" for i in range(size)]
        self.nodes: list[Node] = []

    def member(self, host: str, **options: Any) -> Node:
        return node(
            host=host,
            node_id=host,
            transport=self.network.transport(host),
            clock=self.clock,
            **options,
        )

    async def start(self) -> None:
        first = self.member(self.hosts[0])
        await first.system.__aenter__()  # founds at once: no timer involved
        self.nodes.append(first)
        seeds = [first.system.node_address]
        others = [self.member(h, seed_nodes=seeds) for h in self.hosts[1:]]
        entering = [asyncio.ensure_future(o.system.__aenter__()) for o in others]
        await advance_until(self.clock, lambda: all(t.done() for t in entering), 10.0)
        for task in entering:
            task.result()
        self.nodes.extend(others)
        size = len(self.hosts)
        await advance_until(
            self.clock,
            lambda: all(len(n.system.cluster.up_members) == size for n in self.nodes),
            10.0,
        )

    async def stop(self) -> None:
        await asyncio.gather(*(n.system.shutdown(leave=False) for n in self.nodes))


async def virtual(name: str, size: int) -> AsyncIterator[VirtualCluster]:
    cluster = VirtualCluster(name, size)
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()


@pytest.fixture
async def three() -> AsyncIterator[VirtualCluster]:
    async for cluster in virtual("virtual-three", 3):
        yield cluster


async def test_a_crashed_node_is_removed_within_five_virtual_seconds(
    three: VirtualCluster,
) -> None:
    clock = three.clock
    await clock.advance(10.0)  # let the detectors learn the heartbeat rhythm
    crashed, survivors = three.nodes[2], three.nodes[:2]
    crash_at = clock.monotonic()
    await crashed.system.shutdown(leave=False)
    await advance_until(
        clock, lambda: all(n.events.about(MemberRemoved, crashed.me) for n in survivors), 10.0
    )
    for n in survivors:
        detected = n.events.first_time(UnreachableMember, crashed.me)
        downed = n.events.first_time(MemberDowned, crashed.me)
        removed = n.events.first_time(MemberRemoved, crashed.me)
        assert detected is not None and downed is not None and removed is not None
        # Suspected after 1.7-2.2 s of silence, downed one stable period later.
        assert 1.5 <= detected - crash_at <= 2.8
        assert removed - crash_at <= 5.0
        assert [m.status for m in n.system.cluster.members] == [MemberStatus.UP] * 2


async def test_one_second_cuts_every_ten_seconds_are_never_suspected(
    three: VirtualCluster,
) -> None:
    clock, network = three.clock, three.network
    await clock.advance(5.0)
    paused, others = three.nodes[2], three.nodes[:2]
    host = paused.system.node_address.host
    for _ in range(6):
        await clock.advance(9.0)
        for other in others:
            network.partition(host, other.system.node_address.host)
        await clock.advance(1.0)
        network.heal()
    await clock.advance(5.0)
    for n in three.nodes:
        # 75 virtual seconds of heartbeats to 2 monitored nodes at 2 per second each.
        assert n.system.cluster.statistics().heartbeats_sent >= 280
        assert n.events.of(UnreachableMember) == []
        assert n.events.of(MemberDowned) == []
        assert [m.status for m in n.system.cluster.members] == [MemberStatus.UP] * 3
