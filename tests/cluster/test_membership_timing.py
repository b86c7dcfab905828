"""The defaults against the issue's targets, in virtual time on a model of the wiring.

Each node runs what the topology and heartbeat actors will run, on a shared hand-driven clock:
heartbeat requests every 0.5 s to the ring's receivers (answered at once, or when a paused node
resumes), and every 0.25 s: the reaper, the split brain resolver, the leader's actions and one
gossip exchange (status digest or full state, through the msgpack wire form). Links deliver
instantly unless cut. The targets checked:

* a crashed node in a 3-node cluster is downed and removed on every survivor within 5 s;
* a node paused for 1 s every 10 s over 60 s is never suspected, let alone downed;
* a 3+2 partition ends with the three serving and the two down, never both.
"""

from __future__ import annotations

import random

import msgpack
import pytest

from casty.abc import Address
from casty.cluster.downing import DowningView, SplitBrainResolver
from casty.cluster.events import (
    ClusterDomainEvent,
    MemberDowned,
    MemberEvent,
    MemberRemoved,
    ReachabilityEvent,
    UnreachableMember,
    diff_events,
)
from casty.cluster.failure_detector import FailureDetectorRegistry, PhiAccrualFailureDetector
from casty.cluster.gossip import (
    Gossip,
    GossipOutcome,
    GossipStatus,
    StatusAction,
    leader_actions,
    receive_gossip,
    select_gossip_targets,
    status_action,
)
from casty.cluster.heartbeat import HeartbeatSender, reap_unreachable
from casty.cluster.member import Member, MemberStatus, UniqueAddress
from casty.cluster.vclock import VectorClock

TICK = 0.05  # seconds of virtual time per step
HEARTBEAT_EVERY = 10  # ticks: 0.5 s
GOSSIP_EVERY = 5  # ticks: 0.25 s


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SimNode:
    def __init__(self, me: UniqueAddress, state: Gossip, clock: Clock, index: int) -> None:
        self.me = me
        self.state = state
        self.events: list[tuple[float, ClusterDomainEvent]] = []
        self.clock = clock
        self.registry: FailureDetectorRegistry[UniqueAddress] = FailureDetectorRegistry(
            lambda: PhiAccrualFailureDetector(clock=clock)
        )
        self.heartbeats = HeartbeatSender(me, self.registry, clock=clock)
        self.resolver = SplitBrainResolver(clock=clock)
        self.rng = random.Random(index)
        self.phase = (index * 3) % HEARTBEAT_EVERY, (index * 2) % GOSSIP_EVERY
        self.stopped_at: float | None = None
        self.paused_until: float | None = None
        self.queued_requests: list[SimNode] = []

    def set(self, new: Gossip) -> None:
        if new is not self.state:
            self.events.extend((self.clock.now, e) for e in diff_events(self.state, new, self.me))
            self.state = new

    @property
    def running(self) -> bool:
        return self.stopped_at is None and self.paused_until is None


