"""Cluster formation on real TCP (port 0 or free ports, several nodes in one process)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from cluster_harness import Node, free_ports, node, running, wait_all

from casty import ActorContext, Behaviors
from casty.abc import Address
from casty.cluster import (
    ClusterConfig,
    ClusteredActorSystem,
    LeaderChanged,
    MemberDowned,
    MemberEvent,
    MemberExited,
    MemberJoined,
    MemberLeft,
    MemberRemoved,
    MemberStatus,
    MemberUp,
    SubscribeTopology,
    TopologySnapshot,
    UniqueAddress,
)
from casty.errors import ConfigurationError, QuorumNotReached
from casty.testing import wait_until


def all_up(count: int) -> Callable[[Node], bool]:
    return lambda n: (
        len(n.system.cluster.up_members) == count and len(n.system.cluster.members) == count
    )


async def test_a_node_without_seeds_founds_a_cluster_of_one() -> None:
    (solo,) = nodes = [node(node_id="solo")]
    async with running(nodes):
        cluster = solo.system.cluster
        assert cluster.is_up
        assert [m.node_id for m in cluster.members] == ["solo"]
        assert cluster.leader == solo.system.node_address
        assert cluster.self_member is not None and cluster.self_member.up_number == 1


@pytest.mark.slow
async def test_three_nodes_form_a_cluster() -> None:
    first = node(node_id="n0")
    async with running([first]):
        seeds = [first.system.node_address]
        others = [node(node_id=f"n{i}", seed_nodes=seeds) for i in (1, 2)]
        async with running(others):
            everyone = [first, *others]
            await wait_all(everyone, all_up(3))
            views = {
                tuple((m.unique_address, m.status) for m in n.system.cluster.members)
                for n in everyone
            }
            assert len(views) == 1  # every node holds the same membership
            leaders = {n.system.cluster.leader for n in everyone}
            assert leaders == {min(m.address for m in first.system.cluster.members)}
            ages = sorted(m.up_number for m in first.system.cluster.members)
            assert ages == [1, 2, 3]
            assert first.system.cluster.self_member is not None
            assert first.system.cluster.self_member.up_number == 1  # the founder is the oldest


@pytest.mark.slow
async def test_seven_nodes_form_a_cluster() -> None:
    first = node(node_id="n0")
    async with running([first]):
        seeds = [first.system.node_address]
        others = [node(node_id=f"n{i}", seed_nodes=seeds) for i in range(1, 7)]
        async with running(others):
            everyone = [first, *others]
            await wait_all(everyone, all_up(7))
            for n in everyone:
                assert {m.node_id for m in n.system.cluster.members} == {f"n{i}" for i in range(7)}
                assert all(m.status is MemberStatus.UP for m in n.system.cluster.members)
                assert n.system.cluster.unreachable == ()
            # Up numbers are unique ages, the same on every node.
            numbers = {m.node_id: m.up_number for m in first.system.cluster.members}
            assert sorted(numbers.values()) == list(range(1, 8))
            for n in everyone:
                assert {m.node_id: m.up_number for m in n.system.cluster.members} == numbers


@pytest.mark.slow
async def test_required_quorum_three_nodes_started_concurrently() -> None:
    """The spec's start: every node lists the others as seeds and waits for three members."""
    ports = free_ports(3)
    addresses = [("127.0.0.1", p) for p in ports]
    nodes = [
        node(
            "task-queue",
            port=port,
            node_id=f"worker-{i + 1}",
            seed_nodes=[a for a in addresses if a[1] != port],
            required_quorum=3,
        )
        for i, port in enumerate(ports)
    ]
    async with running(nodes):
        # __aenter__ returned on every node only once three members were up.
        for n in nodes:
            up = n.system.cluster.up_members
            assert len(up) == 3, up
            assert {m.node_id for m in up} == {"worker-1", "worker-2", "worker-3"}
        # Exactly one node founded the cluster: the lowest address, whose up number is 1.
        founder = min(nodes, key=lambda n: n.system.node_address)
        assert founder.system.cluster.self_member is not None
        assert founder.system.cluster.self_member.up_number == 1


