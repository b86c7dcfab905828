"""Leaving, restarting and refusals, on real TCP (several nodes in one process)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from cluster_harness import Node, node, running, wait_all

from casty import Behaviors
from casty.abc import Address
from casty.cluster import (
    ClusteredActorSystem,
    LeaderChanged,
    MemberExited,
    MemberLeft,
    MemberRemoved,
    MemberStatus,
    MemberUp,
    UniqueAddress,
)
from casty.cluster.protocol import (
    PROTOCOL_VERSION,
    GossipEnvelope,
    GossipStatusEnvelope,
    InitJoin,
    InitJoinRefused,
    node_to_wire,
)
from casty.cluster.system import TOPOLOGY_PATH
from casty.errors import JoinRefused, ResourceClosed
from casty.remote import RemoteActorSystem
from casty.testing import wait_until


def all_up(count: int) -> Any:
    return lambda n: (
        len(n.system.cluster.up_members) == count and len(n.system.cluster.members) == count
    )


def _gossip_in(n: Node) -> int:
    """Gossip and status messages ``n`` received so far (a count of gossip rounds seen)."""
    statistics = n.system.cluster.statistics()
    return statistics.gossip_received + statistics.status_received


async def three(name: str = "test") -> tuple[Node, list[Node]]:
    first = node(name, node_id="n0")
    await first.system.__aenter__()
    others = [node(name, node_id=f"n{i}", seed_nodes=[first.system.node_address]) for i in (1, 2)]
    return first, others


@pytest.mark.slow
async def test_graceful_leave_is_seen_as_left_then_removed_and_runs_exit_hooks() -> None:
    first, others = await three()
    async with running([first, *others]):
        everyone = [first, *others]
        await wait_all(everyone, all_up(3))
        leaver, stayers = others[0], [first, others[1]]
        hook_log: list[tuple[str, MemberStatus | None]] = []
        release = asyncio.Event()

        async def hand_off() -> None:
            hook_log.append(("start", leaver.system.cluster.self_status))
            await release.wait()  # a layer handing its work to other nodes
            hook_log.append(("end", leaver.system.cluster.self_status))

        leaver.system.cluster.add_exit_hook(hand_off)
        leaving = asyncio.create_task(leaver.system.leave(10.0))
        await wait_until(lambda: bool(hook_log), 5.0)
        assert hook_log == [("start", MemberStatus.EXITING)]
        # While the hook runs, the others know the node is exiting but keep it as a member.
        await wait_all(stayers, lambda n: bool(n.events.about(MemberExited, leaver.me)))
        assert all(n.system.cluster.state.has_member(leaver.me) for n in stayers)
        # And still after several gossip rounds: the leaver marks no state seen (not even the
        # one that made it exiting) until its hooks return, so the leader cannot remove it.
        marks = [_gossip_in(n) for n in stayers]
        await wait_until(
            lambda: all(_gossip_in(n) >= m + 8 for n, m in zip(stayers, marks, strict=True)), 10.0
        )
        assert all(n.system.cluster.state.has_member(leaver.me) for n in stayers)
        release.set()
        assert await leaving is True
        assert hook_log[-1] == ("end", MemberStatus.EXITING)
        await wait_all(stayers, lambda n: bool(n.events.about(MemberRemoved, leaver.me)))
        assert all(all_up(2)(n) for n in stayers)
        for n in stayers:
            kinds = [
                type(e)
                for e in n.events.of(MemberLeft | MemberExited | MemberRemoved)  # type: ignore[arg-type]
                if e.member.unique_address == leaver.me
            ]
            assert kinds == [MemberLeft, MemberExited, MemberRemoved]
            removed = n.events.about(MemberRemoved, leaver.me)[0]
            assert removed.previous_status is MemberStatus.EXITING
            assert removed.member.status is MemberStatus.REMOVED
        assert leaver.system.cluster.is_removed and not leaver.system.cluster.is_downed
        # Remoting refuses the removed incarnation from now on.
        await wait_until(
            lambda: all(
                n.system.is_quarantined(leaver.me.address, leaver.me.incarnation) for n in stayers
            ),
            5.0,
        )


@pytest.mark.slow
async def test_the_leader_leaves_and_the_next_member_takes_over() -> None:
    first, others = await three()
    async with running([first, *others]):
        everyone = [first, *others]
        await wait_all(everyone, all_up(3))
        leader = next(n for n in everyone if n.system.node_address == first.system.cluster.leader)
        stayers = [n for n in everyone if n is not leader]
        assert await leader.system.leave(5.0) is True
        await wait_all(stayers, lambda n: bool(n.events.about(MemberRemoved, leader.me)))
        successor = min(n.system.node_address for n in stayers)
        for n in stayers:
            assert all_up(2)(n)
            assert n.system.cluster.leader == successor
            assert n.events.of(LeaderChanged)[-1].leader == successor


@pytest.mark.slow
async def test_leaving_the_context_manager_leaves_the_cluster() -> None:
    first, others = await three()
    async with running([first]):
        await start_others(others)
        await wait_all([first, *others], all_up(3))
        await asyncio.gather(*(o.system.__aexit__(None, None, None) for o in others))
        await wait_all([first], lambda n: all(n.events.about(MemberRemoved, o.me) for o in others))
        assert all_up(1)(first)
        for o in others:
            assert o.system.cluster.is_removed
            assert (
                first.events.about(MemberRemoved, o.me)[0].previous_status is MemberStatus.EXITING
            )


async def start_others(others: list[Node]) -> None:
    await asyncio.gather(*(o.system.__aenter__() for o in others))


@pytest.mark.slow
async def test_a_restarted_node_with_a_new_incarnation_replaces_its_old_self() -> None:
    first, others = await three()
    async with running([first, *others]):
        everyone = [first, *others]
        await wait_all(everyone, all_up(3))
        old = others[1]
        old_node = old.me
        await old.system.shutdown(leave=False)  # a crash: nobody is told
        reborn = node(
            node_id="n2-again",
            port=old_node.address.port,
            seed_nodes=[first.system.node_address],
        )
        async with running([reborn]):
            assert reborn.me.address == old_node.address
            assert reborn.me.incarnation != old_node.incarnation
            survivors = [first, others[0], reborn]
            await wait_all(survivors, all_up(3))
            for n in survivors:
                assert n.system.cluster.state.member(old_node) is None
                assert n.system.cluster.state.is_removed(old_node)
                assert {m.node_id for m in n.system.cluster.members} == {"n0", "n1", "n2-again"}
            await wait_all([first, others[0]], lambda n: bool(n.events.about(MemberUp, reborn.me)))
            for n in (first, others[0]):
                assert len(n.events.about(MemberRemoved, old_node)) == 1
                assert len(n.events.about(MemberUp, reborn.me)) == 1


@pytest.mark.slow
async def test_a_node_of_another_system_name_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    seed = node("alpha", node_id="seed")
    async with running([seed]):
        stranger = ClusteredActorSystem(
            "beta", node_id="stranger", seed_nodes=[seed.system.node_address]
        )
        with pytest.raises(JoinRefused, match=r"alpha|beta"):
            await stranger.__aenter__()
        assert stranger.cluster.is_removed and stranger.cluster.self_member is None
        with pytest.raises(ResourceClosed):  # __aenter__ shut the refused node down
            stranger.spawn(Behaviors.ignore(), "late")
        assert [m.node_id for m in seed.system.cluster.members] == ["seed"]
    joined = "\n".join(r.getMessage() for r in caplog.records)
    # Both sides say why: the seed refused the handshake, the joiner cannot join.
    assert "system name mismatch" in joined
    assert "cannot join the cluster" in joined


class Probe:
    """A plain remote system with a stand-in topology actor that records what it is sent
    (and answers with ``reply(probe, message)`` when given)."""

    def __init__(
        self, system: RemoteActorSystem, reply: Callable[[Probe, Any], None] | None = None
    ) -> None:
        self.system = system
        self.received: list[Any] = []

        def on(ctx: Any, msg: Any) -> Any:
            self.received.append(msg)
            if reply is not None:
                reply(self, msg)
            return Behaviors.same()

        system.system_actor_of(Behaviors.receive(on), TOPOLOGY_PATH.rsplit("/", 1)[1])

    def topology_of(self, address: Address) -> Any:
        return self.system.resolve(f"casty://{self.system.name}@{address}{TOPOLOGY_PATH}")


async def test_a_joiner_of_another_protocol_version_is_refused_with_a_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    seed = node(node_id="seed")
    async with running([seed]), RemoteActorSystem("test") as raw:
        probe = Probe(raw)
        init = InitJoin(str(raw.node_address), "test", PROTOCOL_VERSION + 1, ())
        probe.topology_of(seed.system.node_address).tell(init)
        await wait_until(lambda: bool(probe.received), 5.0)
        (answer,) = probe.received
        assert isinstance(answer, InitJoinRefused)
        assert f"protocol version {PROTOCOL_VERSION + 1}" in answer.reason
    assert any("refused node" in r.getMessage() for r in caplog.records)


async def test_garbage_gossip_is_dropped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    seed = node(node_id="seed")
    async with running([seed]), RemoteActorSystem("test") as raw:
        probe = Probe(raw)
        target = probe.topology_of(seed.system.node_address)
        me = node_to_wire(seed.me)
        stranger = node_to_wire(UniqueAddress(raw.node_address, 1))
        target.tell(GossipEnvelope(stranger, me, [1, "not", "a", "gossip"]))
        target.tell(GossipEnvelope(("", -1, "x"), me, []))  # type: ignore[arg-type]
        target.tell(GossipStatusEnvelope(me, {"garbage": True}))
        await wait_until(lambda: seed.system.cluster.statistics().dropped == 3, 5.0)
        assert seed.system.cluster.is_up
        assert [m.node_id for m in seed.system.cluster.members] == ["seed"]
    messages = [r.getMessage() for r in caplog.records if r.name == "casty.cluster"]
    assert any("dropped a malformed GossipEnvelope" in m for m in messages)
    assert any("dropped a malformed GossipStatusEnvelope" in m for m in messages)


async def test_a_seed_refusing_the_join_fails_start_with_its_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="casty.cluster")
    reason = "the joiner speaks cluster protocol version 1, this cluster speaks 2"

    def refuse(probe: Probe, msg: Any) -> None:  # a seed of an incompatible version
        if isinstance(msg, InitJoin):
            answer = InitJoinRefused(str(probe.system.node_address), reason)
            probe.topology_of(Address.parse(msg.sender)).tell(answer)

    async with RemoteActorSystem("test") as raw:
        Probe(raw, refuse)
        joiner = ClusteredActorSystem("test", seed_nodes=[raw.node_address])
        with pytest.raises(JoinRefused, match="protocol version 1"):
            await joiner.__aenter__()
    assert any("cannot join the cluster" in r.getMessage() for r in caplog.records)