class World:
    def __init__(self, n: int) -> None:
        self.clock = Clock()
        nodes = [UniqueAddress(Address("127.0.0.1", 25520 + i), 7 + i) for i in range(n)]
        members = [
            Member(u, f"node-{i}", MemberStatus.UP, frozenset(), i + 1) for i, u in enumerate(nodes)
        ]
        formed = Gossip(members, seen=nodes, version=VectorClock({nodes[0].key: n}))
        self.nodes = {u: SimNode(u, formed, self.clock, i) for i, u in enumerate(nodes)}
        self.cut: set[frozenset[UniqueAddress]] = set()
        self.step = 0

    def link(self, a: SimNode, b: SimNode) -> bool:
        return (
            a.stopped_at is None
            and b.stopped_at is None
            and frozenset((a.me, b.me)) not in self.cut
        )

    def push(self, src: SimNode, dst: SimNode) -> None:
        wire = msgpack.unpackb(msgpack.packb(src.state.to_wire()), use_list=False)
        got = receive_gossip(dst.state, Gossip.from_wire(wire), dst.me, from_node=src.me)
        dst.set(got.gossip)
        if got.outcome is GossipOutcome.SELF_REMOVED:
            dst.stopped_at = self.clock.now
        elif got.talkback and self.link(dst, src):
            back = receive_gossip(src.state, dst.state, src.me, from_node=dst.me)
            src.set(back.gossip)

    def exchange(self, src: SimNode, dst: SimNode) -> None:
        if not self.link(src, dst) or not dst.running:
            return
        if not src.state.seen_by(dst.me):
            self.push(src, dst)
            return
        status = GossipStatus.from_wire(GossipStatus.of(src.state, src.me).to_wire())
        action = status_action(dst.state, status)
        if action is StatusAction.SEND_GOSSIP:
            self.push(dst, src)
        elif action is StatusAction.SEND_STATUS:
            self.push(src, dst)

    def heartbeat(self, node: SimNode) -> None:
        for target in node.heartbeats.tick():
            peer = self.nodes.get(target)
            if peer is None or not self.link(node, peer):
                continue
            if peer.paused_until is not None:
                peer.queued_requests.append(node)
            else:
                node.heartbeats.heartbeat_response(peer.me)

    def gossip_round(self, node: SimNode) -> None:
        me = node.me
        node.set(reap_unreachable(node.state, me, node.registry.is_available))
        unreachable = node.state.reachability_excluding_downed_observers()
        node.heartbeats.update(
            [m.unique_address for m in node.state.members],
            unreachable.all_unreachable_or_terminated(),
        )
        node.resolver.update(DowningView.from_gossip(node.state, me))
        decision = node.resolver.decide()
        if decision is not None:
            if decision.down_self:
                node.stopped_at = self.clock.now
                return
            if node.state.leader(me) == me:
                for target in sorted(decision.down):
                    node.set(node.state.mark_down(target, me))
        node.set(leader_actions(node.state, me, now=self.clock.now)[0])
        self_member = node.state.member(me)
        if self_member is None or self_member.status is MemberStatus.DOWN:
            node.stopped_at = self.clock.now
            return
        for target in select_gossip_targets(node.state, me, 1, node.rng):
            self.exchange(node, self.nodes[target])

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / TICK)):
            self.step += 1
            self.clock.now = self.step * TICK
            for node in self.nodes.values():
                if node.paused_until is not None and self.clock.now >= node.paused_until - 1e-9:
                    node.paused_until = None
                    for requester in node.queued_requests:
                        if self.link(node, requester):
                            requester.heartbeats.heartbeat_response(node.me)
                    node.queued_requests.clear()
            for node in self.nodes.values():
                if not node.running:
                    continue
                if self.step % HEARTBEAT_EVERY == node.phase[0]:
                    self.heartbeat(node)
                if self.step % GOSSIP_EVERY == node.phase[1]:
                    self.gossip_round(node)

    def first(self, node: SimNode, kind: type, about: UniqueAddress) -> float | None:
        """When ``node`` first published a ``kind`` event about ``about``."""
        for at, event in node.events:
            if (
                isinstance(event, kind)
                and isinstance(event, MemberEvent | ReachabilityEvent)
                and event.member.unique_address == about
            ):
                return at
        return None


@pytest.mark.parametrize("offset", [0.0, 0.1, 0.2, 0.3, 0.4])
def test_crashed_node_is_downed_and_removed_within_five_seconds(offset: float) -> None:
    world = World(3)
    world.run(10.0 + offset)  # warm up the detectors
    survivors, crashed = list(world.nodes.values())[:2], list(world.nodes.values())[2]
    crashed.stopped_at = crash = world.clock.now
    world.run(8.0)
    for node in survivors:
        detected = world.first(node, UnreachableMember, crashed.me)
        removed = world.first(node, MemberRemoved, crashed.me)
        assert detected is not None and removed is not None
        assert 1.5 <= detected - crash <= 2.8
        assert removed - crash <= 5.0
        kinds = [type(e) for _, e in node.events if getattr(e, "member", None) is not None]
        assert kinds.count(MemberDowned) == kinds.count(MemberRemoved) == 1
        assert node.state.member(crashed.me) is None and node.stopped_at is None


def test_one_second_pauses_every_ten_seconds_are_never_suspected() -> None:
    world = World(3)
    world.run(5.0)
    paused = list(world.nodes.values())[2]
    for _ in range(6):
        world.run(9.0)
        paused.paused_until = world.clock.now + 1.0
        world.run(1.0)
    for node in world.nodes.values():
        assert node.stopped_at is None
        assert not any(isinstance(e, UnreachableMember | MemberDowned) for _, e in node.events)
        assert [m.status for m in node.state.members] == [MemberStatus.UP] * 3


def test_three_two_partition_keeps_the_majority_and_downs_the_minority() -> None:
    world = World(5)
    world.run(10.0)
    nodes = list(world.nodes.values())
    majority, minority = nodes[:3], nodes[3:]
    world.cut = {frozenset((a.me, b.me)) for a in majority for b in minority}
    cut_at = world.clock.now
    world.run(10.0)
    for node in minority:
        assert node.stopped_at is not None  # downed itself and stopped serving
    for node in majority:
        assert node.stopped_at is None
        assert {m.unique_address for m in node.state.members} == {n.me for n in majority}
        for gone in minority:
            removed = world.first(node, MemberRemoved, gone.me)
            assert removed is not None and removed - cut_at <= 5.0
            # The minority stopped before (or within one stable period of) its removal, so a
            # removal margin of stable_after keeps the two sides from ever serving together.
            assert gone.stopped_at is not None
            assert gone.stopped_at <= removed + node.resolver.stable_after
