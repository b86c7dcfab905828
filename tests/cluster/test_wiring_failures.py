"""Failure handling with the default settings: crashes and a 3+2 partition.

The partition runs over the in-process `MemoryTransport` (its network drops every frame across
the cut, as iptables would); the crash runs on real TCP. Timings are recorded and checked
against loose bounds only; the tight figures come from ``benchmarks/cluster.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from cluster_harness import Node, node, running, wait_all

from casty.cluster import (
    MemberDowned,
    MemberRemoved,
    MemberStatus,
    UnreachableMember,
)
from casty.errors import NodeDowned
from casty.testing import FakeNetwork


def all_up(count: int) -> Any:
    return lambda n: (
        len(n.system.cluster.up_members) == count and len(n.system.cluster.members) == count
    )


@pytest.mark.slow
async def test_a_crashed_node_is_detected_downed_and_removed_on_every_survivor() -> None:
    first = node(node_id="n0")
    async with running([first]):
        others = [node(node_id=f"n{i}", seed_nodes=[first.system.node_address]) for i in (1, 2)]
        async with running(others):
            everyone = [first, *others]
            await wait_all(everyone, all_up(3))
            crashed, survivors = others[1], [first, others[0]]
            crash_at = first.events.now()
            await crashed.system.shutdown(leave=False)
            await wait_all(
                survivors, lambda n: bool(n.events.about(MemberRemoved, crashed.me)), 15.0
            )
            for n in survivors:
                detected = n.events.first_time(UnreachableMember, crashed.me)
                downed = n.events.first_time(MemberDowned, crashed.me)
                removed = n.events.first_time(MemberRemoved, crashed.me)
                assert detected is not None and downed is not None and removed is not None
                assert crash_at < detected <= downed <= removed
                # Loose bound (the target is 5 s; the benchmark measures it).
                assert removed - crash_at < 15.0
                assert n.events.about(MemberRemoved, crashed.me)[0].previous_status is (
                    MemberStatus.DOWN
                )
                assert {m.node_id for m in n.system.cluster.members} == {"n0", "n1"}
                assert n.system.cluster.is_up and not n.system.cluster.is_downed


@pytest.mark.slow
async def test_a_three_two_partition_keeps_the_majority_and_downs_the_minority() -> None:
    network = FakeNetwork("partition-3-2")
    hosts = [f"h{i}" for i in range(1, 6)]

    def member(host: str, **options: Any) -> Node:
        return node(host=host, node_id=host, transport=network.transport(host), **options)

    first = member("h1")
    async with running([first]):
        others = [member(h, seed_nodes=[first.system.node_address]) for h in hosts[1:]]
        async with running(others):
            everyone = [first, *others]
            await wait_all(everyone, all_up(5))
            majority, minority = everyone[:3], everyone[3:]
            for a in majority:
                for b in minority:
                    network.partition(a.system.node_address.host, b.system.node_address.host)
            cut_at = first.events.now()
            await wait_all(minority, lambda n: n.system.cluster.is_downed, 20.0)
            await wait_all(
                majority,
                lambda n: all(n.events.about(MemberRemoved, m.me) for m in minority),
                20.0,
            )
            stable_after = first.system.cluster_config.downing.stable_after
            for n in majority:
                assert n.system.cluster.is_up and not n.system.cluster.is_downed
                assert {m.node_id for m in n.system.cluster.members} == {"h1", "h2", "h3"}
                n.system.cluster.raise_if_downed()  # serving: no error
            for gone in minority:
                cluster = gone.system.cluster
                assert cluster.is_downed and cluster.self_status is MemberStatus.DOWN
                with pytest.raises(NodeDowned):
                    cluster.raise_if_downed()
                # It published its own removal when it stopped serving.
                own = gone.events.about(MemberRemoved, gone.me)
                assert len(own) == 1 and own[0].previous_status is MemberStatus.DOWN
                stopped_at = gone.events.first_time(MemberRemoved, gone.me)
                assert stopped_at is not None
                # Never both serving: the minority stopped before the majority removed it
                # (within the removal margin of one stable period that later layers wait).
                for n in majority:
                    removed_at = n.events.first_time(MemberRemoved, gone.me)
                    assert removed_at is not None
                    assert stopped_at <= removed_at + stable_after
                    assert removed_at - cut_at < 20.0