@pytest.mark.slow
async def test_membership_events_are_published_exactly_once_per_change() -> None:
    first = node(node_id="n0")
    async with running([first]):
        seeds = [first.system.node_address]
        others = [node(node_id=f"n{i}", seed_nodes=seeds) for i in (1, 2)]
        async with running(others):
            everyone = [first, *others]
            await wait_all(everyone, all_up(3))
            members = [m.unique_address for m in first.system.cluster.members]
            leaver = others[1]
            assert await leaver.system.leave(5.0)
            stayers = everyone[:2]
            # The event stream delivers in order: once the leaver's removal is recorded, every
            # earlier event is too, so the counts below are final. The leaver included: its
            # `leave` returns on the removal, before its own stream has delivered the event.
            await wait_all(everyone, lambda n: len(n.events.about(MemberRemoved, leaver.me)) >= 1)
            for n in everyone:
                for member in members:
                    ups = n.events.about(MemberUp, member)
                    assert len(ups) == 1, (n.system.node_address, member, ups)
                    assert ups[0].member.status is MemberStatus.UP
                joined = [e.member.unique_address for e in n.events.of(MemberJoined)]
                assert len(joined) == len(set(joined))
                changes = [e.leader for e in n.events.of(LeaderChanged)]
                assert changes, "the first leader is an event too"
                assert all(a != b for a, b in itertools.pairwise(changes))
            for n in stayers:
                assert changes_of(n, leaver.me) == [MemberLeft, MemberExited, MemberRemoved]
                assert n.events.of(LeaderChanged)[-1].leader == n.system.cluster.leader
            # The leaver saw its own leave the same way, ending with its own removal.
            assert changes_of(leaver, leaver.me) == [MemberLeft, MemberExited, MemberRemoved]


def changes_of(n: Node, member: UniqueAddress) -> list[type]:
    kinds = (MemberLeft, MemberExited, MemberRemoved, MemberDowned)
    return [
        type(e)
        for e in n.events.of(MemberEvent)
        if isinstance(e, kinds) and e.member.unique_address == member
    ]


@pytest.mark.slow
async def test_topology_subscribers_get_the_snapshot_at_once_and_every_change() -> None:
    first = node(node_id="n0")
    async with running([first]):
        snapshots: list[TopologySnapshot] = []

        def on_snapshot(ctx: ActorContext[Any], msg: TopologySnapshot) -> Any:
            snapshots.append(msg)
            return Behaviors.same()

        watcher = first.system.spawn(Behaviors.receive(on_snapshot), "topology-watcher")
        first.system.cluster.topology_actor.tell(SubscribeTopology(watcher))
        await wait_until(lambda: len(snapshots) == 1, 5.0)
        assert snapshots[0] == first.system.cluster.snapshot
        assert [m.node_id for m in snapshots[0].members] == ["n0"]

        joiner = node(node_id="n1", seed_nodes=[first.system.node_address])
        async with running([joiner]):
            await wait_all([first, joiner], all_up(2))
            await wait_until(lambda: snapshots[-1] == first.system.cluster.snapshot, 5.0)
            # One snapshot per change, never the same one twice in a row.
            assert all(a != b for a, b in itertools.pairwise(snapshots))
            statuses = [{m.node_id: m.status for m in s.members} for s in snapshots]
            assert {"n0": MemberStatus.UP, "n1": MemberStatus.JOINING} in statuses
            assert statuses[-1] == {"n0": MemberStatus.UP, "n1": MemberStatus.UP}
            # The leader is the first up member in address order, whoever is older.
            addresses = [first.system.node_address, joiner.system.node_address]
            assert snapshots[-1].leader == min(addresses)


async def test_quorum_not_reached_raises_and_shuts_down() -> None:
    system = ClusteredActorSystem(
        "test", required_quorum=2, config=ClusterConfig(quorum_timeout=0.2)
    )
    with pytest.raises(QuorumNotReached, match="2 members were not up"):
        await system.__aenter__()
    assert system.cluster.is_removed  # it left the cluster while shutting down
    with pytest.raises(Exception, match="shut down"):
        system.spawn(Behaviors.ignore(), "late")


async def test_bad_arguments_are_configuration_errors() -> None:
    for options in (
        {"required_quorum": 0},
        {"node_id": ""},
        {"roles": "frontend"},
        {"seed_nodes": "127.0.0.1:1"},
        {"seed_nodes": [("127.0.0.1", "x")]},
        {"seed_nodes": [Address("127.0.0.1", 1)], "discovery": "static://127.0.0.1:2"},
        {"config": object()},
    ):
        with pytest.raises(ConfigurationError):
            ClusteredActorSystem("test", **options)
